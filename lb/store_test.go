package lb

import "testing"

// pending reports whether c holds a signal, taking it.
func pending(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// A subscription starts signalled even before the first Set, so a consumer
// Loads at once and copes with nil; each Set signals again, coalesced.
func TestStoreSubscribe(t *testing.T) {
	s := NewStore()
	early := s.Subscribe()
	if !pending(early) {
		t.Fatal("a subscription to an empty store did not start signalled")
	}
	if s.Load() != nil {
		t.Fatal("an empty store loaded a state")
	}
	d1, d2 := &Desired{}, &Desired{}
	s.Set(d1)
	s.Set(d2)
	if !pending(early) || pending(early) {
		t.Fatal("two Sets did not coalesce into one signal")
	}
	if s.Load() != d2 {
		t.Fatal("Load did not return the newest state")
	}
	late := s.Subscribe()
	if !pending(late) {
		t.Fatal("a subscription to a set store did not start signalled")
	}
	s.Unsubscribe(late)
	s.Set(d1)
	if pending(late) {
		t.Fatal("an unsubscribed channel was signalled")
	}
	if !pending(early) {
		t.Fatal("the remaining subscriber was not signalled")
	}
}
