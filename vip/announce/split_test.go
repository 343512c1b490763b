package announce_test

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"go4.org/netipx"

	"github.com/edgelb/edgelb/vip/announce"
	"github.com/edgelb/edgelb/vip/viptest"
)

type staticVIPs struct {
	vips []netip.Addr
	c    chan struct{}
}

func (s *staticVIPs) VIPs() ([]netip.Addr, bool) { return s.vips, true }
func (s *staticVIPs) Subscribe() <-chan struct{} { return s.c }

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

func bgpSet() *netipx.IPSet {
	var b netipx.IPSetBuilder
	b.AddPrefix(netip.MustParsePrefix("198.51.100.0/28"))
	b.Add(netip.MustParseAddr("2001:db8::53"))
	set, _ := b.IPSet()
	return set
}

// Every VIP has exactly one method: the bgp set's addresses are bgp, the
// rest l2, and the two sources partition the desired VIPs.
func TestSplitPartitions(t *testing.T) {
	src := &staticVIPs{vips: addrs("192.0.2.1", "198.51.100.1", "198.51.100.2", "2001:db8::1", "2001:db8::53")}
	s := announce.NewSplit(src, bgpSet)
	l2, _ := s.L2().VIPs()
	bgp, _ := s.BGP().VIPs()
	if !slices.Equal(l2, addrs("192.0.2.1", "2001:db8::1")) {
		t.Errorf("l2 VIPs %v", l2)
	}
	if !slices.Equal(bgp, addrs("198.51.100.1", "198.51.100.2", "2001:db8::53")) {
		t.Errorf("bgp VIPs %v", bgp)
	}
	for _, v := range src.vips {
		inL2, inBGP := slices.Contains(l2, v), slices.Contains(bgp, v)
		if inL2 == inBGP {
			t.Errorf("%s: in l2 %v, in bgp %v: want exactly one", v, inL2, inBGP)
		}
		want := announce.L2
		if inBGP {
			want = announce.BGP
		}
		if got := s.MethodOf(v); got != want {
			t.Errorf("MethodOf(%s) = %s, want %s", v, got, want)
		}
	}
	if got := s.L2Of(src.vips); !slices.Equal(got, l2) {
		t.Errorf("L2Of = %v, want %v", got, l2)
	}
}

// The VIP manager holds the l2 VIPs the cluster assigns and every bgp
// VIP quietly; the cluster hears only of the l2 VIPs held, and a change
// of either side wakes the manager.
func TestHostingHoldsBGPQuietlyAndReportsL2(t *testing.T) {
	src := &staticVIPs{vips: addrs("192.0.2.1", "192.0.2.2", "198.51.100.1", "2001:db8::53"), c: make(chan struct{}, 1)}
	s := announce.NewSplit(src, bgpSet)
	c := &viptest.Cluster{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := s.Hosting(ctx, c)
	c.Set(addrs("192.0.2.1"), addrs("192.0.2.2"))
	own, handover := h.Owned()
	if !slices.Equal(own, addrs("192.0.2.1")) {
		t.Errorf("own %v: want the cluster's l2 VIP only", own)
	}
	if !slices.Equal(handover, addrs("192.0.2.2", "198.51.100.1", "2001:db8::53")) {
		t.Errorf("handover %v: want the cluster's handover and every bgp VIP", handover)
	}
	h.SetHeld(addrs("192.0.2.1", "198.51.100.1", "2001:db8::53"))
	if held := c.HeldNow(); !slices.Equal(held, addrs("192.0.2.1")) {
		t.Errorf("the cluster heard of %v held: want the l2 VIP only", held)
	}

	wake := h.Subscribe()
	drain := func() {
		for {
			select {
			case <-wake:
			default:
				return
			}
		}
	}
	<-wake // the cluster's subscription starts signalled
	drain()
	src.c <- struct{}{}
	<-wake // a desired-state change wakes the manager
	c.SetOwned(addrs("192.0.2.2")...)
	<-wake // and so does an ownership change
}

// A VIP the kernel refused costs that VIP only: the cluster hears of the
// refused l2 VIPs (it gives them to another member) and a refused bgp VIP
// is simply not advertised by this host, which advertises only the bgp
// VIPs it holds. A refused bgp VIP is tried again after its hold whatever
// the others do; a refused l2 VIP only when no other member owns it.
func TestRefusedVIPsAndHeldBGP(t *testing.T) {
	src := &staticVIPs{vips: addrs("192.0.2.1", "192.0.2.2", "198.51.100.1", "198.51.100.2"), c: make(chan struct{}, 1)}
	s := announce.NewSplit(src, bgpSet)
	c := &viptest.Cluster{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := s.Hosting(ctx, c)
	adv := s.HeldBGP(ctx)
	wake := adv.Subscribe()
	<-wake // the desired state's subscription starts signalled
	if vips, _ := adv.VIPs(); len(vips) != 0 {
		t.Errorf("advertisable before anything is held: %v", vips)
	}
	h.SetHeld(addrs("192.0.2.1", "198.51.100.1"))
	<-wake // the held VIPs changed
	if vips, _ := adv.VIPs(); !slices.Equal(vips, addrs("198.51.100.1")) {
		t.Errorf("advertisable %v, want the held bgp VIP only", vips)
	}
	h.SetRefused(addrs("192.0.2.2", "198.51.100.2"))
	if got := c.RefusedNow(); !slices.Equal(got, addrs("192.0.2.2")) {
		t.Errorf("the cluster heard of %v refused, want the l2 VIP only", got)
	}
	c.SetElsewhere(addrs("192.0.2.2", "198.51.100.2")...)
	if !h.OwnedElsewhere(addrs("192.0.2.2")[0]) {
		t.Error("an l2 VIP another member owns is not owned elsewhere")
	}
	if h.OwnedElsewhere(addrs("198.51.100.2")[0]) {
		t.Error("a bgp VIP is owned elsewhere: a refused one would never be tried again")
	}
}
