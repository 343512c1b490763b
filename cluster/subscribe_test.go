package cluster

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

// Docs' subscriptions start signalled, with or without a version, and are
// signalled by each new current version.
func TestDocsSubscribe(t *testing.T) {
	a := newTestDocs(t, "a", "", 0)
	ca := a.Subscribe()
	if !pending(ca) {
		t.Fatal("a subscription did not start signalled")
	}
	if _, ok := a.Current(); ok {
		t.Fatal("a version before the first Seed")
	}
	if _, err := a.Seed([]byte(`{"v":1}`), "file"); err != nil {
		t.Fatal(err)
	}
	if !pending(ca) {
		t.Fatal("Seed did not signal")
	}
	if _, err := a.Propose([]byte(`{"v":2}`), "alice", 1); err != nil {
		t.Fatal(err)
	}
	a.Unsubscribe(ca)
	if !pending(ca) || pending(ca) {
		t.Fatal("the signal of Propose was lost, or doubled, by Unsubscribe")
	}
	if _, err := a.Propose([]byte(`{"v":3}`), "alice", 2); err != nil {
		t.Fatal(err)
	}
	if pending(ca) {
		t.Fatal("an unsubscribed channel was signalled")
	}
}
