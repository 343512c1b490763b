package cluster

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// view returns live, healthy members with the given names.
func view(names ...string) []Member {
	out := make([]Member, len(names))
	for i, n := range names {
		out[i] = Member{Name: n, Meta: Meta{Healthy: true}}
	}
	return out
}

// decideAll runs Decide for every live member of each side of a
// partition, each seeing only its side, and returns who owns (announces)
// each VIP across the whole cluster.
func decideAll(t *testing.T, size int, vips []netip.Addr, sides ...[]Member) map[netip.Addr][]string {
	t.Helper()
	owners := map[netip.Addr][]string{}
	for _, side := range sides {
		for _, m := range side {
			if m.Absent {
				continue
			}
			d := Decide(Input{Self: m.Name, Members: side, Size: size, VIPs: vips, Now: t0, HandoverTimeout: time.Second})
			for _, v := range d.Own {
				owners[v] = append(owners[v], m.Name)
			}
		}
	}
	return owners
}

func checkOneOwner(t *testing.T, owners map[netip.Addr][]string, vips []netip.Addr, wantAll bool) {
	t.Helper()
	for v, o := range owners {
		if len(o) > 1 {
			t.Fatalf("%s has %d owners: %v", v, len(o), o)
		}
	}
	if wantAll && len(owners) != len(vips) {
		t.Fatalf("%d of %d VIPs owned", len(owners), len(vips))
	}
}

func TestDecideOneOwnerPerVIP(t *testing.T) {
	vips := vipRange(50)
	for n := 1; n <= 6; n++ {
		names := make([]string, n)
		for i := range names {
			names[i] = fmt.Sprintf("lb%d", i+1)
		}
		checkOneOwner(t, decideAll(t, n, vips, view(names...)), vips, true)
	}
}

