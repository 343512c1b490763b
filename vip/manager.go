package vip

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Link is the state of the VIP interface.
type Link struct {
	Name         string
	Index        int
	HardwareAddr net.HardwareAddr
	// Up: administratively up with a carrier.
	Up bool
	// Networks are the prefixes of the interface's own (not edgelb's)
	// global addresses.
	Networks []netip.Prefix
}

// Kernel is the address and link side of the host.
type Kernel interface {
	// Link reports the interface's state.
	Link() (Link, error)
	// VIPs lists the addresses on the interface that edgelb added, kept
	// ones included.
	VIPs() ([]netip.Addr, error)
	// Kept lists those of them that an edgelb process kept for the next
	// one when it restarted (RenewVIP with keep).
	Kept() ([]netip.Addr, error)
	// AddVIP adds a VIP, marked as edgelb's, to the interface, valid for
	// lifetime (0: forever); the kernel removes it when that runs out.
	AddVIP(v netip.Addr, lifetime time.Duration) error
	// RenewVIP sets the valid lifetime of a VIP edgelb added, counted
	// from now (0: forever), and its mark: kept for the next process with
	// keep, an ordinary VIP of edgelb otherwise.
	RenewVIP(v netip.Addr, lifetime time.Duration, keep bool) error
	// DelVIP removes a VIP edgelb added.
	DelVIP(netip.Addr) error
	// WatchLink calls changed after every change of the interface or its
	// addresses until ctx ends, and returns then.
	WatchLink(ctx context.Context, changed func()) error
}

// Announcer tells the LAN that a VIP is at this host's hardware address.
type Announcer interface {
	// Announce sends one gratuitous ARP (IPv4) or unsolicited Neighbor
	// Advertisement (IPv6) for vip on the link.
	Announce(l Link, vip netip.Addr) error
}

// Repairer moves the neighbours that may still send a VIP's traffic to
// its old owner; *repair.Repairer implements it.
type Repairer interface {
	// Takeover starts the repair of v's neighbours after this host took
	// it over, or announced it again after a peer let go of it. It must
	// not block.
	Takeover(l Link, v netip.Addr)
	// Release stops the repair of v, which this host no longer announces:
	// it must not pull neighbours back to itself. It must not block.
	Release(v netip.Addr)
}

// Ownership says which VIPs this host should hold; *cluster.Cluster
// implements it.
type Ownership interface {
	// Owned returns the VIPs to hold and announce, and those to keep
	// without announcing while another host takes them over (announcing
	// them would pull clients back to this host just before it lets go).
	Owned() (own, handover []netip.Addr)
	// Restarting reports whether this member is in its start-up grace
	// after a graceful restart, during which the VIPs adopted from the
	// previous process are held silently.
	Restarting() bool
	// AnnounceEpoch changes whenever another host may have announced
	// VIPs this host owns and has now let them go (a peer gave a VIP
	// back after a flap, a partial view or a handover): the owned VIPs
	// are then announced again, so that the LAN's last word is this
	// host's.
	AnnounceEpoch() uint64
	// OwnedElsewhere reports whether another member owns v in this
	// member's view. A VIP this host refused stays refused while one does:
	// taking it back on trial would cut that member's connections for
	// nothing.
	OwnedElsewhere(v netip.Addr) bool
	// Subscribe returns a channel signalled whenever Owned, Restarting or
	// AnnounceEpoch changes. It may start signalled (*cluster.Cluster's
	// does): Run syncs at every wake, so an extra one is harmless.
	Subscribe() <-chan struct{}
}

// Reporter receives what the Manager observes; *cluster.Cluster
// implements it.
type Reporter interface {
	// SetHealth reports the link's health under the source "link".
	SetHealth(source string, err error)
	// SetRefused reports the VIPs this host refuses, sorted: the kernel
	// would not add them, so another member should own them. Only those
	// VIPs move; the host stays eligible for every other one.
	SetRefused([]netip.Addr)
	// SetHeld reports the VIPs configured and announced.
	SetHeld([]netip.Addr)
	// SetNetworks reports the networks the interface is on.
	SetNetworks([]netip.Prefix)
}

