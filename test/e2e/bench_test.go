package e2e

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/edgelb/edgelb/test/nslab"
)

// BenchmarkFailover measures the client-visible outage of a crash (the
// owner's link cut) and of a graceful stop (SIGTERM) over ELBT_TRIALS
// trials (default 10), each on a fresh three-host lab, with a client
// probing the VIP every 10 ms (300 ms timeout per probe). It reports
// figures, not a pass/fail timing: `make bench-failover`.
func BenchmarkFailover(b *testing.B) {
	nslab.Require(b)
	trials := 10
	if n, err := strconv.Atoi(os.Getenv("ELBT_TRIALS")); err == nil && n > 0 {
		trials = n
	}
	var crashes []time.Duration
	var stopFailed []int
	for i := range trials {
		l := startCluster(b, 3)
		d, old, _ := crash(b, l, vip4)
		crashes = append(crashes, d)
		// Heal, let the cluster settle, then stop the owner gracefully.
		old.SetLink(true)
		if !nslab.Poll(converge, func() bool { hs := l.Holders(vip4); return len(hs) == 1 && hs[0] == old }) {
			b.Fatalf("trial %d: %s did not take %s back after healing", i, old.Name, vip4)
		}
		l.StableOwner(vip4, 500*time.Millisecond)
		failed, _, _ := gracefulStop(b, l, vip4)
		stopFailed = append(stopFailed, failed)
		l.Cleanup()
		fmt.Printf("trial %2d: crash outage %4d ms, graceful stop %d failed probes\n", i+1, crashes[i].Milliseconds(), failed)
	}
	med, mx := stats(crashes)
	total := 0
	for _, f := range stopFailed {
		total += f
	}
	fmt.Printf("crash (link cut), %d trials: median %d ms, max %d ms\n", trials, med.Milliseconds(), mx.Milliseconds())
	fmt.Printf("graceful stop (SIGTERM), %d trials: %d failed probes in all (max %d in one trial)\n", trials, total, slices.Max(stopFailed))
	b.ReportMetric(float64(med.Milliseconds()), "crash-median-ms")
	b.ReportMetric(float64(mx.Milliseconds()), "crash-max-ms")
	b.ReportMetric(float64(total), "graceful-failed-probes")
}

func stats(ds []time.Duration) (median, max time.Duration) {
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		median = s[n/2]
	} else {
		median = (s[n/2-1] + s[n/2]) / 2
	}
	return median, s[n-1]
}
