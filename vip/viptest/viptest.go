// Package viptest has in-memory fakes of the vip package's interfaces, for
// tests that drive a vip.Manager without root.
package viptest

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/edgelb/edgelb/lb/notify"
	"github.com/edgelb/edgelb/vip"
)

// Kernel is an in-memory vip.Kernel. Tests set and read its exported
// fields under Mu.
type Kernel struct {
	Mu    sync.Mutex
	State vip.Link
	// Marked are the VIPs edgelb added; Foreign are addresses someone else
	// configured, which edgelb must never touch.
	Marked  map[netip.Addr]bool
	Foreign map[netip.Addr]bool
	// FailAdd makes AddVIP fail for these addresses.
	FailAdd map[netip.Addr]bool
	// Expires is when each marked VIP's valid lifetime runs out; VIPs
	// without an entry are valid forever. Like the kernel, the fake drops
	// a VIP once Now passes it.
	Expires map[netip.Addr]time.Time
	// KeptVIPs are the marked VIPs kept for the next process.
	KeptVIPs map[netip.Addr]bool
	// Renewals counts RenewVIP calls per VIP; Adds AddVIP calls.
	Renewals map[netip.Addr]int
	Adds     map[netip.Addr]int
	// Now is the fake's clock; nil means time.Now.
	Now func() time.Time
	// Changed, when set before use, is called after each VIP added or
	// removed, outside Mu: a test that must see every state (two hosts
	// holding a VIP for a moment) samples there, not on a timer.
	Changed func()

	changed func()
}

var _ vip.Kernel = (*Kernel)(nil)

// NewKernel returns a fake with an up interface eth0.
func NewKernel() *Kernel {
	return &Kernel{
		State:    vip.Link{Name: "eth0", Index: 2, HardwareAddr: []byte{2, 0, 0, 0, 0, 1}, Up: true},
		Marked:   map[netip.Addr]bool{},
		Foreign:  map[netip.Addr]bool{},
		FailAdd:  map[netip.Addr]bool{},
		Expires:  map[netip.Addr]time.Time{},
		KeptVIPs: map[netip.Addr]bool{},
		Renewals: map[netip.Addr]int{},
		Adds:     map[netip.Addr]int{},
	}
}

// AddCalls returns how many times AddVIP was called for a.
func (k *Kernel) AddCalls(a netip.Addr) int {
	k.Mu.Lock()
	defer k.Mu.Unlock()
	return k.Adds[a]
}

func (k *Kernel) now() time.Time {
	if k.Now != nil {
		return k.Now()
	}
	return time.Now()
}

// expireLocked drops the VIPs whose lifetime has run out.
func (k *Kernel) expireLocked() {
	now := k.now()
	for a, t := range k.Expires {
		if !now.Before(t) {
			delete(k.Marked, a)
			delete(k.KeptVIPs, a)
			delete(k.Expires, a)
		}
	}
}

func (k *Kernel) setLifetimeLocked(a netip.Addr, lifetime time.Duration) {
	if lifetime > 0 {
		k.Expires[a] = k.now().Add(lifetime)
	} else {
		delete(k.Expires, a)
	}
}

// Lifetime returns how long a VIP has left (0 and false: forever or not
// there).
func (k *Kernel) Lifetime(a netip.Addr) (time.Duration, bool) {
	k.Mu.Lock()
	defer k.Mu.Unlock()
	k.expireLocked()
	t, ok := k.Expires[a]
	if !ok {
		return 0, false
	}
	return t.Sub(k.now()), true
}

// Link implements vip.Kernel.
func (k *Kernel) Link() (vip.Link, error) {
	k.Mu.Lock()
	defer k.Mu.Unlock()
	return k.State, nil
}

// VIPs implements vip.Kernel.
func (k *Kernel) VIPs() ([]netip.Addr, error) {
	k.Mu.Lock()
	defer k.Mu.Unlock()
	return k.vipsLocked(), nil
}