func TestDecideQuorum(t *testing.T) {
	vips := vipRange(30)
	five := []string{"a", "b", "c", "d", "e"}
	restarting := func(names ...string) []Member {
		out := view(names...)
		for i := range out {
			out[i].Absent, out[i].Restarting, out[i].Leaving, out[i].Healthy = true, true, true, false
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		size  int
		sides [][]Member
		// owning lists the sides expected to own every VIP; the others
		// own nothing.
		owning []int
	}{
		{"5 hosts split 2|3", 5, [][]Member{view("a", "b"), view("c", "d", "e")}, []int{1}},
		{"5 hosts split 1|2|2", 5, [][]Member{view("a"), view("b", "c"), view("d", "e")}, nil},
		{"3 hosts, one cut off", 3, [][]Member{view("a"), view("b", "c")}, []int{1}},
		{"4 hosts split 2|2: nobody", 4, [][]Member{view("a", "b"), view("c", "d")}, nil},
		// Defect: d and e stopped gracefully, then a partition, then d and e
		// start again on a's side. Stopped members still count in the
		// configured cluster, so b and c have 2 of 5 and own nothing.
		{"two stops, partition, the two back on the other side", 5,
			[][]Member{view("a", "d", "e"), view("b", "c")}, []int{0}},
		// The same with restarts: b and c still hold d and e for their
		// restart (absent), but absent members are candidates, not votes.
		{"two restarts back on the other side, still held here", 5,
			[][]Member{view("a", "d", "e"), append(view("b", "c"), restarting("d", "e")...)}, []int{0}},
		{"two-host cluster, one gone", 2, [][]Member{view("a")}, nil},
		{"all of five", 5, [][]Member{view(five...)}, []int{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			owners := decideAll(t, tc.size, vips, tc.sides...)
			checkOneOwner(t, owners, vips, len(tc.owning) > 0)
			for i, side := range tc.sides {
				for _, m := range side {
					d := Decide(Input{Self: m.Name, Members: side, Size: tc.size, VIPs: vips, Now: t0})
					if want := slices.Contains(tc.owning, i) && !m.Absent; d.HasQuorum != want {
						t.Errorf("side %d member %s: quorum %v (live %d, need %d), want %v", i, m.Name, d.HasQuorum, d.Live, d.Need, want)
					}
				}
			}
		})
	}
}

func TestDecideExplicitQuorum(t *testing.T) {
	vips := vipRange(10)
	d := Decide(Input{Self: "a", Members: view("a"), Size: 2, Quorum: 1, VIPs: vips, Now: t0})
	if !d.HasQuorum || len(d.Own) != len(vips) {
		t.Fatalf("quorum 1: %+v", d)
	}
	if NeedFor(3, 0) != 2 || NeedFor(5, 0) != 3 || NeedFor(4, 0) != 3 || NeedFor(1, 0) != 1 || NeedFor(5, 2) != 2 || NeedFor(0, 0) != 1 {
		t.Fatal("NeedFor")
	}
}

func TestDecideUnhealthyAndDraining(t *testing.T) {
	vips := vipRange(20)
	members := view("a", "b", "c")
	in := Input{Self: "a", Members: members, Size: 3, VIPs: vips, Now: t0, HandoverTimeout: time.Second}
	healthy := Decide(in)
	if len(healthy.Own) == 0 {
		t.Fatal("a owns nothing when healthy")
	}
	in.Held = healthy.Own
	// A flapping link: unhealthy gives everything up at once (no
	// handover), healthy takes the same VIPs back.
	for i := range 4 {
		members[0].Healthy = i%2 == 1
		d := Decide(in)
		if members[0].Healthy != (len(d.Own) > 0) || len(d.Handover) > 0 {
			t.Fatalf("step %d healthy=%v: own %v handover %v", i, members[0].Healthy, d.Own, d.Handover)
		}
		if members[0].Healthy && !slices.Equal(d.Own, healthy.Own) {
			t.Fatalf("step %d: own %v, want %v", i, d.Own, healthy.Own)
		}
	}
	// The others agree that a draining member owns nothing.
	members[0].Draining = true
	owners := decideAll(t, 3, vips, members)
	checkOneOwner(t, owners, vips, true)
	for v, o := range owners {
		if o[0] == "a" {
			t.Fatalf("draining a owns %s", v)
		}
	}
}

func TestDecideHandoverIsMakeBeforeBreak(t *testing.T) {
	vips := vipRange(40)
	// a owned everything alone (quorum 1); b joins and wins some VIPs.
	alone := Decide(Input{Self: "a", Members: view("a"), Size: 2, Quorum: 1, VIPs: vips, Now: t0})
	held := alone.Own
	members := view("a", "b")
	in := Input{Self: "a", Members: members, Size: 2, Quorum: 1, VIPs: vips, Held: held, Now: t0, HandoverTimeout: 3 * time.Second}
	d := Decide(in)
	moving := d.Handover
	if len(moving) == 0 || len(d.Own)+len(moving) != len(vips) {
		t.Fatalf("own %d, handing over %d of %d", len(d.Own), len(moving), len(vips))
	}
	for _, v := range moving {
		if d.Assigned[v] != "b" {
			t.Fatalf("%s handed over but assigned to %s", v, d.Assigned[v])
		}
	}
	// b has not confirmed: a keeps them, announced by b only.
	in.Losing, in.Now = d.Losing, t0.Add(2*time.Second)
	if d = Decide(in); !slices.Equal(d.Handover, moving) {
		t.Fatalf("released before the confirmation or the timeout: %v", d.Handover)
	}
	// b confirms a part only (it holds one VIP less): still kept.
	members[1].Held = DigestOf(moving[1:])
	if d = Decide(in); !slices.Equal(d.Handover, moving) {
		t.Fatalf("released on a partial confirmation: %v", d.Handover)
	}
	// b confirms all: released.
	members[1].Held = DigestOf(moving)
	if d = Decide(in); len(d.Handover) != 0 {
		t.Fatalf("kept after the confirmation: %v", d.Handover)
	}
	// Without confirmation, released after HandoverTimeout.
	members[1].Held = Digest{}
	in.Now = t0.Add(3 * time.Second)
	if d = Decide(in); len(d.Handover) != 0 {
		t.Fatalf("kept after the timeout: %v", d.Handover)
	}
	// The digest a member gossips covers what it holds of its own.
	db := Decide(Input{Self: "b", Members: members, Size: 2, Quorum: 1, VIPs: vips, Held: moving[:2], Now: t0})
	if db.HeldOwned != DigestOf(moving[:2]) {
		t.Fatalf("b gossips %+v, want the digest of the 2 VIPs it holds", db.HeldOwned)
	}
}

func TestDecideGrace(t *testing.T) {
	vips := vipRange(20)
	members := view("a", "b", "c")
	all := decideAll(t, 3, vips, members)
	var mineA []netip.Addr
	for _, v := range vips {
		if all[v][0] == "a" {
			mineA = append(mineA, v)
		}
	}
	extra := vipRange(21)[20] // held but not adopted: dropped
	held := append(slices.Clone(mineA), extra)
	members[0].Healthy, members[0].Restarting = false, true
	// Without a quorum (only a itself live), adopted VIPs are kept silently.
	d := Decide(Input{Self: "a", Members: members[:1], Size: 3, VIPs: vips, Held: held, Adopted: mineA, Now: t0})
	if len(d.Own) != 0 || !slices.Equal(d.Handover, mineA) || d.HeldOwned != (Digest{}) {
		t.Fatalf("grace without quorum: %+v", d)
	}
	// With a quorum, they are owned again; it gains nothing else.
	d = Decide(Input{Self: "a", Members: members, Size: 3, VIPs: vips, Held: held, Adopted: mineA, Now: t0})
	if !slices.Equal(d.Own, mineA) || len(d.Handover) != 0 {
		t.Fatalf("grace with quorum: own %v handover %v, want own %v", d.Own, d.Handover, mineA)
	}
}

// FuzzDecide checks the rule that matters most on random clusters,
// partitions, health and restarts: no VIP is ever owned by two members,
// whatever each side sees, as long as the quorum is the default.
func FuzzDecide(f *testing.F) {
	f.Add(uint8(5), uint8(0b00011), uint8(0b11111), uint8(0), uint8(0b11000), uint8(20))
	f.Add(uint8(3), uint8(0b001), uint8(0b111), uint8(0b010), uint8(0), uint8(7))
	f.Fuzz(func(t *testing.T, n, side, healthy, draining, absent, nvips uint8) {
		size := int(n%7) + 1
		vips := vipRange(int(nvips%64) + 1)
		var sides [2][]Member
		for i := range size {
			m := Member{Name: fmt.Sprintf("m%d", i), Meta: Meta{Healthy: healthy&(1<<i) != 0, Draining: draining&(1<<i) != 0}}
			s := int(side>>i) & 1
			sides[s] = append(sides[s], m)
			// The other side may still hold m for a restart.
			if absent&(1<<i) != 0 {
				a := m
				a.Absent, a.Restarting, a.Leaving = true, true, true
				sides[1-s] = append(sides[1-s], a)
			}
		}
		owners := decideAll(t, size, vips, sides[0], sides[1])
		for v, o := range owners {
			if len(o) > 1 {
				t.Fatalf("%s owned by %v", v, o)
			}
		}
	})
}

func TestDecideStaleTakesNothingNew(t *testing.T) {
	vips := vipRange(30)
	members := view("a", "b", "c")
	fresh := Decide(Input{Self: "a", Members: members, Size: 3, VIPs: vips, Now: t0})
	if len(fresh.Own) < 2 {
		t.Fatalf("a owns %v; the test needs two", fresh.Own)
	}
	held := fresh.Own[:1]
	d := Decide(Input{Self: "a", Members: members, Size: 3, VIPs: vips, Held: held, Now: t0, Stale: true})
	if !slices.Equal(d.Own, held) || d.HeldOwned != DigestOf(held) {
		t.Fatalf("stale view: own %v (digest %+v), want only what it holds, %v", d.Own, d.HeldOwned, held)
	}
}

// With Voters (the consensus log's members), a host being added — live,
// in gossip, but not configured yet — does not count towards the quorum:
// in a partition of three configured hosts 1|2 plus that newcomer on the
// single host's side, only the two-host side owns VIPs. Counted by number
// (no Voters), the newcomer would give both sides two of three.
func TestDecideCountsConfiguredMembersOnly(t *testing.T) {
	addr := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 7946)
	}
	member := func(i int) Member {
		return Member{Name: fmt.Sprintf("lb%d", i), Addr: addr(i), Meta: Meta{Healthy: true}}
	}
	voters := map[netip.AddrPort]bool{addr(1): true, addr(2): true, addr(3): true}
	minority := []Member{member(1), member(4)} // lb4 is being added
	majority := []Member{member(2), member(3)}
	vips := vipRange(4)
	for _, tc := range []struct {
		name   string
		voters map[netip.AddrPort]bool
		want   bool // the minority side has a quorum
	}{
		{"by number", nil, true},
		{"configured members only", voters, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(Input{Self: "lb1", Members: minority, Size: 3, Voters: tc.voters, VIPs: vips, Now: t0, HandoverTimeout: time.Second})
			if d.HasQuorum != tc.want {
				t.Errorf("lb1 with the newcomer lb4: HasQuorum %v (live %d, need %d), want %v", d.HasQuorum, d.Live, d.Need, tc.want)
			}
			m := Decide(Input{Self: "lb2", Members: majority, Size: 3, Voters: tc.voters, VIPs: vips, Now: t0, HandoverTimeout: time.Second})
			if !m.HasQuorum {
				t.Errorf("lb2 with lb3: no quorum (live %d, need %d)", m.Live, m.Need)
			}
		})
	}
}

