package lb

import (
	"net/netip"
	"slices"
	"sync"

	"github.com/edgelb/edgelb/lb/notify"
)

// Store holds the latest desired state and tells subscribers when it
// changes. Producers call Set; each consumer loop calls Subscribe once and
// then Load whenever its channel fires. Notifications coalesce (see
// package notify): a consumer that is busy sees one signal for any number
// of Sets, and always Loads the newest state. It is safe for concurrent
// use.
//
// Each Set is a generation. SetChanged also says which keys it changed,
// and Since hands a consumer the keys changed since the generation it
// last applied, so that it applies only those (kube-proxy's change
// trackers); a consumer that cannot be told (a Set of everything, or one
// that fell too far behind) compares everything.
type Store struct {
	mu      sync.Mutex
	desired *Desired
	gen     uint64
	// log holds the recent generations' changes, oldest first.
	log     []changeSet
	logKeys int
	changed notify.Broadcaster
}

// changeSet is what one generation changed; all: everything.
type changeSet struct {
	gen  uint64
	keys []Key
	all  bool
}

// The log of changes keeps at most this many generations and keys.
const (
	maxLogSets = 1024
	maxLogKeys = 1 << 16
)

// NewStore returns an empty store; Load returns nil until the first Set.
func NewStore() *Store { return &Store{} }

// Set replaces the desired state and signals every subscriber; any key
// may have changed.
func (s *Store) Set(d *Desired) { s.set(d, nil, true) }

// SetChanged replaces the desired state, which differs from the previous
// one in the changed keys only, and signals every subscriber.
func (s *Store) SetChanged(d *Desired, changed []Key) { s.set(d, changed, false) }

func (s *Store) set(d *Desired, keys []Key, all bool) {
	s.mu.Lock()
	s.desired = d
	s.gen++
	if all {
		s.log, s.logKeys = s.log[:0], 0
	}
	s.log = append(s.log, changeSet{gen: s.gen, keys: keys, all: all})
	s.logKeys += len(keys)
	for len(s.log) > maxLogSets || (s.logKeys > maxLogKeys && len(s.log) > 1) {
		s.logKeys -= len(s.log[0].keys)
		s.log[0] = changeSet{}
		s.log = s.log[1:]
	}
	s.mu.Unlock()
	s.changed.Notify()
}

// Since returns the newest desired state and its generation, and the keys
// changed after generation gen (sorted, distinct; none when gen is the
// newest). ok is false when the store cannot tell: then any key may have
// changed. Generation 0 is before the first Set.
func (s *Store) Since(gen uint64) (d *Desired, now uint64, changed []Key, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, now = s.desired, s.gen
	if gen == now {
		return d, now, nil, true
	}
	if gen > now || len(s.log) == 0 || s.log[0].gen > gen+1 {
		return d, now, nil, false
	}
	for _, c := range s.log {
		if c.gen <= gen {
			continue
		}
		if c.all {
			return d, now, nil, false
		}
		changed = append(changed, c.keys...)
	}
	slices.SortFunc(changed, Key.Compare)
	return d, now, slices.Compact(changed), true
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
