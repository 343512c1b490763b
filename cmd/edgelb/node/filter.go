package node

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/filter"
)

// startFilter starts the source-range filter in g. It runs with every
// dataplane backend: with none, the proxy on the host is protected the same
// way. It writes nothing until a service has source ranges.
func startFilter(ctx context.Context, g *errgroup.Group, store *lb.Store, metrics *api.Metrics, log *slog.Logger) *filter.Filter {
	f := filter.New(filter.Options{Kernel: filter.NewNFTables(), Store: store, Log: log.With("component", "filter")})
	metrics.Registry.MustRegister(&dropCollector{f: f})
	g.Go(func() error { return f.Run(ctx) })
	return f
}

var descDropped = prometheus.NewDesc("edgelb_source_range_dropped_packets_total",
	"Packets to a service dropped because their source is outside its loadBalancerSourceRanges (sourceRanges), since edgelb started.",
	[]string{"namespace", "service"}, nil)

// dropCollector reads the filter's counters at each scrape.
type dropCollector struct{ f *filter.Filter }

func (c *dropCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descDropped }

func (c *dropCollector) Collect(ch chan<- prometheus.Metric) {
	dropped, err := c.f.Dropped()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descDropped, err)
		return
	}
	for src, n := range dropped {
		ns := src.Namespace
		if src.Static() {
			ns = api.StaticNamespace
		}
		ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(n), ns, src.Name)
	}
}
