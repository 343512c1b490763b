package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/edgelb/edgelb/test/nslab"
	"github.com/edgelb/edgelb/test/prereq"
)

// behindRouter4 and behindRouter6 are networks the hosts reach through
// the client, which thereby is their gateway: the LAN's router, as in
// most deployments.
const (
	behindRouter4 = "203.0.113.0/24"
	behindRouter6 = "2001:db8:beef::/48"
)

// garpIgnoringLab starts a three-host lab whose client ignores gratuitous
// ARP (IPv4) or unsolicited Neighbor Advertisements (IPv6) for vip the
// way routers and hosts that do are reported to. IPv4: an nftables rule
// in the client's arp family drops every ARP packet whose sender and
// target addresses are vip (a gratuitous ARP, request or reply), and
// arp_accept is 0. IPv6: a rule drops every Neighbor Advertisement for vip
// without the solicited flag, and accept_untracked_na is 0. Its neighbour
// entries become stale after 2.5-7.5 s (base_reachable_time 5 s, to keep
// the unrepaired case short). The hosts route behindRouter4 and
// behindRouter6 through the client. repair false turns the neighbour
// repair off (cluster.neighbourRepair: 0).
func garpIgnoringLab(tb testing.TB, vip netip.Addr, repair bool) *nslab.Lab {
	nslab.Require(tb)
	prereq.RootWith(tb, "nft (package nftables)", "curl (package curl)")
	l := nslab.New(tb, 3)
	if !repair {
		l.Cluster = "  neighbourRepair: 0\n"
	}
	l.Sysctl(l.Client, "net.ipv4.conf.all.arp_accept=0", "net.ipv4.conf.default.arp_accept=0",
		"net.ipv4.conf.eth0.arp_accept=0", "net.ipv4.neigh.eth0.base_reachable_time_ms=5000",
		"net.ipv6.conf.all.accept_untracked_na=0", "net.ipv6.conf.default.accept_untracked_na=0",
		"net.ipv6.conf.eth0.accept_untracked_na=0", "net.ipv6.neigh.eth0.base_reachable_time_ms=5000")
	nft := func(args ...string) { l.Run("ip", append([]string{"netns", "exec", l.Client, "nft"}, args...)...) }
	family, match := "arp", []string{"arp", "saddr", "ip", vip.String(), "arp", "daddr", "ip", vip.String()}
	if vip.Is6() {
		// The solicited flag is bit 33 of the ICMPv6 header, the target
		// address its bits 64-191.
		family, match = "ip6", []string{"icmpv6", "type", "nd-neighbor-advert", "@th,33,1", "0", "@th,64,128", fmt.Sprintf("0x%x", vip.AsSlice())}
	}
	nft("add", "table", family, "garp")
	nft("add", "chain", family, "garp", "in", "{ type filter hook input priority 0; }")
	nft(append(append([]string{"add", "rule", family, "garp", "in"}, match...), "counter", "drop")...)
	for _, h := range l.Hosts {
		l.IP(h.NS, "route", "add", behindRouter4, "via", "10.99.0.2")
		l.IP(h.NS, "-6", "route", "add", behindRouter6, "via", "fd99::2")
		h.Start()
	}
	l.Owner(vip, converge)
	if !l.Configured(converge) {
		tb.Fatal("the hosts run no committed cluster configuration")
	}
	return l
}

