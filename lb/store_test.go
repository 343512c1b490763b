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

// Since tells a consumer the keys changed after the generation it applied,
// across coalesced Sets, and says when it cannot (a Set of everything).
func TestStoreSince(t *testing.T) {
	k := func(port uint16) Key { return Key{Port: port, Protocol: TCP} }
	s := NewStore()
	if _, _, _, ok := s.Since(0); !ok {
		t.Fatal("an empty store cannot tell that nothing changed")
	}
	s.Set(&Desired{})
	if _, gen, _, ok := s.Since(0); ok || gen != 1 {
		t.Fatalf("after a Set of everything: gen %d, ok %v; want 1, false", gen, ok)
	}
	s.SetChanged(&Desired{}, []Key{k(2), k(1)})
	s.SetChanged(&Desired{}, []Key{k(1), k(3)})
	d, gen, changed, ok := s.Since(1)
	if !ok || gen != 3 || d != s.Load() || len(changed) != 3 || changed[0] != k(1) || changed[2] != k(3) {
		t.Fatalf("Since(1) = gen %d, %v, %v", gen, changed, ok)
	}
	if _, _, changed, ok := s.Since(3); !ok || len(changed) != 0 {
		t.Fatalf("Since(newest) = %v, %v", changed, ok)
	}
	s.Set(&Desired{})
	if _, _, _, ok := s.Since(3); ok {
		t.Fatal("a Set of everything was told as a list of keys")
	}
	for range maxLogSets + 1 {
		s.SetChanged(&Desired{}, []Key{k(1)})
	}
	if _, _, _, ok := s.Since(4); ok {
		t.Fatal("a consumer further behind than the log was told a list of keys")
	}
}
