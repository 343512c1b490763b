package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/edgelb/edgelb/lb/notify"
)

// VIPSource is where the cluster learns which VIPs exist (the app adapts
// the desired-state store to it). VIPs returns them sorted, and loaded
// false until a first desired state exists; Subscribe's channel receives
// a value whenever they may have changed, and may start signalled
// (lb.Store's does): Run reads the VIPs at every pass, so an extra wake is
// harmless.
type VIPSource interface {
	VIPs() (vips []netip.Addr, loaded bool)
	Subscribe() <-chan struct{}
}

// ConfigSource is the configuration version this member runs, for its
// Meta: Subscribe's channel receives a value whenever it may have
// changed.
type ConfigSource interface {
	Version() uint64
	Subscribe() <-chan struct{}
	Unsubscribe(ch <-chan struct{})
}

// ConfigIdentity is implemented by a ConfigSource that names its version
// exactly (number and hash, as Doc.ID does, the hash possibly
// shortened): Meta.ConfigID, which the dashboard's sync badge compares.
type ConfigIdentity interface {
	ID() string
}

// Options configures a Cluster; the app fills it from the config file.
type Options struct {
	// Name is this member's unique name (node.name).
	Name string
	// BindAddr and BindPort are where gossip listens (UDP and TCP).
	BindAddr netip.Addr
	BindPort uint16
	// Join lists the configured peers, host or host:port; it may include
	// this member.
	Join []string
	// SecretKey is the AES gossip key (16, 24 or 32 bytes). Empty is only
	// accepted together with Insecure.
	SecretKey []byte
	// Insecure runs gossip without encryption: the member then takes only
	// membership, health and ownership from its peers, and neither sends
	// nor takes configuration versions or drain requests (insecure.go).
	Insecure bool
	// Quorum is the number of live members (this one included) needed to
	// own VIPs; 0 means a majority of Join ∪ {this member}.
	Quorum int
	// Failure detection, see memberlist.Config and docs/failover.md.
	ProbeInterval  time.Duration
	ProbeTimeout   time.Duration
	SuspicionMult  int
	GossipInterval time.Duration
	// Heartbeat is the fast failure detection next to memberlist's
	// (heartbeat.go).
	Heartbeat HeartbeatOptions
	// HandoverTimeout bounds how long a draining member keeps a VIP while
	// waiting for the next owner to confirm it holds it.
	HandoverTimeout time.Duration
	// RejoinInterval is how often configured peers that are not members
	// are contacted again (after a partition or their restart).
	RejoinInterval time.Duration
	// RestartHold bounds a graceful restart (see ErrRestart and Adopt):
	// it is the lifetime of this member's VIP addresses, how long the
	// others keep a member that left for a restart as a candidate owner,
	// and the longest start-up grace of a process that adopted VIPs.
	RestartHold time.Duration
	// Now is the clock; nil means time.Now. Tests step it.
	Now func() time.Time
	// VIPs is the source of the VIPs to assign.
	VIPs VIPSource
	// Log receives the cluster's and memberlist's messages.
	Log *slog.Logger
	// Transport replaces memberlist's UDP/TCP transport; tests use
	// memberlist.MockNetwork.
	Transport memberlist.Transport
	// Config, when set, is the configuration whose version is gossiped
	// in Meta (the dashboard's sync badge), again whenever it changes.
	// The cluster does not replicate it: the consensus log does, over
	// Messages and SendTo.
	Config ConfigSource
	// Voters, when set, returns the gossip addresses (ip:port) of the
	// configured members, the consensus log's: only they count towards
	// the quorum (Input.Voters). Empty: Join ∪ {self}, by number.
	Voters func() []string
	// Messages, when set, is offered every message a peer sends on
	// memberlist's user channel before the cluster's own; it reports
	// whether it took the message (the consensus log's traffic). An
	// insecure member never offers it one: configuration is not taken
	// from unauthenticated peers (insecure.go).
	Messages func(b []byte) bool
	// Witness makes this member a witness (`edgelb witness`): it gossips
	// Meta.Witness, counts towards the quorum like any configured member
	// and is never assigned a VIP. Its health sources are ignored: a
	// witness is never healthy, having nothing to serve with.
	Witness bool
	// catchUpAfter replaces catchUpLoop's delay (tests; 0: two
	// heartbeat intervals).
	catchUpAfter time.Duration
}

// Defaults for the Options that have no config key.
const (
	DefaultHandoverTimeout = 3 * time.Second
	DefaultRejoinInterval  = 2 * time.Second
	// The failure-detection defaults are those of the config file
	// (lb/config), for Options left zero.
	DefaultProbeInterval  = 200 * time.Millisecond
	DefaultProbeTimeout   = 100 * time.Millisecond
	DefaultSuspicionMult  = 2
	DefaultGossipInterval = 100 * time.Millisecond
	DefaultRestartHold    = 10 * time.Second
	// tick is how often ownership is re-evaluated without an event, for
	// handover deadlines.
	tick = 100 * time.Millisecond
	// leaveTimeout bounds the wait for our leave message to go out.
	leaveTimeout = time.Second
)

