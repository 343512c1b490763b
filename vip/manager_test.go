package vip_test

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/edgelb/edgelb/vip"
	"github.com/edgelb/edgelb/vip/viptest"
)

var (
	a = netip.MustParseAddr("192.0.2.10")
	b = netip.MustParseAddr("2001:db8::10")
	c = netip.MustParseAddr("192.0.2.11")
)

type fixture struct {
	k   *viptest.Kernel
	ann *viptest.Announcer
	cl  *viptest.Cluster
	q   *quieter
	now time.Time
	m   *vip.Manager
}

// quieter records the quiet VIPs.
type quieter struct {
	quiet []netip.Addr
	calls int
}

func (q *quieter) Quiet(vs []netip.Addr) error {
	q.quiet, q.calls = slices.Clone(vs), q.calls+1
	return nil
}

func newFixture(t *testing.T, refresh time.Duration) *fixture {
	return newFixtureLifetime(t, refresh, 0)
}

// newFixtureLifetime is newFixture with VIP lifetimes; the fake kernel
// runs on the fixture's clock.
func newFixtureLifetime(t *testing.T, refresh, lifetime time.Duration) *fixture {
	f := &fixture{k: viptest.NewKernel(), ann: &viptest.Announcer{}, cl: &viptest.Cluster{}, q: &quieter{}, now: time.Unix(1000, 0)}
	f.k.Now = func() time.Time { return f.now }
	f.newManager(t, refresh, lifetime)
	return f
}

// newManager replaces the fixture's manager, as a restarted process would.
func (f *fixture) newManager(t *testing.T, refresh, lifetime time.Duration) {
	// Passes come from the test's steps, or from Run's events: no resync
	// within a test.
	m, err := vip.NewManager(vip.Options{Kernel: f.k, Announcer: f.ann, Ownership: f.cl, Reporter: f.cl, Quieter: f.q,
		Refresh: refresh, Lifetime: lifetime, Resync: time.Hour, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	f.m = m
}

// waitPass waits until a pass of Run reports (reports is the fake
// cluster's Reports) and cond holds after it.
func waitPass(t *testing.T, reports <-chan struct{}, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case <-reports:
		case <-deadline:
			t.Fatalf("no pass of Run after which %s", what)
		}
		if cond() {
			return
		}
	}
}

// step advances the fake clock by d and runs one pass.
func (f *fixture) step(d time.Duration) time.Duration {
	f.now = f.now.Add(d)
	return f.m.Sync()
}

func TestSyncAddsRemovesAndReports(t *testing.T) {
	f := newFixture(t, 0)
	stale := netip.MustParseAddr("192.0.2.99")
	foreign := netip.MustParseAddr("192.0.2.1")
	f.k.Marked[stale] = true // left behind by an earlier run
	f.k.Foreign[foreign] = true

	f.cl.SetOwned(a, b)
	f.step(0)
	if got := f.k.Held(); !slices.Equal(got, []netip.Addr{a, b}) {
		t.Fatalf("kernel holds %v, want [%s %s]: the stale VIP removed, the foreign address kept", got, a, b)
	}
	if !f.k.Foreign[foreign] {
		t.Fatal("the foreign address was removed")
	}
	if got := f.cl.HeldNow(); !slices.Equal(got, []netip.Addr{a, b}) {
		t.Fatalf("reported held %v", got)
	}
	if f.ann.Count(a) != 1 || f.ann.Count(b) != 1 {
		t.Fatalf("takeover announced %d/%d times, want once each so far", f.ann.Count(a), f.ann.Count(b))
	}

	f.cl.SetOwned(b, c)
	f.step(0)
	if got := f.k.Held(); !slices.Equal(got, []netip.Addr{c, b}) && !slices.Equal(got, []netip.Addr{b, c}) {
		t.Fatalf("kernel holds %v, want %s and %s", got, b, c)
	}
}

