package k8s

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/edgelb/edgelb/lb"
)

// Events never hold up the status: with the Events' API stalled, every
// Service still gets its address, the status client writes no Event, and
// the term ends (its Lease released) without waiting for the Events.
func TestStalledEventsDoNotBlockStatus(t *testing.T) {
	fc, ec := fake.NewClientset(), fake.NewClientset()
	stall := make(chan struct{})
	var tried atomic.Int32
	ec.PrependReactor("*", "events", func(k8stesting.Action) (bool, runtime.Object, error) {
		tried.Add(1)
		<-stall
		return true, nil, fmt.Errorf("the Events' API answers no more")
	})
	defer close(stall)
	var mu sync.Mutex
	outcomes := map[string]int{}
	c := New(fc, Options{
		Identity: "lb1", Config: testConfig(t, mainPool), Store: lb.NewStore(), Log: slog.New(slog.DiscardHandler),
		Workers:     2,
		EventClient: ec,
		CountEvent: func(o string) {
			mu.Lock()
			defer mu.Unlock()
			outcomes[o]++
		},
	})
	var keys []string
	for i := 0; i < 10; i++ {
		create(t, fc, lbService("ns", fmt.Sprintf("s%d", i), i))
		keys = append(keys, fmt.Sprintf("ns/s%d", i))
	}
	bad := lbService("ns", "bad", 20)
	bad.Annotations = map[string]string{lb.AnnotationIPs: "not-an-address"}
	create(t, fc, bad)
	startInformers(t, c)
	stop := runTerm(c)
	waitAddressed(t, fc, keys...)
	eventually(t, "Events reach the stalled API", func() error {
		if tried.Load() == 0 {
			return fmt.Errorf("no Event tried yet")
		}
		return nil
	})
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("the term did not end while the Events' API stalled")
	}
	for _, a := range fc.Actions() {
		if a.GetResource().Resource == "events" {
			t.Errorf("the status client wrote an Event: %s", a.GetVerb())
		}
	}
	mu.Lock()
	defer mu.Unlock()
	// Ten IPAllocated and one InvalidAnnotation, none written.
	if outcomes[EventRecorded] < 11 || outcomes[EventWritten] != 0 {
		t.Errorf("Events' outcomes %v, want 11 or more recorded and none written", outcomes)
	}
}

// Without an Events' client of their own, Events go through the main one.
func TestEventsDefaultToTheMainClient(t *testing.T) {
	fc := fake.NewClientset()
	c := newController(t, fc, testConfig(t, mainPool), "lb1")
	bad := lbService("ns", "bad", 0)
	bad.Annotations = map[string]string{lb.AnnotationIPs: "not-an-address"}
	create(t, fc, bad)
	startInformers(t, c)
	defer runTerm(c)()
	eventually(t, "the Warning is written", func() error {
		if len(warnings(t, fc, "ns", "bad", "InvalidAnnotation")) == 0 {
			return fmt.Errorf("no InvalidAnnotation Event")
		}
		return nil
	})
}