// DefaultBurst are the offsets from a takeover at which the VIP is
// announced: five announcements over 1.5 s, so that one lost frame does
// not leave a client pointing at the old owner.
var DefaultBurst = []time.Duration{0, 100 * time.Millisecond, 300 * time.Millisecond, 700 * time.Millisecond, 1500 * time.Millisecond}

// DefaultFailHold is how long a VIP that could not be added stays refused
// before this host tries it again (when nobody else owns it); the hold
// doubles, up to maxFailHold, while its adds keep failing.
const DefaultFailHold = 10 * time.Second

const maxFailHold = 5 * time.Minute

// Options configures a Manager.
type Options struct {
	Kernel    Kernel
	Announcer Announcer
	Ownership Ownership
	Reporter  Reporter
	// Quieter, when set, keeps the kernel from answering address
	// resolution for the VIPs held only for a handover.
	Quieter Quieter
	// Repairer, when set, is told of every takeover, and of every
	// re-announcement after a peer let go (not of refreshes), after the
	// first announcement; and of every VIP this host stops announcing.
	Repairer Repairer
	Log      *slog.Logger
	// Burst overrides DefaultBurst.
	Burst []time.Duration
	// Refresh, when not 0, re-announces every held VIP at this interval
	// after its burst.
	Refresh time.Duration
	// Resync is how often the kernel is re-read without an event; 0 means
	// 5 s.
	Resync time.Duration
	// Lifetime, when not 0, is the valid lifetime VIPs are added with
	// (cluster.restartHold); every held VIP is renewed a third of it
	// after its last renewal, so that the kernel drops the VIPs of an
	// edgelb that died or did not come back from a restart. 0: forever.
	Lifetime time.Duration
	// FailHold overrides DefaultFailHold.
	FailHold time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Manager keeps the VIPs on the interface equal to the owned ones.
type Manager struct {
	o Options

	// sched holds the pending announcements of each VIP announced since
	// its takeover; a VIP without an entry gets a new burst.
	sched map[netip.Addr][]time.Time
	// repair are the VIPs taken over in this pass, for the Repairer.
	repair []netip.Addr
	// epoch is the Ownership's AnnounceEpoch last acted on.
	epoch uint64
	// renewed is when each held VIP's lifetime was last set.
	renewed map[netip.Addr]time.Time
	// adopted are the VIPs kept by the previous process (Adopt), until
	// the start-up grace ends: held silently, renewed only when owned.
	adopted map[netip.Addr]bool
	linkOK  *bool // last reported link health
	// quiet are the VIPs the Quieter last made quiet; nil until the
	// first success.
	quiet    []netip.Addr
	quietErr string // the last error of the Quieter, said once
	retry    bool
	// refused are the VIPs whose add failed (refusal); reported is the
	// refused list last given to the Reporter, nil before the first.
	refused  map[netip.Addr]*refusal
	reported []netip.Addr

	mu       sync.Mutex
	refusals []Refusal // Refused's snapshot
}

// Refusal is a VIP this host refuses: the kernel would not add it.
type Refusal struct {
	VIP netip.Addr
	// Err is why; Since when the add first failed, Until when it may be
	// tried again (then only if no other member owns it).
	Err          string
	Since, Until time.Time
}

// NewManager returns a Manager; it starts nothing.
func NewManager(o Options) (*Manager, error) {
	if o.Kernel == nil || o.Announcer == nil || o.Ownership == nil || o.Reporter == nil {
		return nil, errors.New("vip: Kernel, Announcer, Ownership and Reporter are required")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Burst == nil {
		o.Burst = DefaultBurst
	}
	if o.Resync <= 0 {
		o.Resync = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.FailHold <= 0 {
		o.FailHold = DefaultFailHold
	}
	return &Manager{o: o, sched: map[netip.Addr][]time.Time{}, renewed: map[netip.Addr]time.Time{}, adopted: map[netip.Addr]bool{},
		refused: map[netip.Addr]*refusal{}}, nil
}

// ErrRestart is the cause to cancel Run's context with
// (context.WithCancelCause) when edgelb restarts gracefully: Run then
// leaves the VIPs on the interface for the next process instead of
// removing them, marked as kept (Kernel.Kept) and with the lifetime they
// have left, so that they never outlive this process by more than
// Lifetime.
var ErrRestart = errors.New("graceful restart: VIPs kept for the next process")

// Adopt, called before Run, takes over the VIPs that the previous edgelb
// process kept on the interface when it restarted, and returns them for
// the cluster's Adopt. While the ownership is Restarting they are held
// silently — the LAN already knows them at this host — and renewed only
// once owned (until then the previous lifetime runs on); they are never
// added again if that runs out. After the grace they follow the ordinary
// rules, and the owned ones are announced once more, in case another
// host announced them meanwhile. VIPs of an edgelb that died without
// restarting gracefully are not adopted: Sync removes them unless they
// are owned.
//
// Adopt also reports the interface's networks at once, so that the
// cluster's first gossip carries them and its VIPs are assigned as
// before the restart.
func (m *Manager) Adopt() ([]netip.Addr, error) {
	if link, err := m.o.Kernel.Link(); err == nil && link.Up {
		m.o.Reporter.SetNetworks(link.Networks)
	}
	kept, err := m.o.Kernel.Kept()
	if err != nil {
		return nil, fmt.Errorf("listing the VIPs kept by the previous process: %w", err)
	}
	for _, v := range kept {
		m.adopted[v] = true
		m.o.Log.Info("VIP adopted from the previous process", "vip", v)
	}
	return kept, nil
}

// Run keeps the interface in line with ownership until ctx ends, then
// removes every VIP it holds — or, when ctx was cancelled with the cause
// ErrRestart, keeps them for the next process — closes the Announcer if
// it is an io.Closer and returns nil.
func (m *Manager) Run(ctx context.Context) error {
	changed := make(chan struct{}, 1)
	kick := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for watchCtx.Err() == nil {
			if err := m.o.Kernel.WatchLink(watchCtx, kick); err != nil && watchCtx.Err() == nil {
				m.o.Log.Warn("watching the interface, retrying", "err", err)
				select {
				case <-watchCtx.Done():
				case <-time.After(time.Second):
				}
			}
		}
	}()
	defer func() { stopWatch(); <-watchDone }()

	owned := m.o.Ownership.Subscribe()
	resync := time.NewTicker(m.o.Resync)
	defer resync.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := m.Sync()
		timer.Reset(next)
		select {
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), ErrRestart) {
				m.keepAll()
			} else {
				m.releaseAll()
			}
			m.quiet = nil // force the call: nothing is left quiet
			m.setQuiet(nil)
			if c, ok := m.o.Announcer.(io.Closer); ok {
				c.Close()
			}
			return nil
		case <-owned:
		case <-changed:
		case <-resync.C:
		case <-timer.C:
		}
	}
}