func TestAnnouncementBurstAndRefresh(t *testing.T) {
	f := newFixture(t, 10*time.Second)
	f.cl.SetOwned(a)
	next := f.step(0)
	sent := 1
	for f.ann.Count(a) < len(vip.DefaultBurst) {
		if next <= 0 || next > 2*time.Second {
			t.Fatalf("next pass in %s during the burst", next)
		}
		next = f.step(next)
		if f.ann.Count(a) != sent+1 {
			t.Fatalf("after %s: %d announcements, want %d", next, f.ann.Count(a), sent+1)
		}
		sent++
	}
	if next != 10*time.Second {
		t.Fatalf("refresh due in %s, want 10s", next)
	}
	f.step(next)
	if f.ann.Count(a) != len(vip.DefaultBurst)+1 {
		t.Fatalf("no refresh: %d announcements", f.ann.Count(a))
	}
}

func TestHandoverKeepsTheVIPSilently(t *testing.T) {
	f := newFixture(t, time.Second)
	f.cl.SetOwned(a)
	next := f.step(0)
	if f.ann.Count(a) != 1 {
		t.Fatal("takeover not announced")
	}
	// Handing over: still configured, but the rest of the burst and the
	// refresh must not pull clients back.
	f.cl.Set(nil, []netip.Addr{a})
	for range 10 {
		next = f.step(max(next, time.Second))
	}
	if !slices.Equal(f.k.Held(), []netip.Addr{a}) || !slices.Equal(f.cl.HeldNow(), []netip.Addr{a}) {
		t.Fatalf("VIP not kept during the handover: kernel %v, reported %v", f.k.Held(), f.cl.HeldNow())
	}
	if f.ann.Count(a) != 1 {
		t.Fatalf("%d announcements during the handover, want none after the first", f.ann.Count(a)-1)
	}
	// Nor does the kernel answer ARP for it: the new owner alone does.
	if !slices.Equal(f.q.quiet, []netip.Addr{a}) {
		t.Fatalf("quiet VIPs during the handover: %v, want [%s]", f.q.quiet, a)
	}
	if f.q.calls != 2 {
		t.Fatalf("%d calls to the Quieter, want 2: one at the first pass, one at the handover", f.q.calls)
	}
	// Ours again (an undrain): answering and a new burst.
	f.cl.SetOwned(a)
	f.step(0)
	if f.ann.Count(a) != 2 {
		t.Fatalf("VIP owned again not announced: %d", f.ann.Count(a))
	}
	if len(f.q.quiet) != 0 {
		t.Fatalf("VIP owned again still quiet: %v", f.q.quiet)
	}
	f.cl.SetOwned()
	f.step(0)
	if len(f.k.Held()) != 0 {
		t.Fatalf("VIP kept after the handover ended: %v", f.k.Held())
	}
}

// When a handover ends the VIP goes, and it goes quiet: the old holder
// never answers ARP/NDP again beside the new owner while it removes the
// address (the pass once made it answer, then removed it).
func TestHandoverEndsQuiet(t *testing.T) {
	f := newFixture(t, time.Second)
	f.cl.SetOwned(a)
	f.step(0)
	f.cl.Set(nil, []netip.Addr{a})
	f.step(0)
	var quietAtRemoval []bool
	f.k.Changed = func() {
		if !slices.Contains(f.k.Held(), a) {
			quietAtRemoval = append(quietAtRemoval, slices.Contains(f.q.quiet, a))
		}
	}
	f.cl.SetOwned() // the new owner has it: the handover ends
	f.step(0)
	if len(f.k.Held()) != 0 {
		t.Fatalf("VIP kept after the handover ended: %v", f.k.Held())
	}
	if !slices.Equal(quietAtRemoval, []bool{true}) {
		t.Fatalf("quiet when removed: %v, want [true] (answering again beside the new owner)", quietAtRemoval)
	}
	if len(f.q.quiet) != 0 {
		t.Fatalf("still quiet once removed: %v", f.q.quiet)
	}
}

