package k8s

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/edgelb/edgelb/lb"
)

// Kinds of state reported as Events on a Service.
const (
	kindOwner    = "owner"
	kindBackends = "backends"
)

// Reasons of the state Events.
const (
	ReasonOwnerChanged      = "OwnerChanged"
	ReasonNoHealthyBackends = "NoHealthyBackends"
	ReasonBackendsHealthy   = "BackendsHealthy"
)

// States of a Service's backends, as this host's health checks see them.
const (
	backendsHealthy = "healthy" // at least one passes
	backendsDown    = "down"    // some are configured, all probed, none passes
	backendsUnknown = "unknown" // none passes, some are not probed yet
	backendsNone    = "none"    // none is configured (no endpoints, no nodes)
)

type stateKey struct {
	service string // namespace/name
	kind    string
}

// observed is one Service's state of one kind: State is compared, Detail
// only goes into the message.
type observed struct {
	State  string
	Detail string
}

// notice is an Event to record.
type notice struct {
	service              string
	typ, reason, message string
}

// shown is what was last reported of one state.
type shown struct {
	state string
	// reported is whether state was reported (by this host, or taken as
	// reported by the leader), not just taken as it was.
	reported bool
	at       time.Time // when the last Event of it was recorded; zero: never
	since    time.Time // when the state first differed from shown; zero: it does not
}

// stateEvents turns changes of the Services' VIP owners and backend health
// into Events, on the leader, rate-limited and coalesced: per Service and
// kind at most one Event per interval; a change within the interval is
// reported when it ends, as the state then is (nothing when it came back
// to what was last reported). The first state seen of a Service is taken
// as it is, without an Event. Every host tracks the states; a host that is
// not the leader takes a change as reported (by the leader) once it is
// older than horizon, so that a new leader reports the changes no leader
// could report (the old leader died with the VIP's owner) without
// repeating old ones. Only the state-report loop uses it.
type stateEvents struct {
	interval, horizon time.Duration
	states            map[stateKey]*shown
}

func newStateEvents(interval, horizon time.Duration) *stateEvents {
	return &stateEvents{interval: interval, horizon: horizon, states: map[stateKey]*shown{}}
}

// observe takes the current states at now and returns the Events due (none
// unless leader) and how long until a pending change is due (0: none).
// A state missing from current is kept as it was shown (the owners are
// unknown while this host has no quorum), unless its Service is not live
// any more.
func (s *stateEvents) observe(now time.Time, current map[stateKey]observed, live map[string]bool, leader bool) ([]notice, time.Duration) {
	for k := range s.states {
		if !live[k.service] {
			delete(s.states, k)
		}
	}
	var out []notice
	var wait time.Duration
	later := func(d time.Duration) {
		if wait == 0 || d < wait {
			wait = d
		}
	}
	for k, cur := range current {
		e := s.states[k]
		switch {
		case e == nil:
			s.states[k] = &shown{state: cur.State}
			continue
		case cur.State == e.state:
			e.since = time.Time{}
			continue
		case !notable(k.kind, e, cur.State):
			e.state, e.reported, e.since = cur.State, false, time.Time{}
			continue
		}
		if e.since.IsZero() {
			e.since = now
		}
		if !leader {
			if age := now.Sub(e.since); age < s.horizon {
				later(s.horizon - age)
			} else {
				e.state, e.reported, e.since = cur.State, true, time.Time{}
			}
			continue
		}
		if !e.at.IsZero() && now.Sub(e.at) < s.interval {
			later(s.interval - now.Sub(e.at))
			continue
		}
		out = append(out, message(k, e.state, cur))
		e.state, e.reported, e.at, e.since = cur.State, true, now, time.Time{}
	}
	slices.SortFunc(out, func(a, b notice) int { return strings.Compare(a.service+a.reason, b.service+b.reason) })
	return out, wait
}