// Sync runs one pass: it reconciles the interface with ownership, sends
// the announcements that are due and returns how long until the next
// pass is needed for announcements or a retry.
func (m *Manager) Sync() time.Duration {
	now := m.o.Now()
	m.retry = false
	link, err := m.o.Kernel.Link()
	var own, handover, want []netip.Addr
	switch {
	case err != nil:
		m.setLink(fmt.Errorf("interface: %w", err))
	case !link.Up:
		m.setLink(fmt.Errorf("interface %s is down", link.Name))
	default:
		m.setLink(nil)
		m.o.Reporter.SetNetworks(link.Networks)
		own, handover = m.o.Ownership.Owned()
		want = append(slices.Clone(own), handover...)
	}
	have, err := m.o.Kernel.VIPs()
	if err != nil {
		m.setQuiet(handover)
		m.o.Log.Error("listing VIPs", "err", err)
		return time.Second
	}
	// Quiet first: a VIP handed over stops answering before anything
	// else, one owned again answers before it is announced, and a quiet
	// one about to be removed stays quiet until it is gone (a handover
	// that ends must not make the old holder answer again beside the new
	// one while it removes the address). One that answers and goes is
	// removed at once: quieting it first would only delay that.
	quiet := slices.Clone(handover)
	for _, v := range have {
		if !slices.Contains(want, v) && !slices.Contains(quiet, v) && slices.Contains(m.quiet, v) {
			quiet = append(quiet, v)
		}
	}
	m.setQuiet(quiet)
	if !m.o.Ownership.Restarting() {
		clear(m.adopted) // the grace is over: the ordinary rules apply
	}
	m.trials(now)
	var held []netip.Addr
	for _, v := range have {
		if slices.Contains(want, v) {
			held = append(held, v)
			continue
		}
		if err := m.o.Kernel.DelVIP(v); err != nil {
			m.o.Log.Error("removing VIP", "vip", v, "err", err)
			m.retry = true
			held = append(held, v)
			continue
		}
		m.forget(v)
		m.o.Log.Info("VIP removed", "vip", v)
	}
	// The removed ones need no quieting any more; one that could not be
	// removed stays quiet.
	quiet = slices.DeleteFunc(quiet, func(v netip.Addr) bool {
		return !slices.Contains(handover, v) && !slices.Contains(held, v)
	})
	m.setQuiet(quiet)
	for _, v := range handover {
		delete(m.sched, v) // silent from now on
		m.stopRepair(v)
	}
	if e := m.o.Ownership.AnnounceEpoch(); e != m.epoch {
		m.epoch = e
		for _, v := range own {
			if slices.Contains(have, v) && !m.adopted[v] {
				// A peer let go of it, after announcing it or
				// repairing neighbours towards itself: say again
				// where it is.
				m.takeover(v, now)
			}
		}
	}
	for _, v := range want {
		if slices.Contains(have, v) {
			delete(m.refused, v) // there after all (re-added by someone)
			if _, ok := m.sched[v]; !ok && slices.Contains(own, v) && !m.adopted[v] {
				// Found at start-up, re-added by someone, ours again
				// after a handover, or kept across a restart whose
				// grace is over: announce anew. An adopted VIP is
				// silent during the grace.
				m.takeover(v, now)
			}
			continue
		}
		if m.adopted[v] {
			// Its lifetime ran out before it was owned: adopting keeps
			// what is there, it never adds.
			continue
		}
		if r := m.refused[v]; r != nil && !r.trial {
			continue // refused: another member takes it
		}
		if err := m.o.Kernel.AddVIP(v, m.o.Lifetime); err != nil {
			m.refuse(v, err, now)
			continue
		}
		if r := m.refused[v]; r != nil {
			m.o.Log.Info("VIP added on trial: no longer refused", "vip", v)
			delete(m.refused, v)
		}
		m.o.Log.Info("VIP added", "vip", v, "interface", link.Name)
		m.renewed[v] = now
		if slices.Contains(own, v) {
			m.takeover(v, now)
		}
		held = append(held, v)
	}
	for v := range m.sched {
		if !slices.Contains(held, v) {
			delete(m.sched, v)
		}
	}
	for v := range m.renewed {
		if !slices.Contains(held, v) {
			delete(m.renewed, v)
		}
	}
	for v := range m.adopted {
		if !slices.Contains(want, v) && !slices.Contains(held, v) {
			delete(m.adopted, v)
		}
	}

	next := min(m.announce(link, now), m.renew(held, own, now), m.reportRefused(now))
	if m.o.Repairer != nil {
		for _, v := range m.repair {
			if slices.Contains(held, v) {
				m.o.Repairer.Takeover(link, v)
			}
		}
	}
	m.repair = m.repair[:0]
	// Reported only now that each new VIP has been announced once.
	m.o.Reporter.SetHeld(held)
	if m.retry && next > time.Second {
		next = time.Second
	}
	return next
}

