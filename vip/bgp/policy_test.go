package bgp_test

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgelb/edgelb/vip/bgp"
	"github.com/edgelb/edgelb/vip/bgp/bgptest"
)

// clock is a clock tests step.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Step(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// policies is a bgp.Policy whose answers tests set.
type policies struct {
	mu sync.Mutex
	m  map[netip.Addr]bgp.Attrs
}

func (p *policies) Set(v netip.Addr, a bgp.Attrs) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[netip.Addr]bgp.Attrs{}
	}
	p.m[v] = a
}

func (p *policies) Policy(v netip.Addr) bgp.Attrs {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[v]
}

const delay = 2 * time.Second

func newPolicyAnnouncer(t *testing.T) (*bgp.Announcer, *bgptest.Speaker, *bgptest.State, *clock, *policies) {
	t.Helper()
	sp, st, clk, pol := bgptest.NewSpeaker(), &bgptest.State{}, &clock{now: time.Unix(1000, 0)}, &policies{}
	a, err := bgp.NewAnnouncer(bgp.Options{Speaker: sp, Serving: st, VIPs: st, Policy: pol.Policy, WithdrawDelay: delay, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	st.SetVIPs(v4, v6)
	st.SetServing(true)
	return a, sp, st, clk, pol
}

func attrsOf(t *testing.T, sp *bgptest.Speaker, v netip.Addr) string {
	t.Helper()
	a, ok := sp.Attrs(netip.PrefixFrom(v, v.BitLen()))
	if !ok {
		return "(not advertised)"
	}
	return a.String()
}

// Each route carries its VIP's policy; a changed policy is sent again
// (the route replaced, never withdrawn).
func TestRoutesCarryThePolicy(t *testing.T) {
	a, sp, _, _, pol := newPolicyAnnouncer(t)
	lp := uint32(300)
	pol.Set(v4, bgp.Attrs{Communities: []uint32{65000<<16 | 100, 0xFFFFFF01}, LocalPref: &lp})
	a.Sync()
	if got := attrsOf(t, sp, v4); got != "65000:100 65535:65281 lp=300" {
		t.Errorf("v4 route attributes %q", got)
	}
	if got := attrsOf(t, sp, v6); got != "" {
		t.Errorf("v6 route attributes %q, want none", got)
	}
	pol.Set(v4, bgp.Attrs{LargeCommunities: []bgp.LargeCommunity{{Global: 65000, Local1: 1, Local2: 2}}})
	a.Sync()
	if got := attrsOf(t, sp, v4); got != "65000:1:2" {
		t.Errorf("after the policy changed: %q", got)
	}
	if h := sp.History(); slices.Contains(h, "withdraw 198.51.100.1/32") {
		t.Errorf("a policy change withdrew the route: %q", h)
	}
	if r := a.Routes(); len(r) != 2 || r[0].Attrs.String() != "65000:1:2" {
		t.Errorf("Routes() = %v", r)
	}
}

// A drain sends GRACEFUL_SHUTDOWN on every route first, keeping their
// own attributes, and withdraws them WithdrawDelay later.
func TestDrainSendsGracefulShutdownFirst(t *testing.T) {
	a, sp, st, clk, pol := newPolicyAnnouncer(t)
	pol.Set(v4, bgp.Attrs{Communities: []uint32{65000<<16 | 100}})
	a.Sync()
	st.SetDraining(true)
	a.Sync()
	if got := attrsOf(t, sp, v4); got != "65000:100 65535:0 lp=0" {
		t.Errorf("draining: v4 route %q, want graceful-shutdown added and local-pref 0", got)
	}
	if got := attrsOf(t, sp, v6); got != "65535:0 lp=0" {
		t.Errorf("draining: v6 route %q, want graceful-shutdown and local-pref 0", got)
	}
	clk.Step(delay - time.Millisecond)
	a.Sync()
	if got := len(sp.Advertised()); got != 2 {
		t.Fatalf("withdrawn before the delay: %d routes left", got)
	}
	// A VIP added while draining is not advertised.
	v := netip.MustParseAddr("198.51.100.2")
	st.SetVIPs(v4, v6, v)
	a.Sync()
	if got := attrsOf(t, sp, v); got != "(not advertised)" {
		t.Errorf("a VIP added while draining is advertised: %q", got)
	}
	clk.Step(time.Millisecond)
	a.Sync()
	if got := sp.Advertised(); len(got) != 0 {
		t.Fatalf("still advertised after the delay: %v", got)
	}
	// Still draining later: nothing comes back.
	clk.Step(time.Minute)
	a.Sync()
	if got := sp.Advertised(); len(got) != 0 {
		t.Fatalf("advertised again while draining: %v", got)
	}
	// The drain ends: the routes come back without the community.
	st.SetDraining(false)
	a.Sync()
	if got := attrsOf(t, sp, v4); got != "65000:100" {
		t.Errorf("after the drain: %q", got)
	}
}

// A drain undone before the delay ends takes the community off again;
// nothing is withdrawn.
func TestDrainUndoneKeepsTheRoutes(t *testing.T) {
	a, sp, st, clk, _ := newPolicyAnnouncer(t)
	a.Sync()
	st.SetDraining(true)
	a.Sync()
	clk.Step(delay / 2)
	st.SetDraining(false)
	a.Sync()
	if got := attrsOf(t, sp, v4); got != "" {
		t.Errorf("after the drain was undone: %q, want the plain route", got)
	}
	for _, c := range sp.History() {
		if c == "withdraw 198.51.100.1/32" {
			t.Errorf("withdrawn: %q", sp.History())
		}
	}
	// A second drain waits the whole delay again.
	st.SetDraining(true)
	a.Sync()
	clk.Step(delay - time.Millisecond)
	a.Sync()
	if len(sp.Advertised()) != 2 {
		t.Errorf("second drain withdrew early: %v", sp.Advertised())
	}
}

// A member that may not serve for another reason (unhealthy, no quorum)
// withdraws at once: it may not be able to forward.
func TestUnhealthyWithdrawsAtOnce(t *testing.T) {
	a, sp, st, _, _ := newPolicyAnnouncer(t)
	a.Sync()
	st.SetServing(false)
	a.Sync()
	if got := sp.Advertised(); len(got) != 0 {
		t.Fatalf("advertised %v while unhealthy", got)
	}
	for _, c := range sp.History() {
		if strings.Contains(c, "65535:0") {
			t.Errorf("graceful shutdown sent by an unhealthy member: %q", sp.History())
		}
	}
}

// A stop during a drain does not wait the delay again: the withdrawal
// comes WithdrawDelay after the drain began.
func TestStopDuringDrain(t *testing.T) {
	const d = 300 * time.Millisecond
	sp, st := bgptest.NewSpeaker(), &bgptest.State{}
	a, err := bgp.NewAnnouncer(bgp.Options{Speaker: sp, Serving: st, VIPs: st, WithdrawDelay: d, Resync: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	st.SetVIPs(v4)
	st.SetServing(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	waitCalls(t, sp, "advertised", func() bool { return len(sp.Advertised()) == 1 })
	drained := time.Now()
	st.SetDraining(true)
	waitCalls(t, sp, "graceful shutdown", func() bool { return attrsOf(t, sp, v4) == "65535:0 lp=0" })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if took := time.Since(drained); took < 2*d || took > 3*d+time.Second {
		t.Errorf("drain to exit took %s, want the delay %s and the settle %s, once", took, d, d)
	}
	want := []string{"advertise 198.51.100.1/32", "advertise 198.51.100.1/32 [65535:0 lp=0]", "withdraw 198.51.100.1/32", "stop"}
	if got := sp.History(); !slices.Equal(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
}
