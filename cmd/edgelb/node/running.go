package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go4.org/netipx"

	"github.com/edgelb/edgelb/cluster"
	"github.com/edgelb/edgelb/cluster/consensus"
	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/config"
)

// clusterConfigFile is the file, in the state directory, that keeps the
// cluster configuration's versions of an insecure cluster, and kept
// every cluster's before the consensus log (read once, to upgrade).
const clusterConfigFile = "cluster-config.json"

// liveConfig is the Config this host runs: the file's host-local keys
// with the current version of the cluster configuration, committed by
// the consensus log (cluster/consensus). It is the one place the parts
// read the cluster-wide keys from; they subscribe and rebuild when a new
// version is applied.
type liveConfig struct {
	host *config.Host
	// versions are the cluster configuration's versions: raft's, or,
	// when raft is nil (cluster.insecure, or a lone host with no state
	// directory), this host's own (cluster.LocalDocs).
	versions consensus.Versions
	raft     *consensus.Node
	// members is the running cluster, whose memberlist carries raft's
	// messages; set once it is built.
	members atomic.Pointer[cluster.Cluster]
	// seed is what this host proposes as version 1 when the log has
	// none: the file's cluster-wide keys, or an older release's current
	// version (cluster-config.json); seedBy is its author.
	seed   []byte
	seedBy string
	// imported is the history an older release kept in
	// cluster-config.json, oldest first: when set, it seeds the log in
	// place of seed, numbers and authors kept.
	imported []cluster.Doc
	log      *slog.Logger

	mu      sync.Mutex
	cfg     *config.Config
	version uint64
	// id is the running version's Doc.ID.
	id string
	// managed is every address the cluster configurations this process
	// ran managed: what it programmed under one version is still its own
	// to remove under the next.
	managed *netipx.IPSet
	// bgp is cfg.BGPSet(), built once per version: the source NAT and
	// the VIP split ask it for every VIP.
	bgp  *netipx.IPSet
	subs []*Subscription
	// changed is subscribed to the versions from the start: no version
	// that arrives before Run is missed.
	changed <-chan struct{}
	// fileSpec is the config file's cluster-wide keys, canonical, as
	// read at start.
	fileSpec []byte
	// unapplied is the committed version this host's keys refuse (0:
	// none), and why: until a version it can take is committed, the host
	// owns no VIPs (ConfigHealth) and says so.
	unapplied    uint64
	unappliedErr error
}

// ConfigHealth is the cluster's health source of a host that cannot
// apply the committed cluster configuration: it owns no VIPs, since it
// would serve them with a configuration the cluster no longer has.
const ConfigHealth = "config"

// seedTimeout bounds one attempt at seeding version 1; Run tries again
// until a version exists.
const seedTimeout = 5 * time.Second

// newLiveConfigFrom builds the cluster configuration's versions. In a
// cluster with encrypted gossip they are the consensus log's, in the
// state directory dir: the version committed there runs, and Run seeds
// version 1 with the file's cluster-wide keys (data) when the cluster
// has none yet — or, on the first start after an upgrade from a release
// that kept them in cluster-config.json, with that file's current
// version. With cluster.insecure nothing replicates (the peers are not
// authenticated): the versions are this host's own, persisted in
// cluster-config.json as before, and in a cluster of several hosts the
// API makes none, so the file is the only way to change them: its keys
// become the next version when they differ from the running one.
func newLiveConfigFrom(cfg *config.Config, data []byte, dir string, log *slog.Logger) (*liveConfig, error) {
	l := &liveConfig{host: config.NewHost(cfg.Path, data, filepath.Dir(cfg.Path)), log: log, cfg: cfg, managed: cfg.Managed(), bgp: cfg.BGPSet()}
	spec, err := config.SpecFromFile(cfg.Path, data)
	if err != nil {
		return nil, err
	}
	l.fileSpec = spec
	opts := ClusterOptions(cfg, nil, nil)
	if opts.Insecure || dir == "" && opts.Size() <= 1 {
		if err := l.local(cfg, dir, spec, opts); err != nil {
			return nil, err
		}
	} else {
		if dir == "" {
			return nil, fmt.Errorf("a cluster of %d hosts keeps its configuration's log in the state directory, and none is writable: "+
				"run edgelb as its systemd unit (StateDirectory=edgelb) or make /var/lib/edgelb writable", opts.Size())
		}
		if err := l.consensus(cfg, dir, spec, opts); err != nil {
			return nil, err
		}
	}
	l.changed = l.versions.Subscribe()
	l.update()
	return l, nil
}

