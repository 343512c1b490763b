package node

import (
	"context"
	"net/netip"
	"slices"
	"time"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/cluster"
	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/config"
	"github.com/edgelb/edgelb/lb/k8s"
	"github.com/edgelb/edgelb/vip/bgp"
)

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

// bgpPolicy gives each bgp VIP's route the attributes of the desired
// state: its pool's policy merged with its services'.
func bgpPolicy(store *lb.Store) bgp.Policy {
	return func(vip netip.Addr) bgp.Attrs {
		d := store.Load()
		if d == nil {
			return bgp.Attrs{}
		}
		return bgpAttrs(d.BGPPolicy(vip))
	}
}

// bgpAttrs is p in the speaker's terms.
func bgpAttrs(p config.BGPPolicy) bgp.Attrs {
	a := bgp.Attrs{LocalPref: p.LocalPref}
	for _, c := range p.Communities {
		a.Communities = append(a.Communities, uint32(c))
	}
	for _, c := range p.LargeCommunities {
		a.LargeCommunities = append(a.LargeCommunities, bgp.LargeCommunity{Global: c.Global, Local1: c.Local1, Local2: c.Local2})
	}
	return a
}

// apiRoute is r as GET /api/v1/bgp shows it.
func apiRoute(r bgp.Route) api.BGPRoute {
	out := api.BGPRoute{Prefix: r.Prefix.String(), LocalPref: r.Attrs.LocalPref}
	for _, c := range r.Attrs.Communities {
		out.Communities = append(out.Communities, config.Community(c).String())
	}
	for _, c := range r.Attrs.LargeCommunities {
		out.LargeCommunities = append(out.LargeCommunities, config.LargeCommunity{Global: c.Global, Local1: c.Local1, Local2: c.Local2}.String())
	}
	return out
}

// followBGP gives the announcer each new version's bgp section: peers
// added, removed or changed, a new AS number, BGP turned on or off.
func followBGP(ctx context.Context, sub *Subscription, a *bgp.Announcer) error {
	return sub.Follow(ctx, func(c Change) {
		if c.BGP {
			a.Configure(bgpConfig(c.Config))
		}
	})
}

// followKubernetes gives the controller each version that changes the
// desired state or the pools.
func followKubernetes(ctx context.Context, sub *Subscription, ctrl *k8s.Controller) error {
	return sub.Follow(ctx, func(c Change) {
		if c.Desired || c.Pools {
			ctrl.SetConfig(c.Config)
		}
	})
}

// bgpStatus is GET /api/v1/bgp.
func bgpStatus(live *liveConfig, a *bgp.Announcer, members *cluster.Cluster) func() api.BGPStatus {
	return func() api.BGPStatus {
		cfg, _ := live.Config()
		if cfg.BGP == nil {
			return api.BGPStatus{Advertised: []string{}, Routes: []api.BGPRoute{}, Peers: []api.BGPPeer{}}
		}
		st := api.BGPStatus{Enabled: true, ASN: cfg.BGP.ASN, RouterID: cfg.BGP.RouterID.String(), Serving: members.MayServe(),
			Advertised: []string{}, Routes: []api.BGPRoute{}, Peers: []api.BGPPeer{}}
		for _, r := range a.Routes() {
			st.Advertised = append(st.Advertised, r.Prefix.String())
			st.Routes = append(st.Routes, apiRoute(r))
			st.GracefulShutdown = st.GracefulShutdown || slices.Contains(r.Attrs.Communities, bgp.GracefulShutdown)
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