// Cluster is this member's view of the appliance cluster. Its methods are
// safe for concurrent use; Run must be called once.
type Cluster struct {
	opts    Options
	log     *slog.Logger
	keyring *memberlist.Keyring // nil when Insecure
	size    int                 // configured cluster size: Join ∪ {self}
	// voters is the last update's Input.Voters (nil: none given).
	voters map[netip.AddrPort]bool
	dirty  chan struct{}
	// metaDirty tells the gossipMeta goroutine to broadcast our metadata.
	metaDirty chan struct{}

	// ml is the running memberlist, nil outside Run.
	ml atomic.Pointer[memberlist.Memberlist]
	// view is the live members as memberlist's events reported them
	// (view.go); nothing reads memberlist's own Node structs.
	view peerTable

	mu     sync.Mutex
	health map[string]error // by source; healthy when all are nil
	// facts and unapplied are gossiped in Meta (SetFacts, SetUnapplied).
	facts     []byte
	unapplied uint64
	// dataPathFailing: this host's data path fails (SetDataPathFailing).
	dataPathFailing bool
	draining        bool
	leaving         bool
	held            []netip.Addr
	heldOwned       Digest                   // the last Decision's
	losing          map[netip.Addr]time.Time // the last Decision's
	networks        []netip.Prefix
	// refusedVIPs are the VIPs this host's kernel would not add
	// (SetRefused); refusedOverflow: too many to gossip, so the member is
	// unhealthy.
	refusedVIPs     []netip.Addr
	refusedOverflow bool
	// stale: the last update's view was not yet confirmed by the peers
	// (fresh.go).
	stale     bool
	owned     []netip.Addr // assigned to us: hold and announce
	handing   []netip.Addr // assigned elsewhere, kept until taken over
	members   []Member
	assigned  map[netip.Addr]string
	hasQuorum bool
	changed   notify.Broadcaster
	sentMeta  string // the Meta last gossiped, encoded
	// warnedDrop: the networks did not all fit in the gossiped Meta.
	warnedDrop bool
	// gave is this member's Meta.Gave; peerGave the others' as last
	// seen; epoch is AnnounceEpoch, bumped when a peer's Gave changes.
	gave     uint32
	peerGave map[string]uint32
	epoch    uint64
	restart  restartState
	fresh    freshState
	// agree compares the heartbeats' owner versions with this member's
	// (viewcheck.go); catchUp wakes catchUpLoop when a disagreement
	// begins.
	agree   viewCheck
	catchUp chan struct{}
	// ownerVersion is Meta.OwnerVersion, numbering ownerDigest of the
	// Meta last gossiped or decided from (viewcheck.go).
	ownerVersion uint64
	ownerDigest  uint64
	// hb sends and receives heartbeats, nil when they are off (set in
	// Run before memberlist starts, read by update).
	hb atomic.Pointer[heartbeater]
	// hbPort is the heartbeat port gossiped in Meta, 0 when off.
	hbPort atomic.Uint32
	// refused are the kinds of peer messages refused and logged
	// (insecure.go).
	refused map[string]bool
}

