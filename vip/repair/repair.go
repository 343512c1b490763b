package repair

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/edgelb/edgelb/vip"
)

// DefaultSchedule are the offsets from a takeover at which the targets not
// yet confirmed are told and asked again: the last ones come after
// Linux's neighbour locktime (1 s), inside which a plain ARP reply is
// ignored.
var DefaultSchedule = []time.Duration{0, 250 * time.Millisecond, 600 * time.Millisecond, 1100 * time.Millisecond, 2 * time.Second}

// DefaultMax is how many neighbours one takeover repairs at most.
const DefaultMax = 64

// DefaultTimeout is how long answers are awaited after the last round.
const DefaultTimeout = 500 * time.Millisecond

// Why a target was chosen.
const (
	FromGateway    = "gateway"
	FromConnection = "connection"
	FromNeighbour  = "neighbour"
)

// Target is a neighbour that may still send the VIP's traffic to the old
// owner.
type Target struct {
	Addr netip.Addr
	// MAC is its hardware address; nil while unknown (it is then asked
	// by broadcast, and told once it has answered).
	MAC net.HardwareAddr
	// Why it was chosen: FromGateway, FromConnection or FromNeighbour.
	Why string
}

// Sources name the neighbours of the interface.
type Sources interface {
	// Gateways returns the next hops of the interface's routes.
	Gateways(l vip.Link) ([]netip.Addr, error)
	// Neighbours returns the interface's neighbour-table entries that
	// have a hardware address.
	Neighbours(l vip.Link) (map[netip.Addr]net.HardwareAddr, error)
	// Clients returns the source addresses of the IPVS connections to v.
	Clients(v netip.Addr) ([]netip.Addr, error)
}

// Dialer opens the link-layer conversation of one VIP's repair.
type Dialer interface {
	Dial(l vip.Link, v netip.Addr) (Conn, error)
}

// Conn sends a repair's frames and reads its answers. Tell and Ask are
// called from one goroutine; Answers is read from the same one.
type Conn interface {
	// Tell sends t a unicast ARP reply (IPv4) or a solicited Neighbor
	// Advertisement with the override flag (IPv6) saying that the VIP is
	// at this host. An IPv4 target without a MAC is skipped.
	Tell(t Target) error
	// Ask sends t an ARP request (IPv4) or Neighbor Solicitation (IPv6)
	// for its own address, from the VIP at this host's hardware address:
	// unicast when its MAC is known, else broadcast (solicited-node
	// multicast).
	Ask(t Target) error
	// Answers delivers the targets that answered an Ask.
	Answers() <-chan Answer
	Close() error
}

// Answer is a target that answered.
type Answer struct {
	Addr netip.Addr
	MAC  net.HardwareAddr
}

// Select picks the targets of v's repair: gateways first, then the
// sources of connections to v, then the neighbour table; only addresses
// of v's family, on one of the link's networks (or IPv6 link-local), not v
// itself, at most max (0: DefaultMax). Gateways are next hops of the
// interface's own routes and are taken even off those networks. A MAC is
// filled in from the neighbour table where it has one.
func Select(v netip.Addr, l vip.Link, gateways []netip.Addr, neigh map[netip.Addr]net.HardwareAddr, clients []netip.Addr, max int) []Target {
	if max <= 0 {
		max = DefaultMax
	}
	var out []Target
	add := func(a netip.Addr, why string, onLinkOnly bool) {
		a = a.Unmap()
		switch {
		case len(out) >= max, !a.IsValid(), a.Is4() != v.Is4(), a == v,
			a.IsUnspecified(), a.IsMulticast(), a.IsLoopback():
			return
		case onLinkOnly && !onLink(a, l.Networks):
			return
		case slices.ContainsFunc(out, func(t Target) bool { return t.Addr == a }):
			return
		}
		out = append(out, Target{Addr: a, MAC: neigh[a], Why: why})
	}
	for _, g := range gateways {
		add(g, FromGateway, false)
	}
	for _, c := range sorted(clients) {
		add(c, FromConnection, true)
	}
	var ns []netip.Addr
	for a := range neigh {
		ns = append(ns, a)
	}
	for _, a := range sorted(ns) {
		add(a, FromNeighbour, true)
	}
	return out
}

