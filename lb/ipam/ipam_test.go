package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"go4.org/netipx"

	"github.com/edgelb/edgelb/lb/config"
)

func pools(t *testing.T, spec ...string) []config.Pool {
	t.Helper()
	var out []config.Pool
	for _, s := range spec {
		var name, ranges string
		fmt.Sscanf(s, "%s %s", &name, &ranges)
		p := config.Pool{Name: name, AutoAssign: true}
		r, err := config.ParseRange(ranges)
		if err != nil {
			t.Fatal(err)
		}
		p.Ranges = []netipx.IPRange{r}
		out = append(out, p)
	}
	return out
}

func req(key string, ports ...int32) Request {
	r := Request{Key: "ns/" + key, Namespace: "ns", Families: []Family{IPv4}}
	for _, p := range ports {
		r.Ports = append(r.Ports, Port{p, "TCP"})
	}
	if len(ports) == 0 {
		r.Ports = []Port{{80, "TCP"}}
	}
	return r
}

func reason(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return fmt.Sprint(err)
}

func TestAssignLowestFreeAndIdempotent(t *testing.T) {
	a := New(pools(t, "p 192.0.2.0/30"))
	for i, want := range []string{"192.0.2.0", "192.0.2.1", "192.0.2.2", "192.0.2.3"} {
		got, err := a.Assign(req(fmt.Sprint(i)))
		if err != nil || got[0].String() != want {
			t.Fatalf("service %d: %v %v, want %s", i, got, err, want)
		}
	}
	if _, err := a.Assign(req("full")); reason(err) != "PoolExhausted" {
		t.Fatalf("want PoolExhausted, got %v", err)
	}
	again, _ := a.Assign(req("2"))
	if again[0].String() != "192.0.2.2" {
		t.Errorf("second Assign moved the address to %v", again)
	}
	a.Release("ns/1")
	if got, _ := a.Assign(req("full")); got[0].String() != "192.0.2.1" {
		t.Errorf("freed address not reused: %v", got)
	}
	if u := a.Usage()[0]; u.Size != 4 || u.Used != 4 {
		t.Errorf("usage = %+v", u)
	}
}

func TestDualStack(t *testing.T) {
	a := New(pools(t, "v4 192.0.2.0/30", "v6 2001:db8::/126"))
	r := req("dual")
	r.Families = []Family{IPv6, IPv4}
	got, err := a.Assign(r)
	if err != nil || len(got) != 2 || !got[0].Is6() || !got[1].Is4() {
		t.Fatalf("dual = %v, %v", got, err)
	}
	only4 := New(pools(t, "v4 192.0.2.0/30"))
	prefer := req("prefer")
	prefer.Families = []Family{IPv4, IPv6}
	if got, err := only4.Assign(prefer); err != nil || len(got) != 1 {
		t.Errorf("PreferDualStack without IPv6 addresses: %v, %v; want the IPv4 address alone", got, err)
	}
	require := prefer
	require.Key, require.RequireAll = "ns/require", true
	if _, err := only4.Assign(require); reason(err) != "NoPool" {
		t.Errorf("RequireDualStack without IPv6 addresses: %v", err)
	}
}

func TestRequestedAndSharing(t *testing.T) {
	a := New(pools(t, "p 192.0.2.0/28"))
	want := netip.MustParseAddr("192.0.2.9")
	r := req("a")
	r.Requested = []netip.Addr{want}
	if got, err := a.Assign(r); err != nil || got[0] != want {
		t.Fatalf("requested: %v %v", got, err)
	}
	b := req("b")
	b.Requested = []netip.Addr{want}
	if _, err := a.Assign(b); reason(err) != "AddressInUse" {
		t.Errorf("taken address: %v", err)
	}
	out := req("c")
	out.Requested = []netip.Addr{netip.MustParseAddr("203.0.113.1")}
	if _, err := a.Assign(out); reason(err) != "AddressNotInPool" {
		t.Errorf("outside: %v", err)
	}
	s1, s2, s3 := req("s1", 80), req("s2", 443), req("s3", 443)
	s1.SharingKey, s2.SharingKey, s3.SharingKey = "k", "k", "k"
	ip1, _ := a.Assign(s1)
	ip2, _ := a.Assign(s2)
	if ip1[0] != ip2[0] {
		t.Errorf("sharing: %v vs %v", ip1, ip2)
	}
	if _, err := a.Assign(s3); reason(err) != "PortsCollide" {
		t.Errorf("colliding ports: %v", err)
	}
	if h := a.Holders(ip1[0]); len(h) != 2 {
		t.Errorf("holders = %v", h)
	}
}

