package node

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/cluster"
	"github.com/edgelb/edgelb/vip/datapath"
)

// peerServes tells the data-path checker whether another member could
// take this host's VIPs: it is live, healthy, not draining or leaving,
// and its own data path does not fail.
type peerServes struct {
	c    *cluster.Cluster
	self string
}

func (p peerServes) PeerServes() bool {
	for _, m := range p.c.Members() {
		if m.Name != p.self && !m.Absent && !m.Silent && m.Healthy && !m.Draining && !m.Leaving && !m.DataPathFailing && !p.c.PeerPathFailing(m.Name) {
			return true
		}
	}
	return false
}

var (
	descDataPathOK = prometheus.NewDesc("edgelb_datapath_ok",
		"1 while node.interface's data path answers (or has no target), 0 while it fails.", nil, nil)
	descDataPathGaveUp = prometheus.NewDesc("edgelb_datapath_gave_up",
		"1 while this host owns no VIPs because its data path fails and another member's works.", nil, nil)
	descDataPathRounds = prometheus.NewDesc("edgelb_datapath_probe_rounds_total",
		"Rounds of data-path probes, by result.", []string{"result"}, nil)
)

// dataPathCollector reads the checker's state at each scrape.
type dataPathCollector struct{ c *datapath.Checker }

func (d dataPathCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descDataPathOK
	ch <- descDataPathGaveUp
	ch <- descDataPathRounds
}

func (d dataPathCollector) Collect(ch chan<- prometheus.Metric) {
	s := d.c.Status()
	ch <- prometheus.MustNewConstMetric(descDataPathOK, prometheus.GaugeValue, b2f(s.OK))
	ch <- prometheus.MustNewConstMetric(descDataPathGaveUp, prometheus.GaugeValue, b2f(s.GaveUp))
	ch <- prometheus.MustNewConstMetric(descDataPathRounds, prometheus.CounterValue, float64(s.Rounds-s.BadRounds), "good")
	ch <- prometheus.MustNewConstMetric(descDataPathRounds, prometheus.CounterValue, float64(s.BadRounds), "bad")
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// dataPathStatus is the checker's state for GET /api/v1/status.
func dataPathStatus(c *datapath.Checker) *api.DataPathStatus {
	if c == nil {
		return nil
	}
	s := c.Status()
	return &api.DataPathStatus{OK: s.OK, GaveUp: s.GaveUp, Targets: s.Targets, Problem: s.Problem}
}
