package cluster

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

// pairWithWitness is a view of the hosts named, live and healthy, and of
// a live witness w (which gossips itself unhealthy, as Options.Witness
// makes it), each at its own gossip address: the three configured voters
// are a, b and w.
func pairWithWitness(hosts ...string) []Member {
	out := view(hosts...)
	for i := range out {
		out[i].Addr = addrOf(out[i].Name)
	}
	return append(out, Member{Name: "w", Addr: addrOf("w"), Meta: Meta{Witness: true}})
}

func addrOf(name string) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, name[0]}), 7946)
}

var pairVoters = map[netip.AddrPort]bool{addrOf("a"): true, addrOf("b"): true, addrOf("w"): true}

// ownersOf runs Decide for every live member of each side (each seeing
// only its side) with the pair-and-witness voters, and returns each VIP's
// owners across the cluster.
func ownersOf(vips []netip.Addr, sides ...[]Member) map[netip.Addr][]string {
	owners := map[netip.Addr][]string{}
	for _, side := range sides {
		for _, m := range side {
			d := Decide(Input{Self: m.Name, Members: side, Voters: pairVoters, VIPs: vips, Now: t0, HandoverTimeout: time.Second})
			for _, v := range d.Own {
				owners[v] = append(owners[v], m.Name)
			}
		}
	}
	return owners
}

// TestDecideWitness: a witness is one of three voters — it makes the
// quorum 2 of 3, so either host with it serves every VIP — and it never
// owns a VIP, even if it gossiped itself healthy.
func TestDecideWitness(t *testing.T) {
	vips := vipRange(40)
	only := func(ms []Member, names ...string) []Member {
		return slices.DeleteFunc(slices.Clone(ms), func(m Member) bool { return !slices.Contains(names, m.Name) })
	}
	all := pairWithWitness("a", "b")
	for _, tc := range []struct {
		name  string
		sides [][]Member
		// owners are the members expected to own the VIPs between them,
		// every VIP exactly once; none: no VIP is owned anywhere.
		owners []string
	}{
		{"all three", [][]Member{all}, []string{"a", "b"}},
		{"b lost", [][]Member{only(all, "a", "w")}, []string{"a"}},
		{"a lost", [][]Member{only(all, "b", "w")}, []string{"b"}},
		{"witness lost: the pair is 2 of 3", [][]Member{only(all, "a", "b")}, []string{"a", "b"}},
		{"pair split, witness with a", [][]Member{only(all, "a", "w"), only(all, "b")}, []string{"a"}},
		{"pair split, witness with b", [][]Member{only(all, "a"), only(all, "b", "w")}, []string{"b"}},
		{"pair split, witness with neither", [][]Member{only(all, "a"), only(all, "b"), only(all, "w")}, nil},
		{"witness and b lost: no tie-breaker left", [][]Member{only(all, "a")}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			owners := ownersOf(vips, tc.sides...)
			if tc.owners == nil {
				if len(owners) != 0 {
					t.Fatalf("%d VIPs owned, want none: %v", len(owners), owners)
				}
				return
			}
			if len(owners) != len(vips) {
				t.Fatalf("%d of %d VIPs owned", len(owners), len(vips))
			}
			for v, o := range owners {
				if len(o) != 1 || !slices.Contains(tc.owners, o[0]) {
					t.Fatalf("%s owned by %v, want one of %v", v, o, tc.owners)
				}
			}
		})
	}

	t.Run("a witness gossiping healthy is still never assigned", func(t *testing.T) {
		ms := pairWithWitness("a")
		ms[1].Healthy = true
		d := Decide(Input{Self: "w", Members: ms, Voters: pairVoters, VIPs: vips, Now: t0})
		if !d.HasQuorum || d.Live != 2 || d.Need != 2 {
			t.Fatalf("witness: quorum %v, live %d, need %d; want a quorum of 2 of 3", d.HasQuorum, d.Live, d.Need)
		}
		if len(d.Own) != 0 {
			t.Fatalf("the witness owns %v", d.Own)
		}
		for v, o := range d.Assigned {
			if o == "w" {
				t.Fatalf("%s assigned to the witness", v)
			}
		}
		if got := Assign(vips, ms[1:]); len(got) != 0 {
			t.Fatalf("a witness alone is assigned %d VIPs", len(got))
		}
	})
}

func TestMetaWitnessRoundTrip(t *testing.T) {
	b := encodeMeta(Meta{Witness: true}, 512)
	m, err := decodeMeta(b)
	if err != nil || !m.Witness || m.Healthy || m.Eligible() {
		t.Fatalf("decoded %+v, %v: want a witness, not eligible", m, err)
	}
}
