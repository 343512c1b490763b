package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"text/tabwriter"
	"time"

	"go4.org/netipx"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/cluster"
	"github.com/edgelb/edgelb/lb/config"
	"github.com/edgelb/edgelb/vip"
	"github.com/edgelb/edgelb/vip/bgp"
)

// announced splits the desired VIPs by how they are announced: with bgp
// true it lists only the VIPs of `announce: bgp` pools and services,
// otherwise only the others (one owner each, l2). Both are VIP sources.
type announced struct {
	src interface {
		VIPs() ([]netip.Addr, bool)
		Subscribe() <-chan struct{}
	}
	// set is the current set of bgp addresses.
	set func() *netipx.IPSet
	bgp bool
}

func (a announced) VIPs() ([]netip.Addr, bool) {
	all, loaded := a.src.VIPs()
	return a.filter(all), loaded
}

func (a announced) Subscribe() <-chan struct{} { return a.src.Subscribe() }

func (a announced) filter(vips []netip.Addr) []netip.Addr {
	var out []netip.Addr
	set := a.set()
	for _, v := range vips {
		if set.Contains(v) == a.bgp {
			out = append(out, v)
		}
	}
	return out
}

// bgpHosting gives the VIP manager the bgp VIPs as well as the VIPs the
// cluster assigns this host: every host holds every bgp VIP on its
// interface — IPVS needs it local — as it holds a VIP handed over: quiet
// (no host answers ARP/NDP for it, vip.Quieter) and never announced on
// the LAN. The routers send its traffic to the next hops advertised over
// BGP. A host that stops advertising (drain, unhealthy) keeps the VIP, so
// that the flows the routers still send while they converge are
// forwarded. The cluster is told only of the l2 VIPs it holds.
type bgpHosting struct {
	*cluster.Cluster
	bgp announced
	ctx context.Context // ends the Subscribe goroutines
}

var (
	_ vip.Ownership = bgpHosting{}
	_ vip.Reporter  = bgpHosting{}
)

// Owned implements vip.Ownership.
func (h bgpHosting) Owned() (own, handover []netip.Addr) {
	own, handover = h.Cluster.Owned()
	vips, _ := h.bgp.VIPs()
	handover = append(handover, vips...)
	slices.SortFunc(handover, netip.Addr.Compare)
	return own, slices.Compact(handover)
}

// Subscribe implements vip.Ownership: the cluster's changes and the
// desired state's.
func (h bgpHosting) Subscribe() <-chan struct{} {
	out := make(chan struct{}, 1)
	a, b := h.Cluster.Subscribe(), h.bgp.Subscribe()
	go func() {
		for {
			select {
			case <-h.ctx.Done():
				return
			case <-a:
			case <-b:
			}
			select {
			case out <- struct{}{}:
			default:
			}
		}
	}()
	return out
}

// SetHeld implements vip.Reporter: the cluster hears of the l2 VIPs only
// (a bgp VIP is no VIP it assigns, and a stop must not wait for it).
func (h bgpHosting) SetHeld(vips []netip.Addr) {
	l2 := h.bgp
	l2.bgp = false
	h.Cluster.SetHeld(l2.filter(vips))
}

// newAnnouncer builds the BGP announcer of the bgp VIPs. It exists on
// every host, with BGP off (no AS number) while the running cluster
// configuration has no bgp section: a later version may add one.
func newAnnouncer(cfg *config.Config, members *cluster.Cluster, vips announced, log *slog.Logger) (*bgp.Announcer, error) {
	c := bgpConfig(cfg)
	speaker := bgp.NewGoBGP(c.Global, c.Peers, log.With("component", "gobgp"))
	return bgp.NewAnnouncer(bgp.Options{Speaker: speaker, Serving: members, VIPs: vips, WithdrawDelay: c.WithdrawDelay, Log: log})
}

// bgpConfig is cfg's bgp section in the speaker's terms; without one, BGP
// is off.
func bgpConfig(cfg *config.Config) bgp.Config {
	b := cfg.BGP
	if b == nil {
		return bgp.Config{}
	}
	peers := make([]bgp.Peer, 0, len(b.Peers))
	for _, p := range b.Peers {
		bp := bgp.Peer{Address: p.Address, ASN: p.ASN, Password: p.Password, HoldTime: p.HoldTime, GracefulRestart: p.GracefulRestart}
		if p.BFD != nil {
			bp.BFD = &bgp.BFD{MinRx: p.BFD.MinRx, MinTx: p.BFD.MinTx, Multiplier: uint32(p.BFD.Multiplier)}
		}
		peers = append(peers, bp)
	}
	return bgp.Config{Global: bgp.Global{ASN: b.ASN, RouterID: b.RouterID}, Peers: peers, WithdrawDelay: b.WithdrawDelay}
}

// followBGP gives the announcer, built with the version built, each new
// version's bgp section: peers added, removed or changed, a new AS
// number, BGP turned on or off.
func followBGP(ctx context.Context, live *liveConfig, a *bgp.Announcer, built *config.Config) error {
	changed := live.Subscribe()
	last := built
	for {
		cfg, _ := live.Config()
		if !reflect.DeepEqual(cfg.BGP, last.BGP) {
			a.Configure(bgpConfig(cfg))
		}
		last = cfg
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

// bgpStatus is GET /api/v1/bgp.
func bgpStatus(live *liveConfig, a *bgp.Announcer, members *cluster.Cluster) func() api.BGPStatus {
	return func() api.BGPStatus {
		cfg, _ := live.Config()
		if cfg.BGP == nil {
			return api.BGPStatus{Advertised: []string{}, Peers: []api.BGPPeer{}}
		}
		st := api.BGPStatus{Enabled: true, ASN: cfg.BGP.ASN, RouterID: cfg.BGP.RouterID.String(), Serving: members.MayServe(),
			Advertised: []string{}, Peers: []api.BGPPeer{}}
		for _, p := range a.Advertised() {
			st.Advertised = append(st.Advertised, p.String())
		}
		now := time.Now()
		for _, p := range a.Peers() {
			ap := api.BGPPeer{Address: p.Address.String(), ASN: p.ASN, State: p.State, Established: p.Established(), BFD: p.BFD, PrefixesSent: p.PrefixesSent}
			if !p.Since.IsZero() {
				since := p.Since
				ap.Since, ap.UptimeSeconds = &since, now.Sub(since).Truncate(time.Second).Seconds()
			}
			st.Peers = append(st.Peers, ap)
		}
		return st
	}
}

// printBGP adds the BGP sessions to `edgelb status`: a line per peer.
func printBGP(w io.Writer, st api.BGPStatus) {
	if !st.Enabled {
		return
	}
	fmt.Fprintf(w, "\nBGP AS %d, router ID %s: %s, %d routes advertised\n", st.ASN, st.RouterID,
		yesNo(st.Serving, "serving", "NOT serving (unhealthy, no quorum or draining): routes withdrawn"), len(st.Advertised))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "PEER\tASN\tSTATE\tUPTIME\tBFD\tPREFIXES SENT\n")
	for _, p := range st.Peers {
		up, bfd := "-", p.BFD
		if p.Established {
			up = (time.Duration(p.UptimeSeconds) * time.Second).String()
		}
		if bfd == "" {
			bfd = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\n", p.Address, p.ASN, p.State, up, bfd, p.PrefixesSent)
	}
	tw.Flush()
}
