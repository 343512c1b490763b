package lb

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// EndpointSlice is what the desired state reads of a discovery.k8s.io/v1
// EndpointSlice, in a compact form: the informer cache keeps this instead
// of the API object (10,000 Services × 10 endpoints cost a third of the
// memory). NewEndpointSlice builds it.
type EndpointSlice struct {
	Namespace, Name string
	// Service is the name of the Service it belongs to (the
	// kubernetes.io/service-name label), "" if none.
	Service string
	// Family is 4 or 6 for an IPv4 or IPv6 slice, 0 for another type
	// (FQDN): those have no backends.
	Family    uint8
	Ports     []EndpointPort
	Endpoints []Endpoint
}

// EndpointPort is one of a slice's ports.
type EndpointPort struct {
	Name     string
	Protocol corev1.Protocol
	Port     uint16
}

// Endpoint is one endpoint of a slice: its first address (the one
// kube-proxy uses), node and conditions.
type Endpoint struct {
	Addr netip.Addr
	// Node is the endpoint's nodeName, the zero Node if it has none.
	Node Node
	// Ready is the ready condition (unset counts as ready); Draining is
	// serving and terminating.
	Ready, Draining bool
}

// NewEndpointSlice is the compact form of s. Endpoints without an address
// that parses, and ports without a number in range, are left out: the
// desired state has no use for them. Strings are shared with s; node
// names are interned (Node).
func NewEndpointSlice(s *discoveryv1.EndpointSlice) *EndpointSlice {
	out := &EndpointSlice{Namespace: s.Namespace, Name: s.Name, Service: s.Labels[discoveryv1.LabelServiceName]}
	switch s.AddressType {
	case discoveryv1.AddressTypeIPv4:
		out.Family = 4
	case discoveryv1.AddressTypeIPv6:
		out.Family = 6
	}
	for _, p := range s.Ports {
		if p.Port == nil || *p.Port <= 0 || *p.Port >= 65536 {
			continue
		}
		ep := EndpointPort{Protocol: corev1.ProtocolTCP, Port: uint16(*p.Port)}
		if p.Name != nil {
			ep.Name = *p.Name
		}
		if p.Protocol != nil {
			ep.Protocol = *p.Protocol
		}
		out.Ports = append(out.Ports, ep)
	}
	n := 0
	for i := range s.Endpoints {
		if len(s.Endpoints[i].Addresses) > 0 {
			n++
		}
	}
	if n > 0 {
		out.Endpoints = make([]Endpoint, 0, n)
	}
	for i := range s.Endpoints {
		e := &s.Endpoints[i]
		if len(e.Addresses) == 0 {
			continue
		}
		ip, err := netip.ParseAddr(e.Addresses[0])
		if err != nil {
			continue
		}
		c := e.Conditions
		ce := Endpoint{
			Addr:     ip.Unmap(),
			Ready:    c.Ready == nil || *c.Ready,
			Draining: c.Serving != nil && *c.Serving && c.Terminating != nil && *c.Terminating,
		}
		if e.NodeName != nil {
			ce.Node = NodeOf(*e.NodeName)
		}
		out.Endpoints = append(out.Endpoints, ce)
	}
	return out
}

// port is the slice's port of that name and protocol, 0 if none.
func (s *EndpointSlice) port(name string, proto corev1.Protocol) uint16 {
	for _, p := range s.Ports {
		if p.Name == name && p.Protocol == proto {
			return p.Port
		}
	}
	return 0
}
