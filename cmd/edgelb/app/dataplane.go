package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"time"

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
// dataplane.backend is ipvs; it returns nil otherwise. Both follow the
// running cluster configuration: a new version's healthCheck, drain
// timeout, schedulers, methods, continuity and natSource take effect
// without a restart (the kernel is prepared again, then a full pass
// changes only what differs).
func startDataplane(ctx context.Context, g *errgroup.Group, live *liveConfig, store *lb.Store, log *slog.Logger) *dataplane {
	// Subscribed before the first read: no version is missed.
	changed := live.Subscribe()
	cfg, _ := live.Config()
	if cfg.Dataplane.Backend != config.BackendIPVS {
		return nil
	}
	dl := log.With("component", "dataplane")
	hc := health.New(health.Options{
		Store:  store,
		Log:    log.With("component", "health"),
		Config: healthConfig(cfg),
	})
	kernel := ipvs.NewKernel()
	// The API's and the metrics' reads of the counters go through a
	// netlink socket of their own, never queueing behind the passes.
	statsKernel := ipvs.NewKernel()
	opts := ipvs.Options{
		IPVS:      kernel,
		StatsIPVS: statsKernel,
		Store:     store,
		Log:       dl,
		// What the kernel needs for the running version.
		Prepare: func() error {
			cfg, _ := live.Config()
			return ipvs.Prepare(prepareOptions(cfg, dl))
		},
		Owns:         live.Owns,
		Health:       hc,
		DrainTimeout: cfg.Dataplane.DrainTimeout,
		// nat connections to l2 VIPs leave with their VIP as source
		// (dataplane.natSource: vip): the backends' replies go to the
		// VIP's owner, and a connection whose VIP moves keeps its
		// addresses. A bgp VIP is on every host, and the replies to it
		// would go to any of them: those leave with the host's. (The
		// tables stay empty while no service uses nat.)
		SNAT: snat.New().FromVIP(func(a netip.Addr) bool {
			cfg, _ := live.Config()
			return cfg.Dataplane.NATSource == config.NATSourceVIP && !live.BGPSet().Contains(a)
		}),
	}
	dp := ipvs.New(opts)
	g.Go(func() error { return hc.Run(ctx) })
	g.Go(func() error {
		defer kernel.Close()
		defer statsKernel.Close()
		return dp.Run(ctx)
	})
	// Only a version that changes what the kernel needs, the drain
	// timeout or the source NAT's choice prepares the kernel again and
	// runs a full pass; a new service or pool is a desired-state change
	// like any other.
	last := kernelNeeds(cfg)
	g.Go(func() error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-changed:
			}
			cfg, _ := live.Config()
			hc.SetConfig(healthConfig(cfg))
			if now := kernelNeeds(cfg); !reflect.DeepEqual(now, last) {
				last = now
				dp.Reconfigure(cfg.Dataplane.DrainTimeout)
			}
		}
	})
	return &dataplane{IPVS: dp, Health: hc}
}

// kernelNeeds is what of cfg the dataplane takes only by preparing again
// (Reconfigure).
func kernelNeeds(cfg *config.Config) any {
	p := prepareOptions(cfg, nil)
	return struct {
		prepare   ipvs.PrepareOptions
		drain     time.Duration
		natSource config.NATSource
		bgp       string
	}{p, cfg.Dataplane.DrainTimeout, cfg.Dataplane.NATSource, fmt.Sprint(cfg.BGPSet().Ranges())}
}

func healthConfig(cfg *config.Config) health.Config {
	h := cfg.HealthCheck
	return health.Config{Interval: h.Interval, Timeout: h.Timeout, Rise: h.Rise, Fall: h.Fall}
}

// prepareOptions is what the kernel needs for cfg: the schedulers it may
// use, the nat and tunnel methods, and sloppy pickup for continuity.
func prepareOptions(cfg *config.Config, log *slog.Logger) ipvs.PrepareOptions {
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
	return ipvs.PrepareOptions{
		Schedulers: slices.Compact(scheds),
		NAT:        mayUse(cfg, config.MethodNAT),
		Tunnel:     mayUse(cfg, config.MethodTunnel),
		Sloppy:     cfg.Dataplane.Continuity,
		Log:        log,
	}
}

// mayUse reports whether some service may be forwarded with method m: the
// default, a static service's method, or any Service's edgelb.io/method.
func mayUse(cfg *config.Config, m config.Method) bool {
	if cfg.Dataplane.Method == m || cfg.Kubernetes != nil {
		return true
	}
	return slices.ContainsFunc(cfg.Services, func(s config.StaticService) bool { return s.Method == m })
}
