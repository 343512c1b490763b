// Package bgptest has an in-memory bgp.Speaker and the sources the
// Announcer reads, for tests.
package bgptest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/edgelb/edgelb/lb/notify"
	"github.com/edgelb/edgelb/vip/bgp"
)

// Speaker is an in-memory bgp.Speaker: Routes holds what is advertised,
// with its attributes.
// Set Fail to make Advertise and Withdraw fail. Safe for concurrent use.
type Speaker struct {
	mu     sync.Mutex
	Routes map[netip.Prefix]bgp.Attrs
	Status []bgp.PeerStatus
	Fail   error
	// Refuse makes Advertise fail for these routes only.
	Refuse  map[netip.Prefix]error
	Started bool
	Stopped bool
	// Global and Configured are the last Configure's global and peers.
	Global     bgp.Global
	Configured []bgp.Peer
	// Calls records "advertise P", "advertise P [ATTRS]" (bgp.Attrs.String),
	// "withdraw P" and "stop", in order.
	Calls []string
	watch []chan struct{}
}

var _ bgp.Speaker = (*Speaker)(nil)

// NewSpeaker returns an empty Speaker.
func NewSpeaker() *Speaker { return &Speaker{Routes: map[netip.Prefix]bgp.Attrs{}} }

func (s *Speaker) Start(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Started = true
	return nil
}

func (s *Speaker) Advertise(p netip.Prefix, a bgp.Attrs) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Fail != nil {
		return s.Fail
	}
	if err := s.Refuse[p]; err != nil {
		return err
	}
	if !s.Started || s.Stopped {
		return errors.New("not running")
	}
	s.Routes[p] = a
	s.recordLocked("advertise " + bgp.Route{Prefix: p, Attrs: a}.String())
	return nil
}

func (s *Speaker) Withdraw(p netip.Prefix) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Fail != nil {
		return s.Fail
	}
	delete(s.Routes, p)
	s.recordLocked("withdraw " + p.String())
	return nil
}

func (s *Speaker) Peers() []bgp.PeerStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.Status)
}

// Configure records "configure ASN/peers"; a new ASN drops the routes,
// as a restarted speaker would.
func (s *Speaker) Configure(_ context.Context, g bgp.Global, peers []bgp.Peer) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	restarted := g != s.Global
	s.Global, s.Configured = g, slices.Clone(peers)
	if restarted {
		clear(s.Routes)
	}
	s.recordLocked(fmt.Sprintf("configure %d/%d", g.ASN, len(peers)))
	return restarted, nil
}

func (s *Speaker) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Stopped = true
	s.recordLocked("stop")
	return nil
}

// recordLocked appends call to Calls and signals the Watch channels.
// s.mu must be held.
func (s *Speaker) recordLocked(call string) {
	s.Calls = append(s.Calls, call)
	for _, w := range s.watch {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// Watch returns a channel that receives a value (coalesced) after each
// later call recorded in Calls, for tests to wait on instead of sleeping.
func (s *Speaker) Watch() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := make(chan struct{}, 1)
	s.watch = append(s.watch, w)
	return w
}

// Advertised returns the advertised routes, sorted.
func (s *Speaker) Advertised() []netip.Prefix {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []netip.Prefix
	for p := range s.Routes {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return out
}

// Attrs returns the attributes p is advertised with, and whether it is.
func (s *Speaker) Attrs(p netip.Prefix) (bgp.Attrs, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.Routes[p]
	return a, ok
}

// History returns Calls.
func (s *Speaker) History() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.Calls)
}

// State is a bgp.Serving and a bgp.VIPSource whose answers tests set.
type State struct {
	mu       sync.Mutex
	serving  bool
	draining bool
	vips     []netip.Addr
	loaded   bool
	changed  notify.Broadcaster
}

// SetServing sets MayServe's answer.
func (s *State) SetServing(v bool) {
	s.mu.Lock()
	s.serving = v
	s.mu.Unlock()
	s.changed.Notify()
}

// SetDraining sets Draining's answer; draining also makes MayServe
// false, as on the cluster.
func (s *State) SetDraining(v bool) {
	s.mu.Lock()
	s.draining = v
	s.mu.Unlock()
	s.changed.Notify()
}

func (s *State) Draining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// SetVIPs sets VIPs' answer and marks them loaded.
func (s *State) SetVIPs(v ...netip.Addr) {
	s.mu.Lock()
	s.vips, s.loaded = v, true
	s.mu.Unlock()
	s.changed.Notify()
}

func (s *State) MayServe() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.serving && !s.draining
}

func (s *State) VIPs() ([]netip.Addr, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.vips), s.loaded
}

// Subscribe implements bgp.Serving and bgp.VIPSource; the channel starts
// signalled, like those of *cluster.Cluster and *lb.Store.
func (s *State) Subscribe() <-chan struct{} { return s.changed.Subscribe() }
