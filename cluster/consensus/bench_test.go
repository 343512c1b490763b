package consensus

import (
	"context"
	"slices"
	"testing"
	"time"
)

// BenchmarkPropose measures Propose → committed by a majority and applied
// on three in-memory members, each fsyncing its bbolt log (in the test's
// temporary directory), one write at a time; p50 and p99 are reported
// besides the mean.
func BenchmarkPropose(b *testing.B) {
	for _, on := range []string{"leader", "follower"} {
		b.Run("on "+on, func(b *testing.B) {
			c := newCluster(b, 3, func(o *Options) { o.Tick = DefaultTick })
			lead := c.leader()
			m := lead
			if on == "follower" {
				m = c.follower(lead)
			}
			n := c.node(m)
			ctx := context.Background()
			body := make([]byte, 4096) // a configuration of a few dozen services
			var took []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				if _, err := n.Propose(ctx, body, "bench", uint64(i)); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(t0))
			}
			b.StopTimer()
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds()), "p50-us")
			b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), "p99-us")
		})
	}
}

// BenchmarkLeaderLoss measures, with the default tick (100 ms, election
// timeout 1 s), the time from the leader's crash to a write accepted
// again through a surviving member.
func BenchmarkLeaderLoss(b *testing.B) {
	c := newCluster(b, 3, func(o *Options) { o.Tick = DefaultTick })
	var took []time.Duration
	for i := 0; i < b.N; i++ {
		lead := c.leader()
		m := c.follower(lead)
		v, _, err := c.node(m).Read(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		c.stop(lead)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err = c.node(m).Propose(ctx, []byte("after the leader"), "bench", v.Version)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(t0))
		c.start(lead, false)
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(took[len(took)-1].Milliseconds()), "max-ms")
}
