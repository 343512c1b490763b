package k8s

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/edgelb/edgelb/lb"
)

// problems remembers what the desired-state loop has reported: a problem
// of lb.Build is logged when it appears, not at every rebuild, and on the
// leader, one with a Reason is recorded as a Warning Event on its Service
// once per term while it lasts (a term marks the state dirty as it starts,
// so it hears of the problems already there). Only the desired-state loop
// uses it.
type problems struct {
	logged   map[lb.Problem]bool
	term     *term
	recorded map[lb.Problem]bool
}

func (c *Controller) report(r *problems, ps []lb.Problem) {
	t := c.term.Load()
	if t != r.term {
		r.term, r.recorded = t, nil
	}
	logged := make(map[lb.Problem]bool, len(ps))
	recorded := map[lb.Problem]bool{}
	for _, p := range ps {
		logged[p] = true
		if !r.logged[p] {
			c.log.Warn("desired state", "service", p.Source.String(), "problem", p.Message)
		}
		if t == nil || p.Reason == "" || p.Source.Static() {
			continue
		}
		recorded[p] = true
		if r.recorded[p] {
			continue
		}
		if svc, err := c.services.Services(p.Source.Namespace).Get(p.Source.Name); err == nil {
			t.recorder.Event(svc, corev1.EventTypeWarning, p.Reason, p.Message)
			c.notify("error", p.Source.String()+": "+p.Message, map[string]string{"service": p.Source.String(), "reason": p.Reason})
		}
	}
	r.logged, r.recorded = logged, recorded
}