func sorted(as []netip.Addr) []netip.Addr {
	as = slices.Clone(as)
	slices.SortFunc(as, netip.Addr.Compare)
	return slices.Compact(as)
}

// onLink reports whether a is on one of the networks, or IPv6 link-local.
func onLink(a netip.Addr, networks []netip.Prefix) bool {
	if a.Is6() && a.IsLinkLocalUnicast() {
		return true
	}
	return slices.ContainsFunc(networks, func(p netip.Prefix) bool { return p.Contains(a) })
}

// Options configure a Repairer.
type Options struct {
	Sources Sources
	Dialer  Dialer
	// Max targets per takeover; 0 means DefaultMax.
	Max int
	// Schedule overrides DefaultSchedule; Timeout DefaultTimeout.
	Schedule []time.Duration
	Timeout  time.Duration
	Log      *slog.Logger
	// Now and After are the clock; nil means the real one.
	Now   func() time.Time
	After func(d time.Duration) <-chan time.Time
}

// Result is what one repair achieved.
type Result struct {
	VIP          netip.Addr
	Targets      []Target
	Repaired     []netip.Addr // answered: their entry points here
	NotConfirmed []netip.Addr // never answered
	// Sent counts the frames sent (tells and asks).
	Sent int
	// Took is from the takeover to the last answer (or the end).
	Took time.Duration
}

// Stats are the Repairer's counters since it was made.
type Stats struct {
	Repairs      uint64 // takeovers repaired
	Repaired     uint64 // targets that answered
	NotConfirmed uint64 // targets that never answered
	Errors       uint64 // repairs that could not start (sources, sockets)
}

// Repairer runs the repairs of takeovers.
type Repairer struct {
	o    Options
	jobs chan job

	mu    sync.Mutex
	stats Stats
	// gen counts the takeovers and releases of each VIP: a queued
	// repair starts only if none came after it.
	gen map[netip.Addr]uint64
	// running cancels each VIP's running repair.
	running map[netip.Addr]context.CancelFunc
}

type job struct {
	link vip.Link
	vip  netip.Addr
	gen  uint64
}

var _ vip.Repairer = (*Repairer)(nil)

// New returns a Repairer; it starts nothing.
func New(o Options) *Repairer {
	if o.Schedule == nil {
		o.Schedule = DefaultSchedule
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Max <= 0 {
		o.Max = DefaultMax
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.After == nil {
		o.After = time.After
	}
	return &Repairer{o: o, jobs: make(chan job, 256), gen: map[netip.Addr]uint64{}, running: map[netip.Addr]context.CancelFunc{}}
}

// Takeover implements vip.Repairer: it queues the repair of v, which Run
// starts at once in place of any repair of v still running. It never
// blocks; a full queue drops the repair.
func (r *Repairer) Takeover(l vip.Link, v netip.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen[v]++
	select {
	case r.jobs <- job{link: l, vip: v, gen: r.gen[v]}:
	default:
		r.o.Log.Warn("neighbour repair queue full: repair skipped", "vip", v)
	}
}

// Release implements vip.Repairer: it stops the repair of v, running or
// queued. It never blocks.
func (r *Repairer) Release(v netip.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.gen[v]; !ok {
		return // never repaired
	}
	r.gen[v]++
	if cancel := r.running[v]; cancel != nil {
		cancel()
		delete(r.running, v)
	}
}

// Run starts each queued repair in its own goroutine until ctx ends, and
// returns nil once every repair has stopped.
func (r *Repairer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	defer func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		for v, cancel := range r.running {
			cancel()
			delete(r.running, v)
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case j := <-r.jobs:
			r.mu.Lock()
			if j.gen != r.gen[j.vip] {
				r.mu.Unlock()
				continue // a newer takeover or a release came after it
			}
			if cancel := r.running[j.vip]; cancel != nil {
				cancel()
			}
			jctx, cancel := context.WithCancel(ctx)
			r.running[j.vip] = cancel
			r.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer cancel()
				r.Repair(jctx, j.link, j.vip)
			}()
		}
	}
}