func TestLinkDownRemovesVIPsAndIsUnhealthy(t *testing.T) {
	f := newFixture(t, 0)
	f.k.State.Networks = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	f.cl.SetOwned(a)
	f.step(0)
	if err, ok := f.cl.HealthOf("link"); !ok || err != nil {
		t.Fatalf("link health %v (reported %v), want healthy", err, ok)
	}
	if len(f.cl.Networks) != 1 {
		t.Fatalf("networks %v not reported", f.cl.Networks)
	}
	f.k.SetUp(false)
	f.step(0)
	if err, _ := f.cl.HealthOf("link"); err == nil {
		t.Fatal("link down but healthy")
	}
	if len(f.k.Held()) != 0 || len(f.cl.HeldNow()) != 0 {
		t.Fatalf("VIPs %v kept on a down link", f.k.Held())
	}
	f.k.SetUp(true)
	f.step(0)
	if !slices.Equal(f.k.Held(), []netip.Addr{a}) {
		t.Fatalf("VIP not back after the link: %v", f.k.Held())
	}
	if f.ann.Count(a) != 2 {
		t.Fatalf("re-added VIP announced %d times in all, want 2 (a new burst)", f.ann.Count(a))
	}
}

func TestRunReleasesEverythingAtTheEnd(t *testing.T) {
	f := newFixture(t, 0)
	f.cl.SetOwned(a, b)
	reports := f.cl.Reports()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.m.Run(ctx) }()
	waitPass(t, reports, "the VIPs are added", func() bool { return len(f.k.Held()) == 2 })
	// A link event is picked up without waiting for the resync (an hour).
	f.k.SetUp(false)
	waitPass(t, reports, "the VIPs are removed from the down link", func() bool { return len(f.k.Held()) == 0 })
	f.k.SetUp(true)
	waitPass(t, reports, "the VIPs are back", func() bool { return len(f.k.Held()) == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(f.k.Held()) != 0 || len(f.cl.HeldNow()) != 0 {
		t.Fatalf("VIPs %v left after Run returned", f.k.Held())
	}
}

func TestLifetimeSetOnAddAndRenewed(t *testing.T) {
	const lifetime = 9 * time.Second
	f := newFixtureLifetime(t, 0, lifetime)
	f.cl.SetOwned(a, b)
	next := f.step(0)
	for _, v := range []netip.Addr{a, b} {
		if left, ok := f.k.Lifetime(v); !ok || left != lifetime {
			t.Fatalf("%s added with lifetime %s (%v), want %s", v, left, ok, lifetime)
		}
	}
	// Let the announcement burst finish; renewals follow every third of
	// the lifetime, each pass asking to be woken up in time for them.
	sent := f.ann.Count(a)
	for elapsed := time.Duration(0); elapsed < 10*lifetime; {
		if next <= 0 || next > lifetime/3 {
			t.Fatalf("next pass in %s, want within %s for the renewal", next, lifetime/3)
		}
		elapsed += next
		next = f.step(next)
		sent = f.ann.Count(a)
		if !slices.Equal(f.k.Held(), []netip.Addr{a, b}) {
			t.Fatalf("after %s: kernel holds %v: a renewal was missed", elapsed, f.k.Held())
		}
	}
	if n := f.k.Renewals[a]; n < 25 || n > 31 {
		t.Fatalf("%d renewals in %s, want one every %s", n, 10*lifetime, lifetime/3)
	}
	if sent != len(vip.DefaultBurst) {
		t.Fatalf("%d announcements, want only the takeover burst (%d): renewing is silent", sent, len(vip.DefaultBurst))
	}
	if left, _ := f.k.Lifetime(a); left <= 2*lifetime/3-time.Millisecond {
		t.Fatalf("%s has %s left, want more than two thirds of %s", a, left, lifetime)
	}
	// A VIP no longer owned is removed at once and no longer renewed.
	f.cl.SetOwned(a)
	f.step(time.Millisecond)
	if !slices.Equal(f.k.Held(), []netip.Addr{a}) {
		t.Fatalf("kernel holds %v, want only %s", f.k.Held(), a)
	}
	// If edgelb stops running (no more passes), the kernel drops the VIP
	// by itself within the lifetime.
	f.now = f.now.Add(lifetime)
	if got := f.k.Held(); len(got) != 0 {
		t.Fatalf("kernel still holds %v a lifetime after the last pass", got)
	}
}

func TestAdoptionKeepsKeptVIPsSilently(t *testing.T) {
	const lifetime = 9 * time.Second
	f := newFixtureLifetime(t, 0, lifetime)
	stale := netip.MustParseAddr("192.0.2.99")
	// Left by the previous process: a and b kept for the restart, with 6 s
	// of their lifetime left; stale is an ordinary VIP of an edgelb that
	// died, which is not adopted.
	for _, v := range []netip.Addr{a, b, stale} {
		f.k.Marked[v] = true
		f.k.Expires[v] = f.now.Add(6 * time.Second)
	}
	f.k.KeptVIPs[a], f.k.KeptVIPs[b] = true, true
	f.k.State.Networks = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	adopted, err := f.m.Adopt()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(adopted, []netip.Addr{a, b}) {
		t.Fatalf("adopted %v, want [%s %s]", adopted, a, b)
	}
	if len(f.cl.Networks) != 1 {
		t.Fatalf("networks %v not reported by Adopt: the cluster's first gossip needs them", f.cl.Networks)
	}
	// Start-up grace before a quorum: the cluster lists them for handover.
	f.cl.SetRestarting(true)
	f.cl.Set(nil, adopted)
	for range 4 {
		f.step(time.Second)
		if !slices.Equal(f.k.Held(), []netip.Addr{a, b}) || !slices.Equal(f.cl.HeldNow(), []netip.Addr{a, b}) {
			t.Fatalf("during the grace: kernel %v, reported %v, want the adopted VIPs kept", f.k.Held(), f.cl.HeldNow())
		}
	}
	if f.k.Renewals[a]+f.k.Renewals[b] != 0 {
		t.Fatal("adopted VIPs renewed before they are owned")
	}
	if f.ann.Count(a)+f.ann.Count(b) != 0 {
		t.Fatal("adopted VIPs announced")
	}
	// Back with a quorum, still in the grace: a is owned, b assigned to
	// another member.
	f.cl.Set([]netip.Addr{a}, []netip.Addr{b})
	for range 5 {
		f.step(time.Second)
	}
	if f.ann.Count(a)+f.ann.Count(b) != 0 {
		t.Fatalf("%d announcements during the grace, want none: the LAN already knows the VIPs here", f.ann.Count(a)+f.ann.Count(b))
	}
	if f.k.Renewals[a] == 0 || f.k.KeptVIPs[a] {
		t.Fatalf("owned adopted VIP %s: %d renewals, still marked kept %v", a, f.k.Renewals[a], f.k.KeptVIPs[a])
	}
	if left, _ := f.k.Lifetime(a); left < 2*lifetime/3 {
		t.Fatalf("%s has %s left, want renewed to %s", a, left, lifetime)
	}
	if !slices.Contains(f.k.Held(), a) {
		t.Fatalf("%s lost", a)
	}
	// b was never owned: not renewed, so its old lifetime ran out.
	if slices.Contains(f.k.Held(), b) || f.k.Renewals[b] != 0 {
		t.Fatalf("%s (not owned) renewed %d times, held %v", b, f.k.Renewals[b], f.k.Held())
	}
	// The grace is over: the ordinary rules; an owned VIP is announced
	// once more (another host may have announced it meanwhile).
	f.cl.SetRestarting(false)
	f.step(0)
	if f.ann.Count(a) != 1 {
		t.Fatalf("%s announced %d times when the grace ended, want the start of a burst", a, f.ann.Count(a))
	}
	// What is not owned any more is removed.
	f.cl.Set(nil, nil)
	f.step(0)
	if len(f.k.Held()) != 0 {
		t.Fatalf("kernel holds %v, want nothing", f.k.Held())
	}
}

func TestAdoptedVIPRemovedWhenNotOwnedAfterGrace(t *testing.T) {
	f := newFixtureLifetime(t, 0, 9*time.Second)
	f.k.Marked[a], f.k.KeptVIPs[a] = true, true
	f.k.Marked[c] = true // ordinary mark: a crashed edgelb's, not adopted
	if _, err := f.m.Adopt(); err != nil {
		t.Fatal(err)
	}
	f.cl.SetRestarting(true)
	f.cl.Set(nil, []netip.Addr{a})
	f.step(0)
	if !slices.Equal(f.k.Held(), []netip.Addr{a}) {
		t.Fatalf("kernel holds %v: the adopted VIP kept, the crashed process's removed", f.k.Held())
	}
	// The grace is over and a belongs to another member.
	f.cl.SetRestarting(false)
	f.cl.SetOwned(b)
	f.step(time.Second)
	if !slices.Equal(f.k.Held(), []netip.Addr{b}) {
		t.Fatalf("kernel holds %v, want only %s", f.k.Held(), b)
	}
	if f.ann.Count(b) != 1 || f.ann.Count(a) != 0 {
		t.Fatalf("announcements: %s %d, %s %d", a, f.ann.Count(a), b, f.ann.Count(b))
	}
}

func TestRunKeepsVIPsForARestart(t *testing.T) {
	const lifetime = 9 * time.Second
	f := newFixtureLifetime(t, 0, lifetime)
	f.cl.SetOwned(a, b)
	f.step(0)
	f.now = f.now.Add(2 * time.Second) // 7 s left
	reports := f.cl.Reports()
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.m.Run(ctx) }()
	waitPass(t, reports, "both VIPs are held", func() bool { return len(f.cl.HeldNow()) == 2 })
	cancel(vip.ErrRestart)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.k.Held(), []netip.Addr{a, b}) {
		t.Fatalf("kernel holds %v after a restart, want both VIPs kept", f.k.Held())
	}
	for _, v := range []netip.Addr{a, b} {
		left, ok := f.k.Lifetime(v)
		if !ok || left > 7*time.Second || left < 6*time.Second || !f.k.KeptVIPs[v] {
			t.Fatalf("%s: %s left (%v), kept %v; want marked kept with no more than the 7 s it had", v, left, ok, f.k.KeptVIPs[v])
		}
	}
	// The next process adopts them.
	f.newManager(t, 0, lifetime)
	got, err := f.m.Adopt()
	if err != nil || !slices.Equal(got, []netip.Addr{a, b}) {
		t.Fatalf("Adopt() = %v, %v", got, err)
	}
	// A stop (no cause) removes them, as before.
	f.cl.SetOwned(a, b)
	reports = f.cl.Reports()
	ctx, stop := context.WithCancel(context.Background())
	go func() { done <- f.m.Run(ctx) }()
	waitPass(t, reports, "it holds the adopted VIPs", func() bool { return len(f.cl.HeldNow()) == 2 })
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(f.k.Held()) != 0 {
		t.Fatalf("VIPs %v left after a stop", f.k.Held())
	}
}

