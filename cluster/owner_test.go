package cluster

import (
	"fmt"
	"math"
	"net/netip"
	"testing"
)

func members(n int) []Member {
	out := make([]Member, n)
	for i := range out {
		out[i] = Member{Name: fmt.Sprintf("lb%d", i+1), Meta: Meta{Healthy: true}}
	}
	return out
}

func vipRange(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	a := netip.MustParseAddr("192.0.2.0")
	for i := range out {
		a = a.Next()
		out[i] = a
	}
	return out
}

func TestAssignExactlyOneOwnerAndDeterministic(t *testing.T) {
	vips := vipRange(500)
	ms := members(7)
	a := Assign(vips, ms)
	if len(a) != len(vips) {
		t.Fatalf("%d VIPs assigned, want %d", len(a), len(vips))
	}
	// Every member computes the same, whatever the order of its view.
	rev := make([]Member, len(ms))
	for i := range ms {
		rev[len(ms)-1-i] = ms[i]
	}
	b := Assign(vips, rev)
	for _, v := range vips {
		if a[v] == "" || a[v] != b[v] {
			t.Fatalf("%s: owner %q in one view, %q in another", v, a[v], b[v])
		}
	}
}

func TestAssignSpread(t *testing.T) {
	for _, n := range []int{2, 3, 5, 10, 32} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			vips := vipRange(200 * n)
			count := map[string]int{}
			for _, o := range Assign(vips, members(n)) {
				count[o]++
			}
			mean := float64(len(vips)) / float64(n)
			for name, c := range count {
				// 200 VIPs per member: a fair hash stays within ±25%.
				if math.Abs(float64(c)-mean) > 0.25*mean {
					t.Errorf("%s owns %d VIPs, mean %.0f", name, c, mean)
				}
			}
			if len(count) != n {
				t.Errorf("%d members own VIPs, want %d", len(count), n)
			}
		})
	}
}

func TestAssignMinimalMovement(t *testing.T) {
	vips := vipRange(2000)
	ms := members(8)
	before := Assign(vips, ms)

	// A member leaves: only its VIPs move.
	left := ms[3].Name
	after := Assign(vips, append(append([]Member{}, ms[:3]...), ms[4:]...))
	for _, v := range vips {
		if before[v] != left && after[v] != before[v] {
			t.Fatalf("%s moved from %s to %s when %s left", v, before[v], after[v], left)
		}
		if after[v] == left {
			t.Fatalf("%s still owned by %s, which left", v, left)
		}
	}

	// A member joins: VIPs move only to it, about 1/9 of them.
	joined := append(members(8), Member{Name: "lb9", Meta: Meta{Healthy: true}})
	after = Assign(vips, joined)
	moved := 0
	for _, v := range vips {
		if after[v] != before[v] {
			moved++
			if after[v] != "lb9" {
				t.Fatalf("%s moved from %s to %s when lb9 joined", v, before[v], after[v])
			}
		}
	}
	if want := len(vips) / 9; moved < want*3/4 || moved > want*5/4 {
		t.Errorf("%d VIPs moved to the new member, want about %d", moved, want)
	}
}

func TestAssignSkipsDrainingAndUnhealthy(t *testing.T) {
	vips := vipRange(300)
	ms := members(4)
	ms[1].Draining = true
	ms[2].Healthy = false
	for v, o := range Assign(vips, ms) {
		if o == ms[1].Name || o == ms[2].Name {
			t.Fatalf("%s given to %s (draining %v, healthy %v)", v, o, ms[1].Draining, ms[2].Healthy)
		}
	}
	// Draining or unhealthy members move only their own VIPs.
	all := Assign(vips, members(4))
	got := Assign(vips, ms)
	for _, v := range vips {
		if o := all[v]; o != "lb2" && o != "lb3" && got[v] != o {
			t.Fatalf("%s moved from %s to %s", v, o, got[v])
		}
	}
	for i := range ms {
		ms[i].Healthy = false
	}
	if a := Assign(vips, ms); len(a) != 0 {
		t.Fatalf("%d VIPs assigned with no healthy member", len(a))
	}
}

