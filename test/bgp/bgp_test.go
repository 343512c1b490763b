package bgp

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/test/nslab"
)

// The VIP every host serves, outside the LAN: reached through the router.
var vip = netip.MustParseAddr("10.99.1.100")

// Two more bgp VIPs whose source ranges let the router in (open) or not
// (closed): the edge filter applies in bgp mode too.
var (
	vipOpen   = netip.MustParseAddr("10.99.1.101")
	vipClosed = netip.MustParseAddr("10.99.1.102")
)

// hostBGP is the bgp section of a host's config: the router as its peer,
// seen with peerASN and password.
func hostBGP(peerASN int, password string) string {
	pw := ""
	if password != "" {
		pw = ", password: " + password
	}
	return fmt.Sprintf("bgp:\n  asn: %d\n  withdrawDelay: 1s\n  peers:\n    - {address: %s, asn: %d, holdTime: 3s%s}\n", clusterAS, routerIP, peerASN, pw)
}

// call runs curl in h's namespace against its local API.
func call(t testing.TB, h *nslab.Host, method, path string) []byte {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", h.NS, "curl", "-sSf", "-X", method, "-H", "Content-Type: application/json",
		"http://127.0.0.1:9080"+path).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s on %s: %v: %s", method, path, h.Name, err, out)
	}
	return out
}

// bgpOf is h's GET /api/v1/bgp; ok false while its API does not answer.
func bgpOf(h *nslab.Host) (st api.BGPStatus, ok bool) {
	out, err := exec.Command("ip", "netns", "exec", h.NS, "curl", "-sf", "http://127.0.0.1:9080/api/v1/bgp").Output()
	if err != nil || json.Unmarshal(out, &st) != nil || !st.Enabled || len(st.Peers) == 0 {
		return st, false
	}
	return st, true
}

// established reports whether every session of h is up.
func established(h *nslab.Host) bool {
	st, ok := bgpOf(h)
	for _, p := range st.Peers {
		ok = ok && p.Established
	}
	return ok
}

// observe checks cond every 100 ms for d (a window in which something
// must not happen), failing at the first miss.
func observe(t testing.TB, d time.Duration, what string, cond func() string) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if msg := cond(); msg != "" {
			t.Fatalf("%s: %s", what, msg)
		}
	}
}

// probeFromRouter opens n connections from the router to the VIP's
// responder and counts the answers by host.
func probeFromRouter(t testing.TB, r *router, n int) map[string]int {
	t.Helper()
	return probeVIPFromRouter(t, r, vip, n)
}

// probeVIPFromRouter is probeFromRouter for any VIP; failed connections
// count under "fail".
func probeVIPFromRouter(t testing.TB, r *router, v netip.Addr, n int) map[string]int {
	t.Helper()
	script := fmt.Sprintf("for i in $(seq %d); do timeout 2 bash -c 'read -r line </dev/tcp/%s/8080 && echo $line' || echo fail; done", n, v)
	out, err := exec.Command("ip", "netns", "exec", r.ns, "bash", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("probing from the router: %v: %s", err, out)
	}
	got := map[string]int{}
	for _, line := range strings.Fields(string(out)) {
		got[line]++
	}
	return got
}

