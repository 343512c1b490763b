package k8s

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"

	"github.com/edgelb/edgelb/lb"
)

type fakeOwners struct {
	mu        sync.Mutex
	owners    map[netip.Addr]string
	unsettled bool
}

func (f *fakeOwners) Owners() map[netip.Addr]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[netip.Addr]string{}
	for k, v := range f.owners {
		out[k] = v
	}
	return out
}
func (f *fakeOwners) Subscribe() <-chan struct{} { return make(chan struct{}) }

// ViewSettled: false while unsettled is set (a member that just started).
func (f *fakeOwners) ViewSettled() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.unsettled
}
func (f *fakeOwners) set(vip netip.Addr, owner string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.owners[vip] = owner
}

type fakeHealth struct {
	mu      sync.Mutex
	down    map[netip.AddrPort]bool
	unknown map[netip.AddrPort]bool
	asked   int // calls of State
}

func (f *fakeHealth) State(_ *lb.VirtualService, b lb.Backend) (bool, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked++
	if f.unknown[b.Addr] {
		return true, false
	}
	return !f.down[b.Addr], true
}
func (f *fakeHealth) Changed() <-chan struct{} { return make(chan struct{}) }
func (f *fakeHealth) set(a netip.AddrPort, down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down[a] = down
}

// reportEnv is a controller whose Service ns/web has VIP 192.0.2.1 with two
// backends, a fake owner function, fake health checks, a stepped clock and
// a FakeRecorder as the term's recorder.
type reportEnv struct {
	c        *Controller
	owners   *fakeOwners
	health   *fakeHealth
	now      time.Time
	recorder *record.FakeRecorder
	se       *stateEvents
	leader   *term
	vip      netip.Addr
	backends []netip.AddrPort
}

func newReportEnv(t *testing.T) *reportEnv {
	e := &reportEnv{
		vip:      netip.MustParseAddr("192.0.2.1"),
		backends: []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:30080"), netip.MustParseAddrPort("10.0.0.2:30080")},
		health:   &fakeHealth{down: map[netip.AddrPort]bool{}, unknown: map[netip.AddrPort]bool{}},
		now:      epoch,
		recorder: record.NewFakeRecorder(100),
	}
	e.owners = &fakeOwners{owners: map[netip.Addr]string{e.vip: "lb1"}}
	client := fake.NewClientset()
	e.c = New(client, Options{
		Identity: "lb1", Config: testConfig(t, mainPool), Store: lb.NewStore(), Log: slog.New(slog.DiscardHandler),
		Ownership: e.owners, Health: e.health, EventInterval: 30 * time.Second, LeaseDuration: 15 * time.Second,
		Now: func() time.Time { return e.now },
	})
	cacheAdd(t, e.c, lbService("ns", "web", 0, e.vip.String()))
	vs := lb.VirtualService{Key: lb.Key{VIP: e.vip, Port: 80, Protocol: lb.TCP}, Source: lb.Source{Namespace: "ns", Name: "web"}}
	for _, b := range e.backends {
		vs.Backends = append(vs.Backends, lb.Backend{Addr: b, Weight: 1})
	}
	e.c.opts.Store.Set(&lb.Desired{Services: []lb.VirtualService{vs}})
	e.se = newStateEvents(e.c.opts.EventInterval, 2*e.c.opts.LeaseDuration+e.c.opts.EventInterval)
	e.leader = &term{recorder: e.recorder}
	e.c.term.Store(e.leader)
	return e
}

// pass steps the clock by d and runs one pass; it returns the Events it
// recorded.
func (e *reportEnv) pass(d time.Duration) []string {
	e.now = e.now.Add(d)
	e.c.reportOnce(e.se)
	var out []string
	for {
		select {
		case ev := <-e.recorder.Events:
			out = append(out, ev)
		default:
			return out
		}
	}
}

func expectEvents(t *testing.T, step string, got []string, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: Events %q, want %d matching %q", step, got, len(want), want)
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			t.Fatalf("%s: Event %q does not contain %q", step, got[i], want[i])
		}
	}
}

