package k8s

import (
	"slices"

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
//   - Services become cachedService: of their metadata the name,
//     namespace, UID, resource version, creation and deletion times and
//     the annotations edgelb reads (lb.ReadsAnnotation; not the labels,
//     other tools' annotations such as kubectl's
//     last-applied-configuration, owners, finalizers or managedFields), of
//     their spec only the fields edgelb reads (slimServiceSpec), and their
//     load balancer's addresses. The leader writes a status by a patch of
//     the addresses alone (setIngress), never by sending a cached Service
//     back; readers get a Service built from it (serviceLister).
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
		return newCachedService(o), nil
	case *discoveryv1.EndpointSlice:
		return slimSlice(o), nil
	case *corev1.Node:
		return slimNode(o), nil
	}
	return o, nil
}

// slimServiceSpec keeps the fields of a Service's spec that edgelb reads:
// a field added to what edgelb reads must be added here. The values that
// nearly every Service shares (type, protocols, policies, address
// families) point to one copy (canonical) instead of the decoder's copy
// of each, and of the ports it keeps what edgelb reads (name, protocol,
// port, node port).
func slimServiceSpec(s *corev1.ServiceSpec) corev1.ServiceSpec {
	out := corev1.ServiceSpec{
		Type:                          canonical(s.Type, corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeExternalName),
		LoadBalancerClass:             s.LoadBalancerClass,
		LoadBalancerIP:                s.LoadBalancerIP,
		LoadBalancerSourceRanges:      s.LoadBalancerSourceRanges,
		ExternalTrafficPolicy:         canonical(s.ExternalTrafficPolicy, corev1.ServiceExternalTrafficPolicyCluster, corev1.ServiceExternalTrafficPolicyLocal),
		HealthCheckNodePort:           s.HealthCheckNodePort,
		AllocateLoadBalancerNodePorts: canonicalBool(s.AllocateLoadBalancerNodePorts),
		SessionAffinity:               canonical(s.SessionAffinity, corev1.ServiceAffinityNone, corev1.ServiceAffinityClientIP),
		SessionAffinityConfig:         s.SessionAffinityConfig,
		IPFamilies:                    canonicalFamilies(s.IPFamilies),
		IPFamilyPolicy:                canonicalPolicy(s.IPFamilyPolicy),
	}
	if len(s.Ports) > 0 {
		out.Ports = make([]corev1.ServicePort, len(s.Ports))
		for i, p := range s.Ports {
			out.Ports[i] = corev1.ServicePort{Name: p.Name, Port: p.Port, NodePort: p.NodePort,
				Protocol: canonical(p.Protocol, corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP)}
		}
	}
	return out
}

// canonical is v, sharing the constant's bytes when it is one of known.
func canonical[T ~string](v T, known ...T) T {
	for _, k := range known {
		if v == k {
			return k
		}
	}
	return v
}

// The values the cached Services' pointers and slices share. Cached
// objects are never modified (a write deep-copies first).
var (
	boolValues   = [2]bool{false, true}
	policyValues = [...]corev1.IPFamilyPolicy{corev1.IPFamilyPolicySingleStack, corev1.IPFamilyPolicyPreferDualStack, corev1.IPFamilyPolicyRequireDualStack}
	familyValues = [...][]corev1.IPFamily{{corev1.IPv4Protocol}, {corev1.IPv6Protocol}, {corev1.IPv4Protocol, corev1.IPv6Protocol}, {corev1.IPv6Protocol, corev1.IPv4Protocol}}
	ipModeValues = [...]corev1.LoadBalancerIPMode{corev1.LoadBalancerIPModeVIP, corev1.LoadBalancerIPModeProxy}
)

func canonicalBool(b *bool) *bool {
	if b == nil {
		return nil
	}
	if *b {
		return &boolValues[1]
	}
	return &boolValues[0]
}

func canonicalPolicy(p *corev1.IPFamilyPolicy) *corev1.IPFamilyPolicy {
	if p == nil {
		return nil
	}
	for i := range policyValues {
		if *p == policyValues[i] {
			return &policyValues[i]
		}
	}
	return p
}

func canonicalFamilies(f []corev1.IPFamily) []corev1.IPFamily {
	for _, v := range familyValues {
		if slices.Equal(f, v) {
			return v[:len(v):len(v)]
		}
	}
	return f
}

// slimStatus keeps the Service's status with its load balancer's
// addresses' modes shared (canonical).
func slimStatus(st *corev1.ServiceStatus) {
	for i := range st.LoadBalancer.Ingress {
		in := &st.LoadBalancer.Ingress[i]
		if in.IPMode == nil {
			continue
		}
		for j := range ipModeValues {
			if *in.IPMode == ipModeValues[j] {
				in.IPMode = &ipModeValues[j]
			}
		}
	}
}

// slimServiceMeta keeps what edgelb reads of a Service's metadata and
// what the informer and the Events' references need.
func slimServiceMeta(m *metav1.ObjectMeta) metav1.ObjectMeta {
	out := metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		CreationTimestamp: m.CreationTimestamp, DeletionTimestamp: m.DeletionTimestamp,
	}
	for k, v := range m.Annotations {
		if lb.ReadsAnnotation(k) {
			if out.Annotations == nil {
				out.Annotations = map[string]string{}
			}
			out.Annotations[k] = v
		}
	}
	return out
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
		EndpointSlice:   lb.NewEndpointSlice(s),
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