func (k *Kernel) vipsLocked() []netip.Addr {
	k.expireLocked()
	var out []netip.Addr
	for a := range k.Marked {
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// Held returns the marked VIPs, sorted.
func (k *Kernel) Held() []netip.Addr {
	k.Mu.Lock()
	defer k.Mu.Unlock()
	return k.vipsLocked()
}

// Kept implements vip.Kernel.
func (k *Kernel) Kept() ([]netip.Addr, error) {
	k.Mu.Lock()
	defer k.Mu.Unlock()
	var out []netip.Addr
	for _, a := range k.vipsLocked() {
		if k.KeptVIPs[a] {
			out = append(out, a)
		}
	}
	return out, nil
}

// AddVIP implements vip.Kernel.
func (k *Kernel) AddVIP(a netip.Addr, lifetime time.Duration) error {
	k.Mu.Lock()
	defer k.Mu.Unlock()
	k.expireLocked()
	k.Adds[a]++
	if k.FailAdd[a] {
		return fmt.Errorf("adding %s: injected failure", a)
	}
	if k.Marked[a] || k.Foreign[a] {
		return fmt.Errorf("adding %s: exists", a)
	}
	k.Marked[a] = true
	k.setLifetimeLocked(a, lifetime)
	k.Mu.Unlock()
	k.notify()
	k.Mu.Lock()
	return nil
}

// notify calls Changed, when set.
func (k *Kernel) notify() {
	if k.Changed != nil {
		k.Changed()
	}
}

// RenewVIP implements vip.Kernel.
func (k *Kernel) RenewVIP(a netip.Addr, lifetime time.Duration, keep bool) error {
	k.Mu.Lock()
	defer k.Mu.Unlock()
	k.expireLocked()
	if !k.Marked[a] {
		return fmt.Errorf("renewing %s: not an address edgelb added", a)
	}
	k.setLifetimeLocked(a, lifetime)
	if keep {
		k.KeptVIPs[a] = true
	} else {
		delete(k.KeptVIPs, a)
	}
	k.Renewals[a]++
	return nil
}

// DelVIP implements vip.Kernel.
func (k *Kernel) DelVIP(a netip.Addr) error {
	k.Mu.Lock()
	defer k.Mu.Unlock()
	if k.Foreign[a] {
		panic(fmt.Sprintf("edgelb removed %s, which it did not add", a))
	}
	delete(k.Marked, a)
	delete(k.KeptVIPs, a)
	delete(k.Expires, a)
	k.Mu.Unlock()
	k.notify()
	k.Mu.Lock()
	return nil
}

// WatchLink implements vip.Kernel; SetUp triggers the callback. Like
// the real one, it calls changed once when it starts watching, for what
// changed before.
func (k *Kernel) WatchLink(ctx context.Context, changed func()) error {
	k.Mu.Lock()
	k.changed = changed
	k.Mu.Unlock()
	changed()
	<-ctx.Done()
	return nil
}

// SetUp changes the link state and notifies the watcher.
func (k *Kernel) SetUp(up bool) {
	k.Mu.Lock()
	k.State.Up = up
	changed := k.changed
	k.Mu.Unlock()
	if changed != nil {
		changed()
	}
}

// Announcer records announcements.
type Announcer struct {
	mu   sync.Mutex
	Sent map[netip.Addr]int
}

var _ vip.Announcer = (*Announcer)(nil)

// Announce implements vip.Announcer.
func (a *Announcer) Announce(_ vip.Link, v netip.Addr) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.Sent == nil {
		a.Sent = map[netip.Addr]int{}
	}
	a.Sent[v]++
	return nil
}

// Count returns how many announcements were sent for v.
func (a *Announcer) Count(v netip.Addr) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.Sent[v]
}

// Cluster is a fake ownership source and reporter.
type Cluster struct {
	mu         sync.Mutex
	owned      []netip.Addr
	handover   []netip.Addr
	restarting bool
	changed    notify.Broadcaster
	// reports start unsignalled: a test waits for a pass after it.
	reports  []chan struct{}
	Held     []netip.Addr
	epoch    uint64
	Health   map[string]error
	Networks []netip.Prefix
	// Refused is what the Manager last reported refused; Elsewhere the
	// VIPs another member owns (OwnedElsewhere).
	Refused   []netip.Addr
	Elsewhere map[netip.Addr]bool
}

var (
	_ vip.Ownership = (*Cluster)(nil)
	_ vip.Reporter  = (*Cluster)(nil)
)

// SetOwned changes what this host owns; it hands nothing over.
func (c *Cluster) SetOwned(v ...netip.Addr) { c.Set(v, nil) }

// Set changes what this host owns and hands over.
func (c *Cluster) Set(own, handover []netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.owned, c.handover = own, handover
	c.changed.Notify()
}

// SetRestarting sets whether this member is in its start-up grace.
func (c *Cluster) SetRestarting(r bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.restarting = r
	c.changed.Notify()
}

// Reannounce changes the AnnounceEpoch, as when a peer gave back a VIP
// this host owns.
func (c *Cluster) Reannounce() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	c.changed.Notify()
}

// AnnounceEpoch implements vip.Ownership.
func (c *Cluster) AnnounceEpoch() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch
}

// Restarting implements vip.Ownership.
func (c *Cluster) Restarting() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.restarting
}

// Owned implements vip.Ownership.
func (c *Cluster) Owned() (own, handover []netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.owned), slices.Clone(c.handover)
}

// Subscribe implements vip.Ownership; like *cluster.Cluster's, the
// channel starts signalled.
func (c *Cluster) Subscribe() <-chan struct{} { return c.changed.Subscribe() }

// SetHealth implements vip.Reporter.
func (c *Cluster) SetHealth(source string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.Health == nil {
		c.Health = map[string]error{}
	}
	c.Health[source] = err
}

// HealthOf returns the last health reported by source.
func (c *Cluster) HealthOf(source string) (error, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	err, ok := c.Health[source]
	return err, ok
}

// SetHeld implements vip.Reporter.
func (c *Cluster) SetHeld(v []netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Held = slices.Clone(v)
	for _, r := range c.reports {
		select {
		case r <- struct{}{}:
		default:
		}
	}
}

// Reports returns a channel that receives a value (coalesced) after each
// later SetHeld: a Manager reports at the end of every pass, so tests
// wait on it for a pass of Run instead of sleeping.
func (c *Cluster) Reports() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := make(chan struct{}, 1)
	c.reports = append(c.reports, r)
	return r
}

// HeldNow returns the last reported held VIPs.
func (c *Cluster) HeldNow() []netip.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.Held)
}

// SetRefused implements vip.Reporter.
func (c *Cluster) SetRefused(v []netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Refused = slices.Clone(v)
}

// RefusedNow returns the last reported refused VIPs.
func (c *Cluster) RefusedNow() []netip.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.Refused)
}

// SetElsewhere sets the VIPs another member owns.
func (c *Cluster) SetElsewhere(v ...netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Elsewhere = map[netip.Addr]bool{}
	for _, a := range v {
		c.Elsewhere[a] = true
	}
}

// OwnedElsewhere implements vip.Ownership.
func (c *Cluster) OwnedElsewhere(v netip.Addr) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Elsewhere[v]
}

// SetNetworks implements vip.Reporter.
func (c *Cluster) SetNetworks(p []netip.Prefix) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Networks = p
}
