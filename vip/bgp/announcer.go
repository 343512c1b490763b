package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Speaker is the BGP side of the host: the sessions with the peers and
// the routes advertised on them. GoBGP implements it; bgptest.Speaker is
// the fake. Its methods are called from one goroutine (the Announcer's
// Run) except Peers, which must be safe for concurrent use.
type Speaker interface {
	// Start opens the sessions with the configured peers; they connect
	// in the background.
	Start(ctx context.Context) error
	// Advertise sends a host route (/32 or /128) with this host as next
	// hop and the attributes a to every peer of its address family; a
	// route advertised again with other attributes replaces the old one.
	// Withdraw takes it back.
	Advertise(p netip.Prefix, a Attrs) error
	Withdraw(p netip.Prefix) error
	// Peers reports every configured peer's session.
	Peers() []PeerStatus
	// Configure takes a new configuration on a started speaker: the
	// sessions of removed or changed peers close and new ones open, the
	// others are left alone. A new Global (AS number) restarts the
	// speaker, every session with it, and drops its routes: restarted
	// is then true. A Global with ASN 0 turns BGP off.
	Configure(ctx context.Context, g Global, peers []Peer) (restarted bool, err error)
	// Stop closes the sessions.
	Stop() error
}

// PeerStatus is one peer's session as the API shows it.
type PeerStatus struct {
	Address netip.Addr
	ASN     uint32
	// State is the BGP FSM state: idle, connect, active, opensent,
	// openconfirm or established.
	State string
	// Since is when the session was established; zero when it is not.
	Since time.Time
	// BFD is the BFD session state (down, init, up, admin-down), "" when
	// the peer has no BFD.
	BFD string
	// PrefixesSent counts the prefixes advertised on the session.
	PrefixesSent int
}

// StateEstablished is the State of a session that is up.
const StateEstablished = "established"

// Established reports whether the session is up.
func (p PeerStatus) Established() bool { return p.State == StateEstablished }

// Serving says whether this member may serve traffic; *cluster.Cluster
// implements it.
type Serving interface {
	// MayServe reports whether this member is healthy, sees a quorum and
	// is neither draining nor stopping.
	MayServe() bool
	// Draining reports whether this member is being drained: it then
	// sends GRACEFUL_SHUTDOWN before it withdraws (a member that may not
	// serve for another reason withdraws at once).
	Draining() bool
	// Subscribe returns a channel signalled when that may have changed;
	// it may start signalled (Run syncs at every wake).
	Subscribe() <-chan struct{}
}

// VIPSource lists the VIPs announced over BGP (sorted), loaded false
// until a first desired state exists; like cluster.VIPSource.
type VIPSource interface {
	VIPs() (vips []netip.Addr, loaded bool)
	Subscribe() <-chan struct{}
}

// Policy gives the attributes of a VIP's route (its communities and
// local preference); it must be safe for concurrent use.
type Policy func(vip netip.Addr) Attrs

// Options configures an Announcer.
type Options struct {
	Speaker Speaker
	Serving Serving
	VIPs    VIPSource
	// Policy, when set, gives each route its attributes; nil: none.
	Policy Policy
	// WithdrawDelay is how long a draining or stopping member advertises
	// its routes with GRACEFUL_SHUTDOWN before it withdraws them.
	WithdrawDelay time.Duration
	// Resync is how often Desired is recomputed without an event; 0
	// means a second.
	Resync time.Duration
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	Log *slog.Logger
}

