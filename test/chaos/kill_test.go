package chaos

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgelb/edgelb/test/nslab"
)

// probeTimeout is the clients' timeout per request: long enough that a
// loaded test machine does not fail a request by itself.
const probeTimeout = time.Second

// startProbes probes every VIP and waits until each answers.
func startProbes(t *testing.T, l *nslab.Lab, vips ...netip.Addr) []*nslab.Probes {
	t.Helper()
	var ps []*nslab.Probes
	for _, v := range vips {
		ps = append(ps, l.Probe(v, probeTimeout))
	}
	if !nslab.Poll(5*time.Second, func() bool {
		return !slices.ContainsFunc(ps, func(p *nslab.Probes) bool { return !p.Last().OK })
	}) {
		t.Fatalf("the VIPs %v do not all answer", vips)
	}
	return ps
}

// stopProbes stops the probes and returns how many requests were sent and
// how many failed, logging the first failures.
func stopProbes(t *testing.T, ps []*nslab.Probes) (sent, failed int) {
	for _, p := range ps {
		res := p.Stop()
		sent += len(res)
		for _, r := range res {
			if !r.OK {
				if failed < 10 {
					t.Logf("failed request at %s: %s", r.Start.Format("15:04:05.000"), r.Host)
				}
				failed++
			}
		}
	}
	return sent, failed
}

// moves lists the samples in which a VIP was not on its owner alone.
func moves(samples []nslab.VIPSample, want map[netip.Addr]*nslab.Host) []string {
	var out []string
	for _, s := range samples {
		for v, o := range want {
			if hs := s.Holders[v]; !slices.Equal(hs, []string{o.Name}) {
				out = append(out, fmt.Sprintf("%s %s on %v", s.At.Format("15:04:05.000"), v, hs))
			}
		}
	}
	return out
}

// fullLog is everything edgelb logged on h, over its restarts.
func fullLog(h *nslab.Host) string {
	return strings.Join(append(slices.Clone(h.Logs), h.Log.String()), "")
}

// logMarks notes how far every host's log goes, for vipsAdded.
func logMarks(l *nslab.Lab) map[*nslab.Host]int {
	m := map[*nslab.Host]int{}
	for _, h := range l.Hosts {
		m[h] = len(fullLog(h))
	}
	return m
}

// vipsAdded returns the log lines, since the marks, in which a host added
// one of vips: a move, even one too short for a sample to see.
func vipsAdded(l *nslab.Lab, marks map[*nslab.Host]int, vips ...netip.Addr) []string {
	var out []string
	for _, h := range l.Hosts {
		for _, line := range strings.Split(fullLog(h)[marks[h]:], "\n") {
			for _, v := range vips {
				if strings.Contains(line, `msg="VIP added"`) && strings.Contains(line, " vip="+v.String()+" ") {
					out = append(out, h.Name+": "+strings.TrimSpace(line))
				}
			}
		}
	}
	return out
}

// edgelb is SIGKILLed and restarted on a host that owns nothing while
// the client sends requests through both VIPs every 10 ms: no request
// may fail and no VIP may move. Then on the owner: the VIP must end up
// on one host; the outage of new connections and the time two hosts, or
// none, answer ARP are reported per kill. Each kill is followed by what
// systemd does after a crash of the packaged unit, its ExecStopPost=
// (nslab.Host.Crash): the killed process's addresses would otherwise stay
// in the kernel, answering beside the new owner's, until their lifetime
// (cluster.restartHold) ran out.
func TestKillEdgelb(t *testing.T) {
	const scenario = "edgelb SIGKILL"
	l := startLab(t, 3)
	kills := count(20, 3)
	want := owners(t, l, nslab.VIP4, nslab.VIP6)
	var idle *nslab.Host
	for _, h := range l.Hosts {
		if h != want[nslab.VIP4] && h != want[nslab.VIP6] {
			idle = h
		}
	}
	if idle == nil {
		t.Fatalf("every host owns a VIP: %v", want)
	}

	ps := startProbes(t, l, nslab.VIP4, nslab.VIP6)
	watch := l.WatchVIPs(10*time.Millisecond, nslab.VIP4, nslab.VIP6)
	marks := logMarks(l)
	for i := range kills {
		idle.Crash()
		idle.Start()
		// Back once the new process has joined and counts a quorum.
		if !nslab.Poll(nslab.Converge, func() bool { return strings.Contains(idle.Log.String(), "quorum reached") }) {
			t.Fatalf("kill %d: %s did not rejoin", i+1, idle.Name)
		}
		time.Sleep(time.Second) // under load, between kills
	}
	samples := watch()
	sent, failed := stopProbes(t, ps)
	moved := append(moves(samples, want), vipsAdded(l, marks, nslab.VIP4, nslab.VIP6)...)
	figure(t, scenario, "idle host: kills", kills)
	figure(t, scenario, "idle host: failed requests", fmt.Sprintf("%d of %d", failed, sent))
	figure(t, scenario, "idle host: VIP moves (samples off the owner, VIPs added)", len(moved))
	if failed > 0 {
		t.Errorf("%d of %d requests failed while edgelb was killed and restarted on %s, which owns nothing", failed, sent, idle.Name)
	}
	if len(moved) > 0 {
		t.Errorf("VIPs moved while %s restarted: %d of %d owner samples off the owner or VIPs added in a log: %v",
			idle.Name, len(moved), len(samples), moved[:min(5, len(moved))])
	}

	// The owner.
	var outages, doubles, silent []time.Duration
	var failedOwner int
	for i := range kills {
		before := owners(t, l, nslab.VIP4, nslab.VIP6)
		o := before[nslab.VIP4]
		p := l.Probe(nslab.VIP4, probeTimeout)
		arp := l.ARPWatch(nslab.VIP4)
		if !nslab.Poll(5*time.Second, func() bool { return p.Last().OK && answered(arp, o.MAC) }) {
			t.Fatalf("kill %d: %s does not answer before the kill", i+1, nslab.VIP4)
		}
		killed := time.Now()
		o.Crash()
		var next *nslab.Host
		if !nslab.Poll(nslab.Converge, func() bool {
			next = newHolder(l, nslab.VIP4, o)
			return next != nil && p.Last().OK && p.Last().Host == next.Name
		}) {
			t.Fatalf("kill %d: %s did not move away from %s: on %v", i+1, nslab.VIP4, o.Name, nslab.Names(l.Holders(nslab.VIP4)))
		}
		if !nslab.Poll(nslab.Converge, func() bool { return !o.Has(nslab.VIP4) }) {
			t.Errorf("kill %d: %s still has %s", i+1, o.Name, nslab.VIP4)
		}
		time.Sleep(100 * time.Millisecond)
		f, d := nslab.Outage(p.Stop())
		none, dbl := arpTimes(arp.Stop(), killed, time.Now())
		failedOwner += f
		outages, doubles, silent = append(outages, d), append(doubles, dbl), append(silent, none)
		t.Logf("kill %d: edgelb SIGKILLed on %s, %s moved to %s; %d failed requests", i+1, o.Name, nslab.VIP4, next.Name, f)
		o.Start()
		backTo(t, l, before)
	}
	figure(t, scenario, "owner: kills", kills)
	figure(t, scenario, "owner: failed requests", failedOwner)
	figure(t, scenario, "owner: new-connection outage per kill", ms(outages))
	figure(t, scenario, "owner: double-answer time per kill", ms(doubles))
	figure(t, scenario, "owner: no-answer time per kill", ms(silent))
}