func TestAssignPrefersMembersOnTheVIPNetwork(t *testing.T) {
	ms := members(4)
	lan := netip.MustParsePrefix("10.0.0.0/24")
	ms[0].Networks = []netip.Prefix{lan}
	ms[1].Networks = []netip.Prefix{lan}
	ms[2].Networks = []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24")}
	on, off := vipRange(100), []netip.Addr{}
	a := netip.MustParseAddr("10.0.0.100")
	for range 50 {
		off = append(off, a)
		a = a.Next()
	}
	got := Assign(append(on, off...), ms)
	for _, v := range off {
		if o := got[v]; o != "lb1" && o != "lb2" {
			t.Fatalf("%s (in %s) given to %s, which is not on it", v, lan, o)
		}
	}
	count := map[string]int{}
	for _, v := range on {
		count[got[v]]++
	}
	if len(count) != 4 {
		t.Errorf("VIPs outside every network went to %v, want all four members", count)
	}
}

func TestDigest(t *testing.T) {
	a := []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")}
	b := []netip.Addr{a[1], a[0]}
	if DigestOf(a) != DigestOf(b) {
		t.Error("digest depends on order")
	}
	if DigestOf(a) == DigestOf(a[:1]) || DigestOf(nil) != (Digest{}) {
		t.Error("digest does not tell sets apart")
	}
}

func TestMetaRoundTripAndLimit(t *testing.T) {
	m := Meta{Healthy: true, Draining: true, Leaving: true, Held: Digest{Count: 2, Sum: 99},
		Networks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("fd00::/64")}}
	got, err := decodeMeta(encodeMeta(m, 512))
	if err != nil {
		t.Fatal(err)
	}
	if got.Healthy != m.Healthy || got.Draining != m.Draining || got.Leaving != m.Leaving || got.Held != m.Held || len(got.Networks) != 2 || got.Networks[1] != m.Networks[1] {
		t.Fatalf("round trip: got %+v, want %+v", got, m)
	}
	for range 100 {
		m.Networks = append(m.Networks, netip.MustParsePrefix("2001:db8:ffff:ffff::/64"))
	}
	if b := encodeMeta(m, 512); len(b) > 512 {
		t.Fatalf("metadata of %d bytes exceeds the limit", len(b))
	}
	if _, err := decodeMeta([]byte("garbage")); err == nil {
		t.Fatal("garbage decoded")
	}
}

func TestClusterSizeAndQuorum(t *testing.T) {
	for _, tc := range []struct {
		join []string
		want int
	}{
		{nil, 1},
		{[]string{"10.0.0.11", "10.0.0.12", "10.0.0.13"}, 3},             // self listed
		{[]string{"10.0.0.12", "10.0.0.13"}, 3},                          // self not listed
		{[]string{"10.0.0.11:7946", "10.0.0.12:7946", "10.0.0.12"}, 2},   // duplicates
		{[]string{"10.0.0.11:8000", "lb2", "lb3", "lb4", "lb1:7946"}, 5}, // other port is not self
	} {
		o := Options{Name: "lb1", BindAddr: netip.MustParseAddr("10.0.0.11"), BindPort: 7946, Join: tc.join}
		if got := clusterSize(o); got != tc.want {
			t.Errorf("clusterSize(%v) = %d, want %d", tc.join, got, tc.want)
		}
	}
}

