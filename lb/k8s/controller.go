// Package k8s watches a Kubernetes cluster with client-go shared informers
// and turns its LoadBalancer Services into edgelb's desired state.
//
// Two loops run on every appliance host:
//   - the desired-state loop: any informer event marks the state dirty;
//     the loop lists Services, EndpointSlices and Nodes from the caches,
//     calls lb.Build and publishes the result to the lb.Store.
//   - the leader loop: a Kubernetes Lease elects one host, which rebuilds
//     the IP allocation from the statuses already written, then assigns
//     addresses (lb/ipam), writes status.loadBalancer.ingress and records
//     Events. The other hosts only watch.
//
// The VIPs in the desired state come from the Services' status, so every
// host computes the same state whoever the leader is.
package k8s

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	listersdiscoveryv1 "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/config"
	"github.com/edgelb/edgelb/lb/ipam"
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
}

// Controller is the Kubernetes side of edgelb.
type Controller struct {
	opts    Options
	log     *slog.Logger
	client  kubernetes.Interface
	kc      *config.Kubernetes
	buildOp lb.Options

	factory  informers.SharedInformerFactory
	services listerscorev1.ServiceLister
	slices   listersdiscoveryv1.EndpointSliceLister
	nodes    listerscorev1.NodeLister
	synced   []cache.InformerSynced

	dirty chan struct{}
	// queue exists only during a leadership term.
	queue    atomic.Pointer[termQueue]
	alloc    atomic.Pointer[ipam.Allocator]
	leader   atomic.Bool
	recorder record.EventRecorder
	ready    atomic.Bool
}

// New builds a Controller; it starts nothing.
func New(client kubernetes.Interface, opts Options) *Controller {
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.MinSyncInterval <= 0 {
		opts.MinSyncInterval = 50 * time.Millisecond
	}
	c := &Controller{
		opts:    opts,
		log:     opts.Log,
		client:  client,
		kc:      opts.Config.Kubernetes,
		buildOp: lb.OptionsFromConfig(opts.Config),
		dirty:   make(chan struct{}, 1),
	}
	c.factory = informers.NewSharedInformerFactory(client, 0)
	svcInf := c.factory.Core().V1().Services()
	sliceInf := c.factory.Discovery().V1().EndpointSlices()
	nodeInf := c.factory.Core().V1().Nodes()
	c.services, c.slices, c.nodes = svcInf.Lister(), sliceInf.Lister(), nodeInf.Lister()
	c.synced = []cache.InformerSynced{svcInf.Informer().HasSynced, sliceInf.Informer().HasSynced, nodeInf.Informer().HasSynced}
	mark := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.markDirty() },
		UpdateFunc: func(any, any) { c.markDirty() },
		DeleteFunc: func(any) { c.markDirty() },
	}
	_, _ = sliceInf.Informer().AddEventHandler(mark)
	_, _ = nodeInf.Informer().AddEventHandler(mark)
	_, _ = svcInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { c.markDirty(); c.enqueue(o) },
		UpdateFunc: func(_, o any) { c.markDirty(); c.enqueue(o) },
		DeleteFunc: func(o any) { c.markDirty(); c.enqueue(o) },
	})
	return c
}

// Ready reports whether the informers have synced and a first desired state
// has been published.
func (c *Controller) Ready() bool { return c.ready.Load() }

// Leader reports whether this host holds the Lease.
func (c *Controller) Leader() bool { return c.leader.Load() }

// PoolUsage returns the pools' usage as the leader sees it (nil elsewhere).
func (c *Controller) PoolUsage() []ipam.PoolUsage {
	if a := c.alloc.Load(); a != nil {
		return a.Usage()
	}
	return nil
}

func (c *Controller) notify(typ, msg string, fields map[string]string) {
	if c.opts.OnEvent != nil {
		c.opts.OnEvent(typ, msg, fields)
	}
}

func (c *Controller) markDirty() {
	select {
	case c.dirty <- struct{}{}:
	default:
	}
}

type termQueue struct {
	workqueue.TypedRateLimitingInterface[string]
}

