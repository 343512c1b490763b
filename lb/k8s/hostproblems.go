package k8s

import (
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/edgelb/edgelb/lb"
)

// Reasons of the Warning Events a host records about what its own kernel
// refuses for a Service (SetHostProblems).
const (
	// ReasonVirtualServiceRefused: IPVS on this host refused one of the
	// Service's virtual services; the others, and the other Services,
	// are programmed.
	ReasonVirtualServiceRefused = "VirtualServiceRefused"
	// ReasonSourceRangesRefused: nftables on this host refused the
	// Service's source ranges; the Service is closed on this host.
	ReasonSourceRangesRefused = "SourceRangesRefused"
)

// hostProblems records, on every host — not only the Lease holder —
// what this host's kernel refuses for a Service, as Warning Events from
// this host (Source.Host), once while each lasts: the kernels of the
// hosts differ, so each host says its own.
type hostProblems struct {
	mu       sync.Mutex
	recorder record.EventRecorder // nil until Run has the caches synced
	recorded map[lb.Problem]bool
	pending  []lb.Problem // the last set, recorded once a recorder exists
}

// SetHostProblems says what this host's kernel refuses now, for
// Kubernetes Services (static ones are left out): each problem new since
// the last call becomes a Warning Event on its Service; one that went
// away and comes back is recorded again. It is safe to call at any time,
// as often as wanted; before the caches have synced the problems wait.
func (c *Controller) SetHostProblems(ps []lb.Problem) {
	h := &c.host
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pending = ps
	if h.recorder == nil {
		return
	}
	recorded := map[lb.Problem]bool{}
	for _, p := range ps {
		if p.Source.Static() || p.Reason == "" {
			continue
		}
		recorded[p] = true
		if h.recorded[p] {
			continue
		}
		c.log.Warn("this host's kernel refuses part of a Service", "service", p.Source.String(), "reason", p.Reason, "problem", p.Message)
		if svc, err := c.services.Services(p.Source.Namespace).Get(p.Source.Name); err == nil {
			h.recorder.Event(svc, corev1.EventTypeWarning, p.Reason, p.Message)
		}
	}
	h.recorded = recorded
}

// recordHostProblems gives SetHostProblems this host's recorder until
// stop is closed.
func (c *Controller) recordHostProblems(stop <-chan struct{}) {
	broadcaster, recorder := c.newRecorder()
	c.host.mu.Lock()
	c.host.recorder = recorder
	pending := c.host.pending
	c.host.mu.Unlock()
	c.SetHostProblems(pending)
	<-stop
	c.host.mu.Lock()
	c.host.recorder = nil
	c.host.recorded = nil
	c.host.mu.Unlock()
	broadcaster.Shutdown()
}
