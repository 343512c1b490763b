package e2e

import (
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// vipSample is which hosts had each VIP configured at one moment.
type vipSample struct {
	at      time.Time
	holders map[netip.Addr][]string
}

// watchVIPs polls `ip addr` in every host's namespace, as fast as it can
// (each pass runs one `ip` per host), until the returned stop is called,
// which returns every sample.
func (l *lab) watchVIPs(vips ...netip.Addr) (stop func() []vipSample) {
	done := make(chan struct{})
	out := make(chan []vipSample, 1)
	go func() {
		var samples []vipSample
		for {
			s := vipSample{at: time.Now(), holders: map[netip.Addr][]string{}}
			for _, h := range l.hosts {
				addrs, err := exec.Command("ip", "-n", h.ns, "-o", "addr", "show", "dev", "eth0").Output()
				if err != nil {
					continue
				}
				for _, v := range vips {
					bits := 32
					if v.Is6() {
						bits = 128
					}
					if strings.Contains(string(addrs), " "+netip.PrefixFrom(v, bits).String()+" ") {
						s.holders[v] = append(s.holders[v], h.name)
					}
				}
			}
			samples = append(samples, s)
			select {
			case <-done:
				out <- samples
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return func() []vipSample {
		close(done)
		return <-out
	}
}

// settledOwner waits until vip has stayed on one host for d — the hosts
// start one after the other, and a VIP moves when a later one wins it —
// and returns that host.
func (l *lab) settledOwner(vip netip.Addr, d time.Duration) *host {
	l.t.Helper()
	var last *host
	var since time.Time
	if !poll(converge, func() bool {
		hs := l.holders(vip)
		if len(hs) != 1 {
			last = nil
			return false
		}
		if hs[0] != last {
			last, since = hs[0], time.Now()
		}
		return time.Since(since) >= d
	}) {
		l.t.Fatalf("%s did not settle on one host: on %v", vip, names(l.holders(vip)))
	}
	return last
}

// TestGracefulRestart restarts the owner of the VIPs as `systemctl
// restart` does (SIGUSR2, then a new process) while the client probes the
// VIP every 10 ms and holds a TCP connection through it that exchanges a
// line every 100 ms: no probe may fail, the connection must survive, and
// the VIPs must stay on that host alone throughout. A SIGTERM afterwards
// still hands the VIP over without a failed probe.
func TestGracefulRestart(t *testing.T) {
	l := startCluster(t, 3)
	o := l.settledOwner(vip4, time.Second)
	o6 := l.settledOwner(vip6, time.Second)

	p := l.probe(vip4, 300*time.Millisecond)
	p6 := l.probe(vip6, 300*time.Millisecond)
	conn := l.hold(vip4)
	if !poll(2*time.Second, func() bool { return p.last().ok && p6.last().ok && conn.last().ok }) {
		t.Fatalf("no answer through the VIPs before the restart: %+v %+v %+v", p.last(), p6.last(), conn.last())
	}
	watch := l.watchVIPs(vip4, vip6)
	time.Sleep(300 * time.Millisecond)

	start := time.Now()
	exited, err := o.restart(5 * time.Second)
	if err != nil {
		t.Fatalf("restarting %s: %v", o.name, err)
	}
	// The new process is back once it has rejoined and its start-up grace
	// is over.
	if !poll(converge, func() bool { return strings.Contains(o.log.String(), "start-up grace over") }) {
		t.Fatalf("%s: the new process did not finish its start-up grace", o.name)
	}
	back := time.Since(start)
	if !strings.Contains(o.log.String(), "VIP adopted from the previous process") {
		t.Errorf("%s: the new process adopted no VIP", o.name)
	}
	// Keep the traffic going a little longer: the VIPs are the new
	// process's now.
	time.Sleep(2 * time.Second)
	samples := watch()
	res, res6, held := p.stop(), p6.stop(), conn.stop()

	failed, _ := outage(res)
	failed6, _ := outage(res6)
	heldFailed, _ := outage(held)
	var elsewhere []string
	for _, s := range samples {
		for v, want := range map[netip.Addr]*host{vip4: o, vip6: o6} {
			if hs := s.holders[v]; !slices.Equal(hs, []string{want.name}) {
				elsewhere = append(elsewhere, s.at.Format("15:04:05.000")+" "+v.String()+" on "+strings.Join(hs, ",")+" ")
			}
		}
	}
	t.Logf("SIGUSR2 on %s: old process exited in %s, new one back (grace over) %s after the signal; "+
		"%d probes of %s (%d failed), %d of %s (%d failed), held connection %d exchanges (%d failed); %d ip-addr samples",
		o.name, exited.Round(time.Millisecond), back.Round(time.Millisecond),
		len(res), vip4, failed, len(res6), vip6, failed6, len(held), heldFailed, len(samples))
	if failed+failed6 > 0 {
		for _, r := range slices.Concat(res, res6) {
			if !r.ok {
				t.Logf("failed probe at %s: %s", r.start.Format("15:04:05.000"), r.host)
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
	if old := strings.Join(o.logs, ""); !strings.Contains(old, "restarting: keeping the VIPs") {
		t.Errorf("the old process of %s did not take the restart path", o.name)
	}
	for _, h := range l.hosts {
		if h != o && !strings.Contains(h.log.String(), "member restarting, holding its VIPs") {
			t.Errorf("%s did not hold %s's VIPs for its restart", h.name, o.name)
		}
	}
	if h := l.settledOwner(vip4, 500*time.Millisecond); h != o {
		t.Fatalf("%s is on %s after the restart, want %s", vip4, h.name, o.name)
	}

	// A stop still hands the VIP over, without a failed probe.
	stopFailed, old, next := gracefulStop(t, l, vip4)
	if stopFailed > 0 {
		t.Errorf("%d probes failed during a graceful stop after the restart, want none", stopFailed)
	}
	if old != o || next == o || old.has(vip4) {
		t.Errorf("SIGTERM on %s: %s is on %v", o.name, vip4, names(l.holders(vip4)))
	}
}