func (c *Controller) enqueue(o any) {
	q := c.queue.Load()
	if q == nil {
		return
	}
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(o); err == nil {
		q.Add(key)
	}
}

// Run starts the informers, the desired-state loop and leader election,
// and returns when ctx is done.
func (c *Controller) Run(ctx context.Context) error {
	c.factory.Start(ctx.Done())
	defer c.factory.Shutdown()
	c.log.Info("waiting for the Kubernetes caches to sync")
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		// Stopped before the caches synced: a normal end, like any
		// other, so that edgelb exits 0 and the unit's ExecStopPost
		// does not take it for a crash.
		return nil
	}
	c.log.Info("Kubernetes caches synced")
	done := make(chan struct{})
	go func() { defer close(done); c.desiredLoop(ctx) }()
	err := c.elect(ctx)
	<-done
	return err
}

// desiredLoop rebuilds and publishes the desired state whenever something
// changed, at most once per MinSyncInterval.
func (c *Controller) desiredLoop(ctx context.Context) {
	c.markDirty()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.dirty:
		}
		start := time.Now()
		snap, err := c.snapshot()
		if err != nil {
			c.log.Error("listing from caches", "err", err)
			continue
		}
		d, problems := lb.Build(snap, c.buildOp)
		c.opts.Store.Set(d)
		c.ready.Store(true)
		for _, p := range problems {
			c.log.Warn("desired state", "service", p.Source.String(), "problem", p.Message)
		}
		c.log.Debug("desired state rebuilt", "virtualServices", len(d.Services), "took", time.Since(start))
		select {
		case <-ctx.Done():
			return
		case <-time.After(c.opts.MinSyncInterval):
		}
	}
}

func (c *Controller) snapshot() (lb.Snapshot, error) {
	var s lb.Snapshot
	var err error
	if s.Services, err = c.services.List(labels.Everything()); err != nil {
		return s, err
	}
	if s.EndpointSlices, err = c.slices.List(labels.Everything()); err != nil {
		return s, err
	}
	if s.Nodes, err = c.nodes.List(labels.Everything()); err != nil {
		return s, err
	}
	// Listers return cache order; sort Services so Build is deterministic.
	slices.SortFunc(s.Services, func(a, b *corev1.Service) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		if a.Namespace != b.Namespace {
			return strings.Compare(a.Namespace, b.Namespace)
		}
		return strings.Compare(a.Name, b.Name)
	})
	return s, nil
}

// elect runs leader election until ctx is done. Each term rebuilds the
// allocation and runs the workers; losing the Lease stops them.
func (c *Controller) elect(ctx context.Context) error {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: c.kc.LeaseNamespace, Name: c.kc.LeaseName},
		Client:     c.client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: c.opts.Identity},
	}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   15 * time.Second,
			RenewDeadline:   10 * time.Second,
			RetryPeriod:     2 * time.Second,
			ReleaseOnCancel: true,
			Name:            c.kc.LeaseName,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: c.lead,
				OnStoppedLeading: func() {},
				OnNewLeader: func(id string) {
					c.log.Info("status writer elected", "leader", id, "self", id == c.opts.Identity)
				},
			},
		})
		if err != nil {
			return fmt.Errorf("leader election: %w", err)
		}
		le.Run(ctx)
	}
	return nil
}

// lead is one leadership term.
func (c *Controller) lead(ctx context.Context) {
	c.log.Info("acquired the Lease: this host allocates IPs and writes Service status")
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.client.CoreV1().Events("")})
	c.recorder = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "edgelb", Host: c.opts.Identity})
	defer broadcaster.Shutdown()

	q := &termQueue{workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "services"})}
	defer q.ShutDown()

	c.alloc.Store(c.rebuild())
	c.leader.Store(true)
	defer c.leader.Store(false)
	// From here on informer events reach the queue; listing afterwards
	// means no Service is missed.
	c.queue.Store(q)
	defer c.queue.Store(nil)
	svcs, _ := c.services.List(labels.Everything())
	for _, s := range svcs {
		q.Add(key(s))
	}
	done := make(chan struct{})
	for i := 0; i < c.opts.Workers; i++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for c.processNext(ctx, q) {
			}
		}()
	}
	<-ctx.Done()
	q.ShutDown()
	for i := 0; i < c.opts.Workers; i++ {
		<-done
	}
	c.log.Info("lost or released the Lease: no longer writing Service status")
}

