package e2e

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/edgelb/edgelb/test/nslab"
)

// startCluster starts edgelb on every host and waits until each VIP is on
// exactly one of them.
func startCluster(t testing.TB, n int) *nslab.Lab {
	l := nslab.New(t, n)
	for _, h := range l.Hosts {
		h.Start()
	}
	l.Owner(vip4, converge)
	l.Owner(vip6, converge)
	if !l.Configured(converge) {
		t.Fatal("the hosts run no committed cluster configuration")
	}
	return l
}

func TestVIPOnOneHostAnnounced(t *testing.T) {
	l := startCluster(t, 3)
	for _, vip := range []netip.Addr{vip4, vip6} {
		o := l.StableOwner(vip, time.Second)
		// arp_accept / accept_untracked_na let the announcement alone
		// create the client's entry: no traffic has been sent yet.
		if !nslab.Poll(3*time.Second, func() bool { return l.Neighbour(vip) == o.MAC }) {
			t.Fatalf("client's neighbour entry for %s is %q, want %s (%s)", vip, l.Neighbour(vip), o.MAC, o.Name)
		}
		p := l.Probe(vip, 300*time.Millisecond)
		if !nslab.Poll(2*time.Second, func() bool { return p.Last().OK }) {
			t.Fatalf("no answer from %s: %+v", vip, p.Last())
		}
		res := p.Stop()
		if got := res[len(res)-1].Host; got != o.Name {
			t.Fatalf("%s answered by %s, want its owner %s", vip, got, o.Name)
		}
		t.Logf("%s on %s, client neighbour entry %s", vip, o.Name, o.MAC)
	}
}

// crash cuts the owner of vip off the bridge while the client probes it
// and returns the client-visible outage.
func crash(t testing.TB, l *nslab.Lab, vip netip.Addr) (time.Duration, *nslab.Host, *nslab.Host) {
	d, _, old, next := crashMeasured(t, l, vip)
	return d, old, next
}

// crashMeasured is crash, also returning for how long two of the other
// hosts had vip on their interface at once while it moved (sampled about
// every 10 ms: an upper bound of two hosts answering, since a host
// handing a VIP over keeps it without answering for it).
func crashMeasured(t testing.TB, l *nslab.Lab, vip netip.Addr) (outage, both time.Duration, old, next *nslab.Host) {
	old = l.StableOwner(vip, 300*time.Millisecond)
	p := l.Probe(vip, 300*time.Millisecond)
	if !nslab.Poll(2*time.Second, func() bool { return p.Last().OK }) {
		t.Fatalf("no answer from %s before the crash: %+v", vip, p.Last())
	}
	old.SetLink(false)
	var lastSample time.Time
	if !nslab.Poll(converge, func() bool {
		hs := l.Holders(vip)
		now := time.Now()
		survivors := 0
		for _, h := range hs {
			if h != old {
				survivors++
			}
		}
		if survivors > 1 && !lastSample.IsZero() {
			both += now.Sub(lastSample)
		}
		lastSample = now
		if len(hs) == 1 && hs[0] != old {
			next = hs[0]
		}
		last := p.Last()
		return next != nil && last.OK && last.Host == next.Name
	}) {
		t.Fatalf("%s did not move away from %s: on %v, last probe %+v", vip, old.Name, nslab.Names(l.Holders(vip)), p.Last())
	}
	// A few more answers so the outage is closed.
	time.Sleep(50 * time.Millisecond)
	failed, d := nslab.Outage(p.Stop())
	t.Logf("crash of %s: %s moved to %s, %d failed probes, outage %s, on two other hosts %s", old.Name, vip, next.Name, failed, d, both)
	return d, both, old, next
}

func TestCrashFailover(t *testing.T) {
	l := startCluster(t, 3)
	d, old, next := crash(t, l, vip4)
	if old.Has(vip4) {
		t.Errorf("%s still has %s with its link cut", old.Name, vip4)
	}
	if got := l.Neighbour(vip4); got != next.MAC {
		t.Errorf("client's neighbour entry for %s is %s, want the new owner %s (%s)", vip4, got, next.MAC, next.Name)
	}
	if d > 3*time.Second {
		t.Errorf("outage %s, want well under 3 s", d)
	}
}

func TestIPv6Failover(t *testing.T) {
	l := startCluster(t, 3)
	d, _, next := crash(t, l, vip6)
	if got := l.Neighbour(vip6); got != next.MAC {
		t.Errorf("client's neighbour entry for %s is %s, want the new owner %s (%s)", vip6, got, next.MAC, next.Name)
	}
	if d > 3*time.Second {
		t.Errorf("outage %s, want well under 3 s", d)
	}
}

