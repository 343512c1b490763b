package k8s

import (
	"context"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/edgelb/edgelb/lb"
)

// poolEdit is one edit of the pools under a Service, x, that already has
// an address: x must keep it, with a Warning Event AddressKept whose
// message contains warn, and a newcomer (which would get x's address were
// it free) must get another one.
type poolEdit struct {
	name          string
	before, after string // the pools, as YAML list entries
	x, newcomer   *corev1.Service
	held          string // the address x gets under before
	warn          string
}

func inPool(svc *corev1.Service, pool string) *corev1.Service {
	svc.Annotations = map[string]string{lb.AnnotationPool: pool}
	return svc
}

var poolEdits = []poolEdit{{
	name: "namespaces narrowed",
	before: `  - {name: p, addresses: ["192.0.2.0/30"], namespaces: [a, b]}
  - {name: q, addresses: ["198.51.100.0/30"]}`,
	after: `  - {name: p, addresses: ["192.0.2.0/30"], namespaces: [a]}
  - {name: q, addresses: ["198.51.100.0/30"]}`,
	x: lbService("b", "x", 0), newcomer: lbService("a", "new", 1),
	held: "192.0.2.0", warn: `namespace "b"`,
}, {
	name:   "pool split",
	before: `  - {name: p, addresses: ["192.0.2.0/29"]}`,
	after: `  - {name: p2, addresses: ["192.0.2.0/30"]}
  - {name: p, addresses: ["192.0.2.4/30"]}`,
	x: inPool(lbService("ns", "x", 0), "p"), newcomer: inPool(lbService("ns", "new", 1), "p2"),
	held: "192.0.2.0", warn: `requested pool "p"`,
}, {
	name:   "pool named by the Service renamed",
	before: `  - {name: web, addresses: ["192.0.2.0/30"]}`,
	after:  `  - {name: edge, addresses: ["192.0.2.0/30"]}`,
	x:      inPool(lbService("ns", "x", 0), "web"), newcomer: inPool(lbService("ns", "new", 1), "edge"),
	held: "192.0.2.0", warn: `"web" does not exist`,
}}

// touch updates a Service (a label), as any change by its owner does, so
// that the leader syncs it again.
func touch(t *testing.T, client kubernetes.Interface, ns, name string) {
	t.Helper()
	cur, err := client.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Labels = map[string]string{"touched": "yes"}
	if _, err := client.CoreV1().Services(ns).Update(context.Background(), cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// allocate runs a term of a controller with the pools before until x has
// its address, and returns the controller with its term still running.
func (e poolEdit) allocate(t *testing.T, fc kubernetes.Interface) (*Controller, func()) {
	t.Helper()
	c := newController(t, fc, testConfig(t, e.before), "lbA")
	startInformers(t, c)
	stop := runTerm(c)
	waitLeader(t, c)
	create(t, fc, e.x.DeepCopy())
	got := waitAddressed(t, fc, key(e.x))
	if !slices.Equal(got[key(e.x)], []string{e.held}) {
		t.Fatalf("x got %v before the edit, want [%s]", got[key(e.x)], e.held)
	}
	return c, stop
}

// The leader takes the edited pools (SetConfig) while it holds x's
// address: x is synced again at once, keeps its address and gets the
// Warning; so it does after any later change of its own.
func TestPoolEditSameTerm(t *testing.T) {
	for _, e := range poolEdits {
		t.Run(e.name, func(t *testing.T) {
			fc := fake.NewClientset()
			h := watchHistory(t, fc)
			c, stop := e.allocate(t, fc)
			defer stop()
			c.SetConfig(testConfig(t, e.after))
			waitWarning(t, fc, e.x.Namespace, e.x.Name, "AddressKept", e.warn)
			touch(t, fc, e.x.Namespace, e.x.Name)
			create(t, fc, e.newcomer.DeepCopy())
			got := waitAddressed(t, fc, key(e.x), key(e.newcomer))
			if slices.Equal(got[key(e.newcomer)], []string{e.held}) {
				t.Errorf("the newcomer got x's address %s", e.held)
			}
			waitKept(t, fc, map[string][]string{key(e.x): {e.held}})
			h.check(t)
		})
	}
}

// A new leader starts with the edited pools; its cache has not seen x yet
// when the newcomer arrives. It rebuilds the allocation from the Services'
// statuses on the API server: the newcomer does not get x's address, and
// x, once seen, keeps it with the Warning.
func TestPoolEditNewLeader(t *testing.T) {
	for _, e := range poolEdits {
		t.Run(e.name, func(t *testing.T) {
			fc := fake.NewClientset()
			h := watchHistory(t, fc)
			_, stopA := e.allocate(t, fc)
			stopA()
			x, err := fc.CoreV1().Services(e.x.Namespace).Get(context.Background(), e.x.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}

			newcomer := e.newcomer.DeepCopy()
			create(t, fc, newcomer)
			b := newController(t, fc, testConfig(t, e.after), "lbB")
			cacheAdd(t, b, newcomer) // b has not seen x yet
			defer runTerm(b)()
			got := waitAddressed(t, fc, key(e.newcomer))
			if slices.Equal(got[key(e.newcomer)], []string{e.held}) {
				t.Errorf("the newcomer got x's address %s", e.held)
			}
			cacheAdd(t, b, x)
			waitWarning(t, fc, e.x.Namespace, e.x.Name, "AddressKept", e.warn)
			waitKept(t, fc, map[string][]string{key(e.x): {e.held}})
			allStatuses(t, fc) // no address in two statuses
			h.check(t)
		})
	}
}

// The new leader starts with the old pools and takes the edit after its
// rebuild, before its cache has seen x: the same outcome.
func TestPoolEditDuringNewTerm(t *testing.T) {
	for _, e := range poolEdits {
		t.Run(e.name, func(t *testing.T) {
			fc := fake.NewClientset()
			h := watchHistory(t, fc)
			_, stopA := e.allocate(t, fc)
			stopA()
			x, err := fc.CoreV1().Services(e.x.Namespace).Get(context.Background(), e.x.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			b := newController(t, fc, testConfig(t, e.before), "lbB")
			defer runTerm(b)()
			waitLeader(t, b)
			b.SetConfig(testConfig(t, e.after))
			newcomer := e.newcomer.DeepCopy()
			create(t, fc, newcomer)
			cacheAdd(t, b, newcomer)
			got := waitAddressed(t, fc, key(e.newcomer))
			if slices.Equal(got[key(e.newcomer)], []string{e.held}) {
				t.Errorf("the newcomer got x's address %s", e.held)
			}
			cacheAdd(t, b, x)
			waitWarning(t, fc, e.x.Namespace, e.x.Name, "AddressKept", e.warn)
			waitKept(t, fc, map[string][]string{key(e.x): {e.held}})
			allStatuses(t, fc)
			h.check(t)
		})
	}
}

// AddressKept is recorded once per term while its reason lasts: again when
// the reason changes, or comes back after it was gone.
func TestAddressKeptOncePerReason(t *testing.T) {
	var tm term
	for i, step := range []struct {
		msg    string
		record bool
	}{{"a", true}, {"a", false}, {"b", true}, {"", false}, {"", false}, {"b", true}} {
		if got := tm.kept("ns/x", step.msg); got != step.record {
			t.Errorf("step %d (%q): recorded %t, want %t", i, step.msg, got, step.record)
		}
	}
}
