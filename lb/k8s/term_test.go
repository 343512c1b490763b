package k8s

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
)

// gate holds the first Service status write until it is opened and
// reports every later write. It sits in front of the fake clientset,
// which serialises all calls under one lock.
type gate struct {
	held   chan struct{} // closed when the first write is held
	open   chan struct{} // closed to let it through
	later  chan string   // the Services of the writes after it
	writes chan struct{} // one token: the first write takes it
}

func newGate() *gate {
	g := &gate{held: make(chan struct{}), open: make(chan struct{}), later: make(chan string, 100), writes: make(chan struct{}, 1)}
	g.writes <- struct{}{}
	return g
}

func (g *gate) pass(name string) {
	select {
	case <-g.writes:
		close(g.held)
		<-g.open
	default:
		select {
		case g.later <- name:
		default:
		}
	}
}

type gatedClient struct {
	kubernetes.Interface
	g *gate
}

func (c gatedClient) CoreV1() typedcorev1.CoreV1Interface {
	return gatedCore{c.Interface.CoreV1(), c.g}
}

type gatedCore struct {
	typedcorev1.CoreV1Interface
	g *gate
}

func (c gatedCore) Services(ns string) typedcorev1.ServiceInterface {
	return gatedServices{c.CoreV1Interface.Services(ns), c.g}
}

type gatedServices struct {
	typedcorev1.ServiceInterface
	g *gate
}

func (s gatedServices) UpdateStatus(ctx context.Context, svc *corev1.Service, opts metav1.UpdateOptions) (*corev1.Service, error) {
	s.g.pass(svc.Name)
	return s.ServiceInterface.UpdateStatus(ctx, svc, opts)
}

func (s gatedServices) Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, sub ...string) (*corev1.Service, error) {
	s.g.pass(name)
	return s.ServiceInterface.Patch(ctx, name, pt, data, opts, sub...)
}

// client-go starts OnStartedLeading in a goroutine and does not wait for
// it, so a new term can begin while the last one is still writing. The
// new term must wait until the old one has returned, and the old one's end
// must not undo the new one's state.
func TestTermsDoNotOverlap(t *testing.T) {
	fc := fake.NewClientset(lbService("ns", "a", 0))
	g := newGate()
	c := newController(t, gatedClient{fc, g}, testConfig(t, mainPool), "lb1")
	startInformers(t, c)

	ctx1, lose1 := context.WithCancel(context.Background())
	done1 := make(chan struct{})
	go func() { defer close(done1); c.lead(ctx1) }()
	select {
	case <-g.held:
	case <-time.After(10 * time.Second):
		t.Fatal("term 1 wrote no status")
	}
	// Term 1 loses the Lease while its write is in flight; the elector
	// wins it again and starts term 2 at once.
	lose1()
	stop2 := runTerm(c)
	defer stop2()
	// A term that waits for the previous one writes nothing meanwhile;
	// give an overlapping one time to show itself.
	select {
	case name := <-g.later:
		t.Errorf("term 2 wrote the status of %s while term 1's write was in flight", name)
	case <-time.After(300 * time.Millisecond):
	}
	close(g.open)
	<-done1
	waitLeader(t, c)
	a := apiStatus(t, fc, "ns", "a")
	if _, err := fc.CoreV1().Services("ns").Create(context.Background(), lbService("ns", "b", 1), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got := waitAddressed(t, fc, "ns/a", "ns/b")
	if !slices.Equal(got["ns/a"], a) {
		t.Errorf("a had %v when term 1 ended, has %v in term 2", a, got["ns/a"])
	}
	stop2()
	if c.Leader() {
		t.Error("Leader() is true after the last term ended")
	}
}

// Terms started and ended back to back, as a flapping Lease does, share
// nothing: run with -race. The last one keeps working.
func TestBackToBackTerms(t *testing.T) {
	fc := fake.NewClientset()
	for i := 0; i < 8; i++ {
		if _, err := fc.CoreV1().Services("ns").Create(context.Background(), lbService("ns", fmt.Sprintf("s%d", i), i), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	c := newController(t, fc, testConfig(t, mainPool), "lb1")
	startInformers(t, c)
	var stops []func()
	for i := 0; i < 10; i++ {
		stops = append(stops, runTerm(c))
		if i > 0 {
			go stops[i-1]()
		}
	}
	for _, stop := range stops[:len(stops)-1] {
		stop()
	}
	waitLeader(t, c)
	if _, err := fc.CoreV1().Services("ns").Create(context.Background(), lbService("ns", "late", 100), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAddressed(t, fc, "ns/s0", "ns/s7", "ns/late")
	stops[len(stops)-1]()
}
