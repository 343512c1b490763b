package nft_test

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/edgelb/edgelb/lb/nft"
	"github.com/edgelb/edgelb/test/nstest"
)

func TestSplitAndFamilyOf(t *testing.T) {
	a := netip.MustParseAddr
	for _, tc := range []struct {
		name   string
		in     []netip.Addr
		v4, v6 []netip.Addr
	}{
		{name: "none"},
		{name: "mixed, order kept", in: []netip.Addr{a("192.0.2.2"), a("2001:db8::1"), a("192.0.2.1")},
			v4: []netip.Addr{a("192.0.2.2"), a("192.0.2.1")}, v6: []netip.Addr{a("2001:db8::1")}},
		{name: "an IPv4-mapped address is IPv6", in: []netip.Addr{a("::ffff:192.0.2.1")}, v6: []netip.Addr{a("::ffff:192.0.2.1")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v4, v6 := nft.Split(tc.in)
			if !slices.Equal(v4, tc.v4) || !slices.Equal(v6, tc.v6) {
				t.Fatalf("Split = %v, %v; want %v, %v", v4, v6, tc.v4, tc.v6)
			}
			for _, v := range v4 {
				if nft.FamilyOf(v) != nft.IPv4 {
					t.Errorf("FamilyOf(%s) is not IPv4", v)
				}
			}
			for _, v := range v6 {
				if nft.FamilyOf(v) != nft.IPv6 {
					t.Errorf("FamilyOf(%s) is not IPv6", v)
				}
			}
		})
	}
}

func TestAddrs(t *testing.T) {
	got := nft.Addrs([]netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")})
	if len(got) != 2 || len(got[0].Key) != 4 || len(got[1].Key) != 16 || got[0].Key[3] != 1 {
		t.Fatalf("Addrs = %+v", got)
	}
}

// addrs returns n addresses of family f: 10.x.y.z or fd00::x:y:z.
func addrs(f *nft.Family, n int) []netip.Addr {
	out := make([]netip.Addr, 0, n)
	for i := range n {
		b := [16]byte{0xfd}
		b[13], b[14], b[15] = byte(i>>16), byte(i>>8), byte(i)
		if f == nft.IPv4 {
			out = append(out, netip.AddrFrom4([4]byte{10, b[13], b[14], b[15]}))
		} else {
			out = append(out, netip.AddrFrom16(b))
		}
	}
	return out
}

// elements parses `nft -j list set` output: the set's addresses, sorted.
func elements(t *testing.T, js string) []netip.Addr {
	t.Helper()
	var out struct {
		Nftables []struct {
			Set *struct {
				Elem []string `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(js), &out); err != nil {
		t.Fatal(err)
	}
	var got []netip.Addr
	for _, o := range out.Nftables {
		if o.Set == nil {
			continue
		}
		for _, e := range o.Set.Elem {
			got = append(got, netip.MustParseAddr(e))
		}
	}
	slices.SortFunc(got, netip.Addr.Compare)
	return got
}

// The steps edgelb's nftables users take, in a network namespace: a table
// per family with a set of addresses and a chain matching them is made,
// made again (idempotent), refilled with a set larger than one message
// holds, then removed for one family; another program's tables of the
// same families, and of the same name in a family edgelb does not use,
// are never touched.
func TestTablesInNetNS(t *testing.T) {
	ns, fd := nstest.New(t, "nft")
	nstest.Run(t, "ip", "netns", "exec", ns, "nft",
		"add table ip other; add chain ip other c { type filter hook input priority 0; }; add rule ip other c counter; "+
			"add table ip6 other; add table inet edgelbtest")
	const name = "edgelbtest"
	sync := func(want map[*nft.Family][]netip.Addr) {
		t.Helper()
		c, err := nft.Open(fd)
		if err != nil {
			t.Fatal(err)
		}
		tables, err := nft.Find(c, name)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []*nft.Family{nft.IPv4, nft.IPv6} {
			if len(want[f]) == 0 {
				tables.Remove(f.Table)
				continue
			}
			tab := tables.Add(f.Table)
			set := &nftables.Set{Table: tab, Name: "vips", KeyType: f.Addr}
			if err := nft.Refill(c, set, nft.Addrs(want[f])); err != nil {
				t.Fatal(err)
			}
			nft.ReplaceChain(c, &nftables.Chain{Name: "in", Table: tab, Type: nftables.ChainTypeFilter,
				Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter},
				&nftables.Rule{Exprs: append(f.DaddrIn(set), &expr.Verdict{Kind: expr.VerdictAccept})})
		}
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	list := func(args ...string) string {
		return nstest.Run(t, append([]string{"ip", "netns", "exec", ns, "nft"}, args...)...)
	}
	foreign := func() {
		t.Helper()
		out := list("list", "ruleset")
		for _, want := range []string{"table ip other", "table ip6 other", "table inet edgelbtest", "counter"} {
			if !strings.Contains(out, want) {
				t.Fatalf("another table lost %q:\n%s", want, out)
			}
		}
	}

	a := netip.MustParseAddr
	for range 2 {
		sync(map[*nft.Family][]netip.Addr{nft.IPv4: {a("192.0.2.1"), a("192.0.2.2")}, nft.IPv6: {a("2001:db8::1")}})
	}
	foreign()
	out := list("list", "ruleset")
	for _, want := range []string{"table ip edgelbtest", "table ip6 edgelbtest", "192.0.2.1, 192.0.2.2", "2001:db8::1",
		"ip daddr @vips accept", "ip6 daddr @vips accept"} {
		if !strings.Contains(out, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "daddr @vips accept"); n != 2 {
		t.Errorf("%d rules, want one per family: a chain is replaced, not appended to:\n%s", n, out)
	}

	// More elements than one message could hold (a 16-bit attribute
	// length: about 4,000 IPv4 addresses), in one transaction.
	many := addrs(nft.IPv4, 5000)
	sync(map[*nft.Family][]netip.Addr{nft.IPv4: many, nft.IPv6: {a("2001:db8::2")}})
	foreign()
	for _, f := range []struct {
		fam  string
		want []netip.Addr
	}{{"ip", many}, {"ip6", []netip.Addr{a("2001:db8::2")}}} {
		if got := elements(t, list("-j", "list", "set", f.fam, name, "vips")); !slices.Equal(got, f.want) {
			t.Fatalf("set %s vips holds %d elements, want %d (%v...)", f.fam, len(got), len(f.want), got[:min(len(got), 3)])
		}
	}

	// No IPv6 address: that family's table goes, the other stays.
	sync(map[*nft.Family][]netip.Addr{nft.IPv4: {a("192.0.2.3")}})
	foreign()
	out = list("list", "ruleset")
	if strings.Contains(out, "table ip6 edgelbtest") || !strings.Contains(out, "table ip edgelbtest") || strings.Contains(out, "192.0.2.1") {
		t.Fatalf("after removing IPv6:\n%s", out)
	}
	// Nothing: both go; removing a table that is not there is no error.
	sync(nil)
	sync(nil)
	foreign()
	if out := list("list", "ruleset"); strings.Contains(out, "table ip edgelbtest") {
		t.Fatalf("after removing both:\n%s", out)
	}
}
