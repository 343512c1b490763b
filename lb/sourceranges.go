package lb

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// AnnotationSourceRanges is the older, comma-separated form of
// spec.loadBalancerSourceRanges; the spec field wins when both are set, as
// in Kubernetes.
const AnnotationSourceRanges = "service.beta.kubernetes.io/load-balancer-source-ranges"

// ParseSourceRanges parses CIDRs into masked prefixes (10.0.0.1/8 becomes
// 10.0.0.0/8), sorted and without duplicates. field names the list in
// errors.
func ParseSourceRanges(field string, list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil || p.Addr().Zone() != "" || p.Addr().Is4In6() {
			return nil, fmt.Errorf("%s: %q is not a CIDR (like 10.0.0.0/8 or 2001:db8::/32)", field, s)
		}
		out = append(out, p.Masked())
	}
	return NormalizeRanges(out), nil
}

// NormalizeRanges masks, sorts and deduplicates prefixes in place.
func NormalizeRanges(ps []netip.Prefix) []netip.Prefix {
	for i := range ps {
		ps[i] = ps[i].Masked()
	}
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(ps)
}

// SourceRanges returns who may reach a Service: spec.loadBalancerSourceRanges,
// or else the annotation. nil means everyone.
func SourceRanges(svc *corev1.Service) ([]netip.Prefix, error) {
	if len(svc.Spec.LoadBalancerSourceRanges) > 0 {
		return ParseSourceRanges("spec.loadBalancerSourceRanges", svc.Spec.LoadBalancerSourceRanges)
	}
	s := strings.TrimSpace(svc.Annotations[AnnotationSourceRanges])
	if s == "" {
		return nil, nil
	}
	return ParseSourceRanges(AnnotationSourceRanges, strings.Split(s, ","))
}

// sourceRanges gives the ranges of each virtual service of a Service. When
// they cannot be read, it reports a problem and each virtual service keeps
// the ranges it had in the previous desired state; one that had none there
// (first sight, as after a restart) fails closed: nobody may reach it
// until the Service is fixed.
func (b *builder) sourceRanges(svc *corev1.Service, src Source) func(Key) []netip.Prefix {
	ranges, err := SourceRanges(svc)
	if err == nil {
		return func(Key) []netip.Prefix { return ranges }
	}
	b.problems = append(b.problems, Problem{Source: src, Reason: "InvalidSourceRanges",
		Message: err.Error() + "; the previous source ranges stay in force (none: all traffic to the Service is dropped)"})
	return func(k Key) []netip.Prefix {
		if p, ok := b.previous[k]; ok && p.Source.Namespace == src.Namespace && p.Source.Name == src.Name {
			return p.SourceRanges
		}
		return []netip.Prefix{}
	}
}

func (b *builder) indexPrevious(d *Desired) {
	if d == nil {
		return
	}
	b.previous = make(map[Key]*VirtualService, len(d.Services))
	for i := range d.Services {
		b.previous[d.Services[i].Key] = &d.Services[i]
	}
}
