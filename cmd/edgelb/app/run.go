package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/api/clustercfg"
	"github.com/edgelb/edgelb/cluster"
	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/config"
	"github.com/edgelb/edgelb/lb/k8s"
	"github.com/edgelb/edgelb/vip"
	"github.com/edgelb/edgelb/web"
)

// run starts every part of the daemon and returns when ctx is cancelled or
// a part fails. Parts communicate only through the lb.Store of desired
// state and the cluster's ownership: each has its own loop.
func run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	log.Info("starting edgelb", "version", Version, "node", cfg.Node.Name, "config", cfg.Path,
		"dataplane", cfg.Dataplane.Backend, "mode", cfg.Dataplane.Mode, "method", cfg.Dataplane.Method)
	for _, w := range cfg.Warnings() {
		log.Warn(w)
	}
	// The cluster configuration: the persisted version, else the file's
	// cluster-wide keys as version 1; a newer one from the cluster
	// replaces it once joined.
	live, err := newLiveConfig(cfg, log.With("component", "config"))
	if err != nil {
		return err
	}
	cfg, version := live.Config()
	log.Info("cluster configuration", "version", version, "pools", len(cfg.Pools), "services", len(cfg.Services))
	store := lb.NewStore()
	bus := api.NewBus(500)
	g, gctx := errgroup.WithContext(ctx)
	st := &state{cfg: cfg, live: live, started: time.Now(), store: store}
	metrics := api.NewMetrics(st)
	g.Go(func() error { return live.Run(gctx) })

	// Membership -> ownership -> the VIP manager. The cluster assigns the
	// l2 VIPs; the bgp VIPs are on every host and advertised over BGP.
	l2VIPs, bgpVIPs := announced{src: store, set: live.BGPSet}, announced{src: store, set: live.BGPSet, bgp: true}
	// (The VIP manager outlives gctx: so does what feeds it.)
	hostCtx, stopHost := context.WithCancel(context.WithoutCancel(gctx))
	defer stopHost()
	members, vips, err := newCluster(hostCtx, cfg, live.docs, l2VIPs, bgpVIPs, log)
	if err != nil {
		return err
	}
	st.members = members
	announcer, err := newAnnouncer(cfg, members, bgpVIPs, log.With("component", "bgp"))
	if err != nil {
		return err
	}
	st.dp = startDataplane(gctx, g, live, store, log)
	st.filter = startFilter(gctx, g, store, metrics, log)

	if cfg.Kubernetes == nil {
		// Static services only: the desired state changes with the
		// cluster configuration.
		g.Go(func() error { return staticLoop(gctx, live, store, log) })
	} else {
		client, err := kubeClient(cfg.Kubernetes, log)
		if err != nil {
			return err
		}
		opts := k8s.Options{
			Identity: cfg.Node.Name,
			Config:   cfg,
			Store:    store,
			Log:      log.With("component", "kubernetes"),
			// The leader records owner changes and backends that all
			// fail as Events on the Services.
			Ownership: members,
			OnEvent: func(typ, msg string, fields map[string]string) {
				if typ == "allocation" {
					metrics.Allocations.Inc()
				}
				bus.Publish(typ, msg, fields)
			},
		}
		if st.dp != nil {
			opts.Health = st.dp.Health
		}
		// Subscribed before the controller takes the running Config: no
		// version is missed in between.
		changed := live.Subscribe()
		cfg, _ := live.Config()
		opts.Config = cfg
		st.ctrl = k8s.New(client, opts)
		g.Go(func() error { return st.ctrl.Run(gctx) })
		g.Go(func() error {
			for {
				select {
				case <-gctx.Done():
					return nil
				case <-changed:
				}
				cfg, _ := live.Config()
				st.ctrl.SetConfig(cfg)
			}
		})
	}

	// The VIP manager outlives the cluster's Run: on shutdown the cluster
	// first hands the VIPs over (the manager keeps them meanwhile), and
	// only then does the manager stop and remove what is left. On a
	// graceful restart it stops at once and keeps the VIPs for the next
	// process, while the cluster gossips that it is restarting and leaves.
	vipCtx, stopVIPs := context.WithCancelCause(context.WithoutCancel(gctx))
	defer stopVIPs(nil)
	defer context.AfterFunc(gctx, func() {
		if cause := context.Cause(gctx); errors.Is(cause, vip.ErrRestart) {
			stopVIPs(cause)
		}
	})()
	// The VIPs stay until the cluster has handed them over and the BGP
	// routes are withdrawn (plus bgp.withdrawDelay).
	var holding sync.WaitGroup
	holding.Add(1)
	g.Go(func() error {
		defer holding.Done()
		return members.Run(gctx)
	})
	holding.Add(1)
	g.Go(func() error {
		defer holding.Done()
		return announcer.Run(gctx)
	})
	g.Go(func() error { return followBGP(gctx, live, announcer, cfg) })
	go func() {
		holding.Wait()
		stopVIPs(nil)
	}()
	if vips != nil {
		g.Go(func() error {
			err := vips.Run(vipCtx)
			if err == nil && gctx.Err() == nil {
				return errors.New("the VIP manager stopped")
			}
			return err
		})
	}

	obs := &observer{s: st, bus: bus, metrics: metrics, log: log}
	g.Go(func() error { return obs.Run(gctx) })

	var tokens []api.Token
	for _, t := range cfg.API.Named {
		tokens = append(tokens, api.Token{Name: t.Name, Role: t.Role, Secret: t.Secret})
	}
	apiOpts := api.Options{
		Listen:      cfg.API.Listen,
		NamedTokens: tokens,
		Config:      &clustercfg.Config{Docs: live.docs, Host: live.host},
		State:       st,
		OnAudit: func(e api.AuditEntry) {
			bus.Publish("audit", fmt.Sprintf("%s by %s from %s", e.What, e.Who, e.From),
				map[string]string{"who": e.Who, "what": e.What, "configVersion": fmt.Sprint(e.Version)})
		},
		Bus:       bus,
		Registry:  metrics.Registry,
		Dashboard: dashboard(),
		Log:       log.With("component", "api"),
	}
	apiOpts.BGP = bgpStatus(live, announcer, members)
	metrics.Registry.MustRegister(api.BGPCollector(apiOpts.BGP))
	if dir := stateDir(); dir != "" {
		apiOpts.AuditFile = filepath.Join(dir, "audit.log")
	}
	if t := cfg.API.TLS; t != nil {
		apiOpts.CertFile, apiOpts.KeyFile = t.CertFile, t.KeyFile
	}
	srv := api.New(apiOpts)
	g.Go(func() error { return srv.Run(gctx) })

	err = g.Wait()
	log.Info("edgelb stopped")
	return err
}

