package lb

import (
	"net/netip"
	"sync"
)

// Store holds the latest desired state and tells subscribers when it
// changes. Producers call Set; each consumer loop calls Subscribe once and
// then Load whenever its channel fires. Notifications coalesce: a consumer
// that is busy sees one signal for any number of Sets, and always Loads the
// newest state. It is safe for concurrent use.
type Store struct {
	mu      sync.Mutex
	desired *Desired
	subs    []chan struct{}
}

// NewStore returns an empty store; Load returns nil until the first Set.
func NewStore() *Store { return &Store{} }

// Set replaces the desired state and signals every subscriber.
func (s *Store) Set(d *Desired) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.desired = d
	for _, c := range s.subs {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// Load returns the newest desired state, or nil if none was set yet. The
// result must not be modified.
func (s *Store) Load() *Desired {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.desired
}

// Subscribe returns a channel that receives a value after each Set. If a
// state is already present, the channel starts signalled.
func (s *Store) Subscribe() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := make(chan struct{}, 1)
	if s.desired != nil {
		c <- struct{}{}
	}
	s.subs = append(s.subs, c)
	return c
}

// VIPs returns the desired VIPs, sorted, and whether a desired state has
// been set yet (cluster.VIPSource).
func (s *Store) VIPs() ([]netip.Addr, bool) {
	d := s.Load()
	if d == nil {
		return nil, false
	}
	return d.VIPs(), true
}
