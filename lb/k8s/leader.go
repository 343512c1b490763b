package k8s

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/ipam"
)

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