// notable reports whether a change from what was shown to now deserves
// an Event: any change of owner; backends of which one passed that all
// fail now (not a Service whose backends fail from their first check on),
// and that pass again after that was reported.
func notable(kind string, was *shown, now string) bool {
	switch {
	case kind == kindOwner:
		return true
	case now == backendsDown:
		return was.state == backendsHealthy
	default:
		return was.state == backendsDown && was.reported && now == backendsHealthy
	}
}

func message(k stateKey, was string, cur observed) notice {
	n := notice{service: k.service, typ: "Normal"}
	switch {
	case k.kind == kindOwner:
		n.reason, n.message = ReasonOwnerChanged, ownerChange(was, cur.State)
	case cur.State == backendsDown:
		n.typ, n.reason = "Warning", ReasonNoHealthyBackends
		n.message = "no healthy backend left: " + cur.Detail
	default:
		n.reason, n.message = ReasonBackendsHealthy, "backends healthy again: "+cur.Detail
	}
	return n
}

// ownerState is the owners of a Service's VIPs that owners knows, as
// "vip=owner" sorted by VIP and joined by commas ("" for no owner); ok is
// false when it knows none.
func ownerState(vips []netip.Addr, owners map[netip.Addr]string) (state string, ok bool) {
	slices.SortFunc(vips, netip.Addr.Compare)
	parts := make([]string, 0, len(vips))
	for _, v := range slices.Compact(vips) {
		if o, known := owners[v]; known {
			parts = append(parts, v.String()+"="+o)
		}
	}
	return strings.Join(parts, ","), len(parts) > 0
}

func ownerChange(was, now string) string {
	before := map[string]string{}
	for _, p := range strings.Split(was, ",") {
		vip, owner, _ := strings.Cut(p, "=")
		before[vip] = owner
	}
	var parts []string
	for _, p := range strings.Split(now, ",") {
		vip, owner, _ := strings.Cut(p, "=")
		prev, ok := before[vip]
		switch {
		case ok && prev == owner:
		case ok:
			parts = append(parts, fmt.Sprintf("%s moved from %s to %s", vip, orNobody(prev), orNobody(owner)))
		default:
			parts = append(parts, fmt.Sprintf("%s is owned by %s", vip, orNobody(owner)))
		}
	}
	return strings.Join(parts, "; ")
}

func orNobody(s string) string {
	if s == "" {
		return "nobody (no healthy member with quorum)"
	}
	return s
}

// currentStates reads the Services' states from the desired state: the
// owners of their VIPs (those owners knows: it is empty while this host
// has no quorum) and whether any backend that may get traffic passes this
// host's checks (health nil: not reported). live holds every Service.
func currentStates(d *lb.Desired, owners map[netip.Addr]string, health func(*lb.VirtualService, lb.Backend) (up, known bool), host string) (out map[stateKey]observed, live map[string]bool) {
	out, live = map[stateKey]observed{}, map[string]bool{}
	if d == nil {
		return out, live
	}
	type counts struct{ total, healthy, unknown int }
	vips := map[string][]netip.Addr{}
	backends := map[string]*counts{}
	for i := range d.Services {
		vs := &d.Services[i]
		if vs.Source.Static() {
			continue
		}
		k := vs.Source.Namespace + "/" + vs.Source.Name
		vips[k] = append(vips[k], vs.VIP)
		c := backends[k]
		if c == nil {
			c = &counts{}
			backends[k] = c
		}
		for _, b := range vs.Backends {
			if b.Weight == 0 || b.Terminating {
				continue
			}
			c.total++
			if health == nil {
				continue
			}
			switch up, known := health(vs, b); {
			case !known:
				c.unknown++
			case up:
				c.healthy++
			}
		}
	}
	for k, vs := range vips {
		live[k] = true
		if st, ok := ownerState(vs, owners); ok {
			out[stateKey{k, kindOwner}] = observed{State: st}
		}
		if health == nil {
			continue
		}
		c := backends[k]
		o := observed{State: backendsHealthy, Detail: fmt.Sprintf("%d of %d backends pass their health checks (seen from %s)", c.healthy, c.total, host)}
		switch {
		case c.total == 0:
			o.State = backendsNone
		case c.healthy == 0 && c.unknown > 0:
			o.State = backendsUnknown
		case c.healthy == 0:
			o.State = backendsDown
			o.Detail = fmt.Sprintf("all %d backends fail their health checks (seen from %s)", c.total, host)
		}
		out[stateKey{k, kindBackends}] = o
	}
	return out, live
}

