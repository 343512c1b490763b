package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	gbgp "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// Global is this host's side of every session.
type Global struct {
	ASN      uint32
	RouterID netip.Addr // IPv4
	// ListenPort is where GoBGP accepts sessions; 0 or negative: it does
	// not listen and only connects to the peers.
	ListenPort int32
}

// Peer is one configured BGP peer.
type Peer struct {
	Address  netip.Addr
	ASN      uint32
	Password string // TCP MD5; empty: none
	// HoldTime is proposed to the peer; keepalives go every third of it.
	HoldTime time.Duration
	// BFD, when set, runs GoBGP's native BFD (RFC 5880/5881, single hop)
	// beside the session: a BFD failure resets the session.
	BFD             *BFD
	GracefulRestart bool
	// Port is the peer's BGP port; 0 means 179.
	Port uint16
}

// BFD are a peer's BFD timers.
type BFD struct {
	MinRx, MinTx time.Duration
	Multiplier   uint32
}

// connectRetry is how often an unestablished session is tried again
// (GoBGP's default, 120 s, leaves a host without routes for long after
// a router restarts).
const connectRetry = 3 * time.Second

// GoBGP is the Speaker of GoBGP embedded as a library. It is safe for
// concurrent use.
type GoBGP struct {
	global Global
	peers  []Peer
	log    *slog.Logger

	mu sync.Mutex
	s  *server.BgpServer // nil before Start and after Stop
}

var _ Speaker = (*GoBGP)(nil)

// NewGoBGP returns the Speaker for g and peers; it starts nothing.
func NewGoBGP(g Global, peers []Peer, log *slog.Logger) *GoBGP {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &GoBGP{global: g, peers: peers, log: log}
}

// Start implements Speaker. Without an AS number (ASN 0) BGP is off and
// nothing starts.
func (g *GoBGP) Start(ctx context.Context) error {
	g.mu.Lock()
	global, peers := g.global, g.peers
	g.mu.Unlock()
	if global.ASN == 0 {
		return nil
	}
	// GoBGP is chatty at info (every peer added, every connection
	// manager started); edgelb logs the session changes itself. Its debug
	// messages pass when edgelb logs at debug.
	lvl := &slog.LevelVar{}
	lvl.Set(slog.LevelWarn)
	if g.log.Enabled(ctx, slog.LevelDebug) {
		lvl.Set(slog.LevelDebug)
	}
	s := server.NewBgpServer(server.LoggerOption(slog.New(minLevel{g.log.Handler(), lvl}), lvl))
	go s.Serve()
	port := global.ListenPort
	if port <= 0 {
		port = -1
	}
	if err := s.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: global.ASN, RouterId: global.RouterID.String(), ListenPort: port,
	}}); err != nil {
		s.Stop()
		return fmt.Errorf("starting the BGP server (AS %d, router ID %s): %w", global.ASN, global.RouterID, err)
	}
	if err := s.WatchEvent(ctx, server.WatchEventMessageCallbacks{
		OnPeerUpdate: func(e *apiutil.WatchEventMessage_PeerEvent, _ time.Time) {
			if e.Type == apiutil.PEER_EVENT_STATE {
				g.log.Info("BGP session", "peer", e.Peer.State.NeighborAddress, "asn", e.Peer.State.PeerASN,
					"state", stateName(e.Peer.State.SessionState.String()))
			}
		},
	}, server.WatchPeer()); err != nil {
		g.log.Warn("watching BGP sessions", "err", err)
	}
	for _, p := range peers {
		if err := s.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(p)}); err != nil {
			s.Stop()
			return fmt.Errorf("adding BGP peer %s: %w", p.Address, err)
		}
	}
	g.mu.Lock()
	g.s = s
	g.mu.Unlock()
	return nil
}