// clusterOptions maps the config file's cluster keys to the cluster's
// Options.
func clusterOptions(cfg *config.Config, vips cluster.VIPSource, log *slog.Logger) cluster.Options {
	c := cfg.Cluster
	return cluster.Options{
		Name:            cfg.Node.Name,
		BindAddr:        c.BindAddr,
		BindPort:        c.BindPort,
		Join:            c.Join,
		SecretKey:       c.SecretKey,
		Insecure:        c.Insecure,
		Quorum:          c.Quorum,
		ProbeInterval:   c.ProbeInterval,
		ProbeTimeout:    c.ProbeTimeout,
		SuspicionMult:   c.SuspicionMult,
		GossipInterval:  c.GossipInterval,
		HandoverTimeout: c.HandoverTimeout,
		RestartHold:     c.RestartHold,
		VIPs:            vips,
		Log:             log,
	}
}

// newCluster builds the membership and the VIP manager (nil without
// node.interface: the host then joins but owns no VIP).
func newCluster(ctx context.Context, cfg *config.Config, docs *cluster.Docs, l2VIPs, bgpVIPs announced, log *slog.Logger) (*cluster.Cluster, *vip.Manager, error) {
	opts := clusterOptions(cfg, l2VIPs, log.With("component", "cluster"))
	opts.Docs = docs
	if w := opts.QuorumWarning(); w != "" {
		log.Warn(w, "quorum", opts.Quorum, "clusterSize", opts.Size())
	}
	members, err := cluster.New(opts)
	if err != nil {
		return nil, nil, err
	}
	if cfg.Dataplane.Backend == config.BackendNone {
		members.SetHealth("dataplane", nil) // announce-only: nothing to program
	} else {
		// Until the observer sees the first successful sync.
		members.SetHealth("dataplane", errors.New("not programmed yet"))
	}
	if cfg.Node.Interface == "" {
		log.Warn("node.interface is not set: this host joins the cluster but owns and announces no VIPs")
		members.SetHealth("link", errors.New("node.interface is not set"))
		return members, nil, nil
	}
	// The bgp VIPs are held beside the l2 ones the cluster assigns (none
	// while no version has a bgp section).
	h := bgpHosting{Cluster: members, bgp: bgpVIPs, ctx: ctx}
	vips, err := vip.NewManager(vip.Options{
		Kernel:    vipKernel(cfg.Node.Interface),
		Announcer: &vip.Announcers{},
		Ownership: h,
		Reporter:  h,
		Quieter:   vip.NewQuieter(),
		Refresh:   cfg.Cluster.AnnounceRefresh,
		Lifetime:  cfg.Cluster.RestartHold,
		Log:       log.With("component", "vip"),
	})
	if err != nil {
		return nil, nil, err
	}
	// A graceful restart left the previous process's VIPs on the
	// interface: keep them while this process starts.
	adopted, err := vips.Adopt()
	if err != nil {
		log.Warn("cannot adopt the VIPs of the previous process: starting afresh", "err", err)
	}
	// The cluster's restart grace is about the l2 VIPs it assigns; the
	// bgp ones are on every host anyway.
	members.Adopt(l2VIPs.filter(adopted))
	return members, vips, nil
}