// rebuild creates an allocator holding every address already written in a
// status, oldest Service first, before anything new is assigned.
func (c *Controller) rebuild() *ipam.Allocator {
	alloc := ipam.New(c.opts.Config.Pools)
	svcs, _ := c.services.List(labels.Everything())
	slices.SortFunc(svcs, func(a, b *corev1.Service) int { return a.CreationTimestamp.Compare(b.CreationTimestamp.Time) })
	n := 0
	for _, svc := range svcs {
		if !c.handles(svc) {
			continue
		}
		ips := lb.VIPs(svc)
		if len(ips) == 0 {
			continue
		}
		req, err := request(svc)
		if err != nil {
			// Bad annotations: keep what the Service has.
			req = ipam.Request{Key: key(svc), Namespace: svc.Namespace, Families: familiesOf(ips)}
		}
		if err := alloc.Claim(req, ips); err != nil {
			// sync will assign a valid address and overwrite the status.
			c.recorder.Eventf(svc, corev1.EventTypeWarning, "AddressNotKept", "cannot keep %s: %v", addrList(ips), err)
			c.log.Warn("cannot keep a Service's address", "service", key(svc), "err", err)
			continue
		}
		n++
	}
	c.log.Info("rebuilt the allocation from Service status", "services", n)
	return alloc
}

func (c *Controller) handles(svc *corev1.Service) bool {
	return lb.Handles(svc, c.kc.LoadBalancerClass, c.kc.DefaultClass)
}

func key(svc *corev1.Service) string { return svc.Namespace + "/" + svc.Name }

func (c *Controller) processNext(ctx context.Context, q *termQueue) bool {
	k, quit := q.Get()
	if quit {
		return false
	}
	defer q.Done(k)
	err := c.sync(ctx, k)
	switch {
	case err == nil:
		q.Forget(k)
	case ctx.Err() != nil:
	default:
		c.log.Warn("syncing Service, will retry", "service", k, "err", err)
		q.AddRateLimited(k)
	}
	return true
}

// sync brings one Service's status in line with its allocation. It returns
// an error only for what a retry can fix (API errors); refusals become
// Events and wait for the Service or the pools to change.
func (c *Controller) sync(ctx context.Context, k string) error {
	alloc := c.alloc.Load()
	ns, name, _ := cache.SplitMetaNamespaceKey(k)
	svc, err := c.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		if alloc.Release(k) {
			c.log.Info("released addresses of a deleted Service", "service", k)
			c.retryPending()
		}
		return nil
	}
	if err != nil {
		return err
	}
	if !c.handles(svc) {
		held := alloc.Get(k)
		if alloc.Release(k) {
			c.log.Info("released addresses of a Service that is no longer ours", "service", k)
			c.retryPending()
		}
		return c.clearStatus(ctx, svc, held)
	}
	if errs := lb.CheckAnnotations(svc); len(errs) > 0 {
		for _, e := range errs {
			c.recorder.Event(svc, corev1.EventTypeWarning, "InvalidAnnotation", e.Error())
			c.notify("error", fmt.Sprintf("%s: %v", k, e), map[string]string{"service": k, "reason": "InvalidAnnotation"})
		}
		return nil
	}
	req, err := request(svc)
	if err != nil {
		c.recorder.Event(svc, corev1.EventTypeWarning, "InvalidService", err.Error())
		return nil
	}
	before := alloc.Get(k)
	ips, err := alloc.Assign(req)
	if err != nil {
		reason := "AllocationFailed"
		var ie *ipam.Error
		if errors.As(err, &ie) {
			reason = ie.Reason
		}
		c.recorder.Eventf(svc, corev1.EventTypeWarning, reason, "cannot assign an address: %v", err)
		c.notify("error", fmt.Sprintf("%s: cannot assign an address: %v", k, err), map[string]string{"service": k, "reason": reason})
		return nil
	}
	if err := c.writeStatus(ctx, svc, ips); err != nil {
		return err
	}
	if !sameAddrs(before, ips) {
		c.recorder.Eventf(svc, corev1.EventTypeNormal, "IPAllocated", "assigned %s", addrList(ips))
		c.log.Info("assigned addresses", "service", k, "vip", addrList(ips))
		c.notify("allocation", fmt.Sprintf("%s: assigned %s", k, addrList(ips)), map[string]string{"service": k, "vip": addrList(ips)})
		if len(before) > 0 {
			c.retryPending()
		}
	}
	return nil
}

