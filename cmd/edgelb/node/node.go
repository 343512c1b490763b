package node

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/hashicorp/memberlist"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/api/clustercfg"
	"github.com/edgelb/edgelb/cluster"
	"github.com/edgelb/edgelb/cluster/consensus"
	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/config"
	"github.com/edgelb/edgelb/lb/filter"
	"github.com/edgelb/edgelb/lb/k8s"
	"github.com/edgelb/edgelb/vip"
	"github.com/edgelb/edgelb/vip/announce"
	"github.com/edgelb/edgelb/vip/bgp"
	"github.com/edgelb/edgelb/vip/datapath"
	"github.com/edgelb/edgelb/vip/repair"
	"github.com/edgelb/edgelb/web"
)

// ErrRestart, as the cause of Run's context, is a graceful restart: the
// node keeps its VIPs, IPVS services and nftables rules for the next
// process instead of handing the VIPs over, and gossips that it is
// restarting. It is cluster.ErrRestart and vip.ErrRestart for errors.Is.
var ErrRestart error = restartCause{}

type restartCause struct{}

func (restartCause) Error() string { return "graceful restart (SIGUSR2)" }

func (restartCause) Is(target error) bool {
	return target == cluster.ErrRestart || target == vip.ErrRestart
}

// Options are what a node takes from its surroundings: the kernels it
// programs, the Kubernetes client, the gossip transport, the clock and
// where it keeps its files. main passes the real ones; a test passes
// fakes (see node_test.go: three nodes in one process).
type Options struct {
	// Kernels are the host's kernels (RealKernels, or fakes).
	Kernels Kernels
	// Kube is the Kubernetes client; nil builds one from the config's
	// kubernetes.kubeconfig (or in-cluster) when it has a kubernetes
	// section.
	Kube k8s.Client
	// Transport replaces memberlist's UDP/TCP transport (tests use
	// memberlist.MockNetwork); nil: cluster.bindAddr and bindPort.
	Transport memberlist.Transport
	// Now is the clock of ownership, handovers, VIP lifetimes, drains and
	// Events; nil means time.Now.
	Now func() time.Time
	// StateDir keeps the cluster configuration's versions, the audit log
	// and the VIPs kept across a graceful restart; "" keeps nothing.
	StateDir string
	// Log receives every part's messages (with a component key).
	Log *slog.Logger
	// Version is the build's version, reported by the API.
	Version string
	// OnReady, when set, is called once the node is ready (informers
	// synced, dataplane programmed), and OnWatchdog whenever its
	// observer loop runs, so a service manager can tell it is alive
	// (main passes systemd's notifications).
	OnReady, OnWatchdog func()
}

// Node is one appliance host: membership and ownership, the VIPs and
// their announcement (l2 and bgp), the desired state from Kubernetes and
// the static services, the dataplane, the source-range filter and the
// API. New builds it; Run runs it.
type Node struct {
	// cfg is the Config at start: its host-local keys do not change.
	cfg  *config.Config
	opts Options
	log  *slog.Logger
	// tokenExp is the kubeconfig's token expiry (TokenExpiry), read at
	// start and at each Reload; nil when it has none.
	tokenExp atomic.Pointer[time.Time]
	// kubeToken is the kubeconfig's inline token, which Reload replaces;
	// nil without one.
	kubeToken *bearer

	live      *liveConfig
	store     *lb.Store
	bus       *api.Bus
	metrics   *api.Metrics
	state     *state
	members   *cluster.Cluster
	split     *announce.Split
	vips      *vip.Manager      // nil without node.interface
	dataPath  *datapath.Checker // nil when the data path is not checked
	repair    *repair.Repairer  // nil without neighbour repair
	announcer *bgp.Announcer
	dp        *dataplane // nil unless dataplane.backend is ipvs
	filter    *filter.Filter
	ctrl      *k8s.Controller // nil without a kubernetes section
	server    *api.Server
	// The followers' subscriptions to the running configuration, taken
	// in New: no version is missed before Run.
	bgpSub, kubeSub, staticSub *Subscription
	static                     Change // the version the static loop starts from
	// stopHost ends what outlives Run's parts (the split's merging of
	// notifications) once Run returns.
	hostCtx  context.Context
	stopHost context.CancelFunc
}

