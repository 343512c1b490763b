package bgp_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/edgelb/edgelb/vip/bgp"
	"github.com/edgelb/edgelb/vip/bgp/bgptest"
)

var (
	v4 = netip.MustParseAddr("198.51.100.1")
	v6 = netip.MustParseAddr("2001:db8::53")
)

func prefixes(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

func routes(s ...string) []bgp.Route {
	var out []bgp.Route
	for _, p := range s {
		out = append(out, bgp.Route{Prefix: netip.MustParsePrefix(p)})
	}
	return out
}

func TestDesired(t *testing.T) {
	lp := uint32(200)
	gold := func(netip.Addr) bgp.Attrs {
		return bgp.Attrs{Communities: []uint32{65000<<16 | 100}, LargeCommunities: []bgp.LargeCommunity{{Global: 65000, Local1: 1, Local2: 2}}, LocalPref: &lp}
	}
	for _, c := range []struct {
		name   string
		vips   []netip.Addr
		policy bgp.Policy
		phase  bgp.Phase
		want   []string
	}{
		{"serving: host routes", []netip.Addr{v6, v4}, nil, bgp.PhaseServing, []string{"198.51.100.1/32", "2001:db8::53/128"}},
		{"not serving: nothing", []netip.Addr{v4, v6}, gold, bgp.PhaseWithdrawn, nil},
		{"no VIPs", nil, nil, bgp.PhaseServing, nil},
		{"duplicates once", []netip.Addr{v4, v4}, nil, bgp.PhaseServing, []string{"198.51.100.1/32"}},
		{"the policy's attributes", []netip.Addr{v4}, gold, bgp.PhaseServing, []string{"198.51.100.1/32 [65000:100 65000:1:2 lp=200]"}},
		{"shutting down: graceful-shutdown added, local-pref 0", []netip.Addr{v4}, gold, bgp.PhaseShuttingDown, []string{"198.51.100.1/32 [65000:100 65535:0 65000:1:2 lp=0]"}},
		{"shutting down without a policy", []netip.Addr{v4}, nil, bgp.PhaseShuttingDown, []string{"198.51.100.1/32 [65535:0 lp=0]"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for _, r := range bgp.Desired(c.vips, c.policy, c.phase) {
				got = append(got, r.String())
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("Desired = %q, want %q", got, c.want)
			}
		})
	}
}

func newAnnouncer(t *testing.T) (*bgp.Announcer, *bgptest.Speaker, *bgptest.State) {
	t.Helper()
	sp, st := bgptest.NewSpeaker(), &bgptest.State{}
	a, err := bgp.NewAnnouncer(bgp.Options{Speaker: sp, Serving: st, VIPs: st, WithdrawDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return a, sp, st
}

// A member advertises its VIPs while it may serve, withdraws them all
// when it may not (unhealthy, no quorum, draining), and follows the VIPs.
func TestAnnouncerFollowsServingAndVIPs(t *testing.T) {
	a, sp, st := newAnnouncer(t)
	st.SetVIPs(v4, v6)
	a.Sync()
	if got := sp.Advertised(); len(got) != 0 {
		t.Fatalf("advertised %v before serving", got)
	}
	st.SetServing(true)
	a.Sync()
	if got, want := sp.Advertised(), prefixes("198.51.100.1/32", "2001:db8::53/128"); !slices.Equal(got, want) || !slices.Equal(a.Advertised(), want) {
		t.Fatalf("advertised %v (announcer says %v), want %v", got, a.Advertised(), want)
	}
	st.SetVIPs(v6)
	a.Sync()
	if got, want := sp.Advertised(), prefixes("2001:db8::53/128"); !slices.Equal(got, want) {
		t.Fatalf("after a VIP went away: %v, want %v", got, want)
	}
	st.SetServing(false)
	a.Sync()
	if got := sp.Advertised(); len(got) != 0 {
		t.Fatalf("advertised %v while not serving", got)
	}
}

// A failed change is retried on the next pass.
func TestAnnouncerRetries(t *testing.T) {
	a, sp, st := newAnnouncer(t)
	st.SetVIPs(v4)
	st.SetServing(true)
	sp.Fail = errors.New("session reset")
	if !a.Sync() {
		t.Fatal("a failed advertisement is not retried")
	}
	sp.Fail = nil
	if a.Sync() {
		t.Fatal("retry asked after a good pass")
	}
	if got := sp.Advertised(); !slices.Equal(got, prefixes("198.51.100.1/32")) {
		t.Fatalf("advertised %v", got)
	}
}

// A route the speaker refuses costs that route only: the others are
// advertised, Refused names it with why, and it is retried until taken.
func TestRefusedRouteIsReportedAlone(t *testing.T) {
	a, sp, st := newAnnouncer(t)
	st.SetVIPs(v4, v6)
	st.SetServing(true)
	bad := netip.PrefixFrom(v6, 128)
	sp.Refuse = map[netip.Prefix]error{bad: errors.New("no IPv6 address family negotiated")}
	if !a.Sync() {
		t.Fatal("a refused route is not retried")
	}
	if got := sp.Advertised(); !slices.Equal(got, prefixes("198.51.100.1/32")) {
		t.Fatalf("advertised %v, want the other route", got)
	}
	if r := a.Refused(); len(r) != 1 || r[bad] == "" {
		t.Fatalf("Refused() = %v", r)
	}
	sp.Refuse = nil // Sync runs on this goroutine
	a.Sync()
	if r := a.Refused(); len(r) != 0 || len(sp.Advertised()) != 2 {
		t.Fatalf("Refused() = %v, advertised %v after the speaker took it", r, sp.Advertised())
	}
}

// runServing runs an Announcer of o's timers on a fake speaker, serving
// v4; stop ends Run and returns its error.
func runServing(t *testing.T, o bgp.Options) (a *bgp.Announcer, sp *bgptest.Speaker, stop func() error) {
	t.Helper()
	sp, st := bgptest.NewSpeaker(), &bgptest.State{}
	o.Speaker, o.Serving, o.VIPs = sp, st, st
	a, err := bgp.NewAnnouncer(o)
	if err != nil {
		t.Fatal(err)
	}
	st.SetVIPs(v4)
	st.SetServing(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	return a, sp, func() error {
		cancel()
		return <-done
	}
}

// waitCalls waits until ok holds, checking after each call to sp.
func waitCalls(t *testing.T, sp *bgptest.Speaker, what string, ok func() bool) {
	t.Helper()
	calls := sp.Watch()
	deadline := time.After(5 * time.Second)
	for !ok() {
		select {
		case <-calls:
		case <-deadline:
			t.Fatalf("%s: calls %q", what, sp.History())
		}
	}
}

// On stop, every route is sent again with GRACEFUL_SHUTDOWN, withdrawn
// WithdrawDelay later, and only then do the sessions close.
func TestRunWithdrawsBeforeStopping(t *testing.T) {
	const delay = 200 * time.Millisecond
	_, sp, stop := runServing(t, bgp.Options{WithdrawDelay: delay, Resync: time.Millisecond})
	waitCalls(t, sp, "advertised", func() bool { return len(sp.Advertised()) == 1 })
	start := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 2*delay {
		t.Errorf("stop took %s, want the withdraw delay (%s) before withdrawing and up to a second after", took, delay)
	}
	want := []string{"advertise 198.51.100.1/32", "advertise 198.51.100.1/32 [65535:0 lp=0]", "withdraw 198.51.100.1/32", "stop"}
	if got := sp.History(); !slices.Equal(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
}

// Without a withdraw delay a stop withdraws at once, no graceful
// shutdown.
func TestStopWithoutDelay(t *testing.T) {
	_, sp, stop := runServing(t, bgp.Options{Resync: time.Millisecond})
	waitCalls(t, sp, "advertised", func() bool { return len(sp.Advertised()) == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got, want := sp.History(), []string{"advertise 198.51.100.1/32", "withdraw 198.51.100.1/32", "stop"}; !slices.Equal(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
}

// A new configuration reaches the speaker while Run runs: new peers keep
// the routes, a new AS number restarts the speaker and every route is
// advertised again.
func TestConfigureWhileRunning(t *testing.T) {
	a, sp, stop := runServing(t, bgp.Options{Resync: time.Hour})
	defer stop()
	waitCalls(t, sp, "advertised", func() bool { return len(sp.Advertised()) == 1 })
	peer := bgp.Peer{Address: netip.MustParseAddr("192.0.2.254"), ASN: 64500}
	a.Configure(bgp.Config{Global: bgp.Global{}, Peers: []bgp.Peer{peer}})
	waitCalls(t, sp, "peers configured", func() bool { return slices.Contains(sp.History(), "configure 0/1") })
	if got := sp.Advertised(); !slices.Equal(got, prefixes("198.51.100.1/32")) {
		t.Fatalf("a peer change dropped the routes: %v", got)
	}
	a.Configure(bgp.Config{Global: bgp.Global{ASN: 64513}, Peers: []bgp.Peer{peer}})
	waitCalls(t, sp, "advertised again after the restart", func() bool {
		h := sp.History()
		return slices.Contains(h, "configure 64513/1") && h[len(h)-1] == "advertise 198.51.100.1/32" && len(sp.Advertised()) == 1
	})
}
