package chaos

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgelb/edgelb/test/nslab"
)

// The owner of both VIPs of a three-host lab is loaded the way a busy
// appliance is: its CPU — half of one of the machine's, a CPU cgroup, so
// that the other hosts keep theirs — saturated by stress-ng hogs beside
// edgelb (edgelb at the packaged unit's Nice=, the hogs at 0), and
// everything it sends delayed by 100 ms (nslab's Delay: netem in user
// space), its gossip and heartbeats included. Fast failure detection must tell that from a
// crash: no VIP moves, and no host ever holds one it did not hold before,
// for 45 s (10 minutes with EDGELB_CHAOS_FULL=1).
func TestLoadedOwnerKeepsVIPs(t *testing.T) {
	const scenario = "loaded owner (CPU saturated, +100ms netem)"
	nslab.Require(t)
	l := nslab.New(t, 3)
	for _, h := range l.Hosts {
		h.Start()
	}
	owner := l.SettledOwner(nslab.VIP4, time.Second)
	l.SettledOwner(nslab.VIP6, time.Second)
	before := map[netip.Addr][]string{}
	for _, v := range []netip.Addr{nslab.VIP4, nslab.VIP6} {
		before[v] = nslab.Names(l.Holders(v))
	}
	probes := l.Probe(nslab.VIP4, time.Second)
	watch := l.WatchVIPs(50*time.Millisecond, nslab.VIP4, nslab.VIP6)

	duration := count(10*time.Minute, 45*time.Second)
	undelay := owner.Delay(100 * time.Millisecond)
	nice := unitNice(t)
	unload := owner.Saturate(0.5, 4, nice)
	t.Logf("%s: its half CPU saturated by 4 hogs beside edgelb (nice %d, the packaged unit's), its packets delayed 100 ms, for %s",
		owner.Name, nice, duration)
	time.Sleep(duration)
	unload()
	undelay()
	samples := watch()
	res := probes.Stop()

	var moved []string
	for _, s := range samples {
		for v, hs := range before {
			if !slices.Equal(s.Holders[v], hs) {
				moved = append(moved, fmt.Sprintf("%s on %v at +%s", v, s.Holders[v], s.At.Sub(samples[0].At).Round(time.Millisecond)))
			}
		}
	}
	silent := 0
	for _, h := range l.Hosts {
		silent += strings.Count(h.Log.String(), "member silent")
	}
	failed, outage := nslab.Outage(res)
	figure(t, scenario, "duration", duration)
	figure(t, scenario, "VIP samples", len(samples))
	figure(t, scenario, "samples with a VIP moved", len(moved))
	figure(t, scenario, "members counted silent", silent)
	figure(t, scenario, "failed probes (1s timeout)", fmt.Sprintf("%d of %d (longest outage %s)", failed, len(res), outage.Round(time.Millisecond)))
	if len(moved) > 0 {
		t.Fatalf("the loaded owner %s lost VIPs it was holding (%v before): %d samples differ, first %v", owner.Name, before, len(moved), moved[:min(5, len(moved))])
	}
	if silent > 0 {
		t.Errorf("hosts counted a member silent %d times under load", silent)
	}
}

// unitNice is the Nice= of the packaged systemd unit, which the lab's
// edgelb gets under load as it would on a host.
func unitNice(t *testing.T) int {
	b, err := os.ReadFile(filepath.Join("..", "..", "packaging", "edgelb.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Nice="); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatalf("packaging/edgelb.service: %q: %v", line, err)
			}
			return n
		}
	}
	return 0
}