// Three hosts advertise one VIP to an FRR router over eBGP; the router
// installs one route with a next hop per serving host and spreads flows
// over them. A host without a quorum, a draining one, one from which the
// router expects another ASN or a password, and one that stops do not get
// or keep their next hop.
func TestECMPWithFRR(t *testing.T) {
	l := nslab.New(t, 5)
	// The five are the configured cluster: a host outside it (not in the
	// consensus log's member set) never serves, whatever its session.
	l.Join = 5
	// The lab's l2 VIPs (one owner each) beside the bgp one.
	l.Services += fmt.Sprintf("\n  - {name: web-bgp, vip: %s, announce: bgp, ports: [{port: 8080}]}", vip)
	l.Services += fmt.Sprintf("\n  - {name: open-bgp, vip: %s, announce: bgp, ports: [{port: 8080}], sourceRanges: [%s/32]}", vipOpen, routerIP)
	l.Services += fmt.Sprintf("\n  - {name: closed-bgp, vip: %s, announce: bgp, ports: [{port: 8080}], sourceRanges: [192.0.2.0/24]}", vipClosed)
	h1, h2, h3, h4, h5 := l.Hosts[0], l.Hosts[1], l.Hosts[2], l.Hosts[3], l.Hosts[4]
	r := startRouter(t, l, routerASN, []neighbor{{addr: h1.IP4}, {addr: h2.IP4}, {addr: h3.IP4}, {addr: h4.IP4, remoteAS: 64999}, {addr: h5.IP4, password: "only-the-router-has-it"}})
	defer func() {
		if t.Failed() {
			for _, h := range l.Hosts {
				if h.Log != nil {
					t.Logf("%s log:\n%s", h.Name, h.Log)
				}
			}
		}
	}()

	// Alone, h1 has no quorum (it needs three of the five configured hosts): its
	// session comes up, but it advertises nothing.
	l.Extra = hostBGP(routerASN, "")
	start := time.Now()
	h1.Start()
	if !nslab.Poll(nslab.Converge, func() bool { return established(h1) }) {
		st, _ := bgpOf(h1)
		t.Fatalf("h1's session with the router did not come up: %+v", st)
	}
	t.Logf("h1: session established %v after start", time.Since(start).Round(time.Millisecond))
	observe(t, 3*time.Second, "h1 without a quorum", func() string {
		st, _ := bgpOf(h1)
		if hops := r.nextHops(vip); len(hops) > 0 || st.Serving || len(st.Advertised) > 0 || st.Peers[0].PrefixesSent > 0 {
			return fmt.Sprintf("router's next hops %v, h1's BGP %+v", hops, st)
		}
		return ""
	})

	// With h2 and h3 the cluster has its quorum: all three serve.
	start = time.Now()
	h2.Start()
	h3.Start()
	took := r.waitNextHops(vip, h1, h2, h3)
	route, _ := r.vtysh("show ip route " + vip.String())
	t.Logf("three next hops %v after starting h2 and h3:\n%s", took.Round(time.Millisecond), route)
	for _, h := range []*nslab.Host{h1, h2, h3} {
		st, ok := bgpOf(h)
		wantRoutes := []string{vip.String() + "/32", vipOpen.String() + "/32", vipClosed.String() + "/32"}
		if !ok || !st.Serving || !slices.Equal(st.Advertised, wantRoutes) || st.Peers[0].PrefixesSent != len(wantRoutes) || st.Peers[0].ASN != routerASN {
			t.Errorf("%s's GET /api/v1/bgp: %+v", h.Name, st)
		}
		if !h.Has(vip) {
			t.Errorf("%s does not hold %s on its interface", h.Name, vip)
		}
	}
	// The l2 VIPs still have one owner each, announced on the LAN.
	for _, v := range []netip.Addr{nslab.VIP4, nslab.VIP6} {
		o := l.StableOwner(v, time.Second)
		if hs := l.Holders(v); len(hs) != 1 {
			t.Errorf("l2 VIP %s held by %v", v, nslab.Names(hs))
		}
		if !nslab.Poll(3*time.Second, func() bool { return l.Neighbour(v) == o.MAC }) {
			t.Errorf("client's neighbour entry for %s is %q, want %s (%s)", v, l.Neighbour(v), o.MAC, o.Name)
		}
	}
	// No host answers ARP for the bgp VIP on the LAN: it is reached only
	// by its BGP route.
	if n := l.Neighbour(vip); n != "" {
		t.Errorf("the client has a neighbour entry %q for %s", n, vip)
	}
	answers := probeFromRouter(t, r, 60)
	t.Logf("60 connections from the router to %s: %v", vip, answers)
	for _, h := range []*nslab.Host{h1, h2, h3} {
		if answers[h.Name] == 0 {
			t.Errorf("no connection reached %s: %v", h.Name, answers)
		}
	}
	// Source ranges hold in bgp mode: both VIPs are routed to the three
	// hosts, the router's connections reach the one whose ranges name it
	// and none reaches the other.
	r.waitNextHops(vipOpen, h1, h2, h3)
	r.waitNextHops(vipClosed, h1, h2, h3)
	if got := probeVIPFromRouter(t, r, vipOpen, 10); got["fail"] != 0 {
		t.Errorf("connections from the router to %s (its sourceRanges name the router): %v", vipOpen, got)
	}
	if got := probeVIPFromRouter(t, r, vipClosed, 5); got["fail"] != 5 {
		t.Errorf("connections from the router to %s (its sourceRanges exclude the router): %v, want 5 failed", vipClosed, got)
	}
	status, err := h1.Edgelb("status", "--api", "http://127.0.0.1:9080")
	if err != nil || !strings.Contains(status, routerIP.String()) || !strings.Contains(status, "established") {
		t.Errorf("edgelb status on h1 (%v) shows no established peer:\n%s", err, status)
	}
	t.Logf("edgelb status on h1:\n%s", status)

	// The peers are cluster configuration, the same on every host: the
	// router expects another AS number from h4 and a password from h5
	// that the cluster's peer does not have. They have a quorum and want
	// to advertise, but never get a session.
	h4.Start()
	h5.Start()
	for _, h := range []*nslab.Host{h4, h5} {
		if !nslab.Poll(nslab.Converge, func() bool { st, ok := bgpOf(h); return ok && st.Serving && len(st.Advertised) == 3 }) {
			st, _ := bgpOf(h)
			t.Fatalf("%s does not try to advertise: %+v", h.Name, st)
		}
	}
	observe(t, 8*time.Second, "a peer with the wrong ASN or password", func() string {
		if hops := r.nextHops(vip); !slices.Equal(hops, []netip.Addr{h1.IP4, h2.IP4, h3.IP4}) {
			return fmt.Sprintf("router's next hops %v", hops)
		}
		for _, h := range []*nslab.Host{h4, h5} {
			if st, _ := bgpOf(h); st.Peers[0].Established || st.Peers[0].PrefixesSent != 0 {
				return fmt.Sprintf("%s's session: %+v", h.Name, st.Peers[0])
			}
		}
		return ""
	})
	for _, h := range []*nslab.Host{h4, h5} {
		st, _ := bgpOf(h)
		t.Logf("%s's peer: %+v", h.Name, st.Peers[0])
	}

	// Draining h2 takes its next hop away (graceful shutdown, then
	// withdrawal); the other two stay. It keeps the VIP, to forward the
	// flows the router still sends.
	// New connections from the router every 10 ms meanwhile: none fails
	// (h2 withdraws first and keeps forwarding what still comes).
	p := l.ProbeFrom(r.ns, vip, time.Second)
	time.Sleep(500 * time.Millisecond)
	start = time.Now()
	call(t, h2, "POST", "/api/v1/members/h2/drain")
	took = r.waitNextHops(vip, h1, h3)
	time.Sleep(500 * time.Millisecond)
	res := p.Stop()
	failed, _ := nslab.Outage(res)
	t.Logf("drain of h2 -> its next hop withdrawn at the router: %v; %d of %d new connections failed", took.Round(time.Millisecond), failed, len(res))
	if failed != 0 || len(res) < 50 {
		t.Errorf("new connections through the drain: %d of %d failed", failed, len(res))
	}
	if !h2.Has(vip) {
		t.Errorf("draining h2 removed %s from its interface", vip)
	}
	// Its next hop left because its routes carry GRACEFUL_SHUTDOWN, which
	// FRR honours (local-pref 0); withdrawDelay later they are withdrawn.
	if st, _ := bgpOf(h2); st.Serving || !st.Peers[0].Established || (len(st.Advertised) != 0 && !st.GracefulShutdown) {
		t.Errorf("draining h2's GET /api/v1/bgp: %+v", st)
	} else {
		t.Logf("h2 half a second after its next hop left: %d routes still advertised with graceful-shutdown (withdrawDelay 1s)", len(st.Advertised))
	}
	if !nslab.Poll(5*time.Second, func() bool { st, _ := bgpOf(h2); return len(st.Advertised) == 0 && !st.GracefulShutdown }) {
		st, _ := bgpOf(h2)
		t.Errorf("draining h2 did not withdraw after withdrawDelay: %+v", st)
	}
	start = time.Now()
	call(t, h2, "POST", "/api/v1/members/h2/undrain")
	took = r.waitNextHops(vip, h1, h2, h3)
	t.Logf("undrain of h2 -> its next hop back: %v", took.Round(time.Millisecond))

	// A stopping host sends graceful shutdown, withdraws withdrawDelay
	// later and forwards on a little: the router loses its next hop
	// before it exits.
	stopped := make(chan time.Time, 1)
	start = time.Now()
	go func() {
		if err := h3.Stop(20 * time.Second); err != nil {
			t.Errorf("stopping h3: %v", err)
		}
		stopped <- time.Now()
	}()
	took = r.waitNextHops(vip, h1, h2)
	exited := <-stopped
	t.Logf("SIGTERM to h3 -> next hop withdrawn %v, process exited %v", took.Round(time.Millisecond), exited.Sub(start).Round(time.Millisecond))
	if exited.Sub(start) < took {
		t.Errorf("h3 exited before its route was withdrawn at the router")
	}
}