// setQuiet makes the handover VIPs, and only them, quiet.
func (m *Manager) setQuiet(handover []netip.Addr) {
	if m.o.Quieter == nil {
		return
	}
	want := slices.Clone(handover)
	slices.SortFunc(want, netip.Addr.Compare)
	if m.quiet != nil && slices.Equal(want, m.quiet) {
		return
	}
	if err := m.o.Quieter.Quiet(want); err != nil {
		// Not fatal: the old owner answers beside the new one for the
		// handover, as it would without a Quieter. Said once per error.
		if err.Error() != m.quietErr {
			m.o.Log.Warn("keeping handed-over VIPs from answering ARP/NDP, retrying", "vips", want, "err", err)
		}
		m.quietErr = err.Error()
		m.retry = true
		return
	}
	m.quietErr = ""
	if len(want) > 0 || len(m.quiet) > 0 {
		m.o.Log.Debug("quiet VIPs", "vips", want)
	}
	m.quiet = append(make([]netip.Addr, 0, len(want)), want...)
}

func (m *Manager) setLink(err error) {
	ok := err == nil
	if m.linkOK != nil && *m.linkOK == ok {
		return
	}
	m.linkOK = &ok
	m.o.Reporter.SetHealth("link", err)
}

// refusal is a VIP the kernel would not add (a multicast or otherwise
// unusable address that validation let through, an address family
// disabled on the interface, a kernel limit). It costs that VIP only:
// the host reports it refused and the cluster gives it to another member,
// while this host stays eligible for every other VIP. After its hold, and
// only if no other member owns it by then, the VIP is tried again (trial);
// a failing trial doubles the hold, up to maxFailHold, and a successful
// add ends the refusal.
type refusal struct {
	err          error
	since, until time.Time
	hold         time.Duration
	trial        bool // the hold is over: tried again at the next add
}

