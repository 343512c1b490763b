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

// partitionVIPs are the static VIPs of the five-host lab: enough that
// every host is likely to own one.
var partitionVIPs = func() []netip.Addr {
	var out []netip.Addr
	for i := range 6 {
		out = append(out, netip.AddrFrom4([4]byte{10, 99, 0, byte(100 + i)}))
	}
	return out
}()

// startFive starts edgelb on five hosts, all of them the configured
// cluster, with partitionVIPs, and waits until each VIP has settled.
func startFive(t *testing.T) *nslab.Lab {
	l := nslab.New(t, 5)
	l.Join = 5
	var b strings.Builder
	for i, v := range partitionVIPs {
		fmt.Fprintf(&b, "\n  - {name: web%d, vip: %s, ports: [{port: 8080}]}", i, v)
	}
	l.Services = b.String()
	for _, h := range l.Hosts {
		h.Start()
	}
	for _, v := range partitionVIPs {
		l.SettledOwner(v, time.Second)
	}
	return l
}

// split waits until the hosts of minority hold no VIP and every VIP is
// on exactly one host of the rest, then checks that this holds for a
// second. It returns how long the first took.
func split(t *testing.T, l *nslab.Lab, minority []*nslab.Host) time.Duration {
	t.Helper()
	start := time.Now()
	var why string
	ok := func() bool {
		why = ""
		for _, v := range partitionVIPs {
			hs := l.Holders(v)
			in := slices.ContainsFunc(hs, func(h *nslab.Host) bool { return slices.Contains(minority, h) })
			if len(hs) != 1 || in {
				why += fmt.Sprintf(" %s on %v;", v, nslab.Names(hs))
			}
		}
		return why == ""
	}
	if !nslab.Poll(nslab.Converge, ok) {
		t.Fatalf("partition %v | rest: after %s the minority must own nothing and the majority every VIP once:%s",
			nslab.Names(minority), nslab.Converge, why)
	}
	took := time.Since(start)
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if !ok() {
			t.Fatalf("partition %v | rest: ownership did not hold:%s", nslab.Names(minority), why)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return took
}

// healed waits until every VIP is on exactly one host, stable for a
// second, and returns how long the first took.
func healed(t *testing.T, l *nslab.Lab) time.Duration {
	t.Helper()
	start := time.Now()
	for _, v := range partitionVIPs {
		l.SettledOwner(v, time.Second)
	}
	took := time.Since(start)
	for _, v := range partitionVIPs {
		l.StableOwner(v, 100*time.Millisecond)
	}
	return took
}

// bothSides returns the time, over the samples, during which a VIP was
// held on both sides of the partition.
func bothSides(samples []nslab.VIPSample, minority []*nslab.Host) time.Duration {
	var d time.Duration
	for i, s := range samples[:max(0, len(samples)-1)] {
		for _, hs := range s.Holders {
			min := slices.ContainsFunc(hs, func(n string) bool {
				return slices.ContainsFunc(minority, func(h *nslab.Host) bool { return h.Name == n })
			})
			if min && len(hs) > 1 {
				d += samples[i+1].At.Sub(s.At)
				break
			}
		}
	}
	return d
}

// Five hosts are split 2|3 (the two on a bridge of their own, their links
// up): the minority gives up its VIPs and the majority owns every VIP
// exactly once; after healing there is exactly one owner per VIP. Each
// round isolates another pair, starting with the pair that owns most.
func TestPartition(t *testing.T) {
	const scenario = "partition 2|3"
	l := startFive(t)
	rounds := count(5, 1)
	var splits, heals, both []time.Duration
	for i := range rounds {
		minority := busiest(l, 2)
		if i > 0 {
			minority = []*nslab.Host{l.Hosts[(2*i)%5], l.Hosts[(2*i+1)%5]}
		}
		watch := l.WatchVIPs(10*time.Millisecond, partitionVIPs...)
		l.Partition(minority...)
		splits = append(splits, split(t, l, minority))
		both = append(both, bothSides(watch(), minority))
		l.Heal()
		heals = append(heals, healed(t, l))
		t.Logf("round %d: %v cut off from the rest and back", i+1, nslab.Names(minority))
	}
	figure(t, scenario, "rounds", rounds)
	figure(t, scenario, "time until the minority owns nothing and the majority all", ms(splits))
	figure(t, scenario, "time with a VIP on both sides", ms(both))
	figure(t, scenario, "time until one owner per VIP after healing", ms(heals))
}

// busiest returns the n hosts that hold the most VIPs.
func busiest(l *nslab.Lab, n int) []*nslab.Host {
	held := map[*nslab.Host]int{}
	for _, v := range partitionVIPs {
		for _, h := range l.Holders(v) {
			held[h]++
		}
	}
	hs := slices.Clone(l.Hosts)
	slices.SortStableFunc(hs, func(a, b *nslab.Host) int { return held[b] - held[a] })
	return hs[:n]
}

// Defect 3 of the control-plane issue: two of five hosts stop gracefully
// (SIGTERM, as systemctl stop), the LAN splits 2|3 and the two restart on
// the side of three. The side of two is a minority of the configured five
// and must own nothing; the other side owns every VIP once. A rule that
// subtracts the members that left gracefully lets the two count a quorum
// of the remaining three, and both sides own the VIPs.
func TestPartitionAfterGracefulStops(t *testing.T) {
	const scenario = "partition after graceful stops"
	l := startFive(t)
	h1, h2, h4, h5 := l.Hosts[0], l.Hosts[1], l.Hosts[3], l.Hosts[4]
	for _, h := range []*nslab.Host{h4, h5} {
		if err := h.Stop(10 * time.Second); err != nil {
			t.Fatalf("stopping %s: %v", h.Name, err)
		}
	}
	for _, v := range partitionVIPs {
		l.SettledOwner(v, time.Second)
	}
	minority := []*nslab.Host{h1, h2}
	watch := l.WatchVIPs(10*time.Millisecond, partitionVIPs...)
	l.Partition(minority...)
	h4.Start()
	h5.Start()
	took := split(t, l, minority)
	both := bothSides(watch(), minority)
	figure(t, scenario, "time until the minority owns nothing and the majority all", took)
	figure(t, scenario, "time with a VIP on both sides", both)
	l.Heal()
	figure(t, scenario, "time until one owner per VIP after healing", healed(t, l))
}