// New checks opts and returns a Cluster; it starts nothing.
func New(opts Options) (*Cluster, error) {
	if opts.Name == "" {
		return nil, errors.New("cluster: a member name is required")
	}
	if len(opts.SecretKey) == 0 && !opts.Insecure {
		return nil, errors.New("cluster: gossip must be encrypted: a secret key is required unless insecure is set")
	}
	var keyring *memberlist.Keyring
	if len(opts.SecretKey) > 0 {
		kr, err := memberlist.NewKeyring(nil, opts.SecretKey)
		if err != nil {
			return nil, fmt.Errorf("cluster: the gossip key cannot be used: %w", err)
		}
		keyring = kr
	}
	if opts.VIPs == nil {
		return nil, errors.New("cluster: a VIP source is required")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.HandoverTimeout <= 0 {
		opts.HandoverTimeout = DefaultHandoverTimeout
	}
	if opts.RejoinInterval <= 0 {
		opts.RejoinInterval = DefaultRejoinInterval
	}
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = DefaultProbeInterval
	}
	if opts.ProbeTimeout <= 0 {
		opts.ProbeTimeout = DefaultProbeTimeout
	}
	if opts.SuspicionMult <= 0 {
		opts.SuspicionMult = DefaultSuspicionMult
	}
	if opts.GossipInterval <= 0 {
		opts.GossipInterval = DefaultGossipInterval
	}
	if opts.RestartHold <= 0 {
		opts.RestartHold = DefaultRestartHold
	}
	if opts.Heartbeat.Interval <= 0 {
		opts.Heartbeat.Interval = DefaultHeartbeatInterval
	}
	if opts.Heartbeat.Multiplier <= 0 {
		opts.Heartbeat.Multiplier = DefaultHeartbeatMultiplier
	}
	if opts.Heartbeat.Port == 0 && opts.BindPort < 65535 {
		opts.Heartbeat.Port = opts.BindPort + 1
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &Cluster{
		opts:      opts,
		keyring:   keyring,
		log:       opts.Log,
		dirty:     make(chan struct{}, 1),
		metaDirty: make(chan struct{}, 1),
		health:    map[string]error{},
		gave:      rand.Uint32(),
		peerGave:  map[string]uint32{},
		restart:   restartState{absent: map[string]absentMember{}},
		fresh:     freshState{heard: map[string]heardFrom{}},
		agree:     viewCheck{since: map[string]time.Time{}, unheard: map[string]time.Time{}, warnedUnheard: map[string]bool{}},
		catchUp:   make(chan struct{}, 1),
	}
	c.size = clusterSize(opts)
	return c, nil
}

// Size is the configured cluster size: the distinct configured peers
// plus this member.
func (o Options) Size() int { return clusterSize(o) }

// QuorumWarning says what the configured quorum costs, or "" when it is a
// majority of three or more. The default quorum of a two-host cluster is
// both hosts: losing, stopping or restarting either stops both; the way
// out that keeps one owner per VIP is a witness (`edgelb witness` on a
// third machine, listed in cluster.join), the third voter.
func (o Options) QuorumWarning() string {
	n, q := o.Size(), NeedFor(o.Size(), o.Quorum)
	switch {
	case n == 2 && o.Quorum == 0:
		return "a cluster of two hosts needs both for its default quorum: losing, stopping or restarting either one leaves no VIP served " +
			"and the configuration unchangeable; run `edgelb witness` on a third machine and list it in cluster.join " +
			"(a pair with a witness keeps serving with either host and gives a VIP to at most the side of a partition the witness is on)"
	case n == 2 && q == 1:
		return "cluster.quorum 1 in a cluster of two hosts: each host serves alone, and a partition between them gives every VIP two owners; " +
			"run `edgelb witness` on a third machine, list it in cluster.join and leave cluster.quorum unset instead"
	case q <= n/2:
		return fmt.Sprintf("cluster.quorum %d is not a majority of the %d configured hosts: both sides of a partition can own the same VIP", q, n)
	}
	return ""
}

// clusterSize counts the distinct configured peers plus this member.
func clusterSize(o Options) int {
	seen := map[string]bool{}
	for _, j := range o.Join {
		host, port := j, strconv.Itoa(int(o.BindPort))
		if h, p, err := net.SplitHostPort(j); err == nil {
			host, port = h, p
		}
		if a, err := netip.ParseAddr(host); err == nil {
			host = a.Unmap().String()
		}
		if port == strconv.Itoa(int(o.BindPort)) && (host == o.Name || (o.BindAddr.IsValid() && host == o.BindAddr.Unmap().String())) {
			continue
		}
		seen[net.JoinHostPort(host, port)] = true
	}
	return len(seen) + 1
}

// Quorum returns the number of live members needed to own VIPs now.
func (c *Cluster) Quorum() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.quorumLocked()
}

// quorumLocked is the number of live members needed (NeedFor). c.mu
// must be held.
func (c *Cluster) quorumLocked() int {
	if len(c.voters) > 0 {
		return NeedFor(len(c.voters), c.opts.Quorum)
	}
	return NeedFor(c.size, c.opts.Quorum)
}

// configuredVoters parses Options.Voters; nil without any.
func (c *Cluster) configuredVoters() map[netip.AddrPort]bool {
	if c.opts.Voters == nil {
		return nil
	}
	var out map[netip.AddrPort]bool
	for _, v := range c.opts.Voters() {
		ap, err := netip.ParseAddrPort(v)
		if err != nil {
			// A member the log knows by ID only: counting the others
			// would shrink the quorum; count the configured size.
			return nil
		}
		if out == nil {
			out = map[netip.AddrPort]bool{}
		}
		out[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())] = true
	}
	return out
}

// LinkHealth is the health source of the VIP interface's link (the VIP
// manager reports it): when it comes back, the membership view is stale
// until the peers confirm it (fresh.go).
const LinkHealth = "link"

// SetHealth records the health of one part of this host (for example
// "link" or "dataplane"); err nil means healthy. The member is healthy
// when every part is, and only a healthy member owns VIPs.
func (c *Cluster) SetHealth(source string, err error) {
	c.mu.Lock()
	old, had := c.health[source]
	c.health[source] = err
	changed := !had || (old == nil) != (err == nil)
	if source == LinkHealth && had && old != nil && err == nil {
		// Cut off meanwhile: the others may have marked this member
		// failed while it still counts them.
		c.staleLocked(c.opts.Now(), "link back")
	}
	c.mu.Unlock()
	if changed {
		if err != nil {
			c.log.Warn("member unhealthy", "node", c.opts.Name, "source", source, "err", err)
		} else if had {
			c.log.Info("member healthy again", "node", c.opts.Name, "source", source)
		}
		c.kick()
	}
}

// SetFacts records this member's host-local facts, gossiped in Meta
// (lb/config.Facts, encoded; nil: none).
func (c *Cluster) SetFacts(b []byte) {
	c.mu.Lock()
	c.facts = slices.Clone(b)
	c.mu.Unlock()
	c.kick()
}

// SetDataPathFailing records whether this host's data path fails,
// gossiped in Meta (vip/datapath reports it).
func (c *Cluster) SetDataPathFailing(b bool) {
	c.mu.Lock()
	changed := c.dataPathFailing != b
	c.dataPathFailing = b
	c.mu.Unlock()
	if hb := c.hb.Load(); hb != nil {
		hb.setPathFailing(b)
	}
	if changed {
		c.kick()
	}
}

// PeerPathFailing reports whether the member named name says its data
// path fails, in its last heartbeat (false without heartbeats): fresher
// than its Meta's DataPathFailing, which gossip may bring rounds later on
// a loaded host.
func (c *Cluster) PeerPathFailing(name string) bool {
	hb := c.hb.Load()
	return hb != nil && hb.peerPathFails(name)
}

