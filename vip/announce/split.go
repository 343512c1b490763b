// Package announce decides how each VIP is announced. There are two
// methods, each with the interface its side consumes (MetalLB's one
// Protocol per method):
//
//   - l2: one owner per VIP, assigned by the cluster (memberlist,
//     rendezvous hashing, quorum), which adds the VIP to its interface
//     and announces it with gratuitous ARP / unsolicited NA. The cluster
//     reads the l2 VIPs from Split.L2; the VIP manager holds what
//     Split.Hosting says.
//   - bgp: every healthy member with a quorum that holds the VIP
//     advertises it to its routers (the bgp package's Announcer reads
//     Split.HeldBGP), and every member holds it on its interface quietly — IPVS needs it local,
//     and no host may answer ARP/NDP for it — like a VIP being handed
//     over. A host that stops advertising (drain, unhealthy) keeps the
//     VIP, so the flows the routers send while they converge are still
//     forwarded.
//
// The split itself is data: the set of addresses of `announce: bgp`
// pools and static services in the running cluster configuration.
package announce

import (
	"context"
	"net/netip"
	"slices"
	"sync"

	"go4.org/netipx"

	"github.com/edgelb/edgelb/lb/notify"
	"github.com/edgelb/edgelb/vip"
)

// Method is how a VIP is announced.
type Method string

const (
	L2  Method = "l2"
	BGP Method = "bgp"
)

// Source is where the VIPs come from (the desired state's store): VIPs
// returns them sorted, and loaded false until a first desired state
// exists; Subscribe's channel receives a value whenever they may have
// changed. It is cluster.VIPSource and bgp.VIPSource.
type Source interface {
	VIPs() (vips []netip.Addr, loaded bool)
	Subscribe() <-chan struct{}
}

// Split classifies the desired VIPs by Method. Its methods are safe for
// concurrent use if src's and bgpSet's are.
type Split struct {
	src Source
	// bgpSet is the current set of bgp addresses (it changes with the
	// cluster configuration).
	bgpSet func() *netipx.IPSet

	mu   sync.Mutex
	held []netip.Addr // what the VIP manager holds (Hosting.SetHeld), sorted
	// heldChanged is signalled when held changes.
	heldChanged notify.Broadcaster
}

// NewSplit splits src's VIPs with the set of bgp addresses bgpSet
// returns at each call.
func NewSplit(src Source, bgpSet func() *netipx.IPSet) *Split {
	return &Split{src: src, bgpSet: bgpSet}
}

// MethodOf is how a is announced.
func (s *Split) MethodOf(a netip.Addr) Method {
	if s.bgpSet().Contains(a) {
		return BGP
	}
	return L2
}

// L2 is the source of the VIPs with one owner each: the cluster's.
func (s *Split) L2() Source { return filtered{s: s, m: L2} }

// BGP is the source of the VIPs advertised over BGP: the announcer's.
func (s *Split) BGP() Source { return filtered{s: s, m: BGP} }

// HeldBGP is the source of the bgp VIPs this host holds on its interface
// (Hosting.SetHeld): what it may advertise. A bgp VIP the kernel refused
// is not held, so this host never draws traffic it could not take, while
// the others advertise it. Its Subscribe's channel is signalled by the
// desired state's changes and by the held VIPs'; ctx ends the goroutine
// each Subscribe starts.
func (s *Split) HeldBGP(ctx context.Context) Source { return heldBGP{s: s, ctx: ctx} }

type heldBGP struct {
	s   *Split
	ctx context.Context
}

func (h heldBGP) VIPs() ([]netip.Addr, bool) {
	vips, loaded := h.s.BGP().VIPs()
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	return slices.DeleteFunc(vips, func(v netip.Addr) bool {
		_, found := slices.BinarySearchFunc(h.s.held, v, netip.Addr.Compare)
		return !found
	}), loaded
}

func (h heldBGP) Subscribe() <-chan struct{} {
	return merge(h.ctx, h.s.src.Subscribe(), h.s.heldChanged.Subscribe())
}