func TestRestartDuringTheGraceKeepsAdoptedVIPs(t *testing.T) {
	const lifetime = 9 * time.Second
	f := newFixtureLifetime(t, 0, lifetime)
	for _, v := range []netip.Addr{a, b} {
		f.k.Marked[v], f.k.KeptVIPs[v] = true, true
		f.k.Expires[v] = f.now.Add(6 * time.Second)
	}
	if _, err := f.m.Adopt(); err != nil {
		t.Fatal(err)
	}
	// In the grace with a quorum: a owned (and so renewed), b not.
	f.cl.SetRestarting(true)
	f.cl.Set([]netip.Addr{a}, []netip.Addr{b})
	f.step(0)
	if f.k.KeptVIPs[a] || f.k.Renewals[a] != 1 || f.k.Renewals[b] != 0 {
		t.Fatalf("renewals %v, kept %v: want %s renewed as an ordinary VIP, %s untouched", f.k.Renewals, f.k.KeptVIPs, a, b)
	}
	// Restarted again before the grace ended: both are kept for the next
	// process, neither with more lifetime than it had.
	reports := f.cl.Reports()
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.m.Run(ctx) }()
	waitPass(t, reports, "a pass ran", func() bool { return true })
	cancel(vip.ErrRestart)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for v, most := range map[netip.Addr]time.Duration{a: lifetime, b: 6 * time.Second} {
		left, _ := f.k.Lifetime(v)
		if !f.k.KeptVIPs[v] || left > most || left < most-time.Second {
			t.Errorf("%s: kept %v with %s left, want kept with at most %s", v, f.k.KeptVIPs[v], left, most)
		}
	}
}