// consensus builds the raft member of this host; Run starts it.
func (l *liveConfig) consensus(cfg *config.Config, dir string, spec []byte, opts cluster.Options) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	peers, self, err := opts.MemberAddrs(ctx, nil)
	if err != nil {
		return err
	}
	n, err := consensus.New(consensus.Options{
		Name:  self,
		Peers: peers,
		Dir:   dir,
		Transport: &consensus.Memberlist{Self: self, SendFrame: func(to string, frame []byte, reliable bool) error {
			if c := l.members.Load(); c != nil {
				return c.SendTo(to, frame, reliable)
			}
			return errors.New("gossip is not running yet")
		}},
		Existing: func(ctx context.Context) (bool, error) { return clusterRuns(ctx, &l.members, self, peers) },
		Log:      l.log.With("member", self),
	})
	if err != nil {
		return fmt.Errorf("the cluster configuration's log: %w", err)
	}
	l.raft, l.versions = n, n
	l.seed, l.seedBy = spec, "file "+cfg.Path
	// Upgrade: an older release kept the versions in cluster-config.json,
	// replicated by last writer wins; its history is what this cluster
	// runs, so it is what seeds the log, numbers kept (the versions it
	// had marked lost are left out: they never ran).
	old := filepath.Join(dir, clusterConfigFile)
	if _, err := os.Stat(old); err == nil {
		docs, err := cluster.NewDocs(cluster.DocOptions{Name: cfg.Node.Name, Path: old, Log: l.log})
		if err != nil {
			return fmt.Errorf("reading the configuration an older release kept: %w", err)
		}
		for _, h := range docs.History() {
			if !h.Lost {
				l.imported = append(l.imported, h.Doc)
			}
		}
		if cur, ok := docs.Current(); ok {
			l.seed, l.seedBy = cur.Body, cur.UpdatedBy
		}
	}
	return nil
}

// clusterRuns tells a host whose log is empty whether a cluster runs
// already, from gossip: a live member gossips a committed version (then
// the host joins it, once `edgelb members add` has made it a member), or
// a majority of the file's members (peers, self included) is live with
// none (a new cluster: it bootstraps from the file's list, like the
// others). It waits until it can tell, up to ctx. members is the
// running cluster, nil until it is built.
func clusterRuns(ctx context.Context, members *atomic.Pointer[cluster.Cluster], self string, peers []string) (bool, error) {
	if len(peers) <= 1 {
		return false, nil
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if c := members.Load(); c != nil {
			live := 0
			for _, m := range c.Members() {
				if m.Absent {
					continue
				}
				if m.ConfigVersion > 0 && m.Addr.String() != self {
					return true, nil
				}
				if slices.Contains(peers, m.Addr.String()) {
					live++
				}
			}
			if live > len(peers)/2 {
				return false, nil
			}
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-t.C:
		}
	}
}

// local builds versions kept by this host alone (cluster.insecure).
func (l *liveConfig) local(cfg *config.Config, dir string, spec []byte, opts cluster.Options) error {
	path := ""
	if dir != "" {
		path = filepath.Join(dir, clusterConfigFile)
	}
	docs, err := cluster.NewDocs(cluster.DocOptions{
		Name:     cfg.Node.Name,
		Path:     path,
		Validate: l.validate,
		Log:      l.log,
	})
	if err != nil {
		return err
	}
	l.versions = cluster.LocalDocs{Docs: docs}
	seeded, err := docs.Seed(spec, "file "+cfg.Path)
	if err != nil {
		return fmt.Errorf("the file's cluster configuration: %w", err)
	}
	cur, _ := docs.Current()
	switch {
	case seeded:
		l.log.Info("cluster configuration seeded from the file", "version", 1)
	case bytes.Equal(cur.Body, spec):
		// The file says what runs.
	case opts.Unreplicated() != nil:
		next, err := docs.Propose(spec, "file "+cfg.Path, cur.Version)
		if err != nil {
			return fmt.Errorf("the file's cluster configuration: %w", err)
		}
		l.log.Info("cluster.insecure: this host runs the cluster-wide keys of its config file, which changed",
			"version", next.Version, "was", cur.Version, "file", cfg.Path)
	default:
		l.log.Warn("the config file's cluster-wide keys (pools, services, dataplane, healthCheck, bgp, backendStates) differ from the cluster configuration and are not used: change it with `edgelb config apply -f FILE`",
			"version", cur.Version, "file", cfg.Path)
	}
	return nil
}