// Only configured members may own VIPs: a host live in gossip but not in
// the consensus log's member set (being added, or removed and still
// running) is assigned nothing by the others, and has no quorum of its
// own, whatever it sees.
func TestDecideOnlyConfiguredMembersOwn(t *testing.T) {
	addr := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 7946)
	}
	member := func(i int) Member {
		return Member{Name: fmt.Sprintf("lb%d", i), Addr: addr(i), Meta: Meta{Healthy: true}}
	}
	// lb3 was removed: the others' log has lb1, lb2, lb4.
	voters := map[netip.AddrPort]bool{addr(1): true, addr(2): true, addr(4): true}
	all := []Member{member(1), member(2), member(3), member(4)}
	vips := vipRange(40)
	d := Decide(Input{Self: "lb1", Members: all, Size: 3, Voters: voters, VIPs: vips, Now: t0, HandoverTimeout: time.Second})
	if !d.HasQuorum {
		t.Fatalf("lb1: no quorum (live %d, need %d)", d.Live, d.Need)
	}
	for v, owner := range d.Assigned {
		if owner == "lb3" {
			t.Errorf("%s is assigned to lb3, which is not a configured member", v)
		}
	}
	if len(d.Assigned) != len(vips) {
		t.Errorf("%d of %d VIPs assigned", len(d.Assigned), len(vips))
	}
	// lb3 itself, if it learnt of its removal, owns nothing.
	r := Decide(Input{Self: "lb3", Members: all, Size: 3, Voters: voters, VIPs: vips, Now: t0, HandoverTimeout: time.Second})
	if r.HasQuorum || len(r.Own) > 0 {
		t.Errorf("the removed lb3: quorum %v, owns %v; want no quorum and nothing", r.HasQuorum, r.Own)
	}
}