// Desired is the advertisement rule: while this member serves, every
// VIP as a host route with its policy's attributes; while it shuts down
// (drains or stops), the same routes with GRACEFUL_SHUTDOWN added and
// LOCAL_PREF 0 (iBGP peers only); nothing otherwise. policy may be nil.
func Desired(vips []netip.Addr, policy Policy, phase Phase) []Route {
	if phase == PhaseWithdrawn {
		return nil
	}
	out := make([]Route, 0, len(vips))
	for _, v := range vips {
		r := Route{Prefix: netip.PrefixFrom(v, v.BitLen())}
		if policy != nil {
			r.Attrs = policy(v)
		}
		if phase == PhaseShuttingDown {
			// RFC 8326: the community for the routers that act on it,
			// and the lowest LOCAL_PREF for iBGP peers (as FRR's own
			// `bgp graceful-shutdown` does), which an iBGP router takes
			// as it is, with no policy.
			lowest := uint32(0)
			r.Attrs = r.Attrs.withCommunity(GracefulShutdown)
			r.Attrs.LocalPref = &lowest
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Route) int { return comparePrefix(a.Prefix, b.Prefix) })
	return slices.CompactFunc(out, func(a, b Route) bool { return a.Prefix == b.Prefix })
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// Config is what a new cluster configuration changes at run time.
type Config struct {
	Global        Global
	Peers         []Peer
	WithdrawDelay time.Duration
}

// Announcer keeps the advertised routes equal to Desired. Run must be
// called once; Advertised, Peers and Configure are safe for concurrent
// use.
type Announcer struct {
	o Options

	mu         sync.Mutex
	advertised []Route
	// shutdownSince is when this member began sending GRACEFUL_SHUTDOWN
	// (drain or stop); zero while it serves.
	shutdownSince time.Time
	// refused are the routes the speaker would not advertise, with why:
	// each costs that route only, and is retried.
	refused map[netip.Prefix]string
	phase   Phase
	// pending is the configuration Run is to take next (Configure).
	pending      *Config
	reconfigured chan struct{}
}

// NewAnnouncer checks o and returns an Announcer; it starts nothing.
func NewAnnouncer(o Options) (*Announcer, error) {
	if o.Speaker == nil || o.Serving == nil || o.VIPs == nil {
		return nil, errors.New("bgp: Speaker, Serving and VIPs are required")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Resync <= 0 {
		o.Resync = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Announcer{o: o, reconfigured: make(chan struct{}, 1)}, nil
}

// Configure has Run take c: the peers change without touching the
// other sessions, a new AS number restarts the speaker (its routes are
// then advertised again), and the withdraw delay applies to the next
// stop.
func (a *Announcer) Configure(c Config) {
	a.mu.Lock()
	a.pending = &c
	a.mu.Unlock()
	select {
	case a.reconfigured <- struct{}{}:
	default:
	}
}

// configure applies the pending configuration, from Run.
func (a *Announcer) configure(ctx context.Context) {
	a.mu.Lock()
	c := a.pending
	a.pending = nil
	if c != nil {
		a.o.WithdrawDelay = c.WithdrawDelay
	}
	a.mu.Unlock()
	if c == nil {
		return
	}
	restarted, err := a.o.Speaker.Configure(ctx, c.Global, c.Peers)
	if err != nil {
		a.o.Log.Error("taking the new BGP configuration", "err", err)
	}
	if restarted {
		a.o.Log.Info("BGP restarted for the new configuration", "asn", c.Global.ASN, "peers", len(c.Peers))
		a.mu.Lock()
		a.advertised = nil
		a.mu.Unlock()
	} else {
		a.o.Log.Info("BGP peers updated", "peers", len(c.Peers))
	}
}

// Advertised returns the routes advertised now, sorted.
func (a *Announcer) Advertised() []netip.Prefix {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]netip.Prefix, 0, len(a.advertised))
	for _, r := range a.advertised {
		out = append(out, r.Prefix)
	}
	return out
}

// Routes returns the routes advertised now with their attributes,
// sorted.
func (a *Announcer) Routes() []Route {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.advertised)
}

// Refused returns the routes the speaker refused to advertise at the
// last attempt, with why; they are retried, the others are unaffected.
func (a *Announcer) Refused() map[netip.Prefix]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.refused)
}

// Peers reports the sessions (Speaker.Peers).
func (a *Announcer) Peers() []PeerStatus { return a.o.Speaker.Peers() }

// Sync runs one pass: it withdraws what is advertised and no longer
// desired, then advertises what is missing or changed. It reports
// whether a change failed and must be retried.
func (a *Announcer) Sync() (retry bool) {
	retry, _ = a.sync(false)
	return retry
}

// sync runs one pass; stopping makes it shut down as a drain does. wake,
// when not zero, is when the phase changes without an event (the end of
// a graceful shutdown).
func (a *Announcer) sync(stopping bool) (retry bool, wake time.Time) {
	vips, loaded := a.o.VIPs.VIPs()
	if !loaded {
		vips = nil
	}
	serving := a.o.Serving.MayServe() && !stopping
	now := a.o.Now()
	a.mu.Lock()
	phase := PhaseWithdrawn
	switch {
	case serving:
		phase, a.shutdownSince = PhaseServing, time.Time{}
	case stopping || a.o.Serving.Draining():
		// Drain or stop: GRACEFUL_SHUTDOWN on the routes advertised,
		// for WithdrawDelay from the moment it began.
		if a.shutdownSince.IsZero() && len(a.advertised) > 0 {
			a.shutdownSince = now
		}
		if end := a.shutdownSince.Add(a.o.WithdrawDelay); !a.shutdownSince.IsZero() && now.Before(end) {
			phase, wake = PhaseShuttingDown, end
		}
	}
	had := a.advertised
	a.mu.Unlock()
	want := Desired(vips, a.o.Policy, phase)
	if phase == PhaseShuttingDown {
		// Only what was advertised: a VIP added meanwhile is not drawn
		// to a host that is going away.
		want = slices.DeleteFunc(want, func(r Route) bool {
			return !slices.ContainsFunc(had, func(h Route) bool { return h.Prefix == r.Prefix })
		})
	}
	return a.apply(want, phase), wake
}