// garpDropped returns how many gratuitous ARPs or unsolicited NAs for vip
// the client dropped.
func garpDropped(tb testing.TB, l *nslab.Lab, vip netip.Addr) int {
	family := "arp"
	if vip.Is6() {
		family = "ip6"
	}
	out, err := exec.Command("ip", "netns", "exec", l.Client, "nft", "list", "chain", family, "garp", "in").CombinedOutput()
	if err != nil {
		tb.Fatalf("nft list: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`counter packets (\d+)`).FindSubmatch(out)
	if m == nil {
		tb.Fatalf("no counter in\n%s", out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// vipAdded finds when a host's log last says it added vip.
func vipAdded(log string, vip netip.Addr) (time.Time, bool) {
	re := regexp.MustCompile(`time=(\S+) level=INFO msg="VIP added" component=vip vip=` + regexp.QuoteMeta(vip.String()) + ` `)
	all := re.FindAllStringSubmatch(log, -1)
	if len(all) == 0 {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, all[len(all)-1][1])
	return t, err == nil
}

// recovered is the start of the first answered probe after the last
// failed one.
func recovered(res []nslab.ProbeResult) time.Time {
	last := -1
	for i, r := range res {
		if !r.OK {
			last = i
		}
	}
	if last+1 < len(res) {
		return res[last+1].Start
	}
	return time.Time{}
}

// garpIgnoringCrash cuts vip's owner off while the GARP-ignoring client
// probes it, with the client's entry for vip refreshed just before the
// cut (so still inside its 1 s locktime when the next owner takes over),
// and returns the client's outage (from the cut to its first answered
// probe after it), the time from the cut to the next owner adding vip
// (its log), and from then to the client's first answered probe.
func garpIgnoringCrash(tb testing.TB, l *nslab.Lab, vip netip.Addr, within time.Duration) (outage, takeover, after time.Duration, old, next *nslab.Host) {
	old = l.StableOwner(vip, 300*time.Millisecond)
	p := l.Probe(vip, 300*time.Millisecond)
	if !nslab.Poll(2*time.Second, func() bool { return p.Last().OK }) {
		tb.Fatalf("no answer from %s before the crash: %+v", vip, p.Last())
	}
	if got := l.Neighbour(vip); got != old.MAC {
		tb.Fatalf("client's entry for %s is %q before the crash, want the owner %s", vip, got, old.MAC)
	}
	// Refreshed now: a state change sets the entry's update time, which
	// the locktime counts from.
	for _, nud := range []string{"stale", "reachable"} {
		l.IP(l.Client, "neigh", "change", vip.String(), "lladdr", old.MAC, "nud", nud, "dev", "eth0")
	}
	cut := time.Now()
	old.SetLink(false)
	ok := nslab.Poll(within, func() bool {
		if next == nil {
			if hs := l.Holders(vip); len(hs) == 1 && hs[0] != old {
				next = hs[0]
			}
		}
		last := p.Last()
		return next != nil && last.OK && last.Host == next.Name
	})
	if next != nil {
		if at, found := vipAdded(next.Log.String(), vip); found {
			takeover = at.Sub(cut)
		}
	}
	if !ok {
		p.Stop()
		return -1, takeover, 0, old, next
	}
	time.Sleep(50 * time.Millisecond) // a few more answers: the outage is closed
	outage = recovered(p.Stop()).Sub(cut)
	return outage, takeover, outage - takeover, old, next
}

// repairLine matches a host's log line of a repair of vip.
func repairLine(vip netip.Addr) *regexp.Regexp {
	return regexp.MustCompile(`neighbour repair done.*vip=` + regexp.QuoteMeta(vip.String()) + ` .*repaired=(\d+)`)
}

// TestNeighbourRepairReachesGARPIgnoringClient: after a crash, the new
// owner's gratuitous ARPs are dropped by the client and its unicast ARP
// replies fall inside the client's locktime; the neighbour repair's ARP
// request from the VIP moves the client's entry at once. Without the
// repair the client keeps sending to the dead host until its entry goes
// stale and is probed away (seconds). IPv6: the client drops unsolicited
// NAs; the repair's solicited NA and Neighbor Solicitation move it.
func TestNeighbourRepairReachesGARPIgnoringClient(t *testing.T) {
	for _, c := range []struct {
		name   string
		vip    netip.Addr
		repair bool
	}{{"repair", vip4, true}, {"no repair", vip4, false}, {"IPv6 repair", vip6, true}, {"IPv6 no repair", vip6, false}} {
		t.Run(c.name, func(t *testing.T) {
			l := garpIgnoringLab(t, c.vip, c.repair)
			outage, takeover, after, old, next := garpIgnoringCrash(t, l, c.vip, 30*time.Second)
			if next == nil {
				t.Fatalf("%s did not move away from %s", c.vip, old.Name)
			}
			dropped := garpDropped(t, l, c.vip)
			if dropped == 0 {
				t.Fatal("the client dropped no gratuitous ARP: the GARP-ignoring client is not emulated")
			}
			if outage < 0 {
				t.Fatalf("the client did not reach %s on %s within 30 s; its entry is %s", c.vip, next.Name, l.Neighbour(c.vip))
			}
			if got := l.Neighbour(c.vip); got != next.MAC {
				t.Errorf("client's entry for %s is %s, want the new owner %s (%s)", c.vip, got, next.MAC, next.Name)
			}
			t.Logf("FIGURE GARP-ignoring client, %s: outage %d ms; %s added by %s %d ms after the cut, client answered %d ms after that; %d announcements dropped",
				c.name, outage.Milliseconds(), c.vip, next.Name, takeover.Milliseconds(), after.Milliseconds(), dropped)
			// The repair logs once its schedule is over (2.5 s: the
			// dead host's address never answers).
			var m []string // the last repair of the VIP: the takeover after the crash
			nslab.Poll(5*time.Second, func() bool {
				if all := repairLine(c.vip).FindAllStringSubmatch(next.Log.String(), -1); len(all) > 0 {
					m = all[len(all)-1]
				}
				return m != nil && c.repair
			})
			if !c.repair {
				// Stale after at least 2.5 s, then 5 s of DELAY and
				// 3 unicast probes: well over 3 s.
				if outage < 3*time.Second {
					t.Errorf("outage %s without repair: the client did not ignore the announcements", outage)
				}
				if m != nil {
					t.Errorf("a repair ran with neighbourRepair 0: %s", m[0])
				}
				return
			}
			if outage > 3*time.Second {
				t.Errorf("outage %s with repair, want well under 3 s (without it: until the entry goes stale)", outage)
			}
			if m == nil || m[1] == "0" {
				t.Fatalf("%s logged no repair of the client: %v\n%s", next.Name, m, next.Log.String())
			}
			t.Logf("%s: %s", next.Name, m[0])
			// And in its metrics.
			out, err := exec.Command("ip", "netns", "exec", next.NS, "curl", "-sf", "http://127.0.0.1:9080/metrics").Output()
			if err != nil {
				t.Fatalf("metrics of %s: %v", next.Name, err)
			}
			rm := regexp.MustCompile(`(?m)^edgelb_neighbour_repair_targets_total\{result="repaired"\} (\d+)$`).FindSubmatch(out)
			if rm == nil || string(rm[1]) == "0" {
				t.Errorf("%s's metrics count no repaired neighbour: %q", next.Name, rm)
			}
		})
	}
}

// BenchmarkGARPIgnoringClient prints the outage of a client that ignores
// gratuitous ARP (garpIgnoringLab) when its VIP's owner crashes, with the
// neighbour repair over ELBT_TRIALS trials (default 10) and without it
// over a third as many (each of those lasts until the entry goes stale):
// `make bench-failover`.
func BenchmarkGARPIgnoringClient(b *testing.B) {
	nslab.Require(b)
	trials := benchTrials()
	for _, repair := range []bool{true, false} {
		n := trials
		if !repair {
			n = max(1, trials/3)
		}
		var outages, beyond []time.Duration
		for i := range n {
			l := garpIgnoringLab(b, vip4, repair)
			d, takeover, after, old, next := garpIgnoringCrash(b, l, vip4, 30*time.Second)
			if d < 0 || next == nil {
				b.Fatalf("trial %d: the client never reached %s again after %s was cut", i+1, vip4, old.Name)
			}
			l.Cleanup()
			outages = append(outages, d)
			beyond = append(beyond, after)
			fmt.Printf("GARP-ignoring client, repair %v, trial %2d: outage %5d ms; takeover %4d ms after the cut, client answered %5d ms after it\n",
				repair, i+1, d.Milliseconds(), takeover.Milliseconds(), after.Milliseconds())
		}
		med, mx := stats(outages)
		bmed, bmx := stats(beyond)
		fmt.Printf("FIGURE GARP-ignoring client, crash (link cut), repair %v, %d trials: outage median %d ms, max %d ms; client answered after the takeover in median %d ms, max %d ms\n",
			repair, n, med.Milliseconds(), mx.Milliseconds(), bmed.Milliseconds(), bmx.Milliseconds())
		unit := "repair"
		if !repair {
			unit = "norepair"
		}
		b.ReportMetric(float64(med.Milliseconds()), unit+"-median-ms")
		b.ReportMetric(float64(mx.Milliseconds()), unit+"-max-ms")
	}
}

// benchTrials is ELBT_TRIALS, default 10.
func benchTrials() int {
	if n, err := strconv.Atoi(os.Getenv("ELBT_TRIALS")); err == nil && n > 0 {
		return n
	}
	return 10
}
