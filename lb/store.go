package lb

import (
	"net/netip"
	"sync"

	"github.com/edgelb/edgelb/lb/notify"
)

// Store holds the latest desired state and tells subscribers when it
// changes. Producers call Set; each consumer loop calls Subscribe once and
// then Load whenever its channel fires. Notifications coalesce (see
// package notify): a consumer that is busy sees one signal for any number
// of Sets, and always Loads the newest state. It is safe for concurrent
// use.
type Store struct {
	mu      sync.Mutex
	desired *Desired
	changed notify.Broadcaster
}

// NewStore returns an empty store; Load returns nil until the first Set.
func NewStore() *Store { return &Store{} }

// Set replaces the desired state and signals every subscriber.
func (s *Store) Set(d *Desired) {
	s.mu.Lock()
	s.desired = d
	s.mu.Unlock()
	s.changed.Notify()
}

// Load returns the newest desired state, or nil if none was set yet. The
// result must not be modified.
func (s *Store) Load() *Desired {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.desired
}

// Subscribe returns a new channel that receives a value (coalesced) after
// each Set. It starts signalled, whether or not a state was set yet: the
// consumer's first Load may return nil, and it waits for the next signal.
func (s *Store) Subscribe() <-chan struct{} { return s.changed.Subscribe() }

// Unsubscribe stops signalling c, a channel Subscribe returned.
func (s *Store) Unsubscribe(c <-chan struct{}) { s.changed.Unsubscribe(c) }

// VIPs returns the desired VIPs, sorted, and whether a desired state has
// been set yet (cluster.VIPSource).
func (s *Store) VIPs() ([]netip.Addr, bool) {
	d := s.Load()
	if d == nil {
		return nil, false
	}
	return d.VIPs(), true
}