// apply makes the advertised routes want; withdrawals go first.
func (a *Announcer) apply(want []Route, phase Phase) (retry bool) {
	a.mu.Lock()
	have := slices.Clone(a.advertised)
	if phase != a.phase {
		switch phase {
		case PhaseServing:
			a.o.Log.Info("serving: advertising the BGP VIPs", "vips", len(want))
		case PhaseShuttingDown:
			a.o.Log.Info("draining or stopping: sending GRACEFUL_SHUTDOWN on the BGP routes before withdrawing them", "vips", len(want), "for", a.o.WithdrawDelay)
		default:
			a.o.Log.Info("not serving (unhealthy, no quorum, draining or stopping): withdrawing the BGP VIPs", "vips", len(have))
		}
		a.phase = phase
	}
	a.mu.Unlock()
	inWant := func(p netip.Prefix) bool {
		return slices.ContainsFunc(want, func(r Route) bool { return r.Prefix == p })
	}
	var kept []Route
	for _, r := range have {
		if inWant(r.Prefix) {
			kept = append(kept, r)
			continue
		}
		if err := a.o.Speaker.Withdraw(r.Prefix); err != nil {
			a.o.Log.Error("withdrawing route", "vip", r.Prefix.Addr(), "err", err)
			kept, retry = append(kept, r), true
			continue
		}
		a.o.Log.Info("route withdrawn", "vip", r.Prefix.Addr())
	}
	a.mu.Lock()
	old := a.refused
	a.mu.Unlock()
	var refused map[netip.Prefix]string
	for _, r := range want {
		i := slices.IndexFunc(kept, func(k Route) bool { return k.Prefix == r.Prefix })
		if i >= 0 && kept[i].Attrs.Equal(r.Attrs) {
			continue
		}
		if err := a.o.Speaker.Advertise(r.Prefix, r.Attrs); err != nil {
			if old[r.Prefix] != err.Error() {
				a.o.Log.Error("the speaker refused a route; retrying, the other routes are unaffected", "vip", r.Prefix.Addr(), "err", err)
			}
			if refused == nil {
				refused = map[netip.Prefix]string{}
			}
			refused[r.Prefix] = err.Error()
			retry = true
			continue
		}
		a.o.Log.Info("route advertised", "vip", r.Prefix.Addr(), "attributes", r.Attrs.String())
		if i >= 0 {
			kept[i] = r
		} else {
			kept = append(kept, r)
		}
	}
	slices.SortFunc(kept, func(a, b Route) int { return comparePrefix(a.Prefix, b.Prefix) })
	a.mu.Lock()
	a.advertised = kept
	a.refused = refused
	a.mu.Unlock()
	return retry
}

// settle is the most a stop waits after withdrawing, before it closes
// the sessions: the routers that ignore GRACEFUL_SHUTDOWN take the
// withdrawal in well under it (about 0.1 s measured with FRR).
const settle = time.Second

// Run opens the sessions and keeps the routes up to date until ctx ends.
// Then it shuts down: it advertises its routes with GRACEFUL_SHUTDOWN,
// waits WithdrawDelay (counted from the start of a drain that was under
// way) so that the routers move new flows away while this host still
// forwards, withdraws every route, waits up to a second more for the
// routers that ignored the community, closes the sessions and returns
// nil. It returns an error if the speaker cannot start.
func (a *Announcer) Run(ctx context.Context) error {
	if err := a.o.Speaker.Start(ctx); err != nil {
		return fmt.Errorf("starting BGP: %w", err)
	}
	serving, vips := a.o.Serving.Subscribe(), a.o.VIPs.Subscribe()
	t := time.NewTicker(a.o.Resync)
	defer t.Stop()
	phase := time.NewTimer(time.Hour)
	defer phase.Stop()
	for ctx.Err() == nil {
		_, wake := a.sync(false)
		if !wake.IsZero() {
			phase.Reset(wake.Sub(a.o.Now()))
		}
		select {
		case <-ctx.Done():
		case <-serving:
		case <-vips:
		case <-t.C:
		case <-phase.C:
		case <-a.reconfigured:
			a.configure(ctx)
		}
	}
	if len(a.Routes()) > 0 {
		for {
			_, wake := a.sync(true)
			if wake.IsZero() {
				break
			}
			a.o.Log.Info("stopping: GRACEFUL_SHUTDOWN sent, withdrawing later", "in", wake.Sub(a.o.Now()).Round(time.Millisecond))
			time.Sleep(wake.Sub(a.o.Now()))
		}
		a.mu.Lock()
		delay := min(a.o.WithdrawDelay, settle)
		a.mu.Unlock()
		a.o.Log.Info("stopping: routes withdrawn, still forwarding", "for", delay)
		time.Sleep(delay)
	}
	if err := a.o.Speaker.Stop(); err != nil {
		a.o.Log.Warn("stopping BGP", "err", err)
	}
	return nil
}
