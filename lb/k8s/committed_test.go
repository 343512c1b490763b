package k8s

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"
)

// IPAM follows the committed cluster configuration only: a Lease holder
// with no committed current version (cut off from the majority) assigns
// no new address — the Service waits, pending with the reason — and keeps
// every address already given; once the configuration is committed again
// the waiting Service gets one.
func TestNoNewAddressWithoutACommittedConfiguration(t *testing.T) {
	fc := fake.NewClientset()
	create(t, fc, lbService("ns", "held", 0, "192.0.2.1"), lbService("ns", "new", 1))
	var why atomic.Pointer[error]
	cut := errors.New("configuration not committed: no majority reachable (unreachable: lb2, lb3)")
	why.Store(&cut)
	c := newController(t, fc, testConfig(t, mainPool), "lb1")
	var asked atomic.Int32
	c.opts.Committed = func() error { asked.Add(1); return *why.Load() }
	c.opts.CommitRetry = 10 * time.Millisecond
	startInformers(t, c)
	defer runTerm(c)()
	waitLeader(t, c)

	eventually(t, "the new Service pending with the reason", func() error {
		for _, p := range c.Pending() {
			if p.Namespace+"/"+p.Name == "ns/new" && strings.Contains(p.Why, "no majority reachable") {
				return nil
			}
		}
		return fmt.Errorf("pending %+v", c.Pending())
	})
	// Several retries while cut off: still nothing assigned, nothing
	// released.
	from := asked.Load()
	eventually(t, "tried again while cut off", func() error {
		if n := asked.Load() - from; n < 5 {
			return fmt.Errorf("asked %d times since", n)
		}
		return nil
	})
	if got := apiStatus(t, fc, "ns", "new"); len(got) != 0 {
		t.Fatalf("cut off from the majority, the Lease holder assigned %v", got)
	}
	if got := apiStatus(t, fc, "ns", "held"); !slices.Equal(got, []string{"192.0.2.1"}) {
		t.Fatalf("the held Service's status is %v, want its address kept", got)
	}

	var ok error
	why.Store(&ok)
	got := waitAddressed(t, fc, "ns/new")
	if slices.Equal(got["ns/new"], []string{"192.0.2.1"}) || !slices.Equal(got["ns/held"], []string{"192.0.2.1"}) {
		t.Fatalf("after the commit: %v", got)
	}
}