// refuse records that v could not be added.
func (m *Manager) refuse(v netip.Addr, err error, now time.Time) {
	r := m.refused[v]
	if r == nil {
		r = &refusal{since: now}
		m.refused[v] = r
	}
	r.err, r.trial = err, false
	r.hold = min(max(2*r.hold, m.o.FailHold), maxFailHold)
	r.until = now.Add(r.hold)
	m.o.Log.Warn("VIP refused: the kernel would not add it; another member may own it, this host keeps its other VIPs",
		"vip", v, "hold", r.hold, "err", err)
}

// trials puts the refused VIPs whose hold is over on trial, unless
// another member owns them; a VIP on trial that is still not wanted a
// long hold later is forgotten.
func (m *Manager) trials(now time.Time) {
	for v, r := range m.refused {
		switch {
		case r.trial && now.Sub(r.until) > maxFailHold:
			delete(m.refused, v)
		case !r.trial && !now.Before(r.until) && !m.o.Ownership.OwnedElsewhere(v):
			r.trial = true
			m.o.Log.Info("refused VIP to be tried again", "vip", v, "after", r.hold)
		}
	}
}

// reportRefused reports the refused VIPs when they changed, keeps
// Refused's snapshot, and returns the time to the next end of a hold.
func (m *Manager) reportRefused(now time.Time) time.Duration {
	next := time.Hour
	var list []netip.Addr
	var snap []Refusal
	for v, r := range m.refused {
		if r.trial {
			continue
		}
		list = append(list, v)
		snap = append(snap, Refusal{VIP: v, Err: r.err.Error(), Since: r.since, Until: r.until})
		if d := r.until.Sub(now); d > 0 {
			next = min(next, d)
		} else {
			// Over, but another member owns it: look again at the
			// next resync or ownership change.
			next = min(next, m.o.Resync)
		}
	}
	slices.SortFunc(list, netip.Addr.Compare)
	slices.SortFunc(snap, func(a, b Refusal) int { return a.VIP.Compare(b.VIP) })
	if m.reported == nil || !slices.Equal(list, m.reported) {
		m.o.Reporter.SetRefused(list)
		m.reported = append([]netip.Addr{}, list...)
	}
	m.mu.Lock()
	m.refusals = snap
	m.mu.Unlock()
	return next
}

// Refused returns the VIPs this host refuses now, sorted. It is safe to
// call concurrently with Run.
func (m *Manager) Refused() []Refusal {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.refusals)
}

// forget drops what the Manager knows about a VIP that is gone.
func (m *Manager) forget(v netip.Addr) {
	m.stopRepair(v)
	delete(m.sched, v)
	delete(m.renewed, v)
	delete(m.adopted, v)
}

