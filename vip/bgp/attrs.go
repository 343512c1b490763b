package bgp

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Attrs are the path attributes of a route beside its origin and next
// hop: the BGP policy of its VIP.
type Attrs struct {
	// Communities (RFC 1997), sorted, without duplicates.
	Communities []uint32
	// LargeCommunities (RFC 8092), sorted, without duplicates.
	LargeCommunities []LargeCommunity
	// LocalPref, when set, is sent to iBGP peers; an eBGP peer never
	// receives LOCAL_PREF (RFC 4271 5.1.5), the speaker leaves it out.
	LocalPref *uint32
}

// LargeCommunity is a BGP large community (RFC 8092).
type LargeCommunity struct {
	Global, Local1, Local2 uint32
}

// Compare orders large communities field by field.
func (c LargeCommunity) Compare(o LargeCommunity) int {
	return cmp.Or(cmp.Compare(c.Global, o.Global), cmp.Compare(c.Local1, o.Local1), cmp.Compare(c.Local2, o.Local2))
}

// GracefulShutdown is the GRACEFUL_SHUTDOWN community, 65535:0 (RFC
// 8326): a router that honours it gives the route the lowest local
// preference, so it moves traffic to the other hosts before this one
// withdraws.
const GracefulShutdown uint32 = 0xFFFF0000

// Equal reports whether a and o are the same attributes.
func (a Attrs) Equal(o Attrs) bool {
	return slices.Equal(a.Communities, o.Communities) && slices.Equal(a.LargeCommunities, o.LargeCommunities) &&
		(a.LocalPref == nil) == (o.LocalPref == nil) && (a.LocalPref == nil || *a.LocalPref == *o.LocalPref)
}

// IsZero reports whether a sets nothing.
func (a Attrs) IsZero() bool {
	return len(a.Communities) == 0 && len(a.LargeCommunities) == 0 && a.LocalPref == nil
}

// withCommunity returns a with c added.
func (a Attrs) withCommunity(c uint32) Attrs {
	out := a
	out.Communities = slices.Clone(a.Communities)
	if i, found := slices.BinarySearch(out.Communities, c); !found {
		out.Communities = slices.Insert(out.Communities, i, c)
	}
	return out
}

// String is like "65000:100 65000:1:2 lp=200"; "" for none.
func (a Attrs) String() string {
	var parts []string
	for _, c := range a.Communities {
		parts = append(parts, fmt.Sprintf("%d:%d", c>>16, c&0xFFFF))
	}
	for _, c := range a.LargeCommunities {
		parts = append(parts, fmt.Sprintf("%d:%d:%d", c.Global, c.Local1, c.Local2))
	}
	if a.LocalPref != nil {
		parts = append(parts, fmt.Sprintf("lp=%d", *a.LocalPref))
	}
	return strings.Join(parts, " ")
}

// Route is a host route to a VIP and its attributes.
type Route struct {
	Prefix netip.Prefix
	Attrs  Attrs
}

func (r Route) String() string {
	if r.Attrs.IsZero() {
		return r.Prefix.String()
	}
	return r.Prefix.String() + " [" + r.Attrs.String() + "]"
}

// Equal reports whether r and o are the same route with the same
// attributes.
func (r Route) Equal(o Route) bool { return r.Prefix == o.Prefix && r.Attrs.Equal(o.Attrs) }

// Phase is where a member is in advertising its routes.
type Phase int

const (
	// PhaseWithdrawn: the member may not serve; it advertises nothing.
	PhaseWithdrawn Phase = iota
	// PhaseServing: the member advertises every VIP with its policy.
	PhaseServing
	// PhaseShuttingDown: the member drains or stops; it advertises its routes
	// with GRACEFUL_SHUTDOWN added for bgp.withdrawDelay, then withdraws.
	PhaseShuttingDown
)