// Stats returns the counters. It is safe to call concurrently.
func (r *Repairer) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// Repair repairs v's neighbours now and returns when its schedule is done
// or ctx ends.
func (r *Repairer) Repair(ctx context.Context, l vip.Link, v netip.Addr) Result {
	start := r.o.Now()
	res := Result{VIP: v}
	targets, err := r.targets(l, v)
	if err != nil {
		r.count(func(s *Stats) { s.Errors++ })
		r.o.Log.Warn("neighbour repair: cannot list the neighbours", "vip", v, "err", err)
		return res
	}
	res.Targets = targets
	if len(targets) == 0 {
		r.o.Log.Debug("neighbour repair: no neighbour to repair", "vip", v)
		return res
	}
	conn, err := r.o.Dialer.Dial(l, v)
	if err != nil {
		r.count(func(s *Stats) { s.Errors++ })
		r.o.Log.Warn("neighbour repair: cannot open a socket", "vip", v, "err", err)
		return res
	}
	defer conn.Close()
	answered := map[netip.Addr]bool{}
	last := start
	take := func(a Answer) {
		i := slices.IndexFunc(targets, func(t Target) bool { return t.Addr == a.Addr })
		if i < 0 || answered[a.Addr] {
			return
		}
		answered[a.Addr] = true
		last = r.o.Now()
		if targets[i].MAC == nil {
			targets[i].MAC = a.MAC
		}
	}
	done := func() bool { return len(answered) == len(targets) }
	// wait takes the answers for d, or until every target has answered;
	// false when ctx ended.
	wait := func(d time.Duration) bool {
		for {
			select {
			case a := <-conn.Answers():
				take(a)
				continue
			default:
			}
			break
		}
		if done() || d <= 0 {
			return ctx.Err() == nil
		}
		timer := r.o.After(d)
		for {
			select {
			case <-ctx.Done():
				return false
			case a := <-conn.Answers():
				if take(a); done() {
					return true
				}
			case <-timer:
				return true
			}
		}
	}
	var sendErr error
	for _, off := range r.o.Schedule {
		if !wait(start.Add(off).Sub(r.o.Now())) || done() {
			break
		}
		for _, t := range targets {
			if answered[t.Addr] {
				continue
			}
			if t.MAC != nil || t.Addr.Is6() {
				if err := conn.Tell(t); err != nil {
					sendErr = err
				} else {
					res.Sent++
				}
			}
			if err := conn.Ask(t); err != nil {
				sendErr = err
			} else {
				res.Sent++
			}
		}
	}
	if !done() {
		wait(r.o.Timeout) // the last answers
	}
	if len(answered) == len(targets) {
		res.Took = last.Sub(start)
	} else {
		res.Took = r.o.Now().Sub(start)
	}
	stopped := ctx.Err() != nil
	for _, t := range targets {
		if answered[t.Addr] {
			res.Repaired = append(res.Repaired, t.Addr)
		} else if !stopped {
			res.NotConfirmed = append(res.NotConfirmed, t.Addr)
		}
	}
	r.count(func(s *Stats) {
		s.Repairs++
		s.Repaired += uint64(len(res.Repaired))
		s.NotConfirmed += uint64(len(res.NotConfirmed))
	})
	attrs := []any{"vip", v, "targets", len(targets), "repaired", len(res.Repaired), "notConfirmed", len(res.NotConfirmed),
		"sent", res.Sent, "took", res.Took.Round(time.Millisecond)}
	if len(res.NotConfirmed) > 0 {
		attrs = append(attrs, "notConfirmedAddrs", res.NotConfirmed)
	}
	if sendErr != nil {
		attrs = append(attrs, "err", sendErr)
	}
	if stopped {
		r.o.Log.Info("neighbour repair stopped: the VIP was let go or taken over again", attrs...)
		return res
	}
	r.o.Log.Info("neighbour repair done", attrs...)
	return res
}

func (r *Repairer) count(f func(*Stats)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.stats)
}

// targets lists and selects the targets of v's repair. A source that
// fails costs only its own targets, unless all of them fail.
func (r *Repairer) targets(l vip.Link, v netip.Addr) ([]Target, error) {
	gws, gErr := r.o.Sources.Gateways(l)
	neigh, nErr := r.o.Sources.Neighbours(l)
	clients, cErr := r.o.Sources.Clients(v)
	if gErr != nil && nErr != nil && cErr != nil {
		return nil, gErr
	}
	for _, err := range []error{gErr, nErr, cErr} {
		if err != nil {
			r.o.Log.Debug("neighbour repair: a source failed", "vip", v, "err", err)
		}
	}
	return Select(v, l, gws, neigh, clients, r.o.Max), nil
}