// renew sets the lifetime of every held VIP whose last renewal is a third
// of Lifetime old, except adopted ones that are not owned, and returns
// the time to the next renewal.
func (m *Manager) renew(held, own []netip.Addr, now time.Time) time.Duration {
	next := time.Hour
	if m.o.Lifetime <= 0 {
		return next
	}
	every := m.o.Lifetime / 3
	for _, v := range held {
		if m.adopted[v] && !slices.Contains(own, v) {
			continue
		}
		if at, ok := m.renewed[v]; ok && now.Sub(at) < every {
			next = min(next, at.Add(every).Sub(now))
			continue
		}
		if err := m.o.Kernel.RenewVIP(v, m.o.Lifetime, false); err != nil {
			m.o.Log.Error("renewing VIP", "vip", v, "err", err)
			m.retry = true
			continue
		}
		m.o.Log.Debug("VIP renewed", "vip", v, "lifetime", m.o.Lifetime)
		m.renewed[v] = now
		next = min(next, every)
	}
	return next
}

// takeover schedules the announcements of a VIP this host has just taken
// over, and its neighbour repair once the first one is sent.
func (m *Manager) takeover(v netip.Addr, now time.Time) {
	m.sched[v] = m.burst(now)
	m.repair = append(m.repair, v)
}

// stopRepair stops the neighbour repair of a VIP this host no longer
// announces.
func (m *Manager) stopRepair(v netip.Addr) {
	m.repair = slices.DeleteFunc(m.repair, func(a netip.Addr) bool { return a == v })
	if m.o.Repairer != nil {
		m.o.Repairer.Release(v)
	}
}

func (m *Manager) burst(now time.Time) []time.Time {
	out := make([]time.Time, len(m.o.Burst))
	for i, d := range m.o.Burst {
		out[i] = now.Add(d)
	}
	return out
}

// announce sends the due announcements and returns the time to the next.
func (m *Manager) announce(link Link, now time.Time) time.Duration {
	next := time.Hour
	for v, times := range m.sched {
		if len(times) > 0 && !times[0].After(now) {
			if err := m.o.Announcer.Announce(link, v); err != nil {
				m.o.Log.Warn("announcing VIP", "vip", v, "err", err)
			}
			for len(times) > 0 && !times[0].After(now) {
				times = times[1:]
			}
			if len(times) == 0 && m.o.Refresh > 0 {
				times = []time.Time{now.Add(m.o.Refresh)}
			}
			m.sched[v] = times
		}
		if len(times) > 0 {
			next = min(next, times[0].Sub(now))
		}
	}
	return next
}

// keepAll leaves every VIP edgelb holds on the interface for the next
// process, for a graceful restart: each is marked as kept and keeps the
// lifetime it has left (whole seconds, rounded down), so that it expires
// no later than it would have without the restart.
func (m *Manager) keepAll() {
	have, err := m.o.Kernel.VIPs()
	if err != nil {
		m.o.Log.Error("listing VIPs", "err", err)
	}
	now := m.o.Now()
	for _, v := range have {
		at, renewed := m.renewed[v]
		if m.adopted[v] && !renewed {
			m.o.Log.Info("VIP kept for the next process", "vip", v)
			continue // still marked as kept, its lifetime unchanged
		}
		left := time.Duration(0) // forever
		if m.o.Lifetime > 0 {
			if !renewed {
				continue // not ours to keep: it expires as it is
			}
			left = (at.Add(m.o.Lifetime).Sub(now)).Truncate(time.Second)
			if left < time.Second {
				continue // about to expire anyway
			}
		}
		if err := m.o.Kernel.RenewVIP(v, left, true); err != nil {
			m.o.Log.Error("keeping VIP for the next process", "vip", v, "err", err)
			continue
		}
		m.o.Log.Info("VIP kept for the next process", "vip", v, "expiresIn", left)
	}
}

// releaseAll removes every VIP edgelb holds, for shutdown.
func (m *Manager) releaseAll() {
	have, err := m.o.Kernel.VIPs()
	if err != nil {
		m.o.Log.Error("listing VIPs", "err", err)
	}
	var left []netip.Addr
	for _, v := range have {
		if err := m.o.Kernel.DelVIP(v); err != nil {
			m.o.Log.Error("removing VIP", "vip", v, "err", err)
			left = append(left, v)
			continue
		}
		m.o.Log.Info("VIP removed", "vip", v)
	}
	m.o.Reporter.SetHeld(left)
}
