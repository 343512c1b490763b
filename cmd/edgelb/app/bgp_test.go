package app

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"go4.org/netipx"

	"github.com/edgelb/edgelb/cluster"
)

type staticVIPs []netip.Addr

func (s staticVIPs) VIPs() ([]netip.Addr, bool) { return s, true }
func (s staticVIPs) Subscribe() <-chan struct{} { return make(chan struct{}) }

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

// The cluster decides only the l2 VIPs; the bgp ones are on every host,
// quiet (held like a handover: never announced on the LAN).
func TestBGPVIPsSplitAndHosted(t *testing.T) {
	var b netipx.IPSetBuilder
	b.AddPrefix(netip.MustParsePrefix("198.51.100.0/28"))
	b.Add(netip.MustParseAddr("2001:db8::53"))
	set, _ := b.IPSet()
	src := staticVIPs(addrs("192.0.2.1", "198.51.100.1", "198.51.100.2", "2001:db8::1", "2001:db8::53"))
	l2, bgpVIPs := announced{src: src, set: func() *netipx.IPSet { return set }}, announced{src: src, set: func() *netipx.IPSet { return set }, bgp: true}
	if got, _ := l2.VIPs(); !slices.Equal(got, addrs("192.0.2.1", "2001:db8::1")) {
		t.Errorf("l2 VIPs %v", got)
	}
	if got, _ := bgpVIPs.VIPs(); !slices.Equal(got, addrs("198.51.100.1", "198.51.100.2", "2001:db8::53")) {
		t.Errorf("bgp VIPs %v", got)
	}
	members, err := cluster.New(cluster.Options{Name: "lb1", Insecure: true, VIPs: l2})
	if err != nil {
		t.Fatal(err)
	}
	h := bgpHosting{Cluster: members, bgp: bgpVIPs, ctx: context.Background()}
	own, handover := h.Owned()
	if len(own) != 0 || !slices.Equal(handover, addrs("198.51.100.1", "198.51.100.2", "2001:db8::53")) {
		t.Errorf("Owned() = %v, %v: want no owned VIP (no quorum yet) and every bgp VIP held quietly", own, handover)
	}
}