// An owner change is a Normal Event at once; a flapping owner gives at most
// one Event per interval, of the state at its end, and none when it ends
// where it was last reported.
func TestOwnerEventsAreRateLimitedAndCoalesced(t *testing.T) {
	e := newReportEnv(t)
	expectEvents(t, "first look", e.pass(0))
	e.owners.set(e.vip, "lb2")
	expectEvents(t, "failover", e.pass(time.Second), "Normal OwnerChanged 192.0.2.1 moved from lb1 to lb2")
	for _, owner := range []string{"lb1", "lb2", "lb3", "lb1"} {
		e.owners.set(e.vip, owner)
		expectEvents(t, "flap "+owner, e.pass(time.Second))
	}
	expectEvents(t, "interval over", e.pass(26*time.Second), "Normal OwnerChanged 192.0.2.1 moved from lb2 to lb1")
	e.owners.set(e.vip, "lb2")
	expectEvents(t, "flap away", e.pass(time.Second))
	e.owners.set(e.vip, "lb1")
	expectEvents(t, "flap back", e.pass(time.Second))
	expectEvents(t, "interval over, back where reported", e.pass(time.Minute))
	e.owners.set(e.vip, "")
	expectEvents(t, "no owner", e.pass(time.Second), "Normal OwnerChanged 192.0.2.1 moved from lb1 to nobody")
	// Without quorum this host knows no owner: nothing is reported, and
	// what it knew is kept.
	e.owners.mu.Lock()
	e.owners.owners = map[netip.Addr]string{}
	e.owners.mu.Unlock()
	expectEvents(t, "no quorum", e.pass(time.Minute))
	e.owners.set(e.vip, "lb2")
	expectEvents(t, "quorum again", e.pass(time.Second), "Normal OwnerChanged 192.0.2.1 moved from nobody (no healthy member with quorum) to lb2")
}

// A Service whose VIP the cluster does not know yet gets no owner Event
// until it does; the first owner is taken as it is.
func TestFirstOwnerIsTakenAsItIs(t *testing.T) {
	e := newReportEnv(t)
	e.owners.mu.Lock()
	e.owners.owners = map[netip.Addr]string{}
	e.owners.mu.Unlock()
	expectEvents(t, "unknown VIP", e.pass(0))
	e.owners.set(e.vip, "lb3")
	expectEvents(t, "first owner", e.pass(time.Second))
	e.owners.set(e.vip, "lb1")
	expectEvents(t, "failover", e.pass(time.Second), "Normal OwnerChanged 192.0.2.1 moved from lb3 to lb1")
}

// When no backend passes its checks any more, a Warning, once; when one
// passes again, a Normal Event; partial failures say nothing.
func TestNoHealthyBackendsWarning(t *testing.T) {
	e := newReportEnv(t)
	expectEvents(t, "first look", e.pass(0))
	e.health.set(e.backends[0], true)
	expectEvents(t, "one of two down", e.pass(time.Second))
	e.health.set(e.backends[1], true)
	expectEvents(t, "both down", e.pass(time.Second), "Warning NoHealthyBackends no healthy backend left: all 2 backends fail their health checks (seen from lb1)")
	expectEvents(t, "still down", e.pass(time.Minute))
	e.health.set(e.backends[1], false)
	expectEvents(t, "one back", e.pass(time.Second), "Normal BackendsHealthy backends healthy again: 1 of 2 backends pass")
	e.health.set(e.backends[1], true)
	expectEvents(t, "down again within the interval", e.pass(time.Second))
	e.health.set(e.backends[1], false)
	e.health.set(e.backends[0], false)
	expectEvents(t, "back before the interval ended", e.pass(time.Minute))
}

// Backends that fail from their first check on were never healthy: no
// Event, neither then nor when they pass later; once one passed, losing
// them all is a Warning.
func TestBackendsThatNeverPassedAreNotReported(t *testing.T) {
	e := newReportEnv(t)
	e.health.mu.Lock()
	for _, b := range e.backends {
		e.health.unknown[b] = true
	}
	e.health.mu.Unlock()
	expectEvents(t, "not probed yet", e.pass(0))
	e.health.mu.Lock()
	for _, b := range e.backends {
		e.health.unknown[b], e.health.down[b] = false, true
	}
	e.health.mu.Unlock()
	expectEvents(t, "first checks fail", e.pass(time.Second))
	e.health.set(e.backends[0], false)
	expectEvents(t, "one passes", e.pass(time.Minute))
	e.health.set(e.backends[0], true)
	expectEvents(t, "it fails again", e.pass(time.Minute), "Warning NoHealthyBackends")
}