// Configure implements Speaker.
func (g *GoBGP) Configure(ctx context.Context, global Global, peers []Peer) (restarted bool, err error) {
	g.mu.Lock()
	old, oldPeers, s := g.global, g.peers, g.s
	g.mu.Unlock()
	if global != old || s == nil {
		if err := g.Stop(); err != nil {
			g.log.Warn("stopping BGP for the new configuration", "err", err)
		}
		g.mu.Lock()
		g.global, g.peers = global, slices.Clone(peers)
		g.mu.Unlock()
		return true, g.Start(ctx)
	}
	want := map[netip.Addr]Peer{}
	for _, p := range peers {
		want[p.Address] = p
	}
	var errs []error
	have := map[netip.Addr]bool{}
	for _, p := range oldPeers {
		if w, ok := want[p.Address]; ok && reflect.DeepEqual(w, p) {
			have[p.Address] = true
			continue
		}
		if err := s.DeletePeer(ctx, &api.DeletePeerRequest{Address: p.Address.String()}); err != nil {
			errs = append(errs, fmt.Errorf("removing BGP peer %s: %w", p.Address, err))
			continue
		}
		g.log.Info("BGP peer removed", "peer", p.Address, "asn", p.ASN)
	}
	var now []Peer
	for _, p := range oldPeers {
		if have[p.Address] {
			now = append(now, p)
		}
	}
	for _, p := range peers {
		if have[p.Address] {
			continue
		}
		if err := s.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(p)}); err != nil {
			errs = append(errs, fmt.Errorf("adding BGP peer %s: %w", p.Address, err))
			continue
		}
		g.log.Info("BGP peer added", "peer", p.Address, "asn", p.ASN)
		now = append(now, p)
	}
	g.mu.Lock()
	g.peers = now
	g.mu.Unlock()
	return false, errors.Join(errs...)
}

// apiPeer is p in GoBGP's terms.
func apiPeer(p Peer) *api.Peer {
	family := &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	if p.Address.Is6() {
		family.Afi = api.Family_AFI_IP6
	}
	hold := uint64(p.HoldTime / time.Second)
	out := &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: p.Address.String(), PeerAsn: p.ASN, AuthPassword: p.Password},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime: hold, KeepaliveInterval: max(1, hold/3),
			ConnectRetry: uint64(connectRetry / time.Second), IdleHoldTimeAfterReset: uint64(connectRetry / time.Second),
		}},
		AfiSafis: []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: family, Enabled: true}}},
	}
	if p.Port != 0 {
		out.Transport = &api.Transport{RemotePort: uint32(p.Port)}
	}
	if p.GracefulRestart {
		out.GracefulRestart = &api.GracefulRestart{Enabled: true, RestartTime: uint32(max(hold, 30))}
		out.AfiSafis[0].MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
	}
	if b := p.BFD; b != nil {
		out.Bfd = &api.BfdPeerConfig{
			Enabled:                  true,
			DesiredMinimumTxInterval: uint32(b.MinTx / time.Microsecond),
			RequiredMinimumReceive:   uint32(b.MinRx / time.Microsecond),
			DetectionMultiplier:      b.Multiplier,
		}
	}
	return out
}

func (g *GoBGP) server() (*server.BgpServer, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.s == nil {
		return nil, errors.New("BGP is not running")
	}
	return g.s, nil
}

// hostPath is the route to p with this host as next hop and the
// attributes a: an unspecified next hop is replaced by the session's
// local address, for eBGP and iBGP peers alike, and GoBGP sends
// LOCAL_PREF to iBGP peers only.
func hostPath(p netip.Prefix, a Attrs) (*apiutil.Path, error) {
	nlri, err := gbgp.NewIPAddrPrefix(p)
	if err != nil {
		return nil, err
	}
	attrs := []gbgp.PathAttributeInterface{gbgp.NewPathAttributeOrigin(gbgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	if len(a.Communities) > 0 {
		attrs = append(attrs, gbgp.NewPathAttributeCommunities(slices.Clone(a.Communities)))
	}
	if len(a.LargeCommunities) > 0 {
		lc := make([]*gbgp.LargeCommunity, 0, len(a.LargeCommunities))
		for _, c := range a.LargeCommunities {
			lc = append(lc, gbgp.NewLargeCommunity(c.Global, c.Local1, c.Local2))
		}
		attrs = append(attrs, gbgp.NewPathAttributeLargeCommunities(lc))
	}
	if a.LocalPref != nil {
		attrs = append(attrs, gbgp.NewPathAttributeLocalPref(*a.LocalPref))
	}
	family := gbgp.RF_IPv4_UC
	if p.Addr().Is4() {
		nh, err := gbgp.NewPathAttributeNextHop(netip.IPv4Unspecified())
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, nh)
	} else {
		family = gbgp.RF_IPv6_UC
		mp, err := gbgp.NewPathAttributeMpReachNLRI(family, []gbgp.PathNLRI{{NLRI: nlri}}, netip.IPv6Unspecified())
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, mp)
	}
	return &apiutil.Path{Family: family, Nlri: nlri, Attrs: attrs}, nil
}

