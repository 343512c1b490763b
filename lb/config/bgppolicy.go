package config

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// BGPPolicy are the path attributes a bgp VIP's route carries: set on a
// pool (`bgp:` of a pool), a static service (`bgp:` of a service) or a
// Kubernetes Service (the edgelb.io/bgp-* annotations). Combine them with
// Merge.
type BGPPolicy struct {
	// Communities (RFC 1997), sorted, without duplicates.
	Communities []Community
	// LargeCommunities (RFC 8092), sorted, without duplicates.
	LargeCommunities []LargeCommunity
	// LocalPref, when set, is the LOCAL_PREF sent to iBGP peers (eBGP
	// peers never receive one, RFC 4271 5.1.5).
	LocalPref *uint32
}

// IsZero reports whether p sets nothing.
func (p BGPPolicy) IsZero() bool {
	return len(p.Communities) == 0 && len(p.LargeCommunities) == 0 && p.LocalPref == nil
}

// Merge is p with o over it: the communities and large communities of
// both (a pool tags its routes, a service adds its own tags), and o's
// local preference where o sets one, else p's (the more specific wins).
func (p BGPPolicy) Merge(o BGPPolicy) BGPPolicy {
	out := BGPPolicy{
		Communities:      sortedUnion(p.Communities, o.Communities, cmp.Compare[Community]),
		LargeCommunities: sortedUnion(p.LargeCommunities, o.LargeCommunities, LargeCommunity.Compare),
		LocalPref:        p.LocalPref,
	}
	if o.LocalPref != nil {
		out.LocalPref = o.LocalPref
	}
	return out
}

// Equal reports whether p and o set the same attributes.
func (p BGPPolicy) Equal(o BGPPolicy) bool {
	return slices.Equal(p.Communities, o.Communities) && slices.Equal(p.LargeCommunities, o.LargeCommunities) &&
		(p.LocalPref == nil) == (o.LocalPref == nil) && (p.LocalPref == nil || *p.LocalPref == *o.LocalPref)
}

func sortedUnion[T any](a, b []T, cmp func(T, T) int) []T {
	if len(a)+len(b) == 0 {
		return nil
	}
	out := slices.Concat(a, b)
	slices.SortFunc(out, cmp)
	return slices.CompactFunc(out, func(x, y T) bool { return cmp(x, y) == 0 })
}

// Community is a BGP community (RFC 1997): two 16-bit halves, usually
// an AS number and a value ("65000:100").
type Community uint32

// Well-known communities that may be set by name (IANA registry).
var wellKnownCommunities = map[string]Community{
	"no-export":           0xFFFFFF01, // RFC 1997
	"no-advertise":        0xFFFFFF02, // RFC 1997
	"no-export-subconfed": 0xFFFFFF03, // RFC 1997
	"local-as":            0xFFFFFF03, // FRR's and Cisco's name for it
	"no-peer":             0xFFFFFF04, // RFC 3765
	"blackhole":           0xFFFF029A, // RFC 7999
	"accept-own":          0xFFFF0001, // RFC 7611
}

// GracefulShutdown is the GRACEFUL_SHUTDOWN community (65535:0, RFC
// 8326). edgelb sets it itself on a draining or stopping host's routes,
// so it cannot be configured.
const GracefulShutdown Community = 0xFFFF0000

func (c Community) String() string {
	for name, v := range wellKnownCommunities {
		if v == c && name != "local-as" {
			return name
		}
	}
	if c == GracefulShutdown {
		return "graceful-shutdown"
	}
	return fmt.Sprintf("%d:%d", uint32(c)>>16, uint32(c)&0xFFFF)
}

// ParseCommunity parses "ASN:VALUE" (each 0-65535) or a well-known name
// (no-export, no-advertise, no-export-subconfed or local-as, no-peer,
// blackhole, accept-own). The reserved ranges 0:x and 65535:x are
// refused except for the well-known communities, and graceful-shutdown
// is refused: edgelb sends it itself when a host drains or stops.
func ParseCommunity(s string) (Community, error) {
	s = strings.TrimSpace(s)
	name := strings.ToLower(s)
	if name == "graceful-shutdown" {
		return 0, fmt.Errorf("%q: edgelb adds graceful-shutdown (65535:0) itself to a draining or stopping host's routes", s)
	}
	if c, ok := wellKnownCommunities[name]; ok {
		return c, nil
	}
	hi, lo, ok := strings.Cut(s, ":")
	h, err1 := strconv.ParseUint(hi, 10, 16)
	l, err2 := strconv.ParseUint(lo, 10, 16)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%q is not a community: use ASN:VALUE with each from 0 to 65535 (like 65000:100), or no-export, no-advertise, no-export-subconfed, no-peer, blackhole, accept-own", s)
	}
	c := Community(h<<16 | l)
	if c == GracefulShutdown {
		return 0, fmt.Errorf("%q is graceful-shutdown, which edgelb adds itself to a draining or stopping host's routes", s)
	}
	if h == 0 || h == 0xFFFF {
		for _, v := range wellKnownCommunities {
			if v == c {
				return c, nil
			}
		}
		return 0, fmt.Errorf("%q is in a reserved range (0:x and 65535:x, RFC 1997): use your AS number as the first half", s)
	}
	return c, nil
}