// New builds a node from a checked config file's Config: it reads the
// persisted cluster configuration (seeding version 1 from the file when
// there is none), adopts the VIPs a graceful restart left, and builds
// every part. It starts nothing.
func New(cfg *config.Config, opts Options) (*Node, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	log := opts.Log
	n := &Node{cfg: cfg, opts: opts, log: log}
	n.hostCtx, n.stopHost = context.WithCancel(context.Background())
	n.setTokenExpiry(cfg.Kubernetes)
	for _, w := range cfg.Warnings() {
		log.Warn(w)
	}
	data, err := os.ReadFile(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("reading %s again: %w", cfg.Path, err)
	}
	// The cluster configuration: the persisted version, else the file's
	// cluster-wide keys as version 1; a newer one from the cluster
	// replaces it once joined.
	n.live, err = newLiveConfigFrom(cfg, data, opts.StateDir, log.With("component", "config"))
	if err != nil {
		return nil, err
	}
	running, version := n.live.Config()
	log.Info("cluster configuration", "version", version, "pools", len(running.Pools), "services", len(running.Services))
	n.store = lb.NewStore()
	n.bus = api.NewBus(500)
	n.state = &state{node: n, started: opts.Now()}
	n.metrics = api.NewMetrics(n.state)
	n.metrics.SetBackendSeriesLimit(cfg.API.BackendSeriesLimit)
	// Which VIPs are l2 (one owner each, assigned by the cluster) and
	// which bgp (every healthy host, advertised over BGP).
	n.split = announce.NewSplit(n.store, n.live.BGPSet)
	if err := n.newCluster(); err != nil {
		return nil, err
	}
	// The announcer exists on every host, with BGP off (no AS number)
	// while the running version has no bgp section: a later one may add
	// it.
	cur, sub := n.live.Subscribe()
	n.bgpSub = sub
	bc := bgpConfig(cur.Config)
	n.announcer, err = bgp.NewAnnouncer(bgp.Options{
		Speaker:       opts.Kernels.BGP(bc, log.With("component", "gobgp")),
		Serving:       n.members,
		VIPs:          n.split.HeldBGP(n.hostCtx),
		Policy:        bgpPolicy(n.store),
		WithdrawDelay: bc.WithdrawDelay,
		Log:           log.With("component", "bgp"),
	})
	if err != nil {
		return nil, err
	}
	n.dp = newDataplane(n.live, n.store, opts, n.members, n.metrics, log)
	// Source ranges that cannot be enforced on this host at all (no
	// table): it must not forward what they exclude (the filter reports
	// it to the cluster). Until the first pass it owns no VIP, like the
	// dataplane; a Service whose ranges the kernel refuses is closed and
	// reported on its own, and leaves the host healthy.
	n.filter = filter.New(filter.Options{Kernel: opts.Kernels.Filter, Store: n.store, Reporter: n.members, Log: log.With("component", "filter")})
	n.members.SetHealth(filter.HealthSource, n.filter.LastError())
	n.metrics.Registry.MustRegister(&filterCollector{f: n.filter})
	if cfg.Kubernetes != nil {
		if err := n.newController(); err != nil {
			return nil, err
		}
	} else {
		n.static, n.staticSub = n.live.Subscribe()
	}
	n.server = api.New(n.apiOptions())
	return n, nil
}

