package k8s

import (
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/edgelb/edgelb/lb"
)

// slim is the informers' transform (cache.TransformFunc): the caches keep
// only what edgelb reads, so that 10,000 Services, their EndpointSlices
// and the Nodes cost what edgelb needs of them and no more.
//
//   - Services keep their metadata but managedFields, and of their spec
//     only the fields edgelb reads (slimServiceSpec). The leader writes a
//     Service's status from its cached copy (UpdateStatus), and the
//     status subresource takes the metadata it is sent: an annotation
//     missing from the cache would be deleted. managedFields are the
//     exception: a write without them keeps the server's. The spec is
//     another: the status subresource resets it to the server's (the
//     Service strategy's PrepareForUpdate and reset fields), so the
//     selector, cluster IPs and the rest stay as they are.
//   - EndpointSlices become lb.EndpointSlice (cachedSlice): name,
//     Service, address family, ports and, of each endpoint, its first
//     address, node and the two conditions edgelb reads; edgelb never
//     writes them.
//   - Nodes keep their name, labels, Ready condition and addresses; edgelb
//     never writes them.
//
// Anything else is returned as it is.
func slim(o any) (any, error) {
	switch o := o.(type) {
	case *corev1.Service:
		o.ManagedFields = nil
		o.Spec = slimServiceSpec(&o.Spec)
		return o, nil
	case *discoveryv1.EndpointSlice:
		return slimSlice(o), nil
	case *corev1.Node:
		return slimNode(o), nil
	}
	return o, nil
}

// slimServiceSpec keeps the fields of a Service's spec that edgelb reads:
// a field added to what edgelb reads must be added here.
func slimServiceSpec(s *corev1.ServiceSpec) corev1.ServiceSpec {
	return corev1.ServiceSpec{
		Type:                          s.Type,
		Ports:                         s.Ports,
		LoadBalancerClass:             s.LoadBalancerClass,
		LoadBalancerIP:                s.LoadBalancerIP,
		LoadBalancerSourceRanges:      s.LoadBalancerSourceRanges,
		ExternalTrafficPolicy:         s.ExternalTrafficPolicy,
		HealthCheckNodePort:           s.HealthCheckNodePort,
		AllocateLoadBalancerNodePorts: s.AllocateLoadBalancerNodePorts,
		SessionAffinity:               s.SessionAffinity,
		SessionAffinityConfig:         s.SessionAffinityConfig,
		IPFamilies:                    s.IPFamilies,
		IPFamilyPolicy:                s.IPFamilyPolicy,
	}
}

// slimMeta keeps what the caches and edgelb use of an object's metadata.
func slimMeta(m *metav1.ObjectMeta, labels map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		CreationTimestamp: m.CreationTimestamp, DeletionTimestamp: m.DeletionTimestamp, Labels: labels,
	}
}

// cachedSlice is what the EndpointSlice informer's cache holds: the
// slice in lb's compact form, and what the informer itself needs of its
// metadata (a key, a resource version).
type cachedSlice struct {
	*lb.EndpointSlice
	resourceVersion string
	uid             types.UID
}

func slimSlice(s *discoveryv1.EndpointSlice) *cachedSlice {
	return &cachedSlice{
		EndpointSlice:   lb.NewEndpointSlice(s, internName),
		resourceVersion: s.ResourceVersion,
		uid:             s.UID,
	}
}

// GetObjectMeta makes a cachedSlice a meta.Accessor for the informer's key
// functions. The answer is built on each call and nobody keeps it.
func (s *cachedSlice) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name, ResourceVersion: s.resourceVersion, UID: s.uid}
}

// GetObjectKind and DeepCopyObject make it a runtime.Object, like what
// informers usually hold; cached objects are never modified, so a copy
// may share them.
func (s *cachedSlice) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

func (s *cachedSlice) DeepCopyObject() runtime.Object {
	c := *s
	return &c
}

// nodeNames interns the endpoints' node names. Names of nodes gone stay
// until there are maxNames: then it starts afresh (sharing saves memory,
// it is never needed).
var nodeNames interner

const maxNames = 1 << 16

type interner struct {
	mu    sync.Mutex
	names map[string]string
}

func internName(s string) string { return nodeNames.intern(s) }

func (in *interner) intern(s string) string {
	in.mu.Lock()
	defer in.mu.Unlock()
	if v, ok := in.names[s]; ok {
		return v
	}
	if in.names == nil || len(in.names) >= maxNames {
		in.names = map[string]string{}
	}
	v := strings.Clone(s)
	in.names[v] = v
	return v
}

func slimNode(n *corev1.Node) *corev1.Node {
	out := &corev1.Node{ObjectMeta: slimMeta(&n.ObjectMeta, n.Labels)}
	out.Status.Addresses = n.Status.Addresses
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			out.Status.Conditions = []corev1.NodeCondition{{Type: c.Type, Status: c.Status}}
		}
	}
	return out
}