// retryPending requeues handled Services that have no address yet, after
// an address was freed.
func (c *Controller) retryPending() {
	q := c.queue.Load()
	if q == nil {
		return
	}
	svcs, _ := c.services.List(labels.Everything())
	for _, s := range svcs {
		if c.handles(s) && len(s.Status.LoadBalancer.Ingress) == 0 {
			q.Add(key(s))
		}
	}
}

func (c *Controller) ipMode() *corev1.LoadBalancerIPMode {
	mode := corev1.LoadBalancerIPModeProxy
	if m := c.opts.Config.Dataplane.Method; m == config.MethodDR || m == config.MethodTunnel {
		// The packet still carries the VIP as destination: the nodes must
		// accept it, which kube-proxy does for ipMode VIP.
		mode = corev1.LoadBalancerIPModeVIP
	}
	if c.opts.Config.Dataplane.Backend == config.BackendNone {
		mode = corev1.LoadBalancerIPModeVIP
	}
	return &mode
}

func (c *Controller) writeStatus(ctx context.Context, svc *corev1.Service, ips []netip.Addr) error {
	want := make([]corev1.LoadBalancerIngress, len(ips))
	for i, ip := range ips {
		want[i] = corev1.LoadBalancerIngress{IP: ip.String(), IPMode: c.ipMode()}
	}
	if ingressEqual(svc.Status.LoadBalancer.Ingress, want) {
		return nil
	}
	out := svc.DeepCopy()
	out.Status.LoadBalancer.Ingress = want
	_, err := c.client.CoreV1().Services(svc.Namespace).UpdateStatus(ctx, out, metav1.UpdateOptions{FieldManager: c.fieldManager()})
	if err != nil {
		return fmt.Errorf("writing status of %s: %w", key(svc), err)
	}
	return nil
}

func (c *Controller) fieldManager() string { return "edgelb/" + c.opts.Identity }

// clearStatus removes the addresses edgelb had written from a Service it no
// longer handles.
func (c *Controller) clearStatus(ctx context.Context, svc *corev1.Service, held []netip.Addr) error {
	if len(held) == 0 || len(svc.Status.LoadBalancer.Ingress) == 0 {
		return nil
	}
	out := svc.DeepCopy()
	out.Status.LoadBalancer.Ingress = slices.DeleteFunc(out.Status.LoadBalancer.Ingress, func(in corev1.LoadBalancerIngress) bool {
		ip, err := netip.ParseAddr(in.IP)
		return err == nil && slices.Contains(held, ip)
	})
	_, err := c.client.CoreV1().Services(svc.Namespace).UpdateStatus(ctx, out, metav1.UpdateOptions{FieldManager: c.fieldManager()})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("clearing status of %s: %w", key(svc), err)
	}
	return nil
}

func ingressEqual(a, b []corev1.LoadBalancerIngress) bool {
	return slices.EqualFunc(a, b, func(x, y corev1.LoadBalancerIngress) bool {
		return x.IP == y.IP && x.Hostname == y.Hostname && (x.IPMode == nil) == (y.IPMode == nil) &&
			(x.IPMode == nil || *x.IPMode == *y.IPMode) && len(x.Ports) == 0 && len(y.Ports) == 0
	})
}

func sameAddrs(a, b []netip.Addr) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, netip.Addr.Compare)
	slices.SortFunc(b, netip.Addr.Compare)
	return slices.Equal(a, b)
}

func addrList(ips []netip.Addr) string {
	s := ""
	for i, ip := range ips {
		if i > 0 {
			s += ","
		}
		s += ip.String()
	}
	return s
}
