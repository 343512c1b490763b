package lb

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/edgelb/edgelb/lb/config"
)

// AnnotationPrefix begins the annotations of edgelb's own on Services
// (here and in choices.go).
const AnnotationPrefix = "edgelb.io/"

// ReadsAnnotation reports whether edgelb reads a Service's annotation:
// its own (AnnotationPrefix) and Kubernetes' source ranges. The
// informer's cache keeps only those: an annotation edgelb reads must
// answer true here.
func ReadsAnnotation(key string) bool {
	return strings.HasPrefix(key, AnnotationPrefix) || key == AnnotationSourceRanges
}

// Annotations edgelb reads on Services.
const (
	AnnotationIPs       = "edgelb.io/load-balancer-ips"
	AnnotationPool      = "edgelb.io/pool"
	AnnotationShared    = "edgelb.io/allow-shared-ip"
	AnnotationScheduler = "edgelb.io/scheduler"
)

// ParseIPs parses the load-balancer-ips annotation: a comma-separated list
// of at most one IPv4 and one IPv6 address.
func ParseIPs(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	var v4, v6 bool
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("%s %q: empty address in the list", AnnotationIPs, s)
		}
		a, err := netip.ParseAddr(part)
		if err != nil || a.Zone() != "" || a.Is4In6() {
			return nil, fmt.Errorf("%s %q: %q is not an IP address", AnnotationIPs, s, part)
		}
		if a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() || a.IsLinkLocalUnicast() {
			return nil, fmt.Errorf("%s %q: %s cannot be a load-balancer address", AnnotationIPs, s, a)
		}
		if (a.Is4() && v4) || (a.Is6() && v6) {
			return nil, fmt.Errorf("%s %q: at most one IPv4 and one IPv6 address", AnnotationIPs, s)
		}
		v4, v6 = v4 || a.Is4(), v6 || a.Is6()
		out = append(out, a)
	}
	return out, nil
}

// ParseScheduler checks the scheduler annotation.
func ParseScheduler(s string) (string, error) {
	if slices.Contains(config.Schedulers, s) {
		return s, nil
	}
	return "", fmt.Errorf("%s %q: not one of %s", AnnotationScheduler, s, strings.Join(config.Schedulers, ", "))
}

// ParseSharingKey checks the allow-shared-ip annotation: a non-empty key of
// at most 63 characters, like a label value.
func ParseSharingKey(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("%s: the sharing key must not be empty", AnnotationShared)
	}
	if errs := validation.IsValidLabelValue(s); len(errs) > 0 {
		return "", fmt.Errorf("%s %q: %s", AnnotationShared, s, strings.Join(errs, "; "))
	}
	return s, nil
}

// ParsePool checks the pool annotation's syntax; whether the pool exists is
// the allocator's question.
func ParsePool(s string) (string, error) {
	if s == "" || strings.ContainsAny(s, " \t,/") {
		return "", fmt.Errorf("%s %q: not a pool name", AnnotationPool, s)
	}
	return s, nil
}

// Requested returns the addresses a Service asks for: the annotation, or
// else spec.loadBalancerIP. nil means none.
func Requested(svc *corev1.Service) ([]netip.Addr, error) {
	if s, ok := svc.Annotations[AnnotationIPs]; ok {
		return ParseIPs(s)
	}
	if svc.Spec.LoadBalancerIP != "" {
		a, err := netip.ParseAddr(svc.Spec.LoadBalancerIP)
		if err != nil || a.Zone() != "" || a.Is4In6() {
			return nil, fmt.Errorf("spec.loadBalancerIP %q is not an IP address", svc.Spec.LoadBalancerIP)
		}
		return []netip.Addr{a}, nil
	}
	return nil, nil
}

// CheckAnnotations returns every problem with the edgelb annotations of svc.
func CheckAnnotations(svc *corev1.Service) []error {
	var errs []error
	if _, err := Requested(svc); err != nil {
		errs = append(errs, err)
	}
	if s, ok := svc.Annotations[AnnotationPool]; ok {
		if _, err := ParsePool(s); err != nil {
			errs = append(errs, err)
		}
	}
	if s, ok := svc.Annotations[AnnotationShared]; ok {
		if _, err := ParseSharingKey(s); err != nil {
			errs = append(errs, err)
		}
	}
	if s, ok := svc.Annotations[AnnotationScheduler]; ok {
		if _, err := ParseScheduler(s); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}
