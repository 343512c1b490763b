package k8s

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/config"
	"github.com/edgelb/edgelb/lb/ipam"
)

func (c *Controller) handles(svc *corev1.Service) bool {
	return lb.Handles(svc, c.kc.LoadBalancerClass, c.kc.DefaultClass)
}

func key(svc *corev1.Service) string { return svc.Namespace + "/" + svc.Name }

func (c *Controller) processNext(ctx context.Context, t *term) bool {
	q := t.queue
	k, quit := q.Get()
	if quit {
		return false
	}
	defer q.Done(k)
	// The term ended: client-go may already have released the Lease, and
	// a workqueue keeps handing out what it holds after ShutDown. Nothing
	// more is written in this term's name (the next leader rebuilds from
	// the API server).
	if ctx.Err() != nil {
		return false
	}
	err := c.sync(ctx, t, k)
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
func (c *Controller) sync(ctx context.Context, t *term, k string) error {
	alloc := t.alloc
	ns, name, _ := cache.SplitMetaNamespaceKey(k)
	svc, err := c.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.why.set(k, "")
		t.kept(k, "")
		if alloc.Release(k) {
			c.log.Info("released addresses of a deleted Service", "service", k)
			c.retryPending(t)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if !c.handles(svc) {
		c.why.set(k, "")
		t.kept(k, "")
		held := alloc.Get(k)
		if alloc.Release(k) {
			c.log.Info("released addresses of a Service that is no longer ours", "service", k)
			c.retryPending(t)
		}
		return c.clearStatus(ctx, svc, held)
	}
	if ips := lb.VIPs(svc); len(ips) > 0 && len(alloc.Get(k)) == 0 {
		// A status the allocator does not hold: written after this term's
		// rebuild, or one it could not hold. Claim it; if that fails, the
		// Service keeps its status and nothing is assigned over it.
		if err := alloc.Claim(claimRequest(svc, ips), ips); err != nil {
			t.recorder.Eventf(svc, corev1.EventTypeWarning, "AddressNotKept", "%s stays in the status, but edgelb cannot hold it: %v", addrList(ips), err)
			c.notify("error", fmt.Sprintf("%s: cannot keep %s: %v", k, addrList(ips), err), map[string]string{"service": k, "reason": "AddressNotKept"})
			c.log.Warn("cannot hold the addresses in a Service's status; left as they are", "service", k, "vip", addrList(ips), "err", err)
			return nil
		}
		c.log.Info("claimed the addresses in a Service's status", "service", k, "vip", addrList(ips))
	}
	if errs := lb.CheckAnnotations(svc); len(errs) > 0 {
		c.why.set(k, "InvalidAnnotation: "+errors.Join(errs...).Error())
		for _, e := range errs {
			t.recorder.Event(svc, corev1.EventTypeWarning, "InvalidAnnotation", e.Error())
			c.notify("error", fmt.Sprintf("%s: %v", k, e), map[string]string{"service": k, "reason": "InvalidAnnotation"})
		}
		return nil
	}
	req, err := request(svc)
	if err != nil {
		c.why.set(k, "InvalidService: "+err.Error())
		t.recorder.Event(svc, corev1.EventTypeWarning, "InvalidService", err.Error())
		return nil
	}
	req.Listed = c.listed
	before := alloc.Get(k)
	if c.opts.Committed != nil {
		if err := c.opts.Committed(); err != nil {
			// Pools this host may no longer share with the majority:
			// what a Service holds stays as it is (never released for
			// this), and nothing new is assigned until it is back.
			if len(before) == 0 {
				c.why.set(k, err.Error())
			}
			retry := c.opts.CommitRetry
			if retry <= 0 {
				retry = DefaultCommitRetry
			}
			t.queue.AddAfter(k, retry)
			return nil
		}
	}
	ips, err := alloc.Assign(req)
	if err != nil {
		reason := "AllocationFailed"
		var ie *ipam.Error
		if errors.As(err, &ie) {
			reason = ie.Reason
		}
		c.why.set(k, fmt.Sprintf("%s: cannot assign an address: %v", reason, err))
		t.recorder.Eventf(svc, corev1.EventTypeWarning, reason, "cannot assign an address: %v", err)
		c.notify("error", fmt.Sprintf("%s: cannot assign an address: %v", k, err), map[string]string{"service": k, "reason": reason})
		return nil
	}
	if err := c.writeStatus(ctx, svc, ips); err != nil {
		return err
	}
	c.why.set(k, "")
	c.reportKept(t, svc, alloc.Misfits(req))
	if !sameAddrs(before, ips) {
		t.notices.Eventf(svc, corev1.EventTypeNormal, "IPAllocated", "assigned %s", addrList(ips))
		c.log.Info("assigned addresses", "service", k, "vip", addrList(ips))
		c.notify("allocation", fmt.Sprintf("%s: assigned %s", k, addrList(ips)), map[string]string{"service": k, "vip": addrList(ips)})
		if len(before) > 0 {
			c.retryPending(t)
		}
	}
	return nil
}

// ReasonAddressKept is the reason of the Warning Event on a Service that
// keeps an address its pool's rules would not give it now.
const ReasonAddressKept = "AddressKept"

// reportKept records a Warning Event AddressKept on a Service that keeps
// addresses its pools' rules would not give it now (the pools were edited
// under it, or it asks for another pool), once per term while the reason
// lasts. An address outside every pool is left to the desired state's
// AddressNotInPool, which also says that it is not announced.
func (c *Controller) reportKept(t *term, svc *corev1.Service, misfits []ipam.Misfit) {
	var why []string
	for _, m := range misfits {
		if m.Pool != "" {
			why = append(why, m.Why)
		}
	}
	msg := ""
	if len(why) > 0 {
		msg = fmt.Sprintf("the Service keeps its address (edgelb never renumbers a Service), although %s; to move it, name the new address in %s, or re-create the Service",
			strings.Join(why, "; "), lb.AnnotationIPs)
	}
	if !t.kept(key(svc), msg) {
		return
	}
	t.recorder.Event(svc, corev1.EventTypeWarning, ReasonAddressKept, msg)
	c.notify("error", key(svc)+": "+msg, map[string]string{"service": key(svc), "reason": ReasonAddressKept})
	c.log.Warn("a Service keeps addresses that its pool's rules would not give it now", "service", key(svc), "err", strings.Join(why, "; "))
}

// claimRequest is the request under which a Service's status addresses
// are claimed: its own, or with bad annotations only its namespace, so that
// it keeps what it has.
func claimRequest(svc *corev1.Service, ips []netip.Addr) ipam.Request {
	if len(lb.CheckAnnotations(svc)) == 0 {
		if req, err := request(svc); err == nil {
			return req
		}
	}
	return ipam.Request{Key: key(svc), Namespace: svc.Namespace, Families: familiesOf(ips)}
}

// listed returns the Services whose status, in the cache, lists ip.
func (c *Controller) listed(ip netip.Addr) []string {
	keys := c.byStatusIP.keys(ip)
	// The index may lag the cache: a Service whose status no longer
	// lists ip does not.
	return slices.DeleteFunc(keys, func(k string) bool {
		o, ok, _ := c.services.indexer.GetByKey(k)
		return !ok || !slices.Contains(statusIPs(o), ip)
	})
}

// requeueHandled requeues every handled Service, after the pools changed:
// those without an address may find one, and those whose address no longer
// fits its pool's rules are told that they keep it.
func (c *Controller) requeueHandled(t *term) {
	c.services.each(func(s *corev1.Service) {
		if c.handles(s) {
			t.queue.Add(key(s))
		}
	})
}

// retryPending requeues handled Services that have no address yet, after
// an address was freed.
func (c *Controller) retryPending(t *term) {
	c.services.each(func(s *corev1.Service) {
		if c.handles(s) && len(s.Status.LoadBalancer.Ingress) == 0 {
			t.queue.Add(key(s))
		}
	})
}

// ipMode fits the Service's effective forwarding method (its
// edgelb.io/method, else dataplane.method).
func (c *Controller) ipMode(svc *corev1.Service) *corev1.LoadBalancerIPMode {
	mode := corev1.LoadBalancerIPModeProxy
	ch, _ := lb.ChoicesOf(svc, c.buildOp.Load())
	if ch.Method == lb.DR || ch.Method == lb.Tunnel {
		// The packet still carries the VIP as destination: the nodes must
		// accept it, which kube-proxy does for ipMode VIP.
		mode = corev1.LoadBalancerIPModeVIP
	}
	if c.config().Dataplane.Backend == config.BackendNone {
		mode = corev1.LoadBalancerIPModeVIP
	}
	return &mode
}

func (c *Controller) writeStatus(ctx context.Context, svc *corev1.Service, ips []netip.Addr) error {
	want := make([]corev1.LoadBalancerIngress, len(ips))
	mode := c.ipMode(svc)
	for i, ip := range ips {
		want[i] = corev1.LoadBalancerIngress{IP: ip.String(), IPMode: mode}
	}
	if ingressEqual(svc.Status.LoadBalancer.Ingress, want) {
		return nil
	}
	if err := c.setIngress(ctx, svc, want); err != nil {
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
	keep := slices.DeleteFunc(slices.Clone(svc.Status.LoadBalancer.Ingress), func(in corev1.LoadBalancerIngress) bool {
		ip, err := netip.ParseAddr(in.IP)
		return err == nil && slices.Contains(held, ip)
	})
	err := c.setIngress(ctx, svc, keep)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("clearing status of %s: %w", key(svc), err)
	}
	return nil
}

// statusPatch is a JSON merge patch of a Service: its load balancer's
// addresses (null deletes them), on the resource version edgelb read.
type statusPatch struct {
	Metadata struct {
		ResourceVersion string `json:"resourceVersion,omitempty"`
	} `json:"metadata"`
	Status struct {
		LoadBalancer struct {
			Ingress []corev1.LoadBalancerIngress `json:"ingress"`
		} `json:"loadBalancer"`
	} `json:"status"`
}

// setIngress sets svc's status.loadBalancer.ingress, and nothing else of
// it, with a JSON merge patch of the status subresource on the resource
// version edgelb read: the API server refuses it (409 Conflict) if the
// Service changed since, as it would an update. The cache holds only part
// of each Service (slim): an update would send the whole object back and
// delete what the cache left out, a patch sends only what edgelb writes.
//
// An identity that may update services/status but not patch it (the RBAC
// of releases before this one) is answered 403: then the Service is read
// whole from the API server (a list of that one name: such an identity
// may list, not get) and its status updated, still only if its resource
// version is the one edgelb read. It costs a read per write; edgelb says
// so once, and checkAccess until packaging/rbac.yaml is applied again.
func (c *Controller) setIngress(ctx context.Context, svc *corev1.Service, ingress []corev1.LoadBalancerIngress) error {
	var p statusPatch
	p.Metadata.ResourceVersion = svc.ResourceVersion
	p.Status.LoadBalancer.Ingress = ingress
	data, err := json.Marshal(&p)
	if err != nil {
		return err
	}
	services := c.client.CoreV1().Services(svc.Namespace)
	_, err = services.Patch(ctx, svc.Name, types.MergePatchType, data, metav1.PatchOptions{FieldManager: c.fieldManager()}, "status")
	if !apierrors.IsForbidden(err) {
		return err
	}
	c.noPatch.Do(func() {
		c.log.Warn("edgelb's identity may not patch services/status: each status is written by reading the Service, then updating it; apply packaging/rbac.yaml", "err", err)
	})
	list, err := services.List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", svc.Name).String()})
	if err != nil {
		return err
	}
	i := slices.IndexFunc(list.Items, func(s corev1.Service) bool { return s.Name == svc.Name })
	if i < 0 {
		return apierrors.NewNotFound(corev1.Resource("services"), svc.Name)
	}
	cur := &list.Items[i]
	if cur.ResourceVersion != svc.ResourceVersion {
		return apierrors.NewConflict(corev1.Resource("services"), svc.Name,
			fmt.Errorf("changed since edgelb read it (resource version %s, now %s)", svc.ResourceVersion, cur.ResourceVersion))
	}
	cur.Status.LoadBalancer.Ingress = ingress
	_, err = services.UpdateStatus(ctx, cur, metav1.UpdateOptions{FieldManager: c.fieldManager()})
	return err
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
