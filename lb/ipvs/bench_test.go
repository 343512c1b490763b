package ipvs_test

import (
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/ipvs"
	"github.com/edgelb/edgelb/lb/ipvs/ipvstest"
)

func bigDesired(n, m, shift int) *lb.Desired {
	d := &lb.Desired{}
	for i := range n {
		vs := svc(fmt.Sprintf("192.0.%d.%d", 2+i/250, i%250+1), 80, lb.TCP)
		for j := range m {
			vs.Backends = append(vs.Backends, lb.Backend{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(j), byte(i / 250), byte(i%250 + 1)}), uint16(30000+shift)), Weight: 1})
		}
		d.Services = append(d.Services, vs)
	}
	return d
}

// BenchmarkOneChange measures the CPU cost of an incremental pass at
// 10,000 x 10 when one backend changes, against the fake: "keys" when the
// store says which key changed (the daemon's case), "compare" when it
// does not and every service is compared.
func BenchmarkOneChange(b *testing.B) {
	for _, told := range []string{"keys", "compare"} {
		b.Run(told, func(b *testing.B) {
			f := ipvstest.New()
			store := lb.NewStore()
			dp := ipvs.New(ipvs.Options{IPVS: f, Store: store, Log: slog.New(slog.DiscardHandler)})
			d := bigDesired(10000, 10, 0)
			store.Set(d)
			if err := dp.SyncOnce(true); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := range b.N {
				d2 := &lb.Desired{Services: append([]lb.VirtualService(nil), d.Services...)}
				vs := &d2.Services[5000]
				vs.Backends = append(append([]lb.Backend(nil), vs.Backends...), lb.Backend{Addr: netip.AddrPortFrom(netip.MustParseAddr("10.99.0.1"), uint16(i)), Weight: 1})
				if told == "keys" {
					store.SetChanged(d2, []lb.Key{vs.Key})
				} else {
					store.Set(d2)
				}
				if err := dp.SyncOnce(false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFullSyncFromEmpty measures the CPU cost of programming 10,000 x
// 10 from empty, against the fake (the kernel's share is measured in the
// VM by make bench-ipvs).
func BenchmarkFullSyncFromEmpty(b *testing.B) {
	d := bigDesired(10000, 10, 0)
	for range b.N {
		f := ipvstest.New()
		store := lb.NewStore()
		dp := ipvs.New(ipvs.Options{IPVS: f, Store: store, Log: slog.New(slog.DiscardHandler)})
		store.Set(d)
		if err := dp.SyncOnce(true); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStats measures one Stats call at 1,000 x 10 against the fake:
// "read" when every call finds the copy older than the interval (the cost
// of each request before the cache), "cached" within the interval.
func BenchmarkStats(b *testing.B) {
	for _, bc := range []struct {
		name string
		step time.Duration
	}{{"read", 2 * ipvs.DefaultStatsInterval}, {"cached", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			f := ipvstest.New()
			store := lb.NewStore()
			now := time.Unix(1e9, 0)
			dp := ipvs.New(ipvs.Options{IPVS: f, Store: store, Log: slog.New(slog.DiscardHandler),
				Now: func() time.Time { return now }})
			store.Set(bigDesired(1000, 10, 0))
			if err := dp.SyncOnce(true); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				now = now.Add(bc.step)
				if st, err := dp.Stats(); err != nil || len(st) != 1000 {
					b.Fatalf("Stats() = %d services, %v", len(st), err)
				}
			}
		})
	}
}