// A changed request that cannot be met leaves the Service what it had.
func TestFailedReassignKeepsOld(t *testing.T) {
	a := New(pools(t, "p 192.0.2.0/30", "q 198.51.100.1"))
	first, _ := a.Assign(req("x"))
	r := req("x")
	r.Requested = []netip.Addr{netip.MustParseAddr("203.0.113.1")}
	if _, err := a.Assign(r); reason(err) != "AddressNotInPool" {
		t.Fatalf("want AddressNotInPool, got %v", err)
	}
	if got := a.Get("ns/x"); len(got) != 1 || got[0] != first[0] {
		t.Errorf("after a failed change the Service holds %v, had %v", got, first)
	}
	r.Requested = nil
	// Another pool asked for by a Service that has its address does not
	// move it (a new term could not tell this from a pool edited under
	// it): the address stays, reported as a misfit.
	r.Pool = "q"
	if got, err := a.Assign(r); err != nil || got[0] != first[0] {
		t.Errorf("asking for pool q: %v %v, want %v kept", got, err, first)
	}
	if m := a.Misfits(r); len(m) != 1 || m[0].Addr != first[0] || m[0].Pool != "p" ||
		m[0].Why != `192.0.2.0 is in pool "p", not in the requested pool "q"` {
		t.Errorf("misfits = %+v", m)
	}
	// Naming an address is asked for explicitly: the Service moves.
	r.Requested = []netip.Addr{netip.MustParseAddr("198.51.100.1")}
	if got, err := a.Assign(r); err != nil || got[0].String() != "198.51.100.1" {
		t.Errorf("moving to 198.51.100.1: %v %v", got, err)
	}
	if u := a.Usage()[0]; u.Used != 0 {
		t.Errorf("pool p still counts %d used", u.Used)
	}
	if m := a.Misfits(r); len(m) != 0 {
		t.Errorf("misfits after the move: %+v", m)
	}
}

func TestClaim(t *testing.T) {
	a := New(pools(t, "p 192.0.2.0/30"))
	if err := a.Claim(req("old"), []netip.Addr{netip.MustParseAddr("192.0.2.2")}); err != nil {
		t.Fatal(err)
	}
	if err := a.Claim(req("dup"), []netip.Addr{netip.MustParseAddr("192.0.2.2")}); reason(err) != "AddressInUse" {
		t.Errorf("claiming a held address: %v", err)
	}
	if got, _ := a.Assign(req("new")); got[0].String() != "192.0.2.0" {
		t.Errorf("new = %v", got)
	}
	if got, _ := a.Assign(req("old")); got[0].String() != "192.0.2.2" {
		t.Errorf("claimed Service moved to %v", got)
	}
}

// An address another Service lists in its status without holding it here
// (not claimed yet) is not handed out, automatically or on request; once
// that Service holds other addresses, its stale status no longer counts.
func TestListedAddressesAreNotHandedOut(t *testing.T) {
	a := New(pools(t, "p 192.0.2.0/30"))
	status := map[netip.Addr][]string{netip.MustParseAddr("192.0.2.0"): {"ns/x"}}
	listed := func(r Request) Request {
		r.Listed = func(ip netip.Addr) []string { return status[ip] }
		return r
	}
	if got, err := a.Assign(listed(req("y"))); err != nil || got[0].String() != "192.0.2.1" {
		t.Errorf("y = %v %v, want 192.0.2.1: 192.0.2.0 is in x's status", got, err)
	}
	want := listed(req("z"))
	want.Requested = []netip.Addr{netip.MustParseAddr("192.0.2.0")}
	if _, err := a.Assign(want); reason(err) != "AddressInUse" {
		t.Errorf("requesting x's address: %v, want AddressInUse", err)
	}
	if got, err := a.Assign(listed(req("x"))); err != nil || got[0].String() != "192.0.2.0" {
		t.Errorf("x = %v %v: its own status does not keep it out", got, err)
	}
	if err := a.Claim(listed(req("x2")), []netip.Addr{netip.MustParseAddr("192.0.2.0")}); reason(err) != "AddressInUse" {
		t.Errorf("claim of a held address: %v", err)
	}
	a.Release("ns/x")
	if _, err := a.Assign(listed(req("x"))); err != nil {
		t.Fatal(err)
	}
	status[netip.MustParseAddr("192.0.2.2")] = []string{"ns/x"} // x's status is stale: x holds 192.0.2.0
	if got, err := a.Assign(listed(req("w"))); err != nil || got[0].String() != "192.0.2.2" {
		t.Errorf("w = %v %v, want 192.0.2.2", got, err)
	}
}

