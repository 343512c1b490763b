package k8s

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
)

// create adds Services to the API server (the fake clientset).
func create(t *testing.T, client kubernetes.Interface, svcs ...*corev1.Service) {
	t.Helper()
	for _, s := range svcs {
		if _, err := client.CoreV1().Services(s.Namespace).Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// history records every address each Service's status has had, from a
// watch on the API server, until the test ends.
type history struct {
	mu   sync.Mutex
	seen map[string][]string // namespace/name -> distinct non-empty statuses in order
}

func watchHistory(t *testing.T, client kubernetes.Interface) *history {
	t.Helper()
	w, err := client.CoreV1().Services("").Watch(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := &history{seen: map[string][]string{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			s, ok := ev.Object.(*corev1.Service)
			if !ok || ev.Type == watch.Deleted {
				continue
			}
			var ips []string
			for _, in := range s.Status.LoadBalancer.Ingress {
				ips = append(ips, in.IP)
			}
			if len(ips) == 0 {
				continue
			}
			k, st := s.Namespace+"/"+s.Name, fmt.Sprint(ips)
			h.mu.Lock()
			if n := len(h.seen[k]); n == 0 || h.seen[k][n-1] != st {
				h.seen[k] = append(h.seen[k], st)
			}
			h.mu.Unlock()
		}
	}()
	t.Cleanup(func() { w.Stop(); <-done })
	return h
}

// check fails the test for every Service whose status, once set, changed.
func (h *history) check(t *testing.T) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, v := range h.seen {
		if len(v) > 1 {
			t.Errorf("%s was renumbered: %v", k, v)
		}
	}
}

// waitKept waits until the Services have the addresses they had.
func waitKept(t *testing.T, client kubernetes.Interface, had map[string][]string) {
	t.Helper()
	eventually(t, "the Services keep their addresses", func() error {
		got := allStatuses(t, client)
		for k, ips := range had {
			if !slices.Equal(got[k], ips) {
				return fmt.Errorf("%s has %v, had %v", k, got[k], ips)
			}
		}
		return nil
	})
}

// A new leader whose informer cache has not yet seen the Services that
// already have addresses must not hand those addresses out again, nor
// renumber those Services when they show up.
func TestRebuildDoesNotTrustALaggingCache(t *testing.T) {
	fc := fake.NewClientset()
	old := []*corev1.Service{
		lbService("ns", "a0", 0, "192.0.2.0"), lbService("ns", "a1", 1, "192.0.2.1"), lbService("ns", "a2", 2, "192.0.2.2"),
	}
	fresh := []*corev1.Service{lbService("ns", "b0", 10), lbService("ns", "b1", 11), lbService("ns", "b2", 12)}
	create(t, fc, old...)
	create(t, fc, fresh...)
	h := watchHistory(t, fc)

	c := newController(t, fc, testConfig(t, mainPool), "lb1")
	cacheAdd(t, c, fresh...) // the cache has not seen the a's yet
	defer runTerm(c)()
	waitAddressed(t, fc, "ns/b0", "ns/b1", "ns/b2")
	cacheAdd(t, c, old...) // now it has
	waitKept(t, fc, map[string][]string{"ns/a0": {"192.0.2.0"}, "ns/a1": {"192.0.2.1"}, "ns/a2": {"192.0.2.2"}})
	h.check(t)
}

// A status the allocator does not know (written after the term's rebuild,
// or missed by it) is claimed: no other Service is given that address,
// even one synced first, and the Service keeps it.
func TestUnknownStatusIsClaimed(t *testing.T) {
	fc := fake.NewClientset()
	h := watchHistory(t, fc)
	c := newController(t, fc, testConfig(t, mainPool), "lb1")
	c.opts.Workers = 1
	defer runTerm(c)()
	waitLeader(t, c)
	// After the rebuild: y (no address yet) and x, whose status holds the
	// lowest address of the pool, reach the cache in this order.
	y, x := lbService("ns", "y", 1), lbService("ns", "x", 0, "192.0.2.0")
	create(t, fc, y, x)
	cacheAdd(t, c, y, x)
	got := waitAddressed(t, fc, "ns/x", "ns/y")
	if !slices.Equal(got["ns/x"], []string{"192.0.2.0"}) {
		t.Errorf("x has %v, had [192.0.2.0]", got["ns/x"])
	}
	h.check(t)
}

// A status the allocator cannot hold (an address another Service already
// holds) is left as it is, with a Warning Event AddressNotKept; one outside
// every pool (as after a typo in a pool of the new leader's file) is held
// and left as it is, and the desired state, which does not announce it,
// says so with a Warning AddressNotInPool. The other Services keep
// working.
func TestStatusThatCannotBeKeptIsLeftAlone(t *testing.T) {
	fc := fake.NewClientset()
	svcs := []*corev1.Service{
		lbService("ns", "outside", 0, "203.0.113.5"),
		lbService("ns", "first", 1, "192.0.2.3"),
		lbService("ns", "second", 2, "192.0.2.3"), // a leftover of a split brain
		lbService("ns", "new", 3),
	}
	create(t, fc, svcs...)
	c := newController(t, fc, testConfig(t, mainPool), "lb1")
	startInformers(t, c)
	defer runTerm(c)()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.desiredLoop(ctx)
	var got []string
	eventually(t, "new gets an address", func() error {
		if got = apiStatus(t, fc, "ns", "new"); len(got) == 0 {
			return fmt.Errorf("none yet")
		}
		return nil
	})
	waitWarning(t, fc, "ns", "outside", "AddressNotInPool", "203.0.113.5 in the status is in no address pool: not announced")
	waitWarning(t, fc, "ns", "second", "AddressNotKept", "192.0.2.3 is already used by ns/first")
	for _, s := range svcs[:3] {
		if want := []string{s.Status.LoadBalancer.Ingress[0].IP}; !slices.Equal(apiStatus(t, fc, s.Namespace, s.Name), want) {
			t.Errorf("%s's status changed from %v to %v", s.Name, want, apiStatus(t, fc, s.Namespace, s.Name))
		}
	}
	if ip := got[0]; ip == "192.0.2.3" || ip == "203.0.113.5" {
		t.Errorf("new got %s, another Service's address", ip)
	}
	if got := c.term.Load().alloc.Holders(netip.MustParseAddr("203.0.113.5")); !slices.Equal(got, []string{"ns/outside"}) {
		t.Errorf("203.0.113.5 is held by %v, want ns/outside", got)
	}
	for _, vs := range c.opts.Store.Load().Services {
		if vs.VIP.String() == "203.0.113.5" {
			t.Errorf("203.0.113.5, in no pool, is in the desired state: %+v", vs)
		}
	}
}

// The Lease moves from one host to another in the middle of allocation;
// the new leader's cache lags. No address is given to two Services and
// no Service's address changes.
func TestLeaseMovesDuringAllocation(t *testing.T) {
	fc := fake.NewClientset()
	h := watchHistory(t, fc)
	cfg := testConfig(t, mainPool)
	a := newController(t, fc, cfg, "lbA")
	startInformers(t, a)
	stopA := runTerm(a)
	var first []*corev1.Service
	for i := 0; i < 5; i++ {
		first = append(first, lbService("ns", fmt.Sprintf("s%d", i), i))
	}
	create(t, fc, first...)
	before := waitAddressed(t, fc, "ns/s0", "ns/s1", "ns/s2", "ns/s3", "ns/s4")
	stopA()

	var second []*corev1.Service
	for i := 5; i < 10; i++ {
		second = append(second, lbService("ns", fmt.Sprintf("s%d", i), i))
	}
	create(t, fc, second...)
	b := newController(t, fc, cfg, "lbB")
	cacheAdd(t, b, second...) // b has not seen s0..s4 yet
	defer runTerm(b)()
	waitAddressed(t, fc, "ns/s5", "ns/s6", "ns/s7", "ns/s8", "ns/s9")
	cacheAdd(t, b, first...) // as they were when created, without status
	waitKept(t, fc, before)
	h.check(t)
}

// Two hosts elect each other through a real Lease on the fake API server;
// the first releases it while Services are still being created. Every
// Service gets one address, never another's, and keeps it.
func TestElectionHandover(t *testing.T) {
	fc := fake.NewClientset()
	h := watchHistory(t, fc)
	cfg := testConfig(t, mainPool)
	run := func(c *Controller) (stop func()) {
		c.opts.LeaseDuration, c.opts.RenewDeadline, c.opts.RetryPeriod = time.Second, 500*time.Millisecond, 50*time.Millisecond
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}
	a, b := newController(t, fc, cfg, "lbA"), newController(t, fc, cfg, "lbB")
	stopA := run(a)
	waitLeader(t, a)
	waitWatching(t, fc, a)
	stopB := run(b)
	defer stopB()
	waitWatching(t, fc, b)
	var keys []string
	for i := 0; i < 12; i++ {
		s := lbService("ns", fmt.Sprintf("s%02d", i), i)
		create(t, fc, s)
		keys = append(keys, key(s))
		if i == 5 {
			stopA()
		}
	}
	waitAddressed(t, fc, keys...)
	if !b.Leader() {
		t.Error("lbB does not lead after lbA stopped")
	}
	h.check(t)
}