// SetUnapplied records the committed configuration version this member
// cannot apply (0: none), gossiped in Meta. It does not make the member
// unhealthy by itself: the app reports that as a health source.
func (c *Cluster) SetUnapplied(v uint64) {
	c.mu.Lock()
	c.unapplied = v
	c.mu.Unlock()
	c.kick()
}

// SetHeld records the VIPs this host holds (configured and announced).
func (c *Cluster) SetHeld(vips []netip.Addr) {
	vips = slices.Clone(vips)
	slices.SortFunc(vips, netip.Addr.Compare)
	c.mu.Lock()
	changed := !slices.Equal(c.held, vips)
	c.held = vips
	c.mu.Unlock()
	if changed {
		c.kick()
	}
}

// SetRefused records the VIPs this host's kernel would not add: they are
// gossiped, every member leaves this one out when assigning them, and it
// stays eligible for every other VIP.
func (c *Cluster) SetRefused(vips []netip.Addr) {
	vips = slices.Clone(vips)
	slices.SortFunc(vips, netip.Addr.Compare)
	c.mu.Lock()
	changed := !slices.Equal(c.refusedVIPs, vips)
	c.refusedVIPs = vips
	c.mu.Unlock()
	if changed {
		c.kick()
	}
}

// OwnedElsewhere reports whether another member owns v in this member's
// view.
func (c *Cluster) OwnedElsewhere(v netip.Addr) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	o, ok := c.assigned[v]
	return ok && o != c.opts.Name
}

// SetNetworks records the networks this host can announce VIPs on.
func (c *Cluster) SetNetworks(p []netip.Prefix) {
	p = slices.Clone(p)
	slices.SortFunc(p, func(a, b netip.Prefix) int {
		if r := a.Addr().Compare(b.Addr()); r != 0 {
			return r
		}
		return a.Bits() - b.Bits()
	})
	c.mu.Lock()
	changed := !slices.Equal(c.networks, p)
	c.networks = p
	c.mu.Unlock()
	if changed {
		c.kick()
	}
}

// Drain hands this member's VIPs over to the others and keeps it from
// owning any until Undrain. It returns at once; the handover follows.
func (c *Cluster) Drain() {
	c.mu.Lock()
	was := c.draining
	if !was {
		c.draining = true
	}
	c.mu.Unlock()
	if !was {
		c.log.Info("draining", "node", c.opts.Name)
		c.kick()
	}
}

// Undrain lets this member own VIPs again.
func (c *Cluster) Undrain() {
	c.mu.Lock()
	was := c.draining
	c.draining = false
	c.mu.Unlock()
	if was {
		c.log.Info("undrained", "node", c.opts.Name)
		c.kick()
	}
}

// Draining reports whether this member is draining.
func (c *Cluster) Draining() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.draining
}

// Members returns the live members as last seen, sorted by name, this one
// included with its current metadata.
func (c *Cluster) Members() []Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.members)
}

// Owners returns the owner of every VIP as this member sees it (the REST
// API shows it); it is empty while this member has no quorum.
func (c *Cluster) Owners() map[netip.Addr]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.assigned)
}

// ViewSettled reports whether this member's view is confirmed by its
// peers (fresh.go) and has a quorum: only then is Owners what every
// member sees. A member that just started may name itself owner of VIPs
// it will never hold.
func (c *Cluster) ViewSettled() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hasQuorum && !c.stale
}

// HasQuorum reports whether this member sees a quorum.
func (c *Cluster) HasQuorum() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hasQuorum
}

// MayServe reports whether this member may serve the VIPs every member
// serves at once (announced over BGP): it is healthy, sees a quorum, and
// is neither draining nor stopping. Subscribe's channel is signalled
// when it may have changed.
func (c *Cluster) MayServe() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hasQuorum && c.healthyLocked() && !c.refusedOverflow && !c.draining && !c.leaving
}

// Problem says why this member is unhealthy, or "" when it is healthy.
func (c *Cluster) Problem() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for src, err := range c.health {
		if err != nil {
			out = append(out, src+": "+err.Error())
		}
	}
	if c.refusedOverflow {
		out = append(out, fmt.Sprintf("vips: %d refused VIPs are too many to gossip", len(c.refusedVIPs)))
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

// Owned returns the VIPs this member should hold now, sorted: own, the
// VIPs assigned to it, to hold and announce; and handover, VIPs assigned
// to another member that it keeps, without announcing them, until that
// member has taken them over.
func (c *Cluster) Owned() (own, handover []netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.owned), slices.Clone(c.handing)
}

// Subscribe returns a new channel that receives a value whenever Owned or
// the membership view (members and their metadata) changes. Notifications
// coalesce, like lb.Store's, and the channel starts signalled (see package
// notify): the consumer's first pass reads the view as it is, possibly
// before the first update.
func (c *Cluster) Subscribe() <-chan struct{} { return c.changed.Subscribe() }

// Unsubscribe stops signalling ch, a channel Subscribe returned.
func (c *Cluster) Unsubscribe(ch <-chan struct{}) { c.changed.Unsubscribe(ch) }

