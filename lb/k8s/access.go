package k8s

import (
	"context"
	"fmt"
	"strings"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// access is one permission the controller needs (packaging/rbac.yaml).
type access struct {
	verb, group, resource, subresource, namespace string
}

func (a access) String() string {
	r := a.resource
	if a.group != "" {
		r += "." + a.group
	}
	if a.subresource != "" {
		r += "/" + a.subresource
	}
	if a.namespace != "" {
		r += " in " + a.namespace
	}
	return a.verb + " " + r
}

// needed are the permissions packaging/rbac.yaml grants, in its order.
func (c *Controller) needed() []access {
	ns := c.kc.LeaseNamespace
	return []access{
		{verb: "list", resource: "services"}, {verb: "watch", resource: "services"},
		{verb: "update", resource: "services", subresource: "status"},
		{verb: "patch", resource: "services", subresource: "status"},
		{verb: "list", resource: "nodes"}, {verb: "watch", resource: "nodes"},
		{verb: "list", group: "discovery.k8s.io", resource: "endpointslices"},
		{verb: "watch", group: "discovery.k8s.io", resource: "endpointslices"},
		{verb: "create", resource: "events"}, {verb: "patch", resource: "events"}, {verb: "list", resource: "events"},
		{verb: "get", group: "coordination.k8s.io", resource: "leases", namespace: ns},
		{verb: "create", group: "coordination.k8s.io", resource: "leases", namespace: ns},
		{verb: "update", group: "coordination.k8s.io", resource: "leases", namespace: ns},
	}
}

// AccessInterval is how often the controller checks its credentials and
// permissions.
const AccessInterval = time.Minute

// checkAccess asks the API server, with SelfSubjectAccessReviews (which
// every authenticated identity may create), whether edgelb's identity
// still has each permission it needs, and returns what is wrong: "" when
// everything is allowed. A token that expired or was revoked, or RBAC
// that was changed, shows here instead of only in client-go's retries.
func (c *Controller) checkAccess(ctx context.Context) string {
	var missing []string
	for _, a := range c.needed() {
		r := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: a.namespace, Verb: a.verb, Group: a.group,
				Resource: a.resource, Subresource: a.subresource}}}
		got, err := c.client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, r, metav1.CreateOptions{})
		switch {
		case apierrors.IsUnauthorized(err):
			return "the API server refuses edgelb's credentials (401 Unauthorized): the kubeconfig's token expired or was revoked; make a new one as docs/operations.md shows"
		case err != nil:
			return fmt.Sprintf("cannot check edgelb's permissions: %v", err)
		case !got.Status.Allowed:
			missing = append(missing, a.String())
		}
	}
	if len(missing) > 0 {
		return fmt.Sprintf("edgelb's identity may not %s: apply packaging/rbac.yaml (kubectl apply -f /usr/share/edgelb/rbac.yaml)", strings.Join(missing, ", "))
	}
	return ""
}

// accessLoop checks the access at start and every AccessInterval until
// ctx ends, logging each change and keeping it for AccessProblem.
func (c *Controller) accessLoop(ctx context.Context) {
	for {
		p := c.checkAccess(ctx)
		if ctx.Err() != nil {
			return
		}
		if old, _ := c.access.Swap(p).(string); old != p {
			if p != "" {
				c.log.Error("Kubernetes access", "problem", p)
				c.notify("error", "Kubernetes: "+p, map[string]string{"reason": "KubernetesAccess"})
			} else if old != "" {
				c.log.Info("Kubernetes access is fine again")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(AccessInterval):
		}
	}
}

// AccessProblem says what is wrong with edgelb's access to the API
// server — credentials refused, permissions missing — or "".
func (c *Controller) AccessProblem() string {
	p, _ := c.access.Load().(string)
	return p
}