// A new pool layout (a new cluster configuration) renumbers nothing: an
// address that is now outside every pool is kept and reported, one that
// moved to another pool is counted there, and new Services get addresses
// from the new pools.
func TestSetPoolsRenumbersNothing(t *testing.T) {
	a := New(pools(t, "old 192.0.2.0/30", "moved 198.51.100.0/30"))
	x, _ := a.Assign(req("x"))
	yreq := req("y")
	yreq.Pool = "moved"
	y, _ := a.Assign(yreq)
	if x[0].String() != "192.0.2.0" || y[0].String() != "198.51.100.0" {
		t.Fatalf("assigned %v and %v", x, y)
	}
	outside := a.SetPools(pools(t, "new 203.0.113.0/30", "moved 198.51.100.0/29"))
	if fmt.Sprint(outside) != "[192.0.2.0]" {
		t.Errorf("outside every pool: %v, want [192.0.2.0]", outside)
	}
	if got, err := a.Assign(req("x")); err != nil || got[0] != x[0] {
		t.Errorf("x after the new pools: %v %v, want %v kept", got, err, x)
	}
	if got, err := a.Assign(yreq); err != nil || got[0] != y[0] {
		t.Errorf("y after the new pools: %v %v, want %v kept", got, err, y)
	}
	if got, err := a.Assign(req("z")); err != nil || got[0].String() != "203.0.113.0" {
		t.Errorf("a new Service got %v %v, want 203.0.113.0", got, err)
	}
	if u := a.Usage(); len(u) != 2 || u[0].Used != 1 || u[1].Used != 1 || u[1].Size != 8 {
		t.Errorf("usage = %+v", u)
	}
}

// withNamespaces limits the pools to namespaces.
func withNamespaces(ps []config.Pool, ns ...string) []config.Pool {
	for i := range ps {
		ps[i].Namespaces = ns
	}
	return ps
}

// in returns req for a Service in namespace ns.
func in(ns string, r Request) Request {
	r.Namespace = ns
	r.Key = ns + "/" + r.Key[len("ns/"):]
	return r
}

