package app

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"

	"go4.org/netipx"
	"golang.org/x/sync/errgroup"

	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/config"
	"github.com/edgelb/edgelb/lb/health"
	"github.com/edgelb/edgelb/lb/ipvs"
	"github.com/edgelb/edgelb/lb/snat"
)

// dataplane is the running forwarding part, for the API and ownership.
type dataplane struct {
	IPVS   *ipvs.Dataplane
	Health *health.Checker
}

// startDataplane starts the IPVS dataplane and its health checker in g when
// dataplane.backend is ipvs; it returns nil otherwise.
func startDataplane(ctx context.Context, g *errgroup.Group, cfg *config.Config, owns func(netip.Addr) bool, bgpSet func() *netipx.IPSet, store *lb.Store, log *slog.Logger) *dataplane {
	if cfg.Dataplane.Backend != config.BackendIPVS {
		return nil
	}
	dl := log.With("component", "dataplane")
	hc := health.New(health.Options{
		Store: store,
		Log:   log.With("component", "health"),
		Config: health.Config{Interval: cfg.HealthCheck.Interval, Timeout: cfg.HealthCheck.Timeout,
			Rise: cfg.HealthCheck.Rise, Fall: cfg.HealthCheck.Fall},
	})
	scheds := []string{cfg.Dataplane.Scheduler}
	if cfg.BGPSet().Ranges() != nil {
		scheds = append(scheds, lb.ECMPScheduler)
	}
	for _, s := range cfg.Services {
		if s.Scheduler != "" {
			scheds = append(scheds, s.Scheduler)
		}
	}
	slices.Sort(scheds)
	nat, tunnel := mayUse(cfg, config.MethodNAT), mayUse(cfg, config.MethodTunnel)
	kernel := ipvs.NewKernel()
	// The API's and the metrics' reads of the counters go through a
	// netlink socket of their own, never queueing behind the passes.
	statsKernel := ipvs.NewKernel()
	opts := ipvs.Options{
		IPVS:      kernel,
		StatsIPVS: statsKernel,
		Store:     store,
		Log:       dl,
		Prepare: func() error {
			return ipvs.Prepare(ipvs.PrepareOptions{
				Schedulers: slices.Compact(scheds),
				NAT:        nat,
				Tunnel:     tunnel,
				Sloppy:     cfg.Dataplane.Continuity,
				Log:        dl,
			})
		},
		Owns:         owns,
		Health:       hc,
		DrainTimeout: cfg.Dataplane.DrainTimeout,
	}
	if nat {
		// nat connections to l2 VIPs leave with their VIP as source
		// (dataplane.natSource: vip): the backends' replies go to the
		// VIP's owner, and a connection whose VIP moves keeps its
		// addresses. A bgp VIP is on every host, and the replies to
		// it would go to any of them: those leave with the host's.
		// (bgpSet follows the running cluster configuration; a VIP
		// that changes announcement is taken up by the next full pass.)
		opts.SNAT = snat.New().FromVIP(func(a netip.Addr) bool {
			return cfg.Dataplane.NATSource == config.NATSourceVIP && !bgpSet().Contains(a)
		})
	}
	dp := ipvs.New(opts)
	g.Go(func() error { return hc.Run(ctx) })
	g.Go(func() error {
		defer kernel.Close()
		defer statsKernel.Close()
		return dp.Run(ctx)
	})
	return &dataplane{IPVS: dp, Health: hc}
}

// mayUse reports whether some service may be forwarded with method m: the
// default, a static service's method, or any Service's edgelb.io/method.
func mayUse(cfg *config.Config, m config.Method) bool {
	if cfg.Dataplane.Method == m || cfg.Kubernetes != nil {
		return true
	}
	return slices.ContainsFunc(cfg.Services, func(s config.StaticService) bool { return s.Method == m })
}
