package k8s

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"

	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/ipam"
)

// request turns a Service into an allocation request. Annotations must
// have been checked with lb.CheckAnnotations.
func request(svc *corev1.Service) (ipam.Request, error) {
	req := ipam.Request{
		Key:        key(svc),
		Namespace:  svc.Namespace,
		Pool:       svc.Annotations[lb.AnnotationPool],
		SharingKey: svc.Annotations[lb.AnnotationShared],
	}
	var err error
	if req.Requested, err = lb.Requested(svc); err != nil {
		return req, err
	}
	for _, f := range svc.Spec.IPFamilies {
		switch f {
		case corev1.IPv4Protocol:
			req.Families = append(req.Families, ipam.IPv4)
		case corev1.IPv6Protocol:
			req.Families = append(req.Families, ipam.IPv6)
		}
	}
	policy := corev1.IPFamilyPolicySingleStack
	if p := svc.Spec.IPFamilyPolicy; p != nil {
		policy = *p
	}
	switch {
	case len(req.Families) == 0:
		// No cluster IP families (older API servers): follow the
		// requested addresses, else IPv4.
		req.Families = familiesOf(req.Requested)
	case policy == corev1.IPFamilyPolicySingleStack:
		req.Families = req.Families[:1]
	case policy == corev1.IPFamilyPolicyRequireDualStack:
		req.RequireAll = true
	}
	for _, p := range svc.Spec.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		req.Ports = append(req.Ports, ipam.Port{Port: p.Port, Protocol: string(proto)})
	}
	if len(req.Ports) == 0 {
		return req, fmt.Errorf("the Service has no ports")
	}
	return req, nil
}

func familiesOf(ips []netip.Addr) []ipam.Family {
	var out []ipam.Family
	for _, ip := range ips {
		f := ipam.IPv4
		if ip.Is6() {
			f = ipam.IPv6
		}
		if len(out) == 0 || out[0] != f {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		out = []ipam.Family{ipam.IPv4}
	}
	return out
}
