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
	now time.Time
	m   *vip.Manager
}

func newFixture(t *testing.T, refresh time.Duration) *fixture {
	f := &fixture{k: viptest.NewKernel(), ann: &viptest.Announcer{}, cl: &viptest.Cluster{}, now: time.Unix(1000, 0)}
	m, err := vip.NewManager(vip.Options{Kernel: f.k, Announcer: f.ann, Ownership: f.cl, Reporter: f.cl,
		Refresh: refresh, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	f.m = m
	return f
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
	// Ours again (an undrain): a new burst.
	f.cl.SetOwned(a)
	f.step(0)
	if f.ann.Count(a) != 2 {
		t.Fatalf("VIP owned again not announced: %d", f.ann.Count(a))
	}
	f.cl.SetOwned()
	f.step(0)
	if len(f.k.Held()) != 0 {
		t.Fatalf("VIP kept after the handover ended: %v", f.k.Held())
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

func TestFailedAddIsRetriedAndNotReported(t *testing.T) {
	f := newFixture(t, 0)
	f.k.FailAdd[a] = true
	f.cl.SetOwned(a, c)
	next := f.step(0)
	if slices.Contains(f.cl.HeldNow(), a) {
		t.Fatal("a VIP that could not be added is reported held")
	}
	if next > time.Second {
		t.Fatalf("retry in %s, want within a second", next)
	}
	f.k.Mu.Lock()
	delete(f.k.FailAdd, a)
	f.k.Mu.Unlock()
	f.step(next)
	if !slices.Contains(f.cl.HeldNow(), a) {
		t.Fatal("not retried")
	}
}

func TestRunReleasesEverythingAtTheEnd(t *testing.T) {
	f := newFixture(t, 0)
	f.cl.SetOwned(a, b)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.m.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for len(f.k.Held()) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("VIPs not added: %v", f.k.Held())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A link event is picked up without waiting for the resync.
	f.k.SetUp(false)
	for len(f.k.Held()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("VIPs kept after link down: %v", f.k.Held())
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.k.SetUp(true)
	for len(f.k.Held()) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("VIPs not back: %v", f.k.Held())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(f.k.Held()) != 0 || len(f.cl.HeldNow()) != 0 {
		t.Fatalf("VIPs %v left after Run returned", f.k.Held())
	}
}
