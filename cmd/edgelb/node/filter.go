package node

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/filter"
)

var (
	descDropped = prometheus.NewDesc("edgelb_source_range_dropped_packets_total",
		"Packets to a service dropped because their source is outside its loadBalancerSourceRanges (sourceRanges), since edgelb started.",
		[]string{"namespace", "service"}, nil)
	descRefused = prometheus.NewDesc("edgelb_source_range_refused",
		"1 for a service whose source ranges the kernel refused on this host: every port of it is closed (every packet dropped) until they can be programmed; 0 for the other services with ranges.",
		[]string{"namespace", "service"}, nil)
)

// filterCollector reads the filter's counters and failures at each scrape.
type filterCollector struct{ f *filter.Filter }

func (c *filterCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descDropped
	ch <- descRefused
}

func (c *filterCollector) Collect(ch chan<- prometheus.Metric) {
	dropped, err := c.f.Dropped()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descDropped, err)
		return
	}
	failed := c.f.Failed()
	for src, n := range dropped {
		ns := namespaceLabel(src)
		ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(n), ns, src.Name)
		v := 0.0
		if failed[src] != nil {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descRefused, prometheus.GaugeValue, v, ns, src.Name)
	}
}

func namespaceLabel(src lb.Source) string {
	if src.Static() {
		return api.StaticNamespace
	}
	return src.Namespace
}