var vip6 = netip.MustParseAddr("fd99:1::100")

// iBGP (the router in the cluster's AS), an IPv6 session beside the IPv4
// one, and a TCP MD5 password and BFD (FRR's bfdd) on the IPv4 session:
// each family's VIP gets a route with a next hop per host, and BFD comes
// up.
func TestIBGPIPv6AndBFDWithFRR(t *testing.T) {
	l := nslab.New(t, 3)
	l.Services = fmt.Sprintf("\n  - {name: web-bgp4, vip: %s, announce: bgp, ports: [{port: 8080}]}\n  - {name: web-bgp6, vip: \"%s\", announce: bgp, ports: [{port: 8080}]}", vip, vip6)
	l.Extra = fmt.Sprintf(`bgp:
  asn: %d
  peers:
    - {address: %s, asn: %d, holdTime: 3s, password: md5-secret, bfd: {minRx: 300ms, minTx: 300ms, multiplier: 3}}
    - {address: "fd99::fe", asn: %d, holdTime: 3s, gracefulRestart: true}
`, clusterAS, routerIP, clusterAS, clusterAS)
	var neighbors []neighbor
	for _, h := range l.Hosts {
		neighbors = append(neighbors, neighbor{addr: h.IP4, bfd: true, password: "md5-secret"}, neighbor{addr: h.IP6})
	}
	r := startRouter(t, l, clusterAS, neighbors)
	defer func() {
		if t.Failed() {
			for _, h := range l.Hosts {
				t.Logf("%s log:\n%s", h.Name, h.Log)
			}
		}
	}()
	start := time.Now()
	for _, h := range l.Hosts {
		h.Start()
	}
	took4 := r.waitNextHops(vip, l.Hosts...)
	took6 := r.waitNextHops(vip6, l.Hosts...)
	t.Logf("iBGP: three next hops for %s after %v, for %s after %v", vip, took4.Round(time.Millisecond), vip6, (took4 + took6).Round(time.Millisecond))
	for _, h := range l.Hosts {
		if !nslab.Poll(nslab.Converge, func() bool {
			st, ok := bgpOf(h)
			return ok && established(h) && len(st.Peers) == 2 && st.Peers[0].BFD == "up" && st.Peers[0].PrefixesSent == 1 && st.Peers[1].PrefixesSent == 1
		}) {
			st, _ := bgpOf(h)
			t.Fatalf("%s's GET /api/v1/bgp: %+v", h.Name, st)
		}
	}
	t.Logf("BFD up on every host %v after start", time.Since(start).Round(time.Millisecond))
	bfd, _ := r.vtysh("show bfd peers brief")
	route, _ := r.vtysh("show ipv6 route " + vip6.String())
	t.Logf("router:\n%s\n%s", bfd, route)
	for _, v := range []netip.Addr{vip, vip6} {
		if n := l.Neighbour(v); n != "" {
			t.Errorf("the client has a neighbour entry %q for %s", n, v)
		}
	}

	h1 := l.Hosts[0]
	call(t, h1, "POST", "/api/v1/members/h1/drain")
	r.waitNextHops(vip, l.Hosts[1:]...)
	r.waitNextHops(vip6, l.Hosts[1:]...)

	// A host cut off the LAN: BFD tells the router before the 3 s hold
	// time would (no BFD on the IPv6 session).
	h3 := l.Hosts[2]
	start = time.Now()
	h3.SetLink(false)
	took4 = r.waitNextHops(vip, l.Hosts[1])
	took6 = r.waitNextHops(vip6, l.Hosts[1])
	t.Logf("h3 cut off: its IPv4 next hop (BFD 300ms x 3) gone after %v, its IPv6 one (hold time 3s) after %v",
		took4.Round(time.Millisecond), (took4 + took6).Round(time.Millisecond))
}
