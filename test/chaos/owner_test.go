package chaos

import (
	"net/netip"
	"testing"
	"time"

	"github.com/edgelb/edgelb/test/nslab"
)

// startLab starts edgelb on n hosts with the lab's two static VIPs and
// waits until each VIP has settled on one host.
func startLab(t *testing.T, n int) *nslab.Lab {
	l := nslab.New(t, n)
	l.Join = n
	for _, h := range l.Hosts {
		h.Start()
	}
	l.SettledOwner(nslab.VIP4, time.Second)
	l.SettledOwner(nslab.VIP6, time.Second)
	return l
}

// owners returns the host holding each VIP; each must be on one host.
func owners(t *testing.T, l *nslab.Lab, vips ...netip.Addr) map[netip.Addr]*nslab.Host {
	t.Helper()
	m := map[netip.Addr]*nslab.Host{}
	for _, v := range vips {
		m[v] = l.Owner(v, nslab.Converge)
	}
	return m
}

// newHolder returns a host other than old that holds vip, or nil.
func newHolder(l *nslab.Lab, vip netip.Addr, old *nslab.Host) *nslab.Host {
	for _, h := range l.Holders(vip) {
		if h != old {
			return h
		}
	}
	return nil
}

// backTo waits until every VIP is on its host of want alone, and stays
// there for a second. Ownership is a function of the membership: once a
// host is back, its VIPs return to it.
func backTo(t *testing.T, l *nslab.Lab, want map[netip.Addr]*nslab.Host) {
	t.Helper()
	for v, o := range want {
		if !nslab.Poll(nslab.Converge, func() bool { hs := l.Holders(v); return len(hs) == 1 && hs[0] == o }) {
			t.Fatalf("%s did not return to %s: on %v", v, o.Name, nslab.Names(l.Holders(v)))
		}
	}
	for v := range want {
		l.StableOwner(v, 500*time.Millisecond)
	}
}

// The owner of a VIP dies — its link is cut — again and again in a
// three-host cluster while the client asks every 10 ms who has the VIP
// (ARP). Two hosts must never answer at once while the VIP moves away,
// and a host that comes back ends up holding only the VIPs it owns. The
// time with no answer is reported per death, and so is the time two hosts
// answer when the VIP returns to the host that came back: a handover is
// make before break, so the previous holder keeps the address (silently)
// until the returning owner confirms it, and both kernels answer ARP
// requests meanwhile (docs/chaos.md, "Open defects").
func TestOwnerLinkCut(t *testing.T) {
	const scenario = "owner link cut"
	l := startLab(t, 3)
	deaths := count(20, 3)
	arp := l.ARPWatch(nslab.VIP4)
	if !nslab.Poll(2*time.Second, func() bool { return arp.Last().OK }) {
		t.Fatalf("no ARP answer for %s", nslab.VIP4)
	}
	type death struct{ cut, moved, up, back time.Time }
	var ds []death
	for i := range deaths {
		before := owners(t, l, nslab.VIP4, nslab.VIP6)
		old := before[nslab.VIP4]
		d := death{cut: time.Now()}
		old.SetLink(false)
		var next *nslab.Host
		if !nslab.Poll(nslab.Converge, func() bool {
			next = newHolder(l, nslab.VIP4, old)
			return next != nil && answered(arp, next.MAC)
		}) {
			t.Fatalf("death %d: %s did not move away from %s: on %v", i+1, nslab.VIP4, old.Name, nslab.Names(l.Holders(nslab.VIP4)))
		}
		d.moved = time.Now()
		time.Sleep(300 * time.Millisecond) // the cluster settles without old
		d.up = time.Now()
		old.SetLink(true)
		backTo(t, l, before)
		d.back = time.Now()
		ds = append(ds, d)
		t.Logf("death %d: %s cut off, %s moved to %s and back", i+1, old.Name, nslab.VIP4, next.Name)
	}
	res := arp.Stop()
	var none, whileMoving, onReturn []time.Duration
	for _, d := range ds {
		n, dbl := arpTimes(res, d.cut, d.up)
		_, back := arpTimes(res, d.up, d.back)
		none, whileMoving, onReturn = append(none, n), append(whileMoving, dbl), append(onReturn, back)
	}
	figure(t, scenario, "deaths", deaths)
	figure(t, scenario, "no-owner time per death", ms(none))
	figure(t, scenario, "double-answer time per death", ms(whileMoving))
	figure(t, scenario, "double-answer time per return", ms(onReturn))
	if sum(whileMoving) > 0 {
		t.Errorf("two hosts answered ARP for %s while it moved away from a dead host: %s", nslab.VIP4, ms(whileMoving))
	}
	if t.Failed() {
		logDoubles(t, res)
	}
}

func sum(ds []time.Duration) (s time.Duration) {
	for _, d := range ds {
		s += d
	}
	return s
}

// logDoubles logs the ARP samples answered by more than one host.
func logDoubles(t *testing.T, res []nslab.ProbeResult) {
	n := 0
	for _, r := range res {
		if len(nslab.MACs(r)) > 1 && n < 20 {
			t.Logf("%s answered by %s", r.Start.Format("15:04:05.000"), r.Host)
			n++
		}
	}
}
