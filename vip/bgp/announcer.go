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
	// hop to every peer of its address family; Withdraw takes it back.
	Advertise(p netip.Prefix) error
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

// Options configures an Announcer.
type Options struct {
	Speaker Speaker
	Serving Serving
	VIPs    VIPSource
	// WithdrawDelay is how long Run waits, once it withdrew everything at
	// stop, before it closes the sessions and returns.
	WithdrawDelay time.Duration
	// Resync is how often Desired is recomputed without an event; 0
	// means a second.
	Resync time.Duration
	Log    *slog.Logger
}

// Desired is the advertisement rule: every VIP as a host route while
// this member may serve, nothing otherwise.
func Desired(vips []netip.Addr, serving bool) []netip.Prefix {
	if !serving {
		return nil
	}
	out := make([]netip.Prefix, 0, len(vips))
	for _, v := range vips {
		out = append(out, netip.PrefixFrom(v, v.BitLen()))
	}
	slices.SortFunc(out, comparePrefix)
	return slices.Compact(out)
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
	advertised []netip.Prefix
	// refused are the routes the speaker would not advertise, with why:
	// each costs that route only, and is retried.
	refused map[netip.Prefix]string
	serving bool
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
// desired, then advertises what is missing. It reports whether a change
// failed and must be retried.
func (a *Announcer) Sync() (retry bool) {
	vips, loaded := a.o.VIPs.VIPs()
	serving := a.o.Serving.MayServe()
	if !loaded {
		vips = nil
	}
	return a.apply(Desired(vips, serving), serving)
}

// apply makes the advertised routes want; withdrawals go first.
func (a *Announcer) apply(want []netip.Prefix, serving bool) (retry bool) {
	a.mu.Lock()
	have := slices.Clone(a.advertised)
	if serving != a.serving {
		if serving {
			a.o.Log.Info("serving: advertising the BGP VIPs", "vips", len(want))
		} else {
			a.o.Log.Info("not serving (unhealthy, no quorum, draining or stopping): withdrawing the BGP VIPs", "vips", len(have))
		}
		a.serving = serving
	}
	a.mu.Unlock()
	var kept []netip.Prefix
	for _, p := range have {
		if slices.Contains(want, p) {
			kept = append(kept, p)
			continue
		}
		if err := a.o.Speaker.Withdraw(p); err != nil {
			a.o.Log.Error("withdrawing route", "vip", p.Addr(), "err", err)
			kept, retry = append(kept, p), true
			continue
		}
		a.o.Log.Info("route withdrawn", "vip", p.Addr())
	}
	a.mu.Lock()
	old := a.refused
	a.mu.Unlock()
	var refused map[netip.Prefix]string
	for _, p := range want {
		if slices.Contains(kept, p) {
			continue
		}
		if err := a.o.Speaker.Advertise(p); err != nil {
			if old[p] != err.Error() {
				a.o.Log.Error("the speaker refused a route; retrying, the other routes are unaffected", "vip", p.Addr(), "err", err)
			}
			if refused == nil {
				refused = map[netip.Prefix]string{}
			}
			refused[p] = err.Error()
			retry = true
			continue
		}
		a.o.Log.Info("route advertised", "vip", p.Addr())
		kept = append(kept, p)
	}
	slices.SortFunc(kept, comparePrefix)
	a.mu.Lock()
	a.advertised = kept
	a.refused = refused
	a.mu.Unlock()
	return retry
}

// Run opens the sessions and keeps the routes up to date until ctx ends;
// then it withdraws every route, waits WithdrawDelay so that the routers
// move new flows away while this host still forwards, closes the
// sessions and returns nil. It returns an error if the speaker cannot
// start.
func (a *Announcer) Run(ctx context.Context) error {
	if err := a.o.Speaker.Start(ctx); err != nil {
		return fmt.Errorf("starting BGP: %w", err)
	}
	serving, vips := a.o.Serving.Subscribe(), a.o.VIPs.Subscribe()
	t := time.NewTicker(a.o.Resync)
	defer t.Stop()
	for ctx.Err() == nil {
		a.Sync()
		select {
		case <-ctx.Done():
		case <-serving:
		case <-vips:
		case <-t.C:
		case <-a.reconfigured:
			a.configure(ctx)
		}
	}
	if len(a.Advertised()) > 0 {
		a.apply(nil, false)
		a.mu.Lock()
		delay := a.o.WithdrawDelay
		a.mu.Unlock()
		a.o.Log.Info("stopping: routes withdrawn, still forwarding", "for", delay)
		time.Sleep(delay)
	}
	if err := a.o.Speaker.Stop(); err != nil {
		a.o.Log.Warn("stopping BGP", "err", err)
	}
	return nil
}