func kubeClient(kc *config.Kubernetes, log *slog.Logger) (kubernetes.Interface, error) {
	// client-go logs through klog; send it to our slog handler.
	klog.SetLogger(logr.FromSlogHandler(log.With("component", "client-go").Handler()))
	var rc *rest.Config
	var err error
	if kc.Kubeconfig == "" {
		rc, err = rest.InClusterConfig()
	} else {
		rc, err = clientcmd.BuildConfigFromFlags("", kc.Kubeconfig)
	}
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %q: %w", kc.Kubeconfig, err)
	}
	rc.QPS, rc.Burst = kc.QPS, kc.Burst
	rc.UserAgent = "edgelb/" + Version
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	return client, nil
}

// dashboard returns the web dashboard's files.
func dashboard() fs.FS { return web.Files() }

// vipKernel is the VIP side of the kernel, with its files in the state
// directory: the VIPs kept across a graceful restart (kept-vips) and,
// where the kernel drops edgelb's address mark, those it added
// (added-vips).
func vipKernel(iface string) *vip.Netlink {
	n := &vip.Netlink{Interface: iface}
	if dir := stateDir(); dir != "" {
		n.KeptFile = filepath.Join(dir, "kept-vips")
		n.AddedFile = filepath.Join(dir, "added-vips")
	}
	return n
}

// stateDir is the service's state directory (systemd's $STATE_DIRECTORY,
// the unit's StateDirectory=edgelb), else /var/lib/edgelb when it is
// writable, else none (the address mark alone: Linux 6.2+).
func stateDir() string {
	dir := strings.Split(os.Getenv("STATE_DIRECTORY"), ":")[0]
	if dir == "" {
		dir = "/var/lib/edgelb"
	}
	if unix.Access(dir, unix.W_OK) != nil {
		return ""
	}
	return dir
}