// gracefulStop sends SIGTERM to vip's owner while the client probes and
// returns the probe results.
func gracefulStop(t testing.TB, l *nslab.Lab, vip netip.Addr) (failed int, old, next *nslab.Host) {
	old = l.StableOwner(vip, 300*time.Millisecond)
	p := l.Probe(vip, 300*time.Millisecond)
	if !nslab.Poll(2*time.Second, func() bool { return p.Last().OK }) {
		t.Fatalf("no answer from %s before the stop: %+v", vip, p.Last())
	}
	start := time.Now()
	if err := old.Stop(10 * time.Second); err != nil {
		t.Fatalf("stopping %s: %v", old.Name, err)
	}
	stopped := time.Since(start)
	next = l.Owner(vip, converge)
	if !nslab.Poll(2*time.Second, func() bool { return p.Last().OK && p.Last().Host == next.Name }) {
		t.Fatalf("probes not answered by %s: %+v", next.Name, p.Last())
	}
	time.Sleep(100 * time.Millisecond)
	res := p.Stop()
	failed, _ = nslab.Outage(res)
	if len(res) < 20 {
		t.Fatalf("only %d probes during the stop", len(res))
	}
	t.Logf("SIGTERM on %s: stopped in %s, %s moved to %s, %d probes, %d failed", old.Name, stopped.Round(time.Millisecond), vip, next.Name, len(res), failed)
	for _, r := range res {
		if !r.OK {
			t.Logf("failed probe at %s: %s", r.Start.Format("15:04:05.000"), r.Host)
		}
	}
	return failed, old, next
}

func TestGracefulStop(t *testing.T) {
	l := startCluster(t, 3)
	failed, old, _ := gracefulStop(t, l, vip4)
	if failed > 0 {
		t.Errorf("%d probes failed during a graceful stop, want none", failed)
	}
	if old.Has(vip4) || old.Has(vip6) {
		t.Errorf("%s kept a VIP after stopping", old.Name)
	}
	// The rest of a rolling upgrade: the host comes back, wins the
	// rendezvous for the VIP again and takes it back, make before break:
	// still no failed probe, and the VIP ends up on it alone.
	p := l.Probe(vip4, 300*time.Millisecond)
	if !nslab.Poll(2*time.Second, func() bool { return p.Last().OK }) {
		t.Fatalf("no answer from %s: %+v", vip4, p.Last())
	}
	old.Start()
	if !nslab.Poll(converge, func() bool { hs := l.Holders(vip4); return len(hs) == 1 && hs[0] == old }) {
		t.Fatalf("%s did not take %s back after its restart: on %v", old.Name, vip4, nslab.Names(l.Holders(vip4)))
	}
	if !nslab.Poll(2*time.Second, func() bool { return p.Last().OK && p.Last().Host == old.Name }) {
		t.Fatalf("probes not answered by %s: %+v", old.Name, p.Last())
	}
	res := p.Stop()
	if failed, _ := nslab.Outage(res); failed > 0 {
		t.Errorf("%d of %d probes failed while %s took %s back", failed, len(res), old.Name, vip4)
	}
	l.StableOwner(vip4, time.Second)
	l.StableOwner(vip6, time.Second)
}

func TestIsolatedHostGivesUpVIPs(t *testing.T) {
	l := startCluster(t, 3)
	iso := l.StableOwner(vip4, 300*time.Millisecond)
	iso.SetLink(false)
	if !nslab.Poll(converge, func() bool { return !iso.Has(vip4) && !iso.Has(vip6) }) {
		t.Fatalf("isolated %s still has a VIP", iso.Name)
	}
	other := l.Owner(vip4, converge)
	if other == iso {
		t.Fatalf("%s owns %s while isolated", iso.Name, vip4)
	}
	if !nslab.Poll(converge, func() bool { return strings.Contains(iso.Log.String(), "quorum lost") }) {
		t.Fatalf("isolated %s did not lose its quorum", iso.Name)
	}
	if iso.Has(vip4) || iso.Has(vip6) {
		t.Fatalf("isolated %s has a VIP without a quorum", iso.Name)
	}
	iso.SetLink(true)
	// The host rejoins and, once its peers have confirmed its view, takes
	// back the VIPs it wins (a make-before-break handover); then each VIP
	// stays on one host.
	if !nslab.Poll(converge, func() bool { return strings.Count(iso.Log.String(), "quorum reached") >= 2 }) {
		t.Fatalf("%s did not rejoin after its link came back", iso.Name)
	}
	l.SettledOwner(vip4, 2*time.Second)
	l.SettledOwner(vip6, time.Second)
}

func TestWrongKeyRefused(t *testing.T) {
	l := nslab.New(t, 3)
	bad := l.Dir + "/bad.key"
	nslab.WriteFile(t, bad, nslab.BadKey+"\n")
	intruder := l.AddHost("h4", bad)
	for _, h := range l.Hosts {
		h.Start()
	}
	l.Owner(vip4, converge)
	l.Owner(vip6, converge)
	// Churn ownership: stop the owner; the VIP must go to another good host.
	old := l.StableOwner(vip4, 500*time.Millisecond)
	if err := old.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if intruder.Has(vip4) || intruder.Has(vip6) {
			t.Fatalf("%s with the wrong key owns a VIP", intruder.Name)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := l.Owner(vip4, converge); n == intruder || n == old {
		t.Fatalf("%s is on %s", vip4, n.Name)
	}
	for _, h := range l.Hosts[:3] {
		log := strings.Join(append(h.Logs, h.Log.String()), "")
		if strings.Contains(log, "member joined") && strings.Contains(log, "node=h4") {
			t.Errorf("%s let %s in", h.Name, intruder.Name)
		}
	}
	if !strings.Contains(intruder.Log.String(), "cannot reach peers") {
		t.Errorf("%s did not report that it cannot join", intruder.Name)
	}
}