// A VIP that cannot be added costs that VIP only: it is reported refused
// (the cluster gives it to another member), the host stays healthy and
// keeps its other VIPs, and no add is tried again during its hold. After
// the hold it is tried again only if no other member owns it; a failing
// trial doubles the hold, a successful add ends the refusal.
func TestFailedAddRefusesThatVIPOnly(t *testing.T) {
	f := newFixture(t, 0)
	f.k.FailAdd[a] = true
	f.cl.SetOwned(a, c)
	f.step(0)
	if err, ok := f.cl.HealthOf("vips"); ok && err != nil {
		t.Fatalf("the host is unhealthy for one VIP: %v", err)
	}
	if got := f.cl.RefusedNow(); !slices.Equal(got, []netip.Addr{a}) {
		t.Fatalf("refused %v, want [%s]", got, a)
	}
	if !slices.Equal(f.k.Held(), []netip.Addr{c}) || !slices.Equal(f.cl.HeldNow(), []netip.Addr{c}) {
		t.Fatalf("kernel holds %v, reported %v: want the other VIP, %s", f.k.Held(), f.cl.HeldNow(), c)
	}
	if r := f.m.Refused(); len(r) != 1 || r[0].VIP != a || r[0].Err == "" || r[0].Until != f.now.Add(vip.DefaultFailHold) {
		t.Fatalf("Refused() = %+v", r)
	}
	// Until the cluster reacts, the VIP is still owned: it is not tried
	// again within the hold.
	tries := f.k.AddCalls(a)
	next := f.step(time.Second)
	if f.k.AddCalls(a) != tries {
		t.Fatal("a refused VIP was tried again within its hold")
	}
	// The cluster gave it to another member: after the hold it stays
	// refused, since trying it again would take it from that member.
	f.cl.SetOwned(c)
	f.cl.SetElsewhere(a)
	if next <= 0 || next > vip.DefaultFailHold {
		t.Fatalf("next pass in %s, want by the end of the hold", next)
	}
	for f.now.Before(time.Unix(1000, 0).Add(vip.DefaultFailHold + 5*time.Second)) {
		f.step(time.Second)
	}
	if got := f.cl.RefusedNow(); !slices.Equal(got, []netip.Addr{a}) {
		t.Fatalf("refused %v after the hold while another member owns it, want [%s]", got, a)
	}
	// That member is gone and nobody owns it: tried again, it fails again
	// and the hold doubles.
	f.cl.SetElsewhere()
	f.step(0)
	if got := f.cl.RefusedNow(); len(got) != 0 {
		t.Fatalf("still refused %v once nobody else owns it", got)
	}
	f.cl.SetOwned(a, c)
	f.step(0)
	if got := f.cl.RefusedNow(); !slices.Equal(got, []netip.Addr{a}) {
		t.Fatalf("refused %v after a failing trial", got)
	}
	if r := f.m.Refused(); len(r) != 1 || r[0].Until != f.now.Add(2*vip.DefaultFailHold) {
		t.Fatalf("Refused() = %+v, want the hold doubled", r)
	}
	// The fault is gone: the next trial adds it and ends the refusal.
	delete(f.k.FailAdd, a)
	f.step(2 * vip.DefaultFailHold)
	f.step(0)
	if got := f.cl.RefusedNow(); len(got) != 0 || !slices.Equal(f.k.Held(), []netip.Addr{a, c}) {
		t.Fatalf("refused %v, kernel holds %v after the fault went away", got, f.k.Held())
	}
	if err, ok := f.cl.HealthOf("vips"); ok && err != nil {
		t.Fatalf("unhealthy: %v", err)
	}
}