// Ownership tells who owns each VIP (the cluster).
type Ownership interface {
	// Owners returns each VIP's owner; "" for none.
	Owners() map[netip.Addr]string
	// Subscribe returns a channel signalled (coalesced) when it changes;
	// it may start signalled (reportLoop reports at every wake).
	Subscribe() <-chan struct{}
}

// Health is this host's health checks.
type Health interface {
	// State reports whether backend b of vs passes its checks, and
	// whether that is known yet.
	State(vs *lb.VirtualService, b lb.Backend) (up, known bool)
	// Changed returns a channel signalled (coalesced) when a result
	// changes; it may start signalled, like Subscribe's.
	Changed() <-chan struct{}
}

// reportLoop records the state Events (see stateEvents) whenever owners,
// health results or the desired state change, and when a coalesced change
// is due.
func (c *Controller) reportLoop(ctx context.Context) {
	se := newStateEvents(c.opts.EventInterval, 2*c.opts.LeaseDuration+c.opts.EventInterval)
	var ownersC, healthC <-chan struct{}
	if c.opts.Ownership != nil {
		ownersC = c.opts.Ownership.Subscribe()
	}
	if c.opts.Health != nil {
		healthC = c.opts.Health.Changed()
	}
	storeC := c.opts.Store.Subscribe()
	wake := time.NewTimer(time.Hour)
	defer wake.Stop()
	// A pass reads every Service: at 10,000 of them it was a quarter of
	// edgelb's CPU while endpoints changed. A change of the desired state
	// starts one pass at once, then those that follow within
	// reportStoreInterval share one at its end (owner and health changes
	// still start theirs at once; Events are at most one per
	// EventInterval anyway).
	var held <-chan time.Time
	storeDirty := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-ownersC:
		case <-healthC:
		case <-storeC:
			if held != nil {
				storeDirty = true
				continue
			}
			held = time.After(reportStoreInterval)
		case <-held:
			held = nil
			if !storeDirty {
				continue
			}
			held = time.After(reportStoreInterval)
		case <-wake.C:
		}
		storeDirty = false
		if wait := c.reportOnce(se); wait > 0 {
			wake.Reset(wait)
		}
	}
}

// reportStoreInterval is the least time between two passes of the report
// loop that changes of the desired state start.
const reportStoreInterval = time.Second

// reportOnce is one pass of reportLoop; it returns when to look again (0:
// only on a change).
func (c *Controller) reportOnce(se *stateEvents) time.Duration {
	var owners map[netip.Addr]string
	if c.opts.Ownership != nil {
		owners = c.opts.Ownership.Owners()
		// A view its peers have not confirmed (this member just started,
		// or came back) may name owners that never hold the VIP: taken as
		// the first look, such an owner made a later Event name the wrong
		// previous owner. Owners are looked at once the view is settled.
		if s, ok := c.opts.Ownership.(interface{ ViewSettled() bool }); ok && !s.ViewSettled() {
			owners = nil
		}
	}
	var health func(*lb.VirtualService, lb.Backend) (bool, bool)
	if c.opts.Health != nil {
		health = c.opts.Health.State
	}
	t := c.term.Load()
	current, live := currentStates(c.opts.Store.Load(), owners, health, c.opts.Identity)
	notices, wait := se.observe(c.opts.Now(), current, live, t != nil)
	for _, n := range notices {
		ns, name, _ := strings.Cut(n.service, "/")
		svc, err := c.services.Services(ns).Get(name)
		if err != nil {
			continue
		}
		t.recorder.Event(svc, n.typ, n.reason, n.message)
		// The API's event stream hears of owners and health from the
		// observer of every host; this is only the Kubernetes side.
		c.log.Info("recorded an Event", "service", n.service, "reason", n.reason, "message", n.message)
	}
	return wait
}