func (c *Cluster) kick() {
	select {
	case c.dirty <- struct{}{}:
	default:
	}
}

// localMetaLocked is this member's metadata now. c.mu must be held.
func (c *Cluster) localMetaLocked() Meta {
	m := Meta{Healthy: c.healthyLocked(), Witness: c.opts.Witness, Draining: c.draining, Leaving: c.leaving, Networks: c.networks, Held: c.heldOwned, Gave: c.gave,
		Refused: c.refusedVIPs}
	if c.opts.Config != nil {
		m.ConfigVersion = c.opts.Config.Version()
		if id, ok := c.opts.Config.(ConfigIdentity); ok {
			m.ConfigID = id.ID()
		}
	}
	m.Facts, m.Unapplied, m.DataPathFailing = c.facts, c.unapplied, c.dataPathFailing
	m.HeartbeatPort = uint16(c.hbPort.Load())
	if c.restart.leaving || c.restart.grace {
		m.Restarting, m.RestartHold = true, c.opts.RestartHold
	}
	return c.bumpOwnerVersionLocked(m)
}

// healthyLocked reports whether every health source is healthy. c.mu
// must be held.
func (c *Cluster) healthyLocked() bool {
	if c.opts.Witness {
		return false // nothing to serve with
	}
	for _, err := range c.health {
		if err != nil {
			return false
		}
	}
	return true
}

// Run joins the cluster and keeps this member's ownership up to date until
// ctx ends; then it hands its VIPs over (bounded by HandoverTimeout),
// leaves the cluster and returns nil. When ctx was cancelled with the
// cause ErrRestart it hands nothing over: it gossips Restarting, waits at
// most a second for that to go out, leaves and returns, and Owned keeps
// reporting the VIPs it owned. It returns an error if gossip cannot start.
func (c *Cluster) Run(ctx context.Context) error {
	c.view.reset()
	hbCtx, stopHB := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHB()
	hbDone := make(chan struct{})
	if hb := c.newHeartbeater(); hb != nil {
		c.hb.Store(hb)
		go func() {
			defer close(hbDone)
			hb.Run(hbCtx)
		}()
	} else {
		close(hbDone)
	}
	defer func() {
		stopHB()
		<-hbDone
		c.hb.Store(nil)
		c.hbPort.Store(0)
	}()
	ml, err := memberlist.Create(c.memberlistConfig())
	if err != nil {
		return fmt.Errorf("starting gossip on %s: %w", netip.AddrPortFrom(c.opts.BindAddr, c.opts.BindPort), err)
	}
	self, _ := c.view.get(c.opts.Name) // memberlist reported this member joined in Create
	c.log.Info("gossip started", "node", c.opts.Name, "addr", self.address(),
		"encrypted", c.keyring != nil, "quorum", c.Quorum())
	c.ml.Store(ml)
	defer c.ml.Store(nil)

	joinCtx, stopJoin := context.WithCancel(ctx)
	joined := make(chan struct{})
	go func() {
		defer close(joined)
		c.joinLoop(joinCtx, ml)
	}()
	c.mu.Lock()
	c.staleLocked(c.opts.Now(), "start")
	c.mu.Unlock()
	refreshed := make(chan struct{})
	go func() {
		defer close(refreshed)
		c.refreshLoop(joinCtx, ml)
	}()
	caughtUp := make(chan struct{})
	go func() {
		defer close(caughtUp)
		c.catchUpLoop(joinCtx, ml)
	}()
	metaCtx, stopMeta := context.WithCancel(context.WithoutCancel(ctx))
	metaDone := make(chan struct{})
	go func() {
		defer close(metaDone)
		c.gossipMeta(metaCtx, ml)
	}()
	configDone := make(chan struct{})
	go func() {
		defer close(configDone)
		c.followConfig(joinCtx)
	}()

	vipCh := c.opts.VIPs.Subscribe()
	t := time.NewTicker(tick)
	defer t.Stop()
	for ctx.Err() == nil {
		c.update()
		select {
		case <-ctx.Done():
		case <-c.dirty:
		case <-vipCh:
		case <-t.C:
		}
	}
	stopJoin()
	restart := errors.Is(context.Cause(ctx), ErrRestart)
	if !restart {
		c.handover(t.C)
	}
	stopMeta()
	<-metaDone
	// Tell the others this is a planned leave, not a failure; for a
	// restart, that this member keeps its VIPs and comes back.
	c.mu.Lock()
	c.leaving = true
	c.restart.leaving = restart
	owned := slices.Concat(c.owned, c.handing)
	c.mu.Unlock()
	if restart {
		c.log.Info("restarting: keeping the VIPs and leaving the cluster", "node", c.opts.Name, "vips", owned, "restartHold", c.opts.RestartHold)
	}
	if err := ml.UpdateNode(leaveTimeout); err != nil {
		c.log.Debug("gossiping metadata", "err", err)
	}
	if err := ml.Leave(leaveTimeout); err != nil {
		c.log.Debug("leaving the cluster", "err", err)
	}
	if err := ml.Shutdown(); err != nil {
		c.log.Warn("stopping gossip", "err", err)
	}
	<-joined
	<-refreshed
	<-caughtUp
	<-configDone
	c.log.Info("left the cluster", "node", c.opts.Name)
	return nil
}