// Run runs the node until ctx ends or a part fails, then stops it in
// order: the cluster hands the VIPs over (or, on a graceful restart —
// ctx cancelled with ErrRestart as its cause — gossips that it is
// restarting and keeps them), the BGP routes are withdrawn, and only
// then does the VIP manager stop and remove what is left.
func (n *Node) Run(ctx context.Context) error {
	defer n.stopHost()
	if n.opts.Kernels.Close != nil {
		defer n.opts.Kernels.Close()
	}
	n.log.Info("starting edgelb", "version", n.opts.Version, "node", n.cfg.Node.Name, "config", n.cfg.Path,
		"dataplane", n.cfg.Dataplane.Backend, "mode", n.cfg.Dataplane.Mode, "method", n.cfg.Dataplane.Method)
	g, gctx := errgroup.WithContext(ctx)
	if raft := n.live.raft; raft != nil {
		// The consensus log stops last: the API's writes in flight and
		// the cluster's leave still have it until they return.
		raftCtx, stopRaft := context.WithCancel(context.WithoutCancel(gctx))
		raftDone := make(chan error, 1)
		go func() { raftDone <- raft.Run(raftCtx) }()
		defer func() {
			stopRaft()
			if err := <-raftDone; err != nil {
				n.log.Error("the cluster configuration's log stopped", "err", err)
			}
		}()
		g.Go(func() error {
			select {
			case err := <-raftDone:
				raftDone <- err
				if err == nil {
					err = errors.New("the cluster configuration's log stopped")
				}
				return err
			case <-gctx.Done():
				return nil
			}
		})
	}
	g.Go(func() error { return n.live.Run(gctx) })
	if n.dp != nil {
		n.dp.start(gctx, g)
	}
	g.Go(func() error { return n.filter.Run(gctx) })
	if n.ctrl == nil {
		// Static services only: the desired state changes with the
		// cluster configuration.
		g.Go(func() error { return staticLoop(gctx, n.static, n.staticSub, n.store, n.log) })
	} else {
		g.Go(func() error { return n.ctrl.Run(gctx) })
		g.Go(func() error { return followKubernetes(gctx, n.kubeSub, n.ctrl) })
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
	holding.Add(2)
	g.Go(func() error {
		defer holding.Done()
		return n.members.Run(gctx)
	})
	g.Go(func() error {
		defer holding.Done()
		return n.announcer.Run(gctx)
	})
	g.Go(func() error { return followBGP(gctx, n.bgpSub, n.announcer) })
	go func() {
		holding.Wait()
		stopVIPs(nil)
	}()
	if n.dataPath != nil {
		g.Go(func() error { return n.dataPath.Run(gctx) })
	}
	if n.repair != nil {
		g.Go(func() error { return n.repair.Run(gctx) })
	}
	if n.vips != nil {
		g.Go(func() error {
			err := n.vips.Run(vipCtx)
			if err == nil && gctx.Err() == nil {
				return errors.New("the VIP manager stopped")
			}
			return err
		})
	}
	obs := &observer{n: n, s: n.state, bus: n.bus, metrics: n.metrics, log: n.log, onReady: n.opts.OnReady, onWatchdog: n.opts.OnWatchdog}
	g.Go(func() error { return obs.Run(gctx) })
	g.Go(func() error { return n.server.Run(gctx) })

	err := g.Wait()
	n.log.Info("edgelb stopped")
	return err
}

// ClusterOptions maps the config file's cluster keys to the cluster's
// Options.
func ClusterOptions(cfg *config.Config, vips cluster.VIPSource, log *slog.Logger) cluster.Options {
	c := cfg.Cluster
	return cluster.Options{
		Name:           cfg.Node.Name,
		BindAddr:       c.BindAddr,
		BindPort:       c.BindPort,
		Join:           c.Join,
		SecretKey:      c.SecretKey,
		Insecure:       c.Insecure,
		Quorum:         c.Quorum,
		ProbeInterval:  c.ProbeInterval,
		ProbeTimeout:   c.ProbeTimeout,
		SuspicionMult:  c.SuspicionMult,
		GossipInterval: c.GossipInterval,
		Heartbeat: cluster.HeartbeatOptions{Off: !c.Heartbeat.Enabled, Interval: c.Heartbeat.Interval, Multiplier: c.Heartbeat.Multiplier,
			Port: c.Heartbeat.Port},
		HandoverTimeout: c.HandoverTimeout,
		RestartHold:     c.RestartHold,
		VIPs:            vips,
		Log:             log,
	}
}

// configSource is the running versions as the cluster gossips them.
type configSource struct{ consensus.Versions }

func (c configSource) Version() uint64 {
	d, _ := c.Current()
	return d.Version
}

// ID names the committed version exactly for the sync badge: its number
// and the first 16 hex digits of its hash (the whole would take 64 of
// the 512 bytes of metadata).
func (c configSource) ID() string {
	d, ok := c.Current()
	if !ok {
		return ""
	}
	return fmt.Sprintf("%d:%.16s", d.Version, d.Hash)
}

// newCluster builds the membership and the VIP manager (none without
// node.interface: the host then joins but owns no VIP).
func (n *Node) newCluster() error {
	cfg, log := n.cfg, n.log
	opts := ClusterOptions(cfg, n.split.L2(), log.With("component", "cluster"))
	// The configuration replicates through the consensus log, whose
	// messages ride on gossip; its version is gossiped for the
	// dashboard's sync badge.
	opts.Config = configSource{n.live.versions}
	if raft := n.live.raft; raft != nil {
		opts.Messages = func(b []byte) bool { return consensus.Handle(raft, b) }
		// The VIP quorum counts the log's members only.
		opts.Voters = raft.Members
	}
	opts.Transport = n.opts.Transport
	opts.Now = n.opts.Now
	if w := opts.QuorumWarning(); w != "" {
		log.Warn(w, "quorum", opts.Quorum, "clusterSize", opts.Size())
	}
	if w := opts.InsecureWarning(); w != "" {
		log.Warn(w, "clusterSize", opts.Size())
	}
	members, err := cluster.New(opts)
	if err != nil {
		return err
	}
	n.members = members
	n.live.members.Store(members)
	// What a version must fit on this host, for the host that takes a
	// write (clustercfg.Config.Members), and whether it applies the
	// committed one.
	members.SetFacts(n.live.host.Facts().Encode())
	n.live.report()
	if cfg.Dataplane.Backend == config.BackendNone {
		members.SetHealth("dataplane", nil) // announce-only: nothing to program
	} else {
		// Until the observer sees the first successful sync.
		members.SetHealth("dataplane", errors.New("not programmed yet"))
	}
	if cfg.Node.Interface == "" || n.opts.Kernels.VIP == nil {
		log.Warn("node.interface is not set: this host joins the cluster but owns and announces no VIPs")
		members.SetHealth("link", errors.New("node.interface is not set"))
		return nil
	}
	// The bgp VIPs are held beside the l2 ones the cluster assigns (none
	// while no version has a bgp section).
	h := n.split.Hosting(n.hostCtx, members)
	var repairer vip.Repairer
	if cfg.Cluster.NeighbourRepair > 0 && n.opts.Kernels.Repair != nil {
		n.repair = repair.New(repair.Options{
			Sources: n.opts.Kernels.Repair,
			Dialer:  n.opts.Kernels.Repair,
			Max:     cfg.Cluster.NeighbourRepair,
			Log:     log.With("component", "repair"),
		})
		repairer = n.repair
		n.metrics.Registry.MustRegister(repairCollector{n.repair})
	}
	n.vips, err = vip.NewManager(vip.Options{
		Kernel:    n.opts.Kernels.VIP,
		Announcer: n.opts.Kernels.ARP,
		Ownership: h,
		Reporter:  h,
		Quieter:   n.opts.Kernels.Quiet,
		Repairer:  repairer,
		Refresh:   cfg.Cluster.AnnounceRefresh,
		Lifetime:  cfg.Cluster.RestartHold,
		Now:       n.opts.Now,
		Log:       log.With("component", "vip"),
	})
	if err != nil {
		return err
	}
	if dp := cfg.Node.DataPath; dp.Enabled && n.opts.Kernels.DataPath != nil {
		k := n.opts.Kernels.DataPath(dp.Targets)
		n.dataPath = datapath.New(datapath.Options{
			Interface: cfg.Node.Interface,
			Prober:    k,
			Targets:   k,
			Peers:     peerServes{members, cfg.Node.Name},
			Reporter:  members,
			Interval:  dp.Interval,
			Timeout:   dp.Timeout,
			Fall:      dp.Fall,
			Rise:      dp.Rise,
			Log:       log.With("component", "datapath"),
		})
		n.metrics.Registry.MustRegister(dataPathCollector{n.dataPath})
	}
	// A graceful restart left the previous process's VIPs on the
	// interface: keep them while this process starts.
	adopted, err := n.vips.Adopt()
	if err != nil {
		log.Warn("cannot adopt the VIPs of the previous process: starting afresh", "err", err)
	}
	// The cluster's restart grace is about the l2 VIPs it assigns; the
	// bgp ones are on every host anyway.
	members.Adopt(n.split.L2Of(adopted))
	return nil
}

// newController builds the Kubernetes side: informers, the Lease, IPAM
// and status writes.
func (n *Node) newController() error {
	client, events := n.opts.Kube, n.opts.Kube
	if client == nil {
		var err error
		client, events, n.kubeToken, err = kubeClients(n.cfg.Kubernetes, n.opts.Version, n.log)
		if err != nil {
			return err
		}
	}
	registerKubeMetrics(n.metrics.Registry)
	opts := k8s.Options{
		// Events through a client of their own: they never wait for, nor
		// delay, the status writes and the Lease.
		EventClient: events,
		CountEvent:  func(outcome string) { kubeEvents.WithLabelValues(outcome).Inc() },
		Identity:    n.cfg.Node.Name,
		Store:       n.store,
		Log:         n.log.With("component", "kubernetes"),
		// The leader records owner changes and backends that all fail
		// as Events on the Services.
		Ownership: n.members,
		Now:       n.opts.Now,
		// IPAM follows the committed configuration only.
		Committed: n.live.Committed,
		OnEvent: func(typ, msg string, fields map[string]string) {
			if typ == "allocation" {
				n.metrics.Allocations.Inc()
			}
			n.bus.Publish(typ, msg, fields)
		},
	}
	if n.dp != nil {
		opts.Health = n.dp.Health
	}
	// Subscribed as the controller takes the running Config: no version
	// is missed in between.
	var cur Change
	cur, n.kubeSub = n.live.Subscribe()
	opts.Config = cur.Config
	n.ctrl = k8s.New(client, opts)
	return nil
}

// clusterConfig is the cluster configuration as the API reads and
// changes it. With cluster.insecure in a cluster of several hosts the API
// makes no version: none would reach the others.
func (n *Node) clusterConfig() *clustercfg.Config {
	return &clustercfg.Config{Versions: n.live.versions, Host: n.live.host, Unreplicated: ClusterOptions(n.cfg, nil, nil).Unreplicated(),
		Members: n.memberFacts}
}

// memberFacts are the facts every other configured member gossips (the
// log's voters; a host not yet added has no say); a member whose facts
// are unknown (not heard, an older release) is left out.
func (n *Node) memberFacts() []clustercfg.MemberFacts {
	var voters []string
	if raft := n.live.raft; raft != nil {
		voters = raft.Members()
	}
	var out []clustercfg.MemberFacts
	for _, m := range n.members.Members() {
		if m.Name == n.cfg.Node.Name || len(m.Facts) == 0 {
			continue
		}
		if voters != nil && !slices.Contains(voters, m.Addr.String()) {
			continue
		}
		f, err := config.DecodeFacts(m.Facts)
		if err != nil {
			continue
		}
		out = append(out, clustercfg.MemberFacts{Name: m.Name, Facts: f})
	}
	return out
}

// apiKeys are the API options a reload changes: tokens, names and the TLS
// files.
func apiKeys(cfg *config.Config) api.Options {
	o := api.Options{Hosts: apiHosts(cfg.API)}
	for _, t := range cfg.API.Named {
		o.NamedTokens = append(o.NamedTokens, api.Token{Name: t.Name, Role: t.Role, Secret: t.Secret})
	}
	if t := cfg.API.TLS; t != nil {
		o.CertFile, o.KeyFile = t.CertFile, t.KeyFile
	}
	return o
}

func (n *Node) apiOptions() api.Options {
	cfg, bus := n.cfg, n.bus
	keys := apiKeys(cfg)
	o := api.Options{
		Listen:      cfg.API.Listen,
		Hosts:       keys.Hosts,
		NamedTokens: keys.NamedTokens,
		CertFile:    keys.CertFile,
		KeyFile:     keys.KeyFile,
		Config:      n.clusterConfig(),
		State:       n.state,
		OnAudit: func(e api.AuditEntry) {
			bus.Publish("audit", fmt.Sprintf("%s by %s from %s", e.What, e.Who, e.From),
				map[string]string{"who": e.Who, "what": e.What, "configVersion": fmt.Sprint(e.Version)})
		},
		Bus:       bus,
		Metrics:   n.metrics,
		Dashboard: web.Files(),
		Log:       n.log.With("component", "api"),
	}
	if n.live.raft != nil {
		o.Members = memberSet{raft: n.live.raft, gossip: n.live.members.Load, port: cfg.Cluster.BindPort, quorum: cfg.Cluster.Quorum}
	}
	o.BGP = bgpStatus(n.live, n.announcer, n.members)
	if ctrl := n.ctrl; ctrl != nil {
		o.ServiceEvents = func(ctx context.Context, namespace, name string) ([]api.ServiceEvent, error) {
			evs, err := ctrl.ServiceEvents(ctx, namespace, name)
			out := make([]api.ServiceEvent, 0, len(evs))
			for _, e := range evs {
				out = append(out, api.ServiceEvent{Type: e.Type, Reason: e.Reason, Message: e.Message, Count: e.Count,
					From: e.From, FirstTime: e.First, LastTime: e.Last})
			}
			return out, err
		}
	}
	n.metrics.Registry.MustRegister(api.BGPCollector(o.BGP))
	if n.opts.StateDir != "" {
		o.AuditFile = filepath.Join(n.opts.StateDir, "audit.log")
	}
	return o
}

// Reload takes what of cfg (the config file read again) can change
// without a restart, as `systemctl reload edgelb` (SIGHUP) asks: the API's
// tokens, names and TLS certificate, api.backendSeriesLimit, and the
// kubeconfig's token. Anything
// it cannot take is refused with the reason and nothing changes; other
// host-local keys need a restart (edgelb says which differ).
func (n *Node) Reload(cfg *config.Config) error {
	if err := n.server.Reload(apiKeys(cfg)); err != nil {
		return err
	}
	n.metrics.SetBackendSeriesLimit(cfg.API.BackendSeriesLimit)
	if n.kubeToken != nil && cfg.Kubernetes != nil {
		if err := n.kubeToken.reload(cfg.Kubernetes.Kubeconfig); err != nil {
			return fmt.Errorf("the kubeconfig's token: %w", err)
		}
		n.log.Info("the kubeconfig's token reloaded", "kubeconfig", cfg.Kubernetes.Kubeconfig)
		n.setTokenExpiry(cfg.Kubernetes)
	}
	if differ := restartKeys(n.cfg, cfg); len(differ) > 0 {
		n.log.Warn("the config file changed keys a reload does not take: restart edgelb for them", "keys", differ)
	}
	return nil
}

// restartKeys names the host-local keys that differ between a and b and
// need a restart.
func restartKeys(a, b *config.Config) []string {
	var out []string
	for key, same := range map[string]bool{
		"node":                  reflect.DeepEqual(a.Node, b.Node),
		"cluster":               reflect.DeepEqual(a.Cluster, b.Cluster),
		"api.listen":            a.API.Listen == b.API.Listen,
		"kubernetes.kubeconfig": (a.Kubernetes == nil) == (b.Kubernetes == nil) && (a.Kubernetes == nil || a.Kubernetes.Kubeconfig == b.Kubernetes.Kubeconfig),
	} {
		if !same {
			out = append(out, key)
		}
	}
	slices.Sort(out)
	return out
}

// bearer is the kubeconfig's inline token, which Reload can replace: the
// client sends whatever it holds at each request. (A kubeconfig with a
// tokenFile needs none of this: client-go reads that file again by
// itself.)
type bearer struct {
	token atomic.Pointer[string]
}

func (b *bearer) reload(kubeconfig string) error {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	if rc.BearerToken == "" {
		return errors.New("it has no token any more: restart edgelb to change how it authenticates")
	}
	token := rc.BearerToken
	b.token.Store(&token)
	return nil
}

type bearerTransport struct {
	b    *bearer
	next http.RoundTripper
}

func (t bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+*t.b.token.Load())
	return t.next.RoundTrip(r)
}