// A host that is not the leader records nothing; when it becomes leader it
// reports the changes that are recent enough that no leader may have
// reported them, not older ones.
func TestNewLeaderReportsRecentChanges(t *testing.T) {
	e := newReportEnv(t)
	e.c.term.Store(nil)
	expectEvents(t, "first look", e.pass(0))
	e.owners.set(e.vip, "lb2")
	expectEvents(t, "not leader", e.pass(time.Second))
	e.c.term.Store(e.leader)
	expectEvents(t, "leader 20 s later", e.pass(20*time.Second), "Normal OwnerChanged 192.0.2.1 moved from lb1 to lb2")

	e.c.term.Store(nil)
	e.owners.set(e.vip, "lb3")
	expectEvents(t, "not leader", e.pass(time.Second))
	expectEvents(t, "not leader, past the horizon", e.pass(2*time.Minute))
	e.c.term.Store(e.leader)
	expectEvents(t, "leader long after", e.pass(time.Second))
}

// A member whose view its peers have not confirmed yet (it just started)
// may name owners that never hold the VIP; those are not its first look.
// Here the first view names this host lb3 while lb2 holds the VIP: once
// settled the first look is lb2, and the Event after lb2's death, from
// this host as the new leader, names lb2 (the fault suite saw "moved from
// lb3", the stale view, instead).
func TestUnsettledViewIsNotAFirstLook(t *testing.T) {
	e := newReportEnv(t)
	e.c.term.Store(nil)
	e.owners.mu.Lock()
	e.owners.unsettled = true
	e.owners.mu.Unlock()
	e.owners.set(e.vip, "lb3")
	expectEvents(t, "unsettled", e.pass(0))
	e.owners.mu.Lock()
	e.owners.unsettled = false
	e.owners.mu.Unlock()
	e.owners.set(e.vip, "lb2")
	expectEvents(t, "settled: the first look", e.pass(time.Second))
	e.owners.set(e.vip, "lb1")
	expectEvents(t, "not leader", e.pass(time.Second))
	e.c.term.Store(e.leader)
	expectEvents(t, "the new leader", e.pass(15*time.Second), "Normal OwnerChanged 192.0.2.1 moved from lb2 to lb1")
}

// Changes of the desired state that follow one another within
// reportStoreInterval share one pass at its end: the last of them is
// still reported (here, a desired state whose backends all fail, once
// health says so), none is lost.
func TestStoreChangesInABurstAreReported(t *testing.T) {
	e := newReportEnv(t)
	var mu sync.Mutex
	now := epoch
	e.c.opts.Now = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.c.reportLoop(ctx) }()
	defer func() { cancel(); <-done }()
	// The first look (the store's subscription starts signalled): wait
	// until it has read the health.
	first := e.c.opts.Store.Load()
	deadline := time.Now().Add(5 * time.Second)
	for asked := 0; asked == 0; {
		if time.Now().After(deadline) {
			t.Fatal("no first pass")
		}
		time.Sleep(time.Millisecond)
		e.health.mu.Lock()
		asked = e.health.asked
		e.health.mu.Unlock()
	}
	// A burst: the store changes while the first pass's hold lasts, and
	// nothing else wakes the loop (the fake health and owners never
	// signal).
	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	e.health.set(e.backends[0], true)
	e.health.set(e.backends[1], true)
	for range 10 {
		e.c.opts.Store.Set(first)
	}
	for {
		select {
		case ev := <-e.recorder.Events:
			if !strings.Contains(ev, "NoHealthyBackends") {
				t.Fatalf("Event %q, want NoHealthyBackends", ev)
			}
			return
		case <-time.After(time.Until(deadline)):
			t.Fatalf("no Event %s after the burst of desired-state changes", 5*time.Second)
		}
	}
}
