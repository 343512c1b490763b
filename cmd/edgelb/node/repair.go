package node

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgelb/edgelb/vip/repair"
)

var (
	descRepairs = prometheus.NewDesc("edgelb_neighbour_repairs_total",
		"Neighbour repairs run after takeovers, by result: done, or error (the neighbours or a socket could not be had).", []string{"result"}, nil)
	descRepairTargets = prometheus.NewDesc("edgelb_neighbour_repair_targets_total",
		"Neighbours told of a takeover, by result: repaired (it answered a probe from the VIP, so its entry points here) or not_confirmed.", []string{"result"}, nil)
)

// repairCollector reads the neighbour repair's counters at each scrape.
type repairCollector struct{ r *repair.Repairer }

func (c repairCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRepairs
	ch <- descRepairTargets
}

func (c repairCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.r.Stats()
	ch <- prometheus.MustNewConstMetric(descRepairs, prometheus.CounterValue, float64(s.Repairs), "done")
	ch <- prometheus.MustNewConstMetric(descRepairs, prometheus.CounterValue, float64(s.Errors), "error")
	ch <- prometheus.MustNewConstMetric(descRepairTargets, prometheus.CounterValue, float64(s.Repaired), "repaired")
	ch <- prometheus.MustNewConstMetric(descRepairTargets, prometheus.CounterValue, float64(s.NotConfirmed), "not_confirmed")
}
