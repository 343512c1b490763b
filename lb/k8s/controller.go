package k8s

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/config"
)

// Options configures a Controller.
type Options struct {
	// Identity names this host in the Lease, Events and managedFields.
	Identity string
	Config   *config.Config
	Store    *lb.Store
	Log      *slog.Logger
	// Workers is the number of Services processed at once by the leader.
	Workers int
	// MinSyncInterval bounds how often the desired state is rebuilt.
	MinSyncInterval time.Duration
	// OnEvent, if set, is told about allocations ("allocation") and
	// refusals ("error") as they happen on the leader, for the API's
	// event stream. It must not block.
	OnEvent func(typ, msg string, fields map[string]string)
	// Leader election timing (client-go's LeaderElectionConfig); 0 means
	// 15 s, 10 s and 2 s.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Ownership, if set, tells who owns each VIP: the leader records a
	// Normal Event on a Service when the owner of its VIP changes.
	Ownership Ownership
	// Health, if set, is this host's health checks: the leader records a
	// Warning Event on a Service when none of its backends passes.
	Health Health
	// EventInterval is the least time between two Events of one kind
	// (owner, backends) on one Service; 0 means DefaultEventInterval.
	EventInterval time.Duration
	// Now is the clock of those Events; nil means time.Now.
	Now func() time.Time
	// Committed, when set, says why the Lease holder must not assign a
	// new address now (nil: it may): IPAM follows the committed cluster
	// configuration only, so a host with no committed current version
	// (not yet joined, cut off from the majority) assigns nothing. A
	// Service that holds addresses keeps them, unchanged; one without
	// stays pending with that reason, and both are tried again every
	// CommitRetry.
	Committed func() error
	// CommitRetry is how often a Service held back by Committed is
	// tried again; 0 means DefaultCommitRetry.
	CommitRetry time.Duration
	// EventClient, if set, writes the Events: a clientset with a rate
	// limit of its own (as kube-scheduler's eventClient), so that Events
	// never take the status writes' or the Lease's share of the client's
	// QPS. nil means the main client.
	EventClient Client
	// CountEvent, if set, is told of each Event's outcomes (EventRecorded,
	// EventWritten, EventFailed). It must not block.
	CountEvent func(outcome string)
}

// DefaultWorkers is the default of Options.Workers: enough status writes
// in flight to use the client's QPS on a busy API server, few enough to
// hold a small share of its API Priority and Fairness seats.
const DefaultWorkers = 16

// DefaultCommitRetry is the default of Options.CommitRetry.
const DefaultCommitRetry = time.Second

// DefaultEventInterval is the default of Options.EventInterval.
const DefaultEventInterval = 30 * time.Second

// Controller is the Kubernetes side of edgelb.
type Controller struct {
	opts   Options
	log    *slog.Logger
	client Client
	kc     *config.Kubernetes
	// cfg is the running Config, buildOp the options built from it:
	// replaced together by SetConfig.
	cfg     atomic.Pointer[config.Config]
	buildOp atomic.Pointer[lb.Options]

	// informers are the caches of Services, EndpointSlices and Nodes
	// (patient), run by Run until it returns.
	informers []cache.SharedIndexInformer
	services  serviceLister
	nodes     listerscorev1.NodeLister
	synced    []cache.InformerSynced
	// byStatusIP indexes the cached Services by the addresses in their
	// status.
	byStatusIP *valueIndex[netip.Addr]

	// stopped is closed when Run returns: informers stop waiting for
	// the API server.
	stopped chan struct{}

	dirty chan struct{}
	// changes are what the informers changed since the desired-state loop
	// last looked (changes.go).
	changes changes
	// slices is the EndpointSlices' cache, byService indexes it by their
	// Service's key.
	slices    cache.Store
	byService *valueIndex[string]
	// term is the running leadership term, nil when this host is not the
	// leader. terms holds a token while a term runs, so that terms never
	// overlap.
	term  atomic.Pointer[term]
	terms chan struct{}
	ready atomic.Bool
	// host records what this host's kernel refuses (hostproblems.go).
	host hostProblems
	// why is the Lease holder's last refusal per Service (pending.go).
	why refusals
	// access is AccessProblem's answer (a string; access.go).
	access atomic.Value
	// noPatch says once that status writes fall back to updates
	// (setIngress).
	noPatch sync.Once
}