// seedLog proposes version 1 until the log has a version: every host
// does, the first in the log wins (consensus.Node.Seed).
func (l *liveConfig) seedLog(ctx context.Context) {
	for {
		if _, ok := l.raft.Current(); ok {
			return
		}
		sctx, cancel := context.WithTimeout(ctx, seedTimeout)
		var seeded bool
		var err error
		if len(l.imported) > 0 {
			seeded, err = l.raft.Import(sctx, l.imported)
		} else {
			seeded, err = l.raft.Seed(sctx, l.seed, l.seedBy)
		}
		cancel()
		switch {
		case err == nil:
			if seeded && len(l.imported) > 0 {
				last := l.imported[len(l.imported)-1]
				l.log.Info("cluster configuration imported from the older release's cluster-config.json", "versions", len(l.imported), "version", last.Version, "by", last.UpdatedBy)
			} else if seeded {
				l.log.Info("cluster configuration seeded", "version", 1, "by", l.seedBy)
			}
			return
		case ctx.Err() != nil:
			return
		default:
			l.log.Info("waiting for a majority of the cluster to seed its configuration", "err", err)
		}
	}
}

// FileDiffers reports whether the config file's cluster-wide keys differ
// from the version this host runs: they are not used (the cluster
// configuration is changed through the API), which the operator who
// edited the file must be told.
func (l *liveConfig) FileDiffers() bool {
	cur, ok := l.versions.Current()
	return ok && !bytes.Equal(cur.Body, l.fileSpec)
}

// validate is the check every member runs on a version before it takes
// it: the same as `edgelb check`, over this host's own keys.
func (l *liveConfig) validate(body []byte) error {
	_, err := l.host.Apply(body)
	return err
}

// Config is the Config this host runs and the version of its cluster
// configuration.
func (l *liveConfig) Config() (*config.Config, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cfg, l.version
}

// Owns reports whether edgelb manages addr (it is in a pool or a static
// service of a version this process ran).
func (l *liveConfig) Owns(addr netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.managed.Contains(addr)
}

// Subscribe returns the running version (a Change with no flag set) and a
// subscription to every later one: nothing is missed in between. A
// subscription starts with no change pending: the subscriber builds
// itself from the version returned.
func (l *liveConfig) Subscribe() (Change, *Subscription) {
	sub := &Subscription{c: make(chan struct{}, 1)}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.subs = append(l.subs, sub)
	return Change{Config: l.cfg, Version: l.version}, sub
}

// update takes the current version, if it is not the one running.
func (l *liveConfig) update() bool {
	doc, ok := l.versions.Current()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !ok || doc.ID() == l.id {
		return false
	}
	cfg, err := l.host.Apply(doc.Body)
	if err != nil {
		// The host receiving the write checked it against every member's
		// facts it had heard (clustercfg); this host's keys refuse it all
		// the same (unheard, or its file changed since). The log is
		// authoritative: the version is committed. This host keeps the
		// one it runs, owns no VIPs until it can take one, and says why.
		if l.unapplied != doc.Version {
			l.log.Error("the committed cluster configuration does not apply on this host: it owns no VIPs until a version it can take is committed",
				"version", doc.Version, "running", l.version, "err", err)
		}
		l.unapplied, l.unappliedErr = doc.Version, err
		l.reportLocked()
		return false
	}
	if l.unapplied != 0 {
		l.log.Info("this host applies the committed cluster configuration again", "version", doc.Version)
	}
	l.unapplied, l.unappliedErr = 0, nil
	defer l.reportLocked()
	// Classified once, here, for every part: the only producer of Changes.
	change := classify(l.cfg, cfg)
	change.Config, change.Version = cfg, doc.Version
	if change.Backend && l.id != "" {
		// Every other key is taken up at run time; whether the host
		// runs an IPVS dataplane at all is decided when it starts.
		l.log.Warn("the new cluster configuration changes dataplane.backend, which takes effect only when edgelb restarts on each host (systemctl restart edgelb)",
			"version", doc.Version, "running", l.cfg.Dataplane.Backend, "configured", cfg.Dataplane.Backend)
	}
	var b netipx.IPSetBuilder
	b.AddSet(l.managed)
	b.AddSet(cfg.Managed())
	l.managed, _ = b.IPSet()
	l.cfg, l.version, l.id, l.bgp = cfg, doc.Version, doc.ID(), cfg.BGPSet()
	for _, sub := range l.subs {
		sub.add(change)
	}
	return true
}

// Unapplied is the committed version this host cannot apply and why (0,
// nil: it runs the committed version).
func (l *liveConfig) Unapplied() (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.unapplied, l.unappliedErr
}

// report tells the cluster, once it runs, whether this host applies the
// committed version: ConfigHealth and the gossiped Meta.Unapplied.
func (l *liveConfig) report() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reportLocked()
}

