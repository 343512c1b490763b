package k8s

import (
	"context"
	"fmt"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// A status address outside every pool is not in the desired state. Only
// the leader records it, as a Warning Event AddressNotInPool, once while
// it lasts however often the state is rebuilt; the other Services work.
func TestAddressNotInPoolIsNotAnnounced(t *testing.T) {
	fc := fake.NewClientset()
	create(t, fc, lbService("ns", "leftover", 0, "203.0.113.7"), lbService("ns", "web", 1))
	c := newController(t, fc, testConfig(t, mainPool), "lb1")
	startInformers(t, c)
	ctx, cancel := context.WithCancel(context.Background())
	loop := make(chan struct{})
	go func() { defer close(loop); c.desiredLoop(ctx) }()
	defer func() { cancel(); <-loop }()
	vips := func() []string {
		var out []string
		if d := c.opts.Store.Load(); d != nil {
			for _, v := range d.VIPs() {
				out = append(out, v.String())
			}
		}
		return out
	}
	eventually(t, "a desired state is published", func() error {
		if !c.Ready() {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	if got := vips(); len(got) != 0 {
		t.Errorf("VIPs %v before any address was assigned", got)
	}
	if w := warnings(t, fc, "ns", "leftover", "AddressNotInPool"); len(w) != 0 {
		t.Errorf("a host that is not the leader recorded %q", w)
	}

	defer runTerm(c)()
	waitWarning(t, fc, "ns", "leftover", "AddressNotInPool", "203.0.113.7 in the status is in no address pool")
	web := waitAddressed(t, fc, "ns/web")["ns/web"]
	// More Services, more rebuilds: the problem is not recorded again.
	for i := 0; i < 3; i++ {
		create(t, fc, lbService("ns", fmt.Sprintf("s%d", i), 10+i))
	}
	all := waitAddressed(t, fc, "ns/s0", "ns/s1", "ns/s2")
	eventually(t, "the desired state has every address in the pool", func() error {
		got := vips()
		for _, k := range []string{"ns/web", "ns/s0", "ns/s1", "ns/s2"} {
			if !slices.Contains(got, all[k][0]) {
				return fmt.Errorf("VIPs %v lack %s's %s", got, k, all[k][0])
			}
		}
		return nil
	})
	if got := vips(); slices.Contains(got, "203.0.113.7") || !slices.Contains(got, web[0]) {
		t.Errorf("VIPs %v: want %s, not 203.0.113.7", got, web[0])
	}
	evs, err := fc.CoreV1().Events("ns").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs.Items {
		if e.Reason == "AddressNotInPool" && e.Count != 1 {
			t.Errorf("AddressNotInPool recorded %d times: %s", e.Count, e.Message)
		}
	}
}
