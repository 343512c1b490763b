package bgp

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgelb/edgelb/test/nslab"
)

// BenchmarkBGPHostLoss: three hosts advertise a bgp VIP to FRR with BFD
// at 100 ms x 3 (hold time 3 s); the router spreads flows over them (the
// flow spread is reported, share per host, from 300 new connections). A
// prober on the router opens a new connection to the VIP every 10 ms
// (300 ms timeout) while one host is cut off the LAN: the figures are the
// time until the router drops its next hop, and the new-connection
// outage (first failed probe to the first success after the last
// failure; only the flows hashed to the lost host fail). ELBT_TRIALS
// trials (default 3), each on a fresh lab: `make bench-bgp`.
func BenchmarkBGPHostLoss(b *testing.B) {
	trials := 3
	if n, err := strconv.Atoi(os.Getenv("ELBT_TRIALS")); err == nil && n > 0 {
		trials = n
	}
	for range b.N {
		var withdrawn, outages []time.Duration
		spread := map[string]int{}
		for trial := range trials {
			l := nslab.New(b, 3)
			l.Services = fmt.Sprintf("\n  - {name: web-bgp, vip: %s, announce: bgp, ports: [{port: 8080}]}", vip)
			l.Extra = fmt.Sprintf(`bgp:
  asn: %d
  peers:
    - {address: %s, asn: %d, holdTime: 3s, bfd: {minRx: 100ms, minTx: 100ms, multiplier: 3}}
`, clusterAS, routerIP, routerASN)
			var neighbors []neighbor
			for _, h := range l.Hosts {
				neighbors = append(neighbors, neighbor{addr: h.IP4, bfd: true, bfdProfile: "fast"})
			}
			r := startRouter(b, l, routerASN, neighbors)
			for _, h := range l.Hosts {
				h.Start()
			}
			r.waitNextHops(vip, l.Hosts...)
			for _, h := range l.Hosts {
				if !nslab.Poll(nslab.Converge, func() bool { st, ok := bgpOf(h); return ok && len(st.Peers) == 1 && st.Peers[0].BFD == "up" }) {
					st, _ := bgpOf(h)
					b.Fatalf("%s: BFD not up: %+v", h.Name, st)
				}
			}
			for h, n := range probeFromRouter(b, r, 100) {
				spread[h] += n
			}
			h3 := l.Hosts[2]
			p := l.ProbeFrom(r.ns, vip, 300*time.Millisecond)
			time.Sleep(time.Second)
			cut := time.Now()
			h3.SetLink(false)
			w := r.waitNextHops(vip, l.Hosts[0], l.Hosts[1])
			time.Sleep(time.Second)
			res := p.Stop()
			var after []nslab.ProbeResult
			for _, x := range res {
				if !x.Start.Before(cut) {
					after = append(after, x)
				}
			}
			failed, outage := nslab.Outage(after)
			withdrawn, outages = append(withdrawn, w), append(outages, outage)
			fmt.Printf("trial %d: next hop of the lost host withdrawn after %v; new connections: %d of %d failed, outage %v\n",
				trial+1, w.Round(time.Millisecond), failed, len(after), outage.Round(time.Millisecond))
			l.Cleanup()
		}
		total := 0
		for _, n := range spread {
			total += n
		}
		var shares []string
		for _, h := range slices.Sorted(func(yield func(string) bool) {
			for k := range spread {
				if !yield(k) {
					return
				}
			}
		}) {
			shares = append(shares, fmt.Sprintf("%s %.0f%%", h, 100*float64(spread[h])/float64(total)))
		}
		slices.Sort(withdrawn)
		slices.Sort(outages)
		fmt.Printf("FIGURE bgp host loss, BFD 100ms x 3, %d trials: next hop withdrawn median %v (max %v); new-connection outage median %v (max %v)\n",
			trials, withdrawn[len(withdrawn)/2].Round(time.Millisecond), withdrawn[len(withdrawn)-1].Round(time.Millisecond),
			outages[len(outages)/2].Round(time.Millisecond), outages[len(outages)-1].Round(time.Millisecond))
		fmt.Printf("FIGURE flow spread through FRR (%d new connections, L4 hash): %s\n", total, strings.Join(shares, ", "))
		b.ReportMetric(float64(outages[len(outages)/2].Milliseconds()), "outage-median-ms")
		b.ReportMetric(float64(withdrawn[len(withdrawn)/2].Milliseconds()), "withdraw-median-ms")
	}
}
