package node

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/health"
	"github.com/edgelb/edgelb/lb/k8s"
)

// observer turns changes of the daemon's parts into API events and
// metrics, and tells the service manager (onReady, onWatchdog) that the
// node is ready and alive. It wakes on the parts' notifications, and
// every tick for the watchdog. (The dataplane and the filter push their
// health to the cluster themselves.)
type observer struct {
	n       *Node
	s       *state
	bus     *api.Bus
	metrics *api.Metrics
	log     *slog.Logger
	tick    time.Duration
	// onReady is called once, when the node is first ready; onWatchdog
	// at every pass of the loop. Either may be nil.
	onReady, onWatchdog func()

	owners  map[netip.Addr]string
	members map[string]string // name -> state
	health  map[health.Target]bool
	ready   bool
}

func (o *observer) Run(ctx context.Context) error {
	if o.tick == 0 {
		o.tick = time.Second
	}
	// Every part pushes what it observes (the cluster, the health
	// checks, the desired state); the ticker only paces the watchdog.
	clusterC := o.n.members.Subscribe()
	storeC := o.n.store.Subscribe()
	var healthC <-chan struct{}
	if o.n.dp != nil {
		healthC = o.n.dp.Health.Changed()
	}
	ticker := time.NewTicker(o.tick)
	defer ticker.Stop()
	for {
		o.observe()
		if o.onWatchdog != nil {
			o.onWatchdog()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-clusterC:
		case <-storeC:
		case <-healthC:
		case <-ticker.C:
		}
	}
}

func (o *observer) observe() {
	s, n := o.s, o.n
	if n.dp != nil {
		o.observeHealth(n.dp.Health.Results())
	}
	o.observeOwners(n.members.Owners())
	o.observeMembers()
	o.observeRefusals()
	if ready, _ := s.Ready(); ready && !o.ready {
		o.ready = true
		o.log.Info("ready: informers synced and dataplane programmed")
		if o.onReady != nil {
			o.onReady()
		}
	}
}

func (o *observer) observeOwners(now map[netip.Addr]string) {
	if o.owners == nil {
		o.owners = map[netip.Addr]string{}
	}
	for vip, owner := range now {
		if prev, ok := o.owners[vip]; !ok || prev != owner {
			msg := fmt.Sprintf("%s is owned by %s", vip, owner)
			if owner == "" {
				msg = fmt.Sprintf("%s has no owner", vip)
			}
			if ok {
				o.metrics.OwnerChanges.WithLabelValues(vip.String()).Inc()
				msg += fmt.Sprintf(" (was %s)", orNone(prev))
			}
			o.bus.Publish("ownership", msg, map[string]string{"vip": vip.String(), "owner": owner, "previous": prev})
		}
	}
	for vip, prev := range o.owners {
		if _, ok := now[vip]; !ok {
			o.bus.Publish("ownership", fmt.Sprintf("%s is gone (was owned by %s)", vip, orNone(prev)), map[string]string{"vip": vip.String(), "previous": prev})
		}
	}
	o.owners = now
}

func orNone(s string) string {
	if s == "" {
		return "nobody"
	}
	return s
}

func (o *observer) observeMembers() {
	now := map[string]string{}
	for _, m := range o.s.Members() {
		st := "healthy"
		switch {
		case m.Draining:
			st = "draining"
		case m.Restarting:
			st = "restarting"
		case !m.Healthy && m.DataPathFailing:
			st = "unhealthy (data path failing)"
		case !m.Healthy:
			st = "unhealthy"
		}
		now[m.Name] = st
	}
	if o.members != nil {
		for name, st := range now {
			if prev, ok := o.members[name]; !ok {
				o.bus.Publish("member", fmt.Sprintf("%s joined (%s)", name, st), map[string]string{"member": name, "state": st})
			} else if prev != st {
				typ := "member"
				if st == "draining" || prev == "draining" {
					typ = "drain"
				}
				o.bus.Publish(typ, fmt.Sprintf("%s is %s (was %s)", name, st, prev), map[string]string{"member": name, "state": st})
			}
		}
		for name := range o.members {
			if _, ok := now[name]; !ok {
				o.bus.Publish("member", name+" left or failed", map[string]string{"member": name, "state": "gone"})
			}
		}
	}
	o.members = now
}

func (o *observer) observeHealth(results []health.Result) {
	now := map[health.Target]bool{}
	for _, r := range results {
		if r.LastCheck.IsZero() {
			continue
		}
		now[r.Target] = r.Up
		if prev, ok := o.health[r.Target]; ok && prev != r.Up {
			state := map[bool]string{true: "up", false: "down"}[r.Up]
			msg := fmt.Sprintf("backend %s is %s", r.Target, state)
			if !r.Up && r.LastError != "" {
				msg += ": " + r.LastError
			}
			o.bus.Publish("health", msg, map[string]string{"backend": r.Target.Addr.String(), "state": state})
		}
	}
	o.health = now
}

// observeRefusals tells the Kubernetes controller what this host's kernel
// refuses for Services — virtual services IPVS refused, source ranges
// nftables refused — so that each becomes a Warning Event on its Service
// from this host (k8s.Controller.SetHostProblems records only what is
// new).
func (o *observer) observeRefusals() {
	n := o.n
	if n.ctrl == nil {
		return
	}
	var ps []lb.Problem
	host := n.cfg.Node.Name
	if n.dp != nil {
		if failures := n.dp.IPVS.Failures(); len(failures) > 0 {
			if d := n.store.Load(); d != nil {
				for i := range d.Services {
					vs := &d.Services[i]
					if why, ok := failures[vs.Key]; ok {
						src := vs.Source
						src.PortName = ""
						ps = append(ps, lb.Problem{Source: src, Reason: k8s.ReasonVirtualServiceRefused,
							Message: fmt.Sprintf("IPVS on %s refused %s (retried every second; the other ports and Services are unaffected): %s", host, vs.Key, why)})
					}
				}
			}
		}
	}
	if n.filter != nil {
		for src, err := range n.filter.Failed() {
			ps = append(ps, lb.Problem{Source: src, Reason: k8s.ReasonSourceRangesRefused,
				Message: fmt.Sprintf("nftables on %s refused the Service's source ranges, so the Service is closed on %s (retried): %v", host, host, err)})
		}
	}
	n.ctrl.SetHostProblems(ps)
}