func TestAnnouncesAgainWhenAPeerLetGo(t *testing.T) {
	// A peer took this host's VIP during a flap, announced it, and gave
	// it back: this host, which never let go, must announce it again or
	// the LAN keeps pointing at the peer.
	f := newFixture(t, time.Hour)
	f.cl.SetOwned(a)
	for next := f.step(0); f.ann.Count(a) < len(vip.DefaultBurst); next = f.step(next) {
	}
	quiet := f.ann.Count(a)
	f.step(time.Second)
	if f.ann.Count(a) != quiet {
		t.Fatalf("announced again without a reason: %d, want %d", f.ann.Count(a), quiet)
	}
	f.cl.Reannounce()
	next := f.step(0)
	if f.ann.Count(a) != quiet+1 {
		t.Fatalf("%d announcements after a peer let go, want %d", f.ann.Count(a), quiet+1)
	}
	for f.ann.Count(a) < quiet+len(vip.DefaultBurst) {
		if next > 2*time.Second {
			t.Fatalf("the new burst stopped at %d announcements", f.ann.Count(a)-quiet)
		}
		next = f.step(next)
	}
}

// repairs records the takeovers and releases the Manager hands to its
// Repairer.
type repairs struct{ vips, released []netip.Addr }

func (r *repairs) Takeover(_ vip.Link, v netip.Addr) { r.vips = append(r.vips, v) }
func (r *repairs) Release(v netip.Addr)              { r.released = append(r.released, v) }