// Edits of the pools never move an address a Service holds, whether the
// allocator takes the new pools while it holds the address (SetPools, the
// same leadership term) or a new one claims it from the Service's status
// under the new pools (a new term); and that address is never handed to
// another Service. Each case is one edit: the namespaces narrowed, the
// pool split in two, the pool the Service names renamed.
func TestPoolEditsRenumberNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		// before and after are the pools; x is the Service holding held,
		// newcomer one that arrives after the edit and must get another
		// address (it would get held if it were free).
		before, after func() []config.Pool
		x, newcomer   Request
		held          string
		why           string // the misfit of held under after
	}{{
		name: "namespaces narrowed",
		before: func() []config.Pool {
			return append(withNamespaces(pools(t, "p 192.0.2.0/30"), "a", "b"), pools(t, "q 198.51.100.0/30")...)
		},
		after: func() []config.Pool {
			return append(withNamespaces(pools(t, "p 192.0.2.0/30"), "a"), pools(t, "q 198.51.100.0/30")...)
		},
		x: in("b", req("x")), newcomer: in("a", req("new")), held: "192.0.2.0",
		why: `192.0.2.0 is in pool "p", which namespace "b" may not use`,
	}, {
		name:   "pool split",
		before: func() []config.Pool { return pools(t, "p 192.0.2.0/29") },
		after:  func() []config.Pool { return pools(t, "p 192.0.2.0/30", "p2 192.0.2.4/30") },
		x:      func() Request { r := req("x"); r.Pool = "p"; return r }(),
		newcomer: func() Request {
			r := req("new")
			r.Pool = "p2"
			return r
		}(),
		held: "192.0.2.4",
		why:  `192.0.2.4 is in pool "p2", not in the requested pool "p"`,
	}, {
		name:   "pool named by the Service renamed",
		before: func() []config.Pool { return pools(t, "web 192.0.2.0/30") },
		after:  func() []config.Pool { return pools(t, "edge 192.0.2.0/30") },
		x:      func() Request { r := req("x"); r.Pool = "web"; return r }(),
		newcomer: func() Request {
			r := req("new")
			r.Pool = "edge"
			return r
		}(),
		held: "192.0.2.0",
		why:  `the requested pool "web" does not exist (192.0.2.0 is in pool "edge")`,
	}} {
		held := []netip.Addr{netip.MustParseAddr(tc.held)}
		t.Run(tc.name+"/same term", func(t *testing.T) {
			a := New(tc.before())
			if err := a.Claim(tc.x, held); err != nil {
				t.Fatalf("claim before the edit: %v", err)
			}
			a.SetPools(tc.after())
			if got, err := a.Assign(tc.x); err != nil || fmt.Sprint(got) != fmt.Sprint(held) {
				t.Errorf("x after the edit: %v, %v; want %v kept", got, err, held)
			}
			if got, err := a.Assign(tc.newcomer); err != nil || got[0] == held[0] {
				t.Errorf("the newcomer got %v, %v: not x's address, and not an error", got, err)
			}
			if got := a.Get(tc.x.Key); fmt.Sprint(got) != fmt.Sprint(held) {
				t.Errorf("x holds %v, want %v", got, held)
			}
			if m := a.Misfits(tc.x); len(m) != 1 || m[0].Why != tc.why {
				t.Errorf("misfits = %+v, want one: %s", m, tc.why)
			}
		})
		t.Run(tc.name+"/new term", func(t *testing.T) {
			a := New(tc.after())
			if err := a.Claim(tc.x, held); err != nil {
				t.Errorf("a new term cannot hold x's status address %v: %v", held, err)
			}
			if got, err := a.Assign(tc.newcomer); err != nil || got[0] == held[0] {
				t.Errorf("the newcomer got %v, %v: not x's address, and not an error", got, err)
			}
			if got, err := a.Assign(tc.x); err != nil || fmt.Sprint(got) != fmt.Sprint(held) {
				t.Errorf("x in the new term: %v, %v; want %v kept", got, err, held)
			}
			if m := a.Misfits(tc.x); len(m) != 1 || m[0].Why != tc.why {
				t.Errorf("misfits = %+v, want one: %s", m, tc.why)
			}
			// Another Service may not claim x's address either.
			other := tc.newcomer
			other.Key += "-other"
			if err := a.Claim(other, held); reason(err) != "AddressInUse" {
				t.Errorf("another Service claiming x's address: %v, want AddressInUse", err)
			}
		})
	}
}

// An address that a new term finds in a status, outside every pool (the
// range was removed), is held like one that SetPools left outside: when
// the range comes back, it is not handed to another Service.
func TestClaimOutsideEveryPoolHolds(t *testing.T) {
	a := New(pools(t, "p 192.0.2.0/30"))
	x := netip.MustParseAddr("198.51.100.1")
	if err := a.Claim(req("x"), []netip.Addr{x}); err != nil {
		t.Errorf("claiming an address outside every pool: %v; want it held", err)
	}
	if m := a.Misfits(req("x")); len(m) != 1 || m[0].Pool != "" || m[0].Why != "198.51.100.1 is not in any address pool" {
		t.Errorf("misfits = %+v", m)
	}
	a.SetPools(pools(t, "p 192.0.2.0/30", "back 198.51.100.1/32"))
	y := req("y")
	y.Pool = "back"
	if got, err := a.Assign(y); err == nil {
		t.Errorf("y got %v, x's address", got)
	}
}
