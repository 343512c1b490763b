package k8s

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/ipam"
)

// term is one leadership term: its work queue, its allocation and its
// Event recorder. The term's workers are handed it; no two terms share
// anything, and they never run at the same time.
type term struct {
	queue    workqueue.TypedRateLimitingInterface[string]
	alloc    *ipam.Allocator
	recorder record.EventRecorder
	// notices records the Normal Events of allocations, through a
	// broadcaster (and so a bounded queue) of its own: a burst of them —
	// thousands of new Services — is dropped past client-go's bound
	// rather than crowding out the Warnings.
	notices record.EventRecorder

	mu sync.Mutex
	// keptMsg is the AddressKept message last recorded on each Service in
	// this term.
	keptMsg map[string]string
}

// kept records msg ("" for none) as a Service's AddressKept message and
// reports whether it differs from the last one, and so is to be recorded.
func (t *term) kept(k, msg string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.keptMsg[k] == msg {
		return false
	}
	if msg == "" {
		delete(t.keptMsg, k)
		return false
	}
	if t.keptMsg == nil {
		t.keptMsg = map[string]string{}
	}
	t.keptMsg[k] = msg
	return true
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
			LeaseDuration:   c.opts.LeaseDuration,
			RenewDeadline:   c.opts.RenewDeadline,
			RetryPeriod:     c.opts.RetryPeriod,
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
		// Run started the term in a goroutine and returned without
		// waiting for it: wait until it has ended before electing again.
		c.terms <- struct{}{}
		<-c.terms
	}
	return nil
}

// lead is one leadership term. client-go runs it in a goroutine of its
// own, so it first waits until the previous term has ended; a term whose
// ctx is done before it starts does nothing.
func (c *Controller) lead(ctx context.Context) {
	select {
	case c.terms <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-c.terms }()
	if ctx.Err() != nil {
		return
	}
	c.log.Info("acquired the Lease: this host allocates IPs and writes Service status")
	// Shut down once the workers have stopped.
	broadcaster, recorder := c.newRecorder()
	defer broadcaster.Shutdown()
	noticer, notices := c.newRecorder()
	defer noticer.Shutdown()
	t := &term{
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "services"}),
		recorder: recorder,
		notices:  notices,
	}
	defer t.queue.ShutDown()
	err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		var err error
		if t.alloc, err = c.rebuild(ctx); err != nil {
			c.log.Warn("rebuilding the allocation, will retry", "err", err)
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return // the term ended first
	}

	// From here on informer events reach the queue; listing afterwards
	// means no Service is missed.
	c.term.Store(t)
	defer c.term.Store(nil)
	// A cluster configuration taken while the allocation was rebuilt.
	t.alloc.SetPools(c.config().Pools)
	c.markDirty() // the desired-state loop records its problems in this term
	c.services.each(func(s *corev1.Service) { t.queue.Add(key(s)) })
	done := make(chan struct{})
	for i := 0; i < c.opts.Workers; i++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for c.processNext(ctx, t) {
			}
		}()
	}
	<-ctx.Done()
	t.queue.ShutDown()
	for i := 0; i < c.opts.Workers; i++ {
		<-done
	}
	c.log.Info("lost or released the Lease: no longer writing Service status")
}

// rebuild creates an allocator holding every address already written in a
// status, oldest Service first, before anything new is assigned. It lists
// the Services from the API server: the informer cache may lag behind what
// the previous leader wrote. It holds an address that the pools' rules
// would not give its Service now as the last term kept it (ipam.Claim); a
// status it cannot hold (an older Service holds the address) is left to
// sync, which reports it and leaves the Service as it is.
func (c *Controller) rebuild(ctx context.Context) (*ipam.Allocator, error) {
	var svcs []*corev1.Service
	opts := metav1.ListOptions{Limit: 500}
	for {
		list, err := c.client.CoreV1().Services("").List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("listing Services: %w", err)
		}
		for i := range list.Items {
			svcs = append(svcs, &list.Items[i])
		}
		if list.Continue == "" {
			break
		}
		opts.Continue = list.Continue
	}
	slices.SortFunc(svcs, olderFirst)
	alloc := ipam.New(c.config().Pools)
	n := 0
	for _, svc := range svcs {
		ips := lb.VIPs(svc)
		if !c.handles(svc) || len(ips) == 0 {
			continue
		}
		if err := alloc.Claim(claimRequest(svc, ips), ips); err != nil {
			c.log.Debug("cannot hold the addresses in a Service's status", "service", key(svc), "vip", addrList(ips), "err", err)
			continue
		}
		n++
	}
	c.log.Info("rebuilt the allocation from the Services' status on the API server", "services", n, "listed", len(svcs))
	return alloc, nil
}