// handover drains this member and waits until it holds no VIP, or for
// HandoverTimeout and a little more if the VIP manager does not confirm.
func (c *Cluster) handover(tc <-chan time.Time) {
	c.Drain()
	deadline := c.opts.Now().Add(c.opts.HandoverTimeout + time.Second)
	for {
		c.update()
		c.mu.Lock()
		done := len(c.owned) == 0 && len(c.handing) == 0 && len(c.held) == 0
		c.mu.Unlock()
		if done {
			return
		}
		if c.opts.Now().After(deadline) {
			c.log.Warn("handover incomplete, leaving anyway", "node", c.opts.Name)
			return
		}
		select {
		case <-c.dirty:
		case <-tc:
		}
	}
}

// update recomputes the view and ownership (Decide) and gossips changed
// metadata.
func (c *Cluster) update() {
	vips, loaded := c.opts.VIPs.VIPs()
	nodes := c.view.list()
	now := c.opts.Now()
	voters := c.configuredVoters()

	c.mu.Lock()
	c.voters = voters
	members := make([]Member, 0, len(nodes))
	for _, n := range nodes {
		m := Member{Name: n.Name, Addr: n.Addr}
		if n.Name != c.opts.Name { // our own Meta is set below
			m.Meta = n.Meta
		}
		members = append(members, m)
	}
	var targets []hbTarget
	hb := c.hb.Load()
	verdict := &hbVerdict{}
	if hb != nil {
		verdict = hb.last()
	}
	for i := range members {
		m := &members[i]
		if m.Name == c.opts.Name || m.HeartbeatPort == 0 || !m.Addr.IsValid() {
			continue
		}
		targets = append(targets, hbTarget{Name: m.Name, Addr: netip.AddrPortFrom(m.Addr.Addr(), m.HeartbeatPort)})
		// A member restarting gracefully is held by the restart rules
		// (restart.go) while its process is away: its silence is expected
		// and moves nothing.
		m.Silent = !m.Restarting && slices.Contains(verdict.Silent, m.Name)
		m.Unheard = slices.Contains(verdict.Unheard, m.Name)
	}
	if hb != nil {
		hb.setTargets(targets)
	}
	members = c.absentLocked(members, now)
	sort.Slice(members, func(i, j int) bool { return members[i].Name < members[j].Name })
	live := 0
	for _, m := range members {
		if counts(&m, voters) {
			live++
		}
	}
	c.endGraceLocked(live >= c.quorumLocked(), loaded, now)
	// Decide from our metadata as the others decode it, so that every
	// member computes the owners from the same data.
	local := c.localMetaLocked()
	seen, dropped := gossipedMeta(local)
	if dropped > 0 && !c.warnedDrop {
		c.log.Warn("too many networks on the interface to gossip: the last ones are left out, for every member alike",
			"node", c.opts.Name, "dropped", dropped, "networks", len(local.Networks))
	}
	c.warnedDrop = dropped > 0
	if overflow := local.Healthy && !seen.Healthy; overflow != c.refusedOverflow {
		if overflow {
			c.log.Warn("too many refused VIPs to gossip: this member owns no VIP until fewer are refused", "node", c.opts.Name, "refused", len(local.Refused))
		}
		c.refusedOverflow = overflow
	}
	for i := range members {
		if members[i].Name == c.opts.Name {
			members[i].Meta = seen
		}
	}
	if live < c.quorumLocked() {
		// Whatever view this member has when it regains a quorum (a
		// partition heals, peers start) must be confirmed first.
		c.staleLocked(now, "no quorum")
	}
	fresh := c.freshLocked(members, now)
	// A peer whose heartbeats say its copy of the metadata and ours
	// differ may compute other owners (viewcheck.go).
	versions, disagree := c.disagreeLocked(members, seen, now)
	in := Input{Self: c.opts.Name, Members: members, Size: c.size, Quorum: c.opts.Quorum, Voters: voters, VIPs: vips, Held: c.held,
		Losing: c.losing, Now: now, HandoverTimeout: c.opts.HandoverTimeout, Stale: !fresh || len(disagree) > 0}
	if c.restart.grace {
		in.Adopted = c.restart.adopted
	}
	c.stale = in.Stale
	d := Decide(in)
	if d.HasQuorum != c.hasQuorum {
		if d.HasQuorum {
			c.log.Info("quorum reached", "node", c.opts.Name, "members", d.Live, "quorum", d.Need)
		} else {
			c.log.Warn("quorum lost, giving up VIPs", "node", c.opts.Name, "members", d.Live, "quorum", d.Need)
		}
		c.hasQuorum = d.HasQuorum
	}
	c.heldOwned, c.losing = d.HeldOwned, d.Losing
	changed := !slices.Equal(d.Own, c.owned) || !slices.Equal(d.Handover, c.handing)
	if changed {
		c.log.Info("ownership changed", "node", c.opts.Name, "owned", d.Own, "handingOver", d.Handover, "members", len(members))
		for _, v := range slices.Concat(c.owned, c.handing) {
			if !slices.Contains(d.Own, v) && !slices.Contains(d.Handover, v) {
				c.gave++ // let go: the owners announce theirs again
				break
			}
		}
		c.owned, c.handing = d.Own, d.Handover
	}
	if hb != nil && versions != nil {
		hb.setVersions(versions)
	}
	if c.peersGaveLocked(members) {
		changed = true
	}
	if changed || !sameView(members, c.members) {
		c.changed.Notify()
	}
	c.members = members
	c.assigned = nil
	if d.HasQuorum {
		c.assigned = d.Assigned
	}
	enc := string(encodeMeta(c.localMetaLocked(), memberlist.MetaMaxSize))
	send := enc != c.sentMeta
	c.sentMeta = enc
	c.mu.Unlock()

	if send {
		select {
		case c.metaDirty <- struct{}{}:
		default:
		}
	}
}