// reportLocked is report with l.mu held: the cluster never calls back
// into liveConfig, so reports keep the order of the versions.
func (l *liveConfig) reportLocked() {
	c := l.members.Load()
	if c == nil {
		return
	}
	var problem error
	switch {
	case l.raft != nil && l.id == "":
		// Nothing committed yet runs here: the file's cluster-wide keys
		// are not the cluster's until the log says so (a newcomer's file
		// may differ from what the cluster runs).
		problem = errors.New("no committed cluster configuration yet (a new cluster commits its first once a majority of its hosts is up; a host not yet a member waits for `edgelb members add`): owning no VIPs until one is applied")
	case l.unapplied != 0:
		problem = fmt.Errorf("cannot apply the committed cluster configuration version %d over this host's config file (running version %d, owning no VIPs): %w",
			l.unapplied, l.version, l.unappliedErr)
	}
	c.SetUnapplied(l.unapplied)
	c.SetHealth(ConfigHealth, problem)
}

// Committed says why this host must not assign new addresses from the
// pools (IPAM follows the committed configuration only): it has no
// committed version yet, is not in contact with a majority of the
// configured cluster, or cannot apply the committed version. nil: it
// runs the committed version in contact with a majority, or keeps its
// versions alone (cluster.insecure, a lone host).
func (l *liveConfig) Committed() error {
	if l.raft == nil {
		return nil
	}
	cur, ok := l.raft.Current()
	if !ok {
		return errors.New("configuration not committed: this host has no committed version yet (not joined to a majority)")
	}
	if c := l.raft.Contact(); !c.Quorum {
		msg := "configuration not committed: no majority reachable"
		if len(c.Unreachable) > 0 {
			msg += " (unreachable: " + strings.Join(c.Unreachable, ", ") + ")"
		}
		return errors.New(msg)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur.ID() != l.id {
		return fmt.Errorf("configuration not applied: this host runs version %d, not the committed version %d", l.version, cur.Version)
	}
	return nil
}

// BGPSet is the set of addresses announced over BGP under the running
// version.
func (l *liveConfig) BGPSet() *netipx.IPSet {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bgp
}

// Run takes each new version as it is applied until ctx ends; with
// consensus it first seeds version 1 when the log has none (the
// consensus Node runs beside it, see Node.Run).
func (l *liveConfig) Run(ctx context.Context) error {
	if l.raft != nil {
		seeded := make(chan struct{})
		go func() {
			defer close(seeded)
			l.seedLog(ctx)
		}()
		defer func() { <-seeded }()
	}
	for {
		if l.update() {
			_, v := l.Config()
			l.log.Info("running a new cluster configuration", "version", v)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-l.changed:
		}
	}
}

// staticLoop builds the desired state from the static services, again
// for each version that changes it.
func staticLoop(ctx context.Context, cur Change, sub *Subscription, store *lb.Store, log *slog.Logger) error {
	build := func(c Change) {
		d, _ := lb.Build(lb.Snapshot{}, lb.OptionsFromConfig(c.Config))
		store.Set(d)
		log.Info("desired state built from static services", "version", c.Version, "virtualServices", len(d.Services), "vips", len(d.VIPs()))
	}
	build(cur)
	return sub.Follow(ctx, func(c Change) {
		if c.Desired {
			build(c)
		}
	})
}

// cleanupManaged is what edgelb cleanup removes IPVS services on: the
// addresses of the file's pools and static services and of every kept
// version of the cluster configuration in the state directory dir (the
// running one may differ from the file): the consensus log's, read with
// edgelb stopped, and cluster-config.json's.
func cleanupManaged(cfg *config.Config, dir string) *netipx.IPSet {
	var b netipx.IPSetBuilder
	b.AddSet(cfg.Managed())
	data, err := os.ReadFile(cfg.Path)
	if dir == "" || err != nil {
		s, _ := b.IPSet()
		return s
	}
	host := config.NewHost(cfg.Path, data, filepath.Dir(cfg.Path))
	var bodies [][]byte
	// The consensus log's versions, and those of an insecure host (or an
	// older release) in cluster-config.json.
	if hist, err := consensus.ReadHistory(dir, 0); err == nil {
		for _, d := range hist {
			bodies = append(bodies, d.Body)
		}
	}
	docs, err := cluster.NewDocs(cluster.DocOptions{Name: cfg.Node.Name, Path: filepath.Join(dir, clusterConfigFile)})
	if err == nil {
		for _, h := range docs.History() {
			bodies = append(bodies, h.Body)
		}
	}
	for _, body := range bodies {
		if c, err := host.Apply(body); err == nil {
			b.AddSet(c.Managed())
		}
	}
	s, _ := b.IPSet()
	return s
}