// New builds a Controller; it starts nothing.
func New(client Client, opts Options) *Controller {
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.MinSyncInterval <= 0 {
		opts.MinSyncInterval = 50 * time.Millisecond
	}
	if opts.LeaseDuration <= 0 {
		opts.LeaseDuration = 15 * time.Second
	}
	if opts.RenewDeadline <= 0 {
		opts.RenewDeadline = 10 * time.Second
	}
	if opts.RetryPeriod <= 0 {
		opts.RetryPeriod = 2 * time.Second
	}
	if opts.EventInterval <= 0 {
		opts.EventInterval = DefaultEventInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &Controller{
		opts:    opts,
		log:     opts.Log,
		client:  client,
		kc:      opts.Config.Kubernetes,
		dirty:   make(chan struct{}, 1),
		stopped: make(chan struct{}),
		terms:   make(chan struct{}, 1),
	}
	c.setConfig(opts.Config)
	svcInf, sliceInf, nodeInf := c.patient(client)
	c.informers = []cache.SharedIndexInformer{svcInf, sliceInf, nodeInf}
	c.services = serviceLister{svcInf.GetIndexer()}
	c.nodes = listerscorev1.NewNodeLister(nodeInf.GetIndexer())
	c.slices = sliceInf.GetStore()
	c.byStatusIP, c.byService = newValueIndex(statusIPs), newValueIndex(sliceServices)
	// Events index the object (index.go), then mark what changed: the
	// desired-state loop rebuilds that.
	sliceReg, _ := sliceInf.AddEventHandler(indexing(c.byService, func(old, o any) {
		// A slice relabelled leaves one Service and joins another.
		for _, s := range []any{old, o} {
			if s != nil {
				c.sliceChanged(s)
			}
		}
	}))
	_, _ = nodeInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.nodesChanged() },
		UpdateFunc: func(any, any) { c.nodesChanged() },
		DeleteFunc: func(any) { c.nodesChanged() },
	})
	svcReg, _ := svcInf.AddEventHandler(indexing(c.byStatusIP, func(old, o any) {
		if o == nil {
			o = old // deleted
		}
		c.serviceChanged(o)
		c.enqueue(o)
	}))
	// Synced once the handlers have had the first lists: the indexes are
	// complete then.
	c.synced = []cache.InformerSynced{svcReg.HasSynced, sliceReg.HasSynced, nodeInf.HasSynced}
	return c
}

// Ready reports whether the informers have synced and a first desired state
// has been published.
func (c *Controller) Ready() bool { return c.ready.Load() }

// Leader reports whether this host holds the Lease.
func (c *Controller) Leader() bool { return c.term.Load() != nil }

func (c *Controller) notify(typ, msg string, fields map[string]string) {
	if c.opts.OnEvent != nil {
		c.opts.OnEvent(typ, msg, fields)
	}
}

func (c *Controller) setConfig(cfg *config.Config) {
	op := lb.OptionsFromConfig(cfg)
	c.cfg.Store(cfg)
	c.buildOp.Store(&op)
}

// config is the running Config.
func (c *Controller) config() *config.Config { return c.cfg.Load() }

// SetConfig makes cfg, with a new version of the cluster configuration,
// the one the controller runs: the desired state is rebuilt with its
// static services and pools, and the leader's allocation takes the new
// pools without renumbering any Service (an address now outside every
// pool is kept, logged and not announced; one whose pool's rules no
// longer fit its Service is kept with a Warning Event AddressKept). The
// host-local keys must be the same.
func (c *Controller) SetConfig(cfg *config.Config) {
	c.setConfig(cfg)
	if t := c.term.Load(); t != nil {
		if outside := t.alloc.SetPools(cfg.Pools); len(outside) > 0 {
			c.log.Warn("addresses outside every pool after the new cluster configuration: their Services keep them", "vip", addrList(outside))
		}
		// Services that found no free address may find one now; those
		// the new pools no longer fit are told they keep theirs.
		c.requeueHandled(t)
	}
	c.markDirty()
}

// markDirty has the desired state rebuilt whole (the configuration
// changed, a term started).
func (c *Controller) markDirty() {
	c.changes.all()
	c.wake()
}

func (c *Controller) wake() {
	select {
	case c.dirty <- struct{}{}:
	default:
	}
}

func (c *Controller) enqueue(o any) {
	t := c.term.Load()
	if t == nil {
		return
	}
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(o); err == nil {
		t.queue.Add(key)
	}
}

// startInformers runs the informers until stop is closed; wait returns
// once they have all stopped.
func (c *Controller) startInformers(stop <-chan struct{}) (wait func()) {
	var wg sync.WaitGroup
	for _, inf := range c.informers {
		wg.Go(func() { inf.Run(stop) })
	}
	return wg.Wait
}