// peersGaveLocked records the peers' Gave and bumps the AnnounceEpoch
// when a known peer's changed: it let go of VIPs it may have announced,
// some of which this member may own. c.mu must be held.
func (c *Cluster) peersGaveLocked(members []Member) bool {
	bump := false
	for _, m := range members {
		if m.Name == c.opts.Name || m.Absent {
			continue
		}
		if old, ok := c.peerGave[m.Name]; ok && old != m.Gave {
			bump = true
		}
		c.peerGave[m.Name] = m.Gave
	}
	if bump {
		c.epoch++
	}
	return bump
}

// AnnounceEpoch changes whenever a peer let go of VIPs it held, so that
// the owners of VIPs it may have announced announce them again (the VIP
// manager's Ownership).
func (c *Cluster) AnnounceEpoch() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch
}

// sameView reports whether two sorted views have the same members with
// the same metadata.
func sameView(a, b []Member) bool {
	return slices.EqualFunc(a, b, func(x, y Member) bool {
		return x.Name == y.Name && x.Addr == y.Addr && x.Absent == y.Absent && x.Silent == y.Silent && x.Unheard == y.Unheard && x.Healthy == y.Healthy && x.Draining == y.Draining &&
			x.Leaving == y.Leaving && x.Restarting == y.Restarting && x.Held == y.Held && x.Gave == y.Gave && slices.Equal(x.Networks, y.Networks)
	})
}

// gossipMeta broadcasts this member's metadata each time it changes.
// UpdateNode takes the metadata (NodeMeta), puts it in this member's own
// state at once — a push/pull sends it from then on — and queues its
// broadcast, then waits until the broadcast has been sent as often as
// memberlist sends one (two gossip rounds or more) or for the timeout. It
// is not waited for: a later change would wait behind it, and a burst of
// changes at start held the news that a host became healthy back for
// hundreds of milliseconds while the others assigned VIPs without it (the
// crash benchmark's two owners, viewcheck.go). A newer broadcast of the
// same member replaces an older one still queued, so the peers get the
// latest. It runs apart from the ownership loop, one call at a time, so
// that a newer metadata never goes out under an older incarnation.
func (c *Cluster) gossipMeta(ctx context.Context, ml *memberlist.Memberlist) {
	meta := func() []byte { return (*delegate)(c).NodeMeta(memberlist.MetaMaxSize) }
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.metaDirty:
		}
		publishMeta(ctx, ml, meta, metaRetry)
	}
}

// metaRetry is how soon an update of the metadata that memberlist dropped
// is made again.
const metaRetry = 10 * time.Millisecond

// metaPublisher is the part of memberlist that publishes this member's
// metadata.
type metaPublisher interface {
	UpdateNode(timeout time.Duration) error
	LocalNode() *memberlist.Node
}

// publishMeta has memberlist take the current metadata (meta), and again
// every retry until its own state holds it or ctx ends. memberlist drops
// an update silently when a refutation raised this member's incarnation
// meanwhile (UpdateNode numbered its message before the refutation did:
// it is older, and aliveNode ignores it): the state keeps the metadata
// the refutation carried, every push/pull sends that, and the peers'
// copies stay behind what the heartbeats say for good (TestKillEdgelb:
// after a restart, two hosts took no VIP for 15 s, disagreeing). Each
// attempt takes the metadata anew: a newer one replaces what was lost.
func publishMeta(ctx context.Context, ml metaPublisher, meta func() []byte, retry time.Duration) {
	for {
		// A zero timeout would wait for the broadcast without bound.
		_ = ml.UpdateNode(time.Microsecond)
		if bytes.Equal(ml.LocalNode().Meta, meta()) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
	}
}

// joinLoop joins the configured peers that are not live members, at
// start and again after a partition heals or a peer restarts. Attempts
// that reach nobody back off from 250 ms to RejoinInterval.
func (c *Cluster) joinLoop(ctx context.Context, ml *memberlist.Memberlist) {
	peers := c.peers()
	if len(peers) == 0 {
		return
	}
	const first = 250 * time.Millisecond
	wait, failing := time.Duration(0), false
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		missing := c.missing(peers)
		if len(missing) == 0 {
			wait = first
			continue
		}
		n, err := ml.Join(missing)
		switch {
		case n == 0:
			if !failing {
				c.log.Warn("cannot reach peers, retrying", "peers", missing, "err", err)
			}
			failing = true
			wait = min(max(2*wait, first), c.opts.RejoinInterval)
			continue
		case failing:
			c.log.Info("joined peers", "contacted", n)
		default:
			c.log.Debug("joined peers", "contacted", n, "err", err)
		}
		failing, wait = false, first
		c.kick()
	}
}

