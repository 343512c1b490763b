package notify_test

import (
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/edgelb/edgelb/lb/notify"
)

// pending reports whether c holds a signal, taking it.
func pending(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func TestBroadcaster(t *testing.T) {
	for _, tc := range []struct {
		name    string
		notify  int  // Notify calls after the subscription's first signal was taken
		keep    bool // leave the first signal in the channel
		pending bool // a signal is pending afterwards
	}{
		{name: "a new subscription starts signalled", keep: true, pending: true},
		{name: "nothing more without Notify", pending: false},
		{name: "one Notify, one signal", notify: 1, pending: true},
		{name: "many Notify calls coalesce", notify: 5, pending: true},
		{name: "the first signal and later ones coalesce", keep: true, notify: 3, pending: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b notify.Broadcaster // the zero value is ready
			c := b.Subscribe()
			if !tc.keep {
				if !pending(c) {
					t.Fatal("a new subscription was not signalled")
				}
			}
			for range tc.notify {
				b.Notify()
			}
			if got := pending(c); got != tc.pending {
				t.Fatalf("pending = %v, want %v", got, tc.pending)
			}
			if pending(c) {
				t.Fatal("a second signal was pending: signals must coalesce into one")
			}
		})
	}
}

// Every subscriber hears of a change on its own channel: one subscriber
// taking its signal does not take another's.
func TestEverySubscriberIsSignalled(t *testing.T) {
	var b notify.Broadcaster
	subs := []<-chan struct{}{b.Subscribe(), b.Subscribe(), b.Subscribe()}
	for i, c := range subs {
		if !pending(c) {
			t.Fatalf("subscriber %d did not start signalled", i)
		}
	}
	b.Notify()
	for i, c := range subs {
		if !pending(c) {
			t.Fatalf("subscriber %d was not signalled", i)
		}
	}
}

func TestUnsubscribe(t *testing.T) {
	var b notify.Broadcaster
	a, gone, c := b.Subscribe(), b.Subscribe(), b.Subscribe()
	b.Unsubscribe(gone)
	if !pending(gone) {
		t.Fatal("Unsubscribe dropped the pending signal")
	}
	for _, ch := range []<-chan struct{}{a, c} {
		pending(ch)
	}
	b.Notify()
	if pending(gone) {
		t.Fatal("an unsubscribed channel was signalled")
	}
	if !pending(a) || !pending(c) {
		t.Fatal("the remaining subscribers were not signalled")
	}
	b.Unsubscribe(gone)                   // twice: ignored
	b.Unsubscribe(make(chan struct{}, 1)) // never subscribed: ignored
	b.Notify()
	if !pending(a) || !pending(c) {
		t.Fatal("the remaining subscribers were not signalled after no-op Unsubscribes")
	}
}

// Nothing blocks on a subscriber that never reads, and no goroutine is
// started for a subscription.
func TestNoBlockingNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	var b notify.Broadcaster
	subs := make([]<-chan struct{}, 100)
	for i := range subs {
		subs[i] = b.Subscribe()
	}
	for range 1000 {
		b.Notify()
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Fatalf("%d goroutines before subscribing, %d after", before, after)
	}
	for _, c := range subs {
		b.Unsubscribe(c)
	}
}

// Concurrent Subscribe, Notify and Unsubscribe (run with -race), and a
// consumer that reads after each wake always ends up seeing the last
// change.
func TestConcurrentUse(t *testing.T) {
	var (
		b     notify.Broadcaster
		mu    sync.Mutex
		state int
		wg    sync.WaitGroup
	)
	const last = 1000
	c := b.Subscribe()
	seen := make(chan int)
	go func() {
		for range c {
			mu.Lock()
			v := state
			mu.Unlock()
			if v == last {
				seen <- v
				return
			}
		}
	}()
	for range 4 {
		wg.Go(func() {
			for range 50 {
				b.Unsubscribe(b.Subscribe())
			}
		})
	}
	for i := 1; i <= last; i++ {
		mu.Lock()
		state = i
		mu.Unlock()
		b.Notify()
	}
	wg.Wait()
	if v := <-seen; v != last {
		t.Fatalf("the consumer saw %d, want %d", v, last)
	}
}

// A level-triggered consumer: the first wake needs no special case, and
// bursts of changes make one pass each.
func ExampleBroadcaster() {
	var (
		b       notify.Broadcaster
		mu      sync.Mutex
		desired []string
	)
	set := func(v ...string) {
		mu.Lock()
		desired = v
		mu.Unlock()
		b.Notify()
	}
	load := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return desired
	}

	changed := b.Subscribe()
	<-changed // the first wake: nothing set yet
	fmt.Println("first pass:", load())
	set("a")
	set("a", "b") // coalesces with the change before
	<-changed
	fmt.Println("next pass:", load())
	// Output:
	// first pass: []
	// next pass: [a b]
}
