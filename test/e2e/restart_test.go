package e2e

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgelb/edgelb/test/nslab"
)

// TestGracefulRestart restarts the owner of the VIPs as `systemctl
// restart` does (SIGUSR2, then a new process) while the client probes the
// VIP every 10 ms and holds a TCP connection through it that exchanges a
// line every 100 ms: no probe may fail, the connection must survive, and
// the VIPs must stay on that host alone throughout. A SIGTERM afterwards
// still hands the VIP over without a failed probe.
func TestGracefulRestart(t *testing.T) {
	l := startCluster(t, 3)
	o := l.SettledOwner(vip4, time.Second)
	o6 := l.SettledOwner(vip6, time.Second)

	p := l.Probe(vip4, 300*time.Millisecond)
	p6 := l.Probe(vip6, 300*time.Millisecond)
	conn := l.Hold(vip4)
	if !nslab.Poll(2*time.Second, func() bool { return p.Last().OK && p6.Last().OK && conn.Last().OK }) {
		t.Fatalf("no answer through the VIPs before the restart: %+v %+v %+v", p.Last(), p6.Last(), conn.Last())
	}
	watch := l.WatchVIPs(5*time.Millisecond, vip4, vip6)
	time.Sleep(300 * time.Millisecond)

	start := time.Now()
	exited, err := o.Restart(5 * time.Second)
	if err != nil {
		t.Fatalf("restarting %s: %v", o.Name, err)
	}
	// The new process is back once it has rejoined and its start-up grace
	// is over.
	if !nslab.Poll(converge, func() bool { return strings.Contains(o.Log.String(), "start-up grace over") }) {
		t.Fatalf("%s: the new process did not finish its start-up grace", o.Name)
	}
	back := time.Since(start)
	if !strings.Contains(o.Log.String(), "VIP adopted from the previous process") {
		t.Errorf("%s: the new process adopted no VIP", o.Name)
	}
	// Keep the traffic going a little longer: the VIPs are the new
	// process's now.
	time.Sleep(2 * time.Second)
	samples := watch()
	res, res6, held := p.Stop(), p6.Stop(), conn.Stop()

	failed, _ := nslab.Outage(res)
	failed6, _ := nslab.Outage(res6)
	heldFailed, _ := nslab.Outage(held)
	var elsewhere []string
	for _, s := range samples {
		for v, want := range map[netip.Addr]*nslab.Host{vip4: o, vip6: o6} {
			if hs := s.Holders[v]; !slices.Equal(hs, []string{want.Name}) {
				elsewhere = append(elsewhere, s.At.Format("15:04:05.000")+" "+v.String()+" on "+strings.Join(hs, ",")+" ")
			}
		}
	}
	t.Logf("SIGUSR2 on %s: old process exited in %s, new one back (grace over) %s after the signal; "+
		"%d probes of %s (%d failed), %d of %s (%d failed), held connection %d exchanges (%d failed); %d ip-addr samples",
		o.Name, exited.Round(time.Millisecond), back.Round(time.Millisecond),
		len(res), vip4, failed, len(res6), vip6, failed6, len(held), heldFailed, len(samples))
	if failed+failed6 > 0 {
		for _, r := range slices.Concat(res, res6) {
			if !r.OK {
				t.Logf("failed probe at %s: %s", r.Start.Format("15:04:05.000"), r.Host)
			}
		}
		t.Errorf("%d probes failed during the restart, want none", failed+failed6)
	}
	if heldFailed > 0 || len(held) < 20 {
		t.Errorf("the held connection broke: %d exchanges, last %+v", len(held), held[len(held)-1])
	}
	if len(elsewhere) > 0 {
		t.Errorf("a VIP was not on its owner alone in %d of %d samples, first: %v", len(elsewhere), len(samples), elsewhere[:min(5, len(elsewhere))])
	}
	if exited > 2*time.Second {
		t.Errorf("the old process took %s to exit on SIGUSR2", exited)
	}
	if old := strings.Join(o.Logs, ""); !strings.Contains(old, "restarting: keeping the VIPs") {
		t.Errorf("the old process of %s did not take the restart path", o.Name)
	}
	for _, h := range l.Hosts {
		if h != o && !strings.Contains(h.Log.String(), "member restarting, holding its VIPs") {
			t.Errorf("%s did not hold %s's VIPs for its restart", h.Name, o.Name)
		}
	}
	if h := l.SettledOwner(vip4, 500*time.Millisecond); h != o {
		t.Fatalf("%s is on %s after the restart, want %s", vip4, h.Name, o.Name)
	}

	// A stop still hands the VIP over, without a failed probe.
	stopFailed, old, next := gracefulStop(t, l, vip4)
	if stopFailed > 0 {
		t.Errorf("%d probes failed during a graceful stop after the restart, want none", stopFailed)
	}
	if old != o || next == o || old.Has(vip4) {
		t.Errorf("SIGTERM on %s: %s is on %v", o.Name, vip4, nslab.Names(l.Holders(vip4)))
	}
}
