package k8s

import (
	"fmt"
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/edgelb/edgelb/lb"
)

// The Services of type LoadBalancer that have no address are listed with
// why: on the Lease holder its refusal (reason and message), on another
// host who knows; a handled one that gets its address leaves the list; a
// Service of another class is another controller's and is not listed.
func TestPendingSaysWhy(t *testing.T) {
	fc := fake.NewClientset()
	taken := lbService("ns", "taken", 1)
	taken.Annotations = map[string]string{lb.AnnotationIPs: "192.0.2.1"}
	other := lbService("ns", "other", 2)
	class := "example.com/other"
	other.Spec.LoadBalancerClass = &class
	create(t, fc, lbService("ns", "first", 0, "192.0.2.1"), taken, other, lbService("ns", "fine", 3))
	c := newController(t, fc, testConfig(t, mainPool), "lb1")
	startInformers(t, c)
	pending := func() map[string]string {
		out := map[string]string{}
		for _, p := range c.Pending() {
			out[p.Namespace+"/"+p.Name] = p.Why
			// One Service's entry, asked alone, is the same.
			if one, ok := c.PendingService(p.Namespace, p.Name); !ok || one != p {
				t.Errorf("PendingService(%s, %s) = %+v, %v; Pending has %+v", p.Namespace, p.Name, one, ok, p)
			}
		}
		for _, n := range []string{"fine", "other", "nonexistent"} {
			if _, listed := out["ns/"+n]; !listed {
				if p, ok := c.PendingService("ns", n); ok {
					t.Errorf("PendingService(ns, %s) = %+v; Pending does not list it", n, p)
				}
			}
		}
		return out
	}
	if got := pending(); len(got) != 2 || !strings.Contains(got["ns/taken"], "Lease holder") || got["ns/other"] != "" {
		t.Fatalf("before a term: %v", got)
	}
	if n := c.OtherClass(); n != 1 {
		t.Fatalf("OtherClass() = %d, want 1", n)
	}
	defer runTerm(c)()
	waitAddressed(t, fc, "ns/fine")
	eventually(t, "the taken Service pending with its refusal", func() error {
		got := pending()
		if len(got) != 1 || !strings.HasPrefix(got["ns/taken"], "AddressInUse: cannot assign an address") {
			return fmt.Errorf("pending %v", got)
		}
		return nil
	})
}

// With defaultClass false, a Service that names no class gets nothing:
// it is listed as not handled, with the fix.
func TestPendingNoClass(t *testing.T) {
	fc := fake.NewClientset()
	create(t, fc, lbService("ns", "classless", 0))
	cfg := testConfig(t, mainPool)
	cfg.Kubernetes.DefaultClass = false
	c := newController(t, fc, cfg, "lb1")
	startInformers(t, c)
	ps := c.Pending()
	if len(ps) != 1 || !strings.Contains(ps[0].Why, "names no loadBalancerClass and kubernetes.defaultClass is false") {
		t.Fatalf("Pending() = %+v", ps)
	}
}