func TestTakeoverStartsOneNeighbourRepair(t *testing.T) {
	f := newFixture(t, time.Second)
	r := &repairs{}
	m, err := vip.NewManager(vip.Options{Kernel: f.k, Announcer: f.ann, Ownership: f.cl, Reporter: f.cl,
		Repairer: r, Refresh: time.Second, Resync: time.Hour, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	f.m = m
	f.cl.SetOwned(a)
	next := f.step(0)
	if !slices.Equal(r.vips, []netip.Addr{a}) || f.ann.Count(a) != 1 {
		t.Fatalf("takeover: repairs %v after %d announcements, want [%s] after the first", r.vips, f.ann.Count(a), a)
	}
	// The rest of the burst and refreshes repair nothing more.
	for range 10 {
		next = f.step(next)
	}
	if len(r.vips) != 1 || len(r.released) != 0 {
		t.Fatalf("repairs %v, releases %v: refreshes are not takeovers", r.vips, r.released)
	}
	// A peer let go of it, and may have pulled neighbours to itself: a
	// second repair.
	f.cl.Reannounce()
	f.step(0)
	if !slices.Equal(r.vips, []netip.Addr{a, a}) {
		t.Fatalf("repairs %v, want a second one after a peer let go", r.vips)
	}
	// Handed over: the repair stops, so that it pulls nobody back here.
	f.cl.Set(nil, []netip.Addr{a})
	f.step(0)
	if !slices.Equal(r.released, []netip.Addr{a}) {
		t.Fatalf("releases %v after a handover, want [%s]", r.released, a)
	}
	// Removed: released again; taken over again: a third repair.
	f.cl.SetOwned()
	f.step(0)
	if !slices.Equal(r.released, []netip.Addr{a, a}) {
		t.Fatalf("releases %v after the removal, want [%s %s]", r.released, a, a)
	}
	f.cl.SetOwned(a)
	f.step(0)
	if !slices.Equal(r.vips, []netip.Addr{a, a, a}) {
		t.Fatalf("repairs %v, want a third one after the next takeover", r.vips)
	}
}