// LargeCommunity is a BGP large community (RFC 8092): a global
// administrator (an AS number) and two values, "65000:1:2".
type LargeCommunity struct {
	Global, Local1, Local2 uint32
}

func (c LargeCommunity) String() string {
	return fmt.Sprintf("%d:%d:%d", c.Global, c.Local1, c.Local2)
}

// Compare orders large communities field by field.
func (c LargeCommunity) Compare(o LargeCommunity) int {
	return cmp.Or(cmp.Compare(c.Global, o.Global), cmp.Compare(c.Local1, o.Local1), cmp.Compare(c.Local2, o.Local2))
}

// ParseLargeCommunity parses "ASN:VALUE:VALUE", each from 0 to
// 4294967295.
func ParseLargeCommunity(s string) (LargeCommunity, error) {
	s = strings.TrimSpace(s)
	parts := strings.Split(s, ":")
	var v [3]uint64
	bad := len(parts) != 3
	for i := 0; !bad && i < 3; i++ {
		var err error
		v[i], err = strconv.ParseUint(parts[i], 10, 32)
		bad = err != nil
	}
	if bad {
		return LargeCommunity{}, fmt.Errorf("%q is not a large community: use ASN:VALUE:VALUE with each from 0 to 4294967295 (like 65000:1:2)", s)
	}
	return LargeCommunity{uint32(v[0]), uint32(v[1]), uint32(v[2])}, nil
}

// ParseLocalPref parses a LOCAL_PREF: a whole number from 0 to
// 4294967295.
func ParseLocalPref(s string) (uint32, error) {
	v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a local preference: use a whole number from 0 to 4294967295 (100 is the usual default)", s)
	}
	return uint32(v), nil
}

// ParseCommunities parses a list of communities separated by commas
// (an annotation's value), sorted and without duplicates.
func ParseCommunities(s string) ([]Community, error) {
	return parseList(s, ParseCommunity, cmp.Compare[Community])
}

// ParseLargeCommunities parses a list of large communities separated by
// commas, sorted and without duplicates.
func ParseLargeCommunities(s string) ([]LargeCommunity, error) {
	return parseList(s, ParseLargeCommunity, LargeCommunity.Compare)
}

func parseList[T any](s string, parse func(string) (T, error), cmp func(T, T) int) ([]T, error) {
	var out []T
	for f := range strings.SplitSeq(s, ",") {
		if strings.TrimSpace(f) == "" {
			continue
		}
		v, err := parse(f)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return sortedUnion(out, nil, cmp), nil
}

// bgpPolicy decodes the `bgp` key of a pool or a static service.
func (p *parser) bgpPolicy(n *yaml.Node, path string) *BGPPolicy {
	d := p.d
	pol := &BGPPolicy{}
	d.mapping(n, path, map[string]func(*yaml.Node, string){
		"communities": func(n *yaml.Node, path string) {
			d.list(n, path, func(_ int, item *yaml.Node, path string) {
				var s string
				d.str(item, path, &s)
				c, err := ParseCommunity(s)
				if err != nil {
					d.errorf(item, path, "%v", err)
					return
				}
				pol.Communities = sortedUnion(pol.Communities, []Community{c}, cmp.Compare[Community])
			})
		},
		"largeCommunities": func(n *yaml.Node, path string) {
			d.list(n, path, func(_ int, item *yaml.Node, path string) {
				var s string
				d.str(item, path, &s)
				c, err := ParseLargeCommunity(s)
				if err != nil {
					d.errorf(item, path, "%v", err)
					return
				}
				pol.LargeCommunities = sortedUnion(pol.LargeCommunities, []LargeCommunity{c}, LargeCommunity.Compare)
			})
		},
		"localPref": func(n *yaml.Node, path string) {
			var v int64
			if d.integer(n, path, 0, 1<<32-1, &v) {
				lp := uint32(v)
				pol.LocalPref = &lp
			}
		},
	})
	return pol
}

// checkBGPPolicy refuses a `bgp` policy on what is not announced over
// BGP.
func (p *parser) checkBGPPolicy(n *yaml.Node, path string, pol *BGPPolicy, a Announce) {
	if pol != nil && a != AnnounceBGP {
		p.d.errorf(n, join(path, "bgp"), "communities and localPref apply to routes: only with announce: bgp")
	}
}