// Run starts the informers, the desired-state loop and leader election,
// and returns when ctx is done.
func (c *Controller) Run(ctx context.Context) error {
	// The access check needs no cache: it tells an operator at once
	// when the credentials or the RBAC are why the caches never sync.
	accessDone := make(chan struct{})
	go func() { defer close(accessDone); c.accessLoop(ctx) }()
	defer func() { <-accessDone }()
	defer c.startInformers(ctx.Done())()
	defer close(c.stopped)
	c.log.Info("waiting for the Kubernetes caches to sync")
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		// Stopped before the caches synced: a normal end, like any
		// other, so that edgelb exits 0 and the unit's ExecStopPost
		// does not take it for a crash.
		return nil
	}
	c.log.Info("Kubernetes caches synced")
	c.sayClassless()
	hostDone := make(chan struct{})
	go func() { defer close(hostDone); c.recordHostProblems(ctx.Done()) }()
	defer func() { <-hostDone }()
	done := make(chan struct{}, 2)
	go func() { defer func() { done <- struct{}{} }(); c.desiredLoop(ctx) }()
	go func() { defer func() { done <- struct{}{} }(); c.reportLoop(ctx) }()
	err := c.elect(ctx)
	<-done
	<-done
	return err
}

// desiredLoop rebuilds and publishes the desired state whenever something
// changed, at most once per MinSyncInterval: the Services whose objects
// changed only, those in nodeport mode when the nodes that may receive
// traffic changed, and the whole state when the configuration changed or a
// term started (lb.Incremental). The store is told which keys changed, so
// that the dataplane applies only those.
func (c *Controller) desiredLoop(ctx context.Context) {
	var reported problems
	inc := lb.NewIncremental()
	var opts *lb.Options
	src := listerSource{c}
	c.markDirty()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.dirty:
		}
		start := time.Now()
		keys, nodes, all := c.changes.take()
		if op := c.buildOp.Load(); op != opts {
			opts, all = op, true
			inc.SetOptions(*op)
		}
		if nodes || all {
			ns, err := c.nodes.List(labels.Everything())
			if err != nil {
				c.log.Error("listing from caches", "err", err)
				c.markDirty()
				continue
			}
			// Only the Services that forward to nodes, if the nodes
			// that may receive traffic changed.
			keys = append(keys, inc.SetNodes(ns)...)
		}
		var ch lb.Change
		if all {
			keys = keys[:0]
			c.services.each(func(s *corev1.Service) { keys = append(keys, key(s)) })
			ch = inc.UpdateAll(src, keys)
			c.opts.Store.Set(ch.Desired)
		} else {
			ch = inc.Update(src, keys)
			if len(ch.Changed) > 0 {
				// Nothing to publish otherwise: a pass of the dataplane
				// for nothing would only hold up the next one.
				c.opts.Store.SetChanged(ch.Desired, ch.Changed)
			}
		}
		c.ready.Store(true)
		c.report(&reported, ch.Problems)
		c.log.Debug("desired state rebuilt", "virtualServices", len(ch.Desired.Services), "services", len(keys),
			"whole", all, "changed", len(ch.Changed), "took", time.Since(start))
		select {
		case <-ctx.Done():
			return
		case <-time.After(c.opts.MinSyncInterval):
		}
	}
}

// listerSource reads Services and EndpointSlices from the caches
// (lb.ServiceSource).
type listerSource struct{ c *Controller }

func (s listerSource) Service(k string) *corev1.Service {
	ns, name, _ := cache.SplitMetaNamespaceKey(k)
	svc, err := s.c.services.Services(ns).Get(name)
	if err != nil {
		return nil
	}
	return svc
}

func (s listerSource) EndpointSlices(k string) []*lb.EndpointSlice {
	keys := s.c.byService.keys(k)
	out := make([]*lb.EndpointSlice, 0, len(keys))
	for _, sk := range keys {
		o, ok, _ := s.c.slices.GetByKey(sk)
		// The index may lag the cache: a slice moved to another Service
		// since is not this one's.
		if es, isSlice := o.(*cachedSlice); ok && isSlice && sliceKey(es) == k {
			out = append(out, es.EndpointSlice)
		}
	}
	// Sorted by name, so that Build is deterministic.
	slices.SortFunc(out, func(a, b *lb.EndpointSlice) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// olderFirst orders Services by creation, then namespace and name.
func olderFirst(a, b *corev1.Service) int {
	if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
		return c
	}
	if a.Namespace != b.Namespace {
		return strings.Compare(a.Namespace, b.Namespace)
	}
	return strings.Compare(a.Name, b.Name)
}