// KubeClient builds the Kubernetes client of kc (its kubeconfig, else
// the in-cluster one), and sends client-go's logs to log.
func KubeClient(kc *config.Kubernetes, version string, log *slog.Logger) (k8s.Client, error) {
	client, _, _, err := kubeClients(kc, version, log)
	return client, err
}

// kubeClients is KubeClient; a second client for Events, with a rate
// limit of its own (kubernetes.eventQPS, eventBurst), as kube-scheduler
// and kube-controller-manager write theirs; and the holder of the
// kubeconfig's inline token, nil without one. client-go honours the API
// server's 429 and Retry-After on both (API Priority and Fairness).
func kubeClients(kc *config.Kubernetes, version string, log *slog.Logger) (client, events k8s.Client, tok *bearer, err error) {
	// client-go logs through klog; send it to our slog handler.
	klog.SetLogger(logr.FromSlogHandler(log.With("component", "client-go").Handler()))
	var rc *rest.Config
	if kc.Kubeconfig == "" {
		rc, err = rest.InClusterConfig()
	} else {
		rc, err = clientcmd.BuildConfigFromFlags("", kc.Kubeconfig)
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("loading kubeconfig %q: %w", kc.Kubeconfig, err)
	}
	rc.QPS, rc.Burst = kc.QPS, kc.Burst
	rc.UserAgent = "edgelb/" + version
	if kc.Kubeconfig != "" && rc.BearerToken != "" {
		tok = &bearer{}
		token := rc.BearerToken
		tok.token.Store(&token)
		rc.BearerToken = ""
		rc.Wrap(func(next http.RoundTripper) http.RoundTripper { return bearerTransport{b: tok, next: next} })
	}
	// Each client made from a Config gets a rate limiter of its own.
	erc := rest.CopyConfig(rc)
	erc.QPS, erc.Burst = kc.EventQPS, kc.EventBurst
	if client, err = k8s.NewClient(rc); err == nil {
		events, err = k8s.NewClient(erc)
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	return client, events, tok, nil
}

// CheckFiles checks the files the config names that config.Load does not
// read — the kubeconfig and the API's TLS certificate and key — so that
// `edgelb check` (the unit's ExecStartPre) refuses what would make the
// service fail at start and restart in a loop. Each error names the key.
//
// Run as root where the service's user (ServiceUser) exists, it also
// checks that this user may read each file: the unit runs edgelb as it.
func CheckFiles(cfg *config.Config) []error {
	var errs []error
	readable := func(key, path string) {
		if err := readableBy(path, ServiceUser); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
		}
	}
	if k := cfg.Kubernetes; k != nil && k.Kubeconfig != "" {
		if _, err := clientcmd.BuildConfigFromFlags("", k.Kubeconfig); err != nil {
			errs = append(errs, fmt.Errorf("kubernetes.kubeconfig: %w (make it as docs/operations.md shows)", err))
		} else {
			readable("kubernetes.kubeconfig", k.Kubeconfig)
		}
	}
	if t := cfg.API.TLS; t != nil {
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			errs = append(errs, fmt.Errorf("api.tls: certificate %s and key %s: %w", t.CertFile, t.KeyFile, err))
		} else {
			readable("api.tls.certFile", t.CertFile)
			readable("api.tls.keyFile", t.KeyFile)
		}
	}
	if f := cfg.Cluster.SecretKeyFile; f != "" {
		readable("cluster.secretKeyFile", f)
	}
	return errs
}

