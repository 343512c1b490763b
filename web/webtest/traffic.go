package webtest

import (
	"math"
	"slices"
	"time"

	"github.com/edgelb/edgelb/api"
)

// Traffic is an api.State whose services' traffic counters grow with time,
// at a different, slowly varying rate per port, so that the dashboard's
// charts have something to draw. Everything else comes from State.
type Traffic struct {
	api.State
	// Start is when the counters were zero; Now defaults to time.Now.
	Start time.Time
	Now   func() time.Time
}

var _ api.State = (*Traffic)(nil)

// Services returns State's services with counters added; the result is a
// deep copy, so State's own values are never changed.
func (t *Traffic) Services() []api.Service {
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	e := now().Sub(t.Start).Seconds()
	svcs := t.State.Services()
	for i := range svcs {
		svcs[i].Ports = slices.Clone(svcs[i].Ports)
		for j := range svcs[i].Ports {
			p := &svcs[i].Ports[j]
			// conns(e) = r·e + 20·(1-cos(e/5)) grows monotonically: r > 4.
			r := float64(12 + 9*i + 4*j)
			conns := uint64(r*e + 20*(1-math.Cos(e/5)))
			add(&p.Stats, conns)
			p.Backends = slices.Clone(p.Backends)
			for k := range p.Backends {
				b := &p.Backends[k]
				if b.Health == "down" {
					continue
				}
				add(&b.Stats, conns/uint64(len(p.Backends)))
			}
		}
	}
	return svcs
}

func add(s *api.Stats, conns uint64) {
	s.Connections += conns
	s.ActiveConnections = conns % 17
	s.PacketsIn += conns * 12
	s.PacketsOut += conns * 10
	s.BytesIn += conns * 1400
	s.BytesOut += conns * 9200
}
