package e2e

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

const converge = 15 * time.Second

// startCluster starts edgelb on every host and waits until each VIP is on
// exactly one of them.
func startCluster(t testing.TB, n int) *lab {
	l := newLab(t, n)
	for _, h := range l.hosts {
		h.start()
	}
	l.owner(vip4, converge)
	l.owner(vip6, converge)
	return l
}

// stableOwner checks that vip stays on exactly one host, the same, for d.
func (l *lab) stableOwner(vip netip.Addr, d time.Duration) *host {
	l.t.Helper()
	o := l.owner(vip, converge)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if hs := l.holders(vip); len(hs) != 1 || hs[0] != o {
			l.t.Fatalf("%s moved from %s to %v without a reason", vip, o.name, names(hs))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return o
}

func TestVIPOnOneHostAnnounced(t *testing.T) {
	l := startCluster(t, 3)
	for _, vip := range []netip.Addr{vip4, vip6} {
		o := l.stableOwner(vip, time.Second)
		// arp_accept / accept_untracked_na let the announcement alone
		// create the client's entry: no traffic has been sent yet.
		if !poll(3*time.Second, func() bool { return l.neighbour(vip) == o.mac }) {
			t.Fatalf("client's neighbour entry for %s is %q, want %s (%s)", vip, l.neighbour(vip), o.mac, o.name)
		}
		p := l.probe(vip, 300*time.Millisecond)
		if !poll(2*time.Second, func() bool { return p.last().ok }) {
			t.Fatalf("no answer from %s: %+v", vip, p.last())
		}
		res := p.stop()
		if got := res[len(res)-1].host; got != o.name {
			t.Fatalf("%s answered by %s, want its owner %s", vip, got, o.name)
		}
		t.Logf("%s on %s, client neighbour entry %s", vip, o.name, o.mac)
	}
}

// crash cuts the owner of vip off the bridge while the client probes it
// and returns the client-visible outage.
func crash(t testing.TB, l *lab, vip netip.Addr) (time.Duration, *host, *host) {
	old := l.stableOwner(vip, 300*time.Millisecond)
	p := l.probe(vip, 300*time.Millisecond)
	if !poll(2*time.Second, func() bool { return p.last().ok }) {
		t.Fatalf("no answer from %s before the crash: %+v", vip, p.last())
	}
	old.setLink(false)
	var next *host
	if !poll(converge, func() bool {
		hs := l.holders(vip)
		if len(hs) == 1 && hs[0] != old {
			next = hs[0]
		}
		last := p.last()
		return next != nil && last.ok && last.host == next.name
	}) {
		t.Fatalf("%s did not move away from %s: on %v, last probe %+v", vip, old.name, names(l.holders(vip)), p.last())
	}
	// A few more answers so the outage is closed.
	time.Sleep(50 * time.Millisecond)
	failed, d := outage(p.stop())
	t.Logf("crash of %s: %s moved to %s, %d failed probes, outage %s", old.name, vip, next.name, failed, d)
	return d, old, next
}

func TestCrashFailover(t *testing.T) {
	l := startCluster(t, 3)
	d, old, next := crash(t, l, vip4)
	if old.has(vip4) {
		t.Errorf("%s still has %s with its link cut", old.name, vip4)
	}
	if got := l.neighbour(vip4); got != next.mac {
		t.Errorf("client's neighbour entry for %s is %s, want the new owner %s (%s)", vip4, got, next.mac, next.name)
	}
	if d > 3*time.Second {
		t.Errorf("outage %s, want well under 3 s", d)
	}
}

func TestIPv6Failover(t *testing.T) {
	l := startCluster(t, 3)
	d, _, next := crash(t, l, vip6)
	if got := l.neighbour(vip6); got != next.mac {
		t.Errorf("client's neighbour entry for %s is %s, want the new owner %s (%s)", vip6, got, next.mac, next.name)
	}
	if d > 3*time.Second {
		t.Errorf("outage %s, want well under 3 s", d)
	}
}

// gracefulStop sends SIGTERM to vip's owner while the client probes and
// returns the probe results.
func gracefulStop(t testing.TB, l *lab, vip netip.Addr) (failed int, old, next *host) {
	old = l.stableOwner(vip, 300*time.Millisecond)
	p := l.probe(vip, 300*time.Millisecond)
	if !poll(2*time.Second, func() bool { return p.last().ok }) {
		t.Fatalf("no answer from %s before the stop: %+v", vip, p.last())
	}
	start := time.Now()
	if err := old.stop(10 * time.Second); err != nil {
		t.Fatalf("stopping %s: %v", old.name, err)
	}
	stopped := time.Since(start)
	next = l.owner(vip, converge)
	if !poll(2*time.Second, func() bool { return p.last().ok && p.last().host == next.name }) {
		t.Fatalf("probes not answered by %s: %+v", next.name, p.last())
	}
	time.Sleep(100 * time.Millisecond)
	res := p.stop()
	failed, _ = outage(res)
	if len(res) < 20 {
		t.Fatalf("only %d probes during the stop", len(res))
	}
	t.Logf("SIGTERM on %s: stopped in %s, %s moved to %s, %d probes, %d failed", old.name, stopped.Round(time.Millisecond), vip, next.name, len(res), failed)
	for _, r := range res {
		if !r.ok {
			t.Logf("failed probe at %s: %s", r.start.Format("15:04:05.000"), r.host)
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
	if old.has(vip4) || old.has(vip6) {
		t.Errorf("%s kept a VIP after stopping", old.name)
	}
	// The rest of a rolling upgrade: the host comes back, wins the
	// rendezvous for the VIP again and takes it back, make before break:
	// still no failed probe, and the VIP ends up on it alone.
	p := l.probe(vip4, 300*time.Millisecond)
	if !poll(2*time.Second, func() bool { return p.last().ok }) {
		t.Fatalf("no answer from %s: %+v", vip4, p.last())
	}
	old.start()
	if !poll(converge, func() bool { hs := l.holders(vip4); return len(hs) == 1 && hs[0] == old }) {
		t.Fatalf("%s did not take %s back after its restart: on %v", old.name, vip4, names(l.holders(vip4)))
	}
	if !poll(2*time.Second, func() bool { return p.last().ok && p.last().host == old.name }) {
		t.Fatalf("probes not answered by %s: %+v", old.name, p.last())
	}
	res := p.stop()
	if failed, _ := outage(res); failed > 0 {
		t.Errorf("%d of %d probes failed while %s took %s back", failed, len(res), old.name, vip4)
	}
	l.stableOwner(vip4, time.Second)
	l.stableOwner(vip6, time.Second)
}

func TestIsolatedHostGivesUpVIPs(t *testing.T) {
	l := startCluster(t, 3)
	iso := l.stableOwner(vip4, 300*time.Millisecond)
	iso.setLink(false)
	if !poll(converge, func() bool { return !iso.has(vip4) && !iso.has(vip6) }) {
		t.Fatalf("isolated %s still has a VIP", iso.name)
	}
	other := l.owner(vip4, converge)
	if other == iso {
		t.Fatalf("%s owns %s while isolated", iso.name, vip4)
	}
	if !poll(converge, func() bool { return strings.Contains(iso.log.String(), "quorum lost") }) {
		t.Fatalf("isolated %s did not lose its quorum", iso.name)
	}
	if iso.has(vip4) || iso.has(vip6) {
		t.Fatalf("isolated %s has a VIP without a quorum", iso.name)
	}
	iso.setLink(true)
	// The host rejoins; from then on no VIP may stay on two hosts.
	if !poll(converge, func() bool { return strings.Count(iso.log.String(), "quorum reached") >= 2 }) {
		t.Fatalf("%s did not rejoin after its link came back", iso.name)
	}
	l.stableOwner(vip4, 2*time.Second)
	l.stableOwner(vip6, time.Second)
}

func TestWrongKeyRefused(t *testing.T) {
	l := newLab(t, 3)
	bad := l.dir + "/bad.key"
	writeFile(t, bad, badKey+"\n")
	intruder := l.addHost("h4", bad)
	for _, h := range l.hosts {
		h.start()
	}
	l.owner(vip4, converge)
	l.owner(vip6, converge)
	// Churn ownership: stop the owner; the VIP must go to another good host.
	old := l.stableOwner(vip4, 500*time.Millisecond)
	if err := old.stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if intruder.has(vip4) || intruder.has(vip6) {
			t.Fatalf("%s with the wrong key owns a VIP", intruder.name)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := l.owner(vip4, converge); n == intruder || n == old {
		t.Fatalf("%s is on %s", vip4, n.name)
	}
	for _, h := range l.hosts[:3] {
		log := strings.Join(append(h.logs, h.log.String()), "")
		if strings.Contains(log, "member joined") && strings.Contains(log, "node=h4") {
			t.Errorf("%s let %s in", h.name, intruder.name)
		}
	}
	if !strings.Contains(intruder.log.String(), "cannot reach peers") {
		t.Errorf("%s did not report that it cannot join", intruder.name)
	}
}