// ServiceUser is the user the packaged unit runs edgelb as.
const ServiceUser = "edgelb"

// readableBy reports whether user name may read path by its mode bits
// (owner, group — primary or supplementary — or others). It says nothing
// (nil) when not run as root or when there is no such user: then whoever
// runs edgelb is who runs the check.
func readableBy(path, name string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	mode := st.Mode().Perm()
	uid := fmt.Sprint(sys.Uid)
	gid := fmt.Sprint(sys.Gid)
	groups, _ := u.GroupIds()
	switch {
	case uid == u.Uid && mode&0o400 != 0:
		return nil
	case (gid == u.Gid || slices.Contains(groups, gid)) && mode&0o040 != 0:
		return nil
	case mode&0o004 != 0:
		return nil
	}
	return fmt.Errorf("%s (mode %04o) cannot be read by the service's user %s: chgrp %s %s && chmod g+r %s", path, mode, name, name, path, path)
}

// TokenExpiry is when the bearer token of the kubeconfig expires, read
// from a JWT's exp claim (a ServiceAccount token from `kubectl create
// token` has one); ok is false when the kubeconfig has no such token. The
// token is not verified: this only warns before it runs out.
func TokenExpiry(kc *config.Kubernetes) (exp time.Time, ok bool) {
	if kc == nil || kc.Kubeconfig == "" {
		return time.Time{}, false
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kc.Kubeconfig)
	if err != nil {
		return time.Time{}, false
	}
	tok := rc.BearerToken
	if tok == "" && rc.BearerTokenFile != "" {
		b, err := os.ReadFile(rc.BearerTokenFile)
		if err != nil {
			return time.Time{}, false
		}
		tok = strings.TrimSpace(string(b))
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == 0 {
		return time.Time{}, false
	}
	return time.Unix(claims.Exp, 0).UTC(), true
}

func (n *Node) setTokenExpiry(kc *config.Kubernetes) {
	if exp, ok := TokenExpiry(kc); ok {
		n.tokenExp.Store(&exp)
	} else {
		n.tokenExp.Store(nil)
	}
}

// TokenWarning is how long before its token expires edgelb says so.
const TokenWarning = 30 * 24 * time.Hour

// apiHosts are the names the API answers to: api.hosts, and the listen
// address's host when it is a name.
func apiHosts(a config.API) []string {
	hosts := slices.Clone(a.Hosts)
	if h, _, err := net.SplitHostPort(a.Listen); err == nil && h != "" {
		if _, err := netip.ParseAddr(h); err != nil {
			hosts = append(hosts, h)
		}
	}
	return hosts
}
