package k8s

import (
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// slim is the informers' transform (cache.TransformFunc): the caches keep
// only what edgelb reads, so that 10,000 Services, their EndpointSlices
// and the Nodes cost what edgelb needs of them and no more.
//
//   - Services lose their managedFields only. The leader writes a
//     Service's status from its cached copy (UpdateStatus), and the
//     status subresource takes the metadata it is sent: an annotation
//     missing from the cache would be deleted. managedFields are the
//     exception: a write without them keeps the server's.
//   - EndpointSlices keep their name, the service-name label and, of each
//     endpoint, the addresses, conditions and node; edgelb never writes
//     them.
//   - Nodes keep their name, labels, Ready condition and addresses; edgelb
//     never writes them.
//
// Anything else is returned as it is.
func slim(o any) (any, error) {
	switch o := o.(type) {
	case *corev1.Service:
		o.ManagedFields = nil
		return o, nil
	case *discoveryv1.EndpointSlice:
		return slimSlice(o), nil
	case *corev1.Node:
		return slimNode(o), nil
	}
	return o, nil
}

// slimMeta keeps what the caches and edgelb use of an object's metadata.
func slimMeta(m *metav1.ObjectMeta, labels map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		CreationTimestamp: m.CreationTimestamp, DeletionTimestamp: m.DeletionTimestamp, Labels: labels,
	}
}

func slimSlice(s *discoveryv1.EndpointSlice) *discoveryv1.EndpointSlice {
	var labels map[string]string
	if name, ok := s.Labels[discoveryv1.LabelServiceName]; ok {
		labels = map[string]string{discoveryv1.LabelServiceName: name}
	}
	out := &discoveryv1.EndpointSlice{
		ObjectMeta:  slimMeta(&s.ObjectMeta, labels),
		AddressType: s.AddressType,
		Ports:       s.Ports,
		Endpoints:   make([]discoveryv1.Endpoint, len(s.Endpoints)),
	}
	for i := range s.Endpoints {
		e := &s.Endpoints[i]
		c := discoveryv1.EndpointConditions{Ready: shared(e.Conditions.Ready), Serving: shared(e.Conditions.Serving), Terminating: shared(e.Conditions.Terminating)}
		out.Endpoints[i] = discoveryv1.Endpoint{Addresses: e.Addresses, Conditions: c, NodeName: nodeNames.intern(e.NodeName)}
	}
	return out
}

// Cached objects are read, never modified: every endpoint condition points
// at one of two booleans, and the endpoints on one node at one name.
var yes, no = true, false

func shared(b *bool) *bool {
	switch {
	case b == nil:
		return nil
	case *b:
		return &yes
	}
	return &no
}

// nodeNames interns the endpoints' node names. Names of nodes gone stay
// until there are maxNames: then it starts afresh (sharing saves memory,
// it is never needed).
var nodeNames interner

const maxNames = 1 << 16

type interner struct {
	mu    sync.Mutex
	names map[string]*string
}

func (in *interner) intern(s *string) *string {
	if s == nil {
		return nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if p, ok := in.names[*s]; ok {
		return p
	}
	if in.names == nil || len(in.names) >= maxNames {
		in.names = map[string]*string{}
	}
	v := *s
	in.names[v] = &v
	return &v
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