// route returns the running server and the route to p.
func (g *GoBGP) route(p netip.Prefix, a Attrs) (*server.BgpServer, *apiutil.Path, error) {
	s, err := g.server()
	if err != nil {
		return nil, nil, err
	}
	path, err := hostPath(p, a)
	if err != nil {
		return nil, nil, fmt.Errorf("route to %s: %w", p, err)
	}
	return s, path, nil
}

// Advertise implements Speaker.
func (g *GoBGP) Advertise(p netip.Prefix, a Attrs) error {
	s, path, err := g.route(p, a)
	if err != nil {
		return err
	}
	if _, err := s.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{path}}); err != nil {
		return fmt.Errorf("advertising %s: %w", p, err)
	}
	return nil
}

// Withdraw implements Speaker.
func (g *GoBGP) Withdraw(p netip.Prefix) error {
	s, path, err := g.route(p, Attrs{})
	if err != nil {
		return err
	}
	if err := s.DeletePath(apiutil.DeletePathRequest{Paths: []*apiutil.Path{path}}); err != nil {
		return fmt.Errorf("withdrawing %s: %w", p, err)
	}
	return nil
}

// Peers implements Speaker.
func (g *GoBGP) Peers() []PeerStatus {
	g.mu.Lock()
	peers := g.peers
	g.mu.Unlock()
	out := make([]PeerStatus, 0, len(peers))
	byAddr := map[netip.Addr]int{}
	for i, p := range peers {
		out = append(out, PeerStatus{Address: p.Address, ASN: p.ASN, State: "idle"})
		if p.BFD != nil {
			out[i].BFD = "down"
		}
		byAddr[p.Address] = i
	}
	s, err := g.server()
	if err != nil {
		return out
	}
	err = s.ListPeer(context.Background(), &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		if p.State == nil {
			return
		}
		a, err := netip.ParseAddr(p.State.NeighborAddress)
		i, ok := byAddr[a]
		if err != nil || !ok {
			return
		}
		st := &out[i]
		st.State = stateName(p.State.SessionState.String())
		if st.Established() && p.Timers != nil && p.Timers.State != nil && p.Timers.State.Uptime != nil {
			st.Since = p.Timers.State.Uptime.AsTime()
		}
		if st.BFD != "" && p.State.BfdState != nil {
			st.BFD = bfdName(p.State.BfdState.SessionState.String())
		}
		for _, af := range p.AfiSafis {
			if af.State != nil {
				st.PrefixesSent += int(af.State.Advertised)
			}
		}
	})
	if err != nil {
		g.log.Debug("listing BGP peers", "err", err)
	}
	return out
}

// stateName turns GoBGP's SESSION_STATE_ESTABLISHED into established.
func stateName(s string) string {
	return strings.ToLower(strings.TrimPrefix(s, "SESSION_STATE_"))
}

// bfdName turns GoBGP's BFD_SESSION_STATE_ADMIN_DOWN into admin-down.
func bfdName(s string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(s, "BFD_SESSION_STATE_")), "_", "-")
}

// Stop implements Speaker.
func (g *GoBGP) Stop() error {
	g.mu.Lock()
	s := g.s
	g.s = nil
	g.mu.Unlock()
	if s == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.StopBgp(ctx, &api.StopBgpRequest{})
	s.Stop()
	return err
}

// minLevel passes the records of at least its level to a handler.
type minLevel struct {
	slog.Handler
	min slog.Leveler
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min.Level() && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(a), h.min}
}
func (h minLevel) WithGroup(n string) slog.Handler { return minLevel{h.Handler.WithGroup(n), h.min} }