// merge returns a channel signalled whenever a or b is, until ctx ends.
func merge(ctx context.Context, a, b <-chan struct{}) <-chan struct{} {
	out := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-a:
			case <-b:
			}
			select {
			case out <- struct{}{}:
			default:
			}
		}
	}()
	return out
}

// L2Of keeps the l2 VIPs of vips.
func (s *Split) L2Of(vips []netip.Addr) []netip.Addr { return s.of(L2, vips) }

func (s *Split) of(m Method, vips []netip.Addr) []netip.Addr {
	var out []netip.Addr
	set := s.bgpSet()
	for _, v := range vips {
		if (set.Contains(v) && m == BGP) || (!set.Contains(v) && m == L2) {
			out = append(out, v)
		}
	}
	return out
}

type filtered struct {
	s *Split
	m Method
}

func (f filtered) VIPs() ([]netip.Addr, bool) {
	all, loaded := f.s.src.VIPs()
	return f.s.of(f.m, all), loaded
}

func (f filtered) Subscribe() <-chan struct{} { return f.s.src.Subscribe() }

// L2Owner is the l2 method's side: the cluster, which assigns each l2 VIP
// one owner and hears which ones this host holds.
type L2Owner interface {
	vip.Ownership
	vip.Reporter
}

// Hosting is what the VIP manager holds: the l2 VIPs the cluster assigns
// this host, and every bgp VIP, quietly (as a handover: never announced
// on the LAN). The cluster hears only of the l2 VIPs held (a bgp VIP is
// none it assigns, and a stop must not wait for it).
type Hosting struct {
	L2Owner
	split *Split
	ctx   context.Context // ends Subscribe's goroutines
}

var (
	_ vip.Ownership = Hosting{}
	_ vip.Reporter  = Hosting{}
)

// Hosting combines the cluster's assignment with the bgp VIPs; ctx ends
// the goroutines its Subscribe starts.
func (s *Split) Hosting(ctx context.Context, c L2Owner) Hosting {
	return Hosting{L2Owner: c, split: s, ctx: ctx}
}

// Owned implements vip.Ownership.
func (h Hosting) Owned() (own, handover []netip.Addr) {
	own, handover = h.L2Owner.Owned()
	vips, _ := h.split.BGP().VIPs()
	handover = append(handover, vips...)
	slices.SortFunc(handover, netip.Addr.Compare)
	return own, slices.Compact(handover)
}

// Subscribe implements vip.Ownership: the cluster's changes and the
// desired state's.
func (h Hosting) Subscribe() <-chan struct{} {
	return merge(h.ctx, h.L2Owner.Subscribe(), h.split.src.Subscribe())
}

// OwnedElsewhere implements vip.Ownership: a bgp VIP is every host's, so
// a refused one is tried again after its hold whatever the others do.
func (h Hosting) OwnedElsewhere(v netip.Addr) bool {
	return h.split.MethodOf(v) == L2 && h.L2Owner.OwnedElsewhere(v)
}

// SetRefused implements vip.Reporter: the cluster hears of the l2 VIPs
// only; a refused bgp VIP is simply not held, so not advertised (HeldBGP).
func (h Hosting) SetRefused(vips []netip.Addr) {
	h.L2Owner.SetRefused(h.split.L2Of(vips))
}

// SetHeld implements vip.Reporter: the cluster hears of the l2 VIPs only,
// HeldBGP hears of all of them.
func (h Hosting) SetHeld(vips []netip.Addr) {
	sorted := slices.Clone(vips)
	slices.SortFunc(sorted, netip.Addr.Compare)
	h.split.mu.Lock()
	changed := !slices.Equal(sorted, h.split.held)
	h.split.held = sorted
	h.split.mu.Unlock()
	if changed {
		h.split.heldChanged.Notify()
	}
	h.L2Owner.SetHeld(h.split.L2Of(vips))
}
