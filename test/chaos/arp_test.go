package chaos

import (
	"time"

	"github.com/edgelb/edgelb/test/nslab"
)

// arpTimes sums, over the ARP samples (nslab.ARPWatch) that start in
// [from, to), the time during which no host answered and the time during
// which two or more distinct hosts did. A sample lasts until the next.
func arpTimes(res []nslab.ProbeResult, from, to time.Time) (none, double time.Duration) {
	for i, r := range res {
		if r.Start.Before(from) || !r.Start.Before(to) || i+1 == len(res) {
			continue
		}
		d := res[i+1].Start.Sub(r.Start)
		switch n := len(nslab.MACs(r)); {
		case n == 0:
			none += d
		case n > 1:
			double += d
		}
	}
	return none, double
}

// answered reports whether the newest ARP sample was answered by mac alone.
func answered(p *nslab.Probes, mac string) bool {
	m := nslab.MACs(p.Last())
	return len(m) == 1 && m[0] == mac
}
