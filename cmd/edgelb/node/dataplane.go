package node

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/config"
	"github.com/edgelb/edgelb/lb/health"
	"github.com/edgelb/edgelb/lb/ipvs"
)

// dataplane is the running forwarding part, for the API and ownership.
type dataplane struct {
	IPVS   *ipvs.Dataplane
	Health *health.Checker
	// sub follows the running cluster configuration: a new version's
	// healthCheck, drain timeout, schedulers, methods, continuity and
	// natSource take effect without a restart (the kernel is prepared
	// again, then a full pass changes only what differs).
	sub *Subscription
}

// newDataplane builds the IPVS dataplane and its health checker when
// dataplane.backend is ipvs; it returns nil otherwise.
func newDataplane(live *liveConfig, store *lb.Store, o Options, members ipvs.Reporter, metrics *api.Metrics, log *slog.Logger) *dataplane {
	// Whether the host runs IPVS is decided at start (dataplane.backend
	// takes a restart).
	if cfg, _ := live.Config(); cfg.Dataplane.Backend != config.BackendIPVS {
		return nil
	}
	cur, sub := live.Subscribe()
	cfg := cur.Config
	dl := log.With("component", "dataplane")
	hc := health.New(health.Options{
		Store:  store,
		Log:    log.With("component", "health"),
		Config: healthConfig(cfg),
	})
	k := o.Kernels
	opts := ipvs.Options{
		IPVS:      k.IPVS,
		StatsIPVS: k.IPVSStats,
		Store:     store,
		Log:       dl,
		// What the kernel needs for the running version.
		Prepare: func() error {
			cfg, _ := live.Config()
			return k.Prepare(prepareOptions(cfg, dl))
		},
		Owns:   live.Owns,
		Health: hc,
		// Whether the table is programmed decides whether this host may
		// own VIPs.
		Reporter: members,
		OnSync: func(took time.Duration, err error) {
			metrics.ObserveReconcile("dataplane", took, err)
		},
		DrainTimeout: cfg.Dataplane.DrainTimeout,
		Now:          o.Now,
		// nat connections to l2 VIPs leave with their VIP as source
		// (dataplane.natSource: vip): the backends' replies go to the
		// VIP's owner, and a connection whose VIP moves keeps its
		// addresses. A bgp VIP is on every host, and the replies to it
		// would go to any of them: those leave with the host's. (The
		// tables stay empty while no service uses nat.)
		SNAT: k.SNAT(func(a netip.Addr) bool {
			cfg, _ := live.Config()
			return cfg.Dataplane.NATSource == config.NATSourceVIP && !live.BGPSet().Contains(a)
		}),
	}
	return &dataplane{IPVS: ipvs.New(opts), Health: hc, sub: sub}
}

// start runs the health checker, the dataplane and its follower in g.
func (d *dataplane) start(ctx context.Context, g *errgroup.Group) {
	g.Go(func() error { return d.Health.Run(ctx) })
	g.Go(func() error { return d.IPVS.Run(ctx) })
	// Only a version that changes what the kernel needs, the drain
	// timeout or the source NAT's choice prepares the kernel again and
	// runs a full pass; a new service or pool is a desired-state change
	// like any other.
	g.Go(func() error {
		return d.sub.Follow(ctx, func(c Change) {
			if c.Health {
				d.Health.SetConfig(healthConfig(c.Config))
			}
			if c.Kernel {
				d.IPVS.Reconfigure(c.Config.Dataplane.DrainTimeout)
			}
		})
	})
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