// A member that refuses a VIP (its kernel would not add it) is left out
// for that VIP only: the VIP goes to the member that would win without
// it, every other VIP keeps its owner, and a VIP every member refuses has
// no owner.
func TestAssignSkipsMembersThatRefuseTheVIP(t *testing.T) {
	vips := vipRange(100)
	ms := members(3)
	before := Assign(vips, ms)
	bad := vips[0]
	first := before[bad]
	for i := range ms {
		if ms[i].Name == first {
			ms[i].Refused = []netip.Addr{bad}
		}
	}
	after := Assign(vips, ms)
	if o := after[bad]; o == "" || o == first {
		t.Fatalf("%s refused by %s is owned by %q", bad, first, o)
	}
	for _, v := range vips[1:] {
		if after[v] != before[v] {
			t.Fatalf("%s moved from %s to %s although only %s was refused", v, before[v], after[v], bad)
		}
	}
	for i := range ms {
		ms[i].Refused = []netip.Addr{bad}
	}
	if o, ok := Assign(vips, ms)[bad]; ok {
		t.Fatalf("%s refused by every member is owned by %s", bad, o)
	}
}

// The refused VIPs go out in the gossip whole; when they cannot fit even
// without the networks, the member is gossiped unhealthy rather than
// given VIPs it cannot hold.
func TestMetaCarriesRefusedOrUnhealthy(t *testing.T) {
	m := Meta{Healthy: true, Refused: []netip.Addr{netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::7")},
		Networks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}}
	got, err := decodeMeta(encodeMeta(m, 512))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Healthy || len(got.Refused) != 2 || got.Refused[1] != m.Refused[1] {
		t.Fatalf("round trip: %+v", got)
	}
	m.Refused = vipRange(60)
	seen, _ := gossipedMeta(m)
	if seen.Healthy || len(seen.Refused) != 0 {
		t.Fatalf("60 refused VIPs gossiped as healthy=%v with %d refused: want unhealthy", seen.Healthy, len(seen.Refused))
	}
	m.Refused = vipRange(10)
	for range 100 {
		m.Networks = append(m.Networks, netip.MustParsePrefix("2001:db8:ffff:ffff::/64"))
	}
	seen, dropped := gossipedMeta(m)
	if !seen.Healthy || len(seen.Refused) != 10 || dropped == 0 {
		t.Fatalf("networks kept before the refused VIPs: healthy=%v, %d refused, %d networks dropped", seen.Healthy, len(seen.Refused), dropped)
	}
}

// The configuration's identity, the version a member cannot apply and its
// facts go out whole: networks are dropped first to fit.
func TestMetaCarriesConfigIdentityAndFacts(t *testing.T) {
	facts := []byte(`{"i":"enp129s0f1np1","r":"203.0.113.254","b":"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"}`)
	m := Meta{Healthy: true, ConfigVersion: 12345, ConfigID: "12345:3f9a0c1b2d4e5f60", Unapplied: 12346, Facts: facts,
		Refused: vipRange(4)}
	for range 100 {
		m.Networks = append(m.Networks, netip.MustParsePrefix("2001:db8:ffff:ffff::/64"))
	}
	seen, dropped := gossipedMeta(m)
	if !seen.Healthy || seen.ConfigID != m.ConfigID || seen.Unapplied != m.Unapplied || string(seen.Facts) != string(facts) || len(seen.Refused) != 4 || dropped == 0 {
		t.Fatalf("gossiped %+v (%d networks dropped): want the identity, the unapplied version, the facts and the refused VIPs whole", seen, dropped)
	}
	m.Facts = []byte("not json")
	if seen, _ := gossipedMeta(m); seen.Facts != nil || !seen.Healthy {
		t.Fatalf("malformed facts gossiped as %q (healthy %v): want none", seen.Facts, seen.Healthy)
	}
}

// A failing data path goes out in the gossip, so that a member gives its
// VIPs up only to one whose path works.
func TestMetaCarriesDataPathFailing(t *testing.T) {
	for _, failing := range []bool{false, true} {
		seen, _ := gossipedMeta(Meta{Healthy: true, DataPathFailing: failing})
		if seen.DataPathFailing != failing || !seen.Healthy {
			t.Fatalf("gossiped %+v: want DataPathFailing %v", seen, failing)
		}
	}
}