// missing returns the peers that are not live members, none when every
// configured member is live. Peers given by host name are included
// whenever some member is missing.
func (c *Cluster) missing(peers []string) []string {
	nodes := c.view.list()
	if len(nodes) >= clusterSize(c.opts) {
		return nil
	}
	live := map[netip.AddrPort]bool{}
	for _, n := range nodes {
		if n.Addr.IsValid() {
			live[n.Addr] = true
		}
	}
	var out []string
	for _, p := range peers {
		host, port := p, strconv.Itoa(int(c.opts.BindPort))
		if h, pp, err := net.SplitHostPort(p); err == nil {
			host, port = h, pp
		}
		if ap, err := netip.ParseAddrPort(net.JoinHostPort(host, port)); err == nil && live[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())] {
			continue
		}
		out = append(out, p)
	}
	return out
}

// peers is Join without this member.
func (c *Cluster) peers() []string {
	var out []string
	port := strconv.Itoa(int(c.opts.BindPort))
	for _, j := range c.opts.Join {
		host, p := j, port
		if h, pp, err := net.SplitHostPort(j); err == nil {
			host, p = h, pp
		}
		if a, err := netip.ParseAddr(host); err == nil && c.opts.BindAddr.IsValid() && a.Unmap() == c.opts.BindAddr.Unmap() && p == port {
			continue
		}
		out = append(out, j)
	}
	return out
}

func (c *Cluster) memberlistConfig() *memberlist.Config {
	o := c.opts
	conf := memberlist.DefaultLANConfig()
	conf.Name = o.Name
	conf.BindPort = int(o.BindPort)
	conf.AdvertisePort = int(o.BindPort)
	if o.BindAddr.IsValid() {
		conf.BindAddr = o.BindAddr.String()
		if !o.BindAddr.IsUnspecified() {
			conf.AdvertiseAddr = o.BindAddr.String()
		}
	}
	conf.ProbeInterval = o.ProbeInterval
	conf.ProbeTimeout = o.ProbeTimeout
	conf.SuspicionMult = o.SuspicionMult
	conf.GossipInterval = o.GossipInterval
	// Stream connections (join, push/pull) stay on the LAN.
	conf.TCPTimeout = 2 * time.Second
	conf.PushPullInterval = 10 * time.Second
	conf.Delegate = (*delegate)(c)
	conf.Events = (*events)(c)
	conf.Logger = log.New(&logWriter{log: c.log}, "", 0)
	if c.keyring != nil {
		conf.Keyring = c.keyring
		conf.GossipVerifyIncoming = true
		conf.GossipVerifyOutgoing = true
	}
	if o.Transport != nil {
		conf.Transport = o.Transport
	}
	return conf
}

// delegate gives memberlist this member's metadata.
type delegate Cluster

func (d *delegate) NodeMeta(limit int) []byte {
	c := (*Cluster)(d)
	c.mu.Lock()
	defer c.mu.Unlock()
	return encodeMeta(c.localMetaLocked(), limit)
}
func (d *delegate) NotifyMsg(b []byte) {
	c := (*Cluster)(d)
	if len(b) > 0 && b[0] == drainMsgPrefix {
		c.drainMsg(b)
		return
	}
	switch {
	case c.opts.Messages == nil:
	case c.opts.Insecure:
		// Not authenticated: not offered to the consensus log.
		c.refuse(refusedConfig, "a peer (unauthenticated)")
	default:
		c.opts.Messages(b)
	}
}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return (*Cluster)(d).localState() }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     { (*Cluster)(d).mergeState(buf) }

// events copies every membership change into the view (view.go) and
// marks it dirty. memberlist calls these one at a time, holding its node
// lock: n may be read here and nowhere else.
type events Cluster

func (e *events) NotifyJoin(n *memberlist.Node) {
	c := (*Cluster)(e)
	p := peerOf(n)
	c.view.set(p)
	c.log.Info("member joined", "node", p.Name, "addr", p.address())
	if hb := c.hb.Load(); hb != nil && p.Name != c.opts.Name {
		hb.forgetPeer(p.Name)
	}
	c.mu.Lock()
	if _, ok := c.restart.absent[p.Name]; ok {
		delete(c.restart.absent, p.Name)
		c.log.Info("member back from its restart", "node", p.Name)
	}
	c.mu.Unlock()
	c.kick()
}

func (e *events) NotifyLeave(n *memberlist.Node) {
	c := (*Cluster)(e)
	p := peerOf(n) // Meta is zero if it cannot be read: a failure
	c.view.remove(p.Name)
	// A member that leaves for a restart is held as a candidate owner
	// (restart.go). Any other member that goes away still counts in the
	// configured cluster the quorum is a majority of: a member that
	// stopped on purpose and one cut off by a partition look alike from
	// the other side of the partition.
	if p.Meta.Restarting && p.Meta.Leaving && p.Name != c.opts.Name {
		c.holdRestarting(p)
	} else if (p.Meta.Leaving || p.Meta.Draining) && p.Name != c.opts.Name {
		c.log.Info("member left", "node", p.Name, "addr", p.address())
	} else {
		c.log.Info("member failed", "node", p.Name, "addr", p.address())
	}
	c.kick()
}

func (e *events) NotifyUpdate(n *memberlist.Node) {
	c := (*Cluster)(e)
	c.view.set(peerOf(n))
	c.kick()
}
