package node

import (
	"context"
	"reflect"
	"sync"

	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/config"
)

// Change is a new running version of the cluster configuration, and what
// in it differs from the version the subscriber had: it is classified
// once per version, where the version is taken (liveConfig.update, the
// only producer), so that no part re-reads and diffs the whole document.
// When a subscriber was busy, the changes it missed are merged: the
// newest Config with every flag of the versions in between.
type Change struct {
	Config  *config.Config
	Version uint64
	// Desired: the desired state must be built again (static services,
	// pools, the dataplane's defaults, health-check defaults, the bgp
	// set, backend admin states).
	Desired bool
	// Pools: the address pools changed (IPAM).
	Pools bool
	// Kernel: what the dataplane takes only by preparing the kernel
	// again and running a full pass (schedulers, methods, continuity, the
	// drain timeout, natSource, the bgp set).
	Kernel bool
	// Health: the healthCheck section changed.
	Health bool
	// BGP: the bgp section changed (peers, AS number, on or off,
	// withdrawDelay).
	BGP bool
	// Backend: dataplane.backend changed, which only a restart takes.
	Backend bool
}

// merge adds a later change to c.
func (c Change) merge(later Change) Change {
	later.Desired = later.Desired || c.Desired
	later.Pools = later.Pools || c.Pools
	later.Kernel = later.Kernel || c.Kernel
	later.Health = later.Health || c.Health
	later.BGP = later.BGP || c.BGP
	later.Backend = later.Backend || c.Backend
	return later
}

// classify says what differs between two versions; a nil old one
// differs in everything.
func classify(old, cfg *config.Config) Change {
	if old == nil {
		return Change{Desired: true, Pools: true, Kernel: true, Health: true, BGP: true}
	}
	return Change{
		Desired: !reflect.DeepEqual(lb.OptionsFromConfig(old), lb.OptionsFromConfig(cfg)),
		Pools:   !reflect.DeepEqual(old.Pools, cfg.Pools),
		Kernel:  !reflect.DeepEqual(kernelNeeds(old), kernelNeeds(cfg)),
		Health:  !reflect.DeepEqual(old.HealthCheck, cfg.HealthCheck),
		BGP:     !reflect.DeepEqual(old.BGP, cfg.BGP),
		Backend: old.Dataplane.Backend != cfg.Dataplane.Backend,
	}
}

// Subscription receives the Changes of the running configuration: C
// fires (coalesced) after each new version, and Next returns what changed
// since the last Next. Safe for concurrent use by one consumer and the
// producer.
type Subscription struct {
	c       chan struct{}
	mu      sync.Mutex
	pending Change
	has     bool
}

// C receives a value when a Change is pending.
func (s *Subscription) C() <-chan struct{} { return s.c }

// Next returns the pending Change (merged over the versions since the
// last call), and false when none is pending.
func (s *Subscription) Next() (Change, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.pending, s.has
	s.pending, s.has = Change{}, false
	return c, ok
}

// Follow calls apply with each Change, in order, until ctx ends; it is
// a part's whole follower loop.
func (s *Subscription) Follow(ctx context.Context, apply func(Change)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.c:
		}
		if c, ok := s.Next(); ok {
			apply(c)
		}
	}
}

func (s *Subscription) add(c Change) {
	s.mu.Lock()
	if s.has {
		c = s.pending.merge(c)
	}
	s.pending, s.has = c, true
	s.mu.Unlock()
	select {
	case s.c <- struct{}{}:
	default:
	}
}
