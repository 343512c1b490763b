package k8s

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"

	"github.com/edgelb/edgelb/lb"
)

// Pending is a Service of type LoadBalancer that has no address from
// edgelb, and why (GET /api/v1/services lists them, so that "why is it
// pending" has an answer where operators look).
type Pending struct {
	Namespace, Name string
	// Why says what keeps it from an address: the Lease holder's last
	// refusal (the reason of its Warning Event and its message), or that
	// edgelb does not handle it (class).
	Why string
}

// refusals are the Lease holder's last refusal per Service key, cleared
// when it is assigned or deleted.
type refusals struct {
	mu sync.Mutex
	m  map[string]string
}

func (r *refusals) set(k, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]string{}
	}
	if why == "" {
		delete(r.m, k)
	} else {
		r.m[k] = why
	}
}

func (r *refusals) get(k string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[k]
}

// Pending lists, sorted, the Services of type LoadBalancer without an
// address that edgelb handles, and those it leaves alone only because they
// name no class while kubernetes.defaultClass is false (a Service of
// another class is another controller's, and not listed). Only the Lease
// holder knows why one of its own is refused; another host says who does.
func (c *Controller) Pending() []Pending {
	leader := c.Leader()
	var out []Pending
	c.services.each(func(svc *corev1.Service) {
		if p, ok := c.pending(svc, leader); ok {
			out = append(out, p)
		}
	})
	slices.SortFunc(out, func(a, b Pending) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	return out
}

// OtherClass counts the Services of type LoadBalancer that name another
// loadBalancerClass: another controller's, which edgelb leaves alone.
func (c *Controller) OtherClass() int {
	n := 0
	c.services.each(func(svc *corev1.Service) {
		if svc.Spec.Type == corev1.ServiceTypeLoadBalancer && svc.Spec.LoadBalancerClass != nil && !c.handles(svc) {
			n++
		}
	})
	return n
}

// sayClassless logs once, when the caches have synced, how many Services
// name no class and are left alone because kubernetes.defaultClass is
// false, and how to change that.
func (c *Controller) sayClassless() {
	if c.kc.DefaultClass {
		return
	}
	n := 0
	c.services.each(func(svc *corev1.Service) {
		if svc.Spec.Type == corev1.ServiceTypeLoadBalancer && svc.Spec.LoadBalancerClass == nil {
			n++
		}
	})
	if n > 0 {
		c.log.Info("Services of type LoadBalancer that name no loadBalancerClass are not handled: set kubernetes.defaultClass: true to give them addresses, or give them spec.loadBalancerClass",
			"services", n, "class", c.kc.LoadBalancerClass)
	}
}

// PendingService is Pending's entry for one Service, if it has one: GET
// /api/v1/services/{namespace}/{name} asks for one without listing every
// Service.
func (c *Controller) PendingService(namespace, name string) (Pending, bool) {
	svc, err := c.services.Services(namespace).Get(name)
	if err != nil {
		return Pending{}, false
	}
	return c.pending(svc, c.Leader())
}

// pending is svc's Pending entry, if it has one.
func (c *Controller) pending(svc *corev1.Service, leader bool) (Pending, bool) {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || len(lb.VIPs(svc)) > 0 {
		return Pending{}, false
	}
	p := Pending{Namespace: svc.Namespace, Name: svc.Name}
	switch {
	case !c.handles(svc) && svc.Spec.LoadBalancerClass == nil:
		p.Why = fmt.Sprintf("not handled: it names no loadBalancerClass and kubernetes.defaultClass is false (set spec.loadBalancerClass: %s, or defaultClass: true)", c.kc.LoadBalancerClass)
	case !c.handles(svc):
		return Pending{}, false
	case c.why.get(svc.Namespace+"/"+svc.Name) != "":
		p.Why = c.why.get(svc.Namespace + "/" + svc.Name)
	case leader:
		p.Why = "waiting for its turn in the Lease holder's queue"
	default:
		p.Why = "the Lease holder assigns addresses; this host does not know why it has none yet (kubectl describe service shows its Warning Events)"
	}
	return p, true
}
