package cluster

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// Assign returns the owner of each VIP: the name of the member that wins
// the rendezvous hash (highest score of member name and VIP) among the
// eligible members — healthy or restarting, not draining, not a
// witness, not Silent — that do not
// refuse it (Meta.Refused). When some of them list a network containing
// the VIP, only those compete; a VIP outside every announced network goes
// to any of them. VIPs nobody can own are left out of the result.
//
// Assign is a pure function of its arguments: members that see the same
// membership compute the same owners, and a member joining or leaving
// moves only the VIPs it wins or owned.
func Assign(vips []netip.Addr, members []Member) map[netip.Addr]string {
	out := make(map[netip.Addr]string, len(vips))
	var eligible []*Member
	for i := range members {
		if members[i].Eligible() && !members[i].Silent {
			eligible = append(eligible, &members[i])
		}
	}
	if len(eligible) == 0 {
		return out
	}
	for _, v := range vips {
		onNet := false
		for _, m := range eligible {
			if m.onNetwork(v) && !m.refuses(v) {
				onNet = true
				break
			}
		}
		var best *Member
		var bestScore uint64
		for _, m := range eligible {
			if (onNet && !m.onNetwork(v)) || m.refuses(v) {
				continue
			}
			s := score(m.Name, v)
			if best == nil || s > bestScore || (s == bestScore && m.Name < best.Name) {
				best, bestScore = m, s
			}
		}
		if best != nil {
			out[v] = best.Name
		}
	}
	return out
}

// refuses reports whether the member's kernel would not add v.
func (m *Member) refuses(v netip.Addr) bool { return slices.Contains(m.Refused, v) }

// Eligible reports whether the member may own VIPs: healthy, or
// restarting (its dataplane and VIPs outlive its process, and its new
// process is not programmed yet), not draining, and not a witness (a
// witness only counts towards the quorum, whatever else it gossips).
func (m Meta) Eligible() bool { return (m.Healthy || m.Restarting) && !m.Draining && !m.Witness }

func (m *Member) onNetwork(v netip.Addr) bool {
	for _, p := range m.Networks {
		if p.Contains(v) {
			return true
		}
	}
	return false
}

// score is the rendezvous weight of a member for a VIP: FNV-1a over the
// name and the address bytes, finished with a 64-bit mixer so that similar
// names and adjacent addresses give unrelated scores.
func score(name string, v netip.Addr) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i := 0; i < len(name); i++ {
		h = (h ^ uint64(name[i])) * prime
	}
	h = (h ^ 0xff) * prime // separator: "a"+"b1" differs from "ab"+"1"
	b := v.As16()
	for _, c := range b {
		h = (h ^ uint64(c)) * prime
	}
	return mix(h)
}

// mix is the splitmix64 finaliser.
func mix(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// Digest summarises a set of VIPs in a few bytes so that members can gossip
// what they hold: the number of addresses and an order-independent sum of
// their hashes.
type Digest struct {
	Count int
	Sum   uint64
}

// DigestOf returns the digest of a set of distinct VIPs.
func DigestOf(vips []netip.Addr) Digest {
	d := Digest{Count: len(vips)}
	for _, v := range vips {
		b := v.As16()
		d.Sum += mix(binary.BigEndian.Uint64(b[:8]) ^ mix(binary.BigEndian.Uint64(b[8:])))
	}
	return d
}
