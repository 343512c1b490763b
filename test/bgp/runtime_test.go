package bgp

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgelb/edgelb/test/nslab"
)

// The bgp section is cluster configuration: a change applied through one
// host's API (edgelb config apply) reaches every host's BGP speaker
// while it runs. Version 1 names the router with the wrong AS number, so
// no session comes up; version 2 corrects it and the router gets three
// next hops; version 3 gives the peer a password the router does not
// have, and the sessions, and the routes, go. No host restarts.
func TestBGPConfigurationAtRunTime(t *testing.T) {
	l := nslab.New(t, 3)
	l.Services += fmt.Sprintf("\n  - {name: web-bgp, vip: %s, announce: bgp, ports: [{port: 8080}]}", vip)
	l.Extra = hostBGP(64999, "")
	h1, h2, h3 := l.Hosts[0], l.Hosts[1], l.Hosts[2]
	r := startRouter(t, l, routerASN, []neighbor{{addr: h1.IP4}, {addr: h2.IP4}, {addr: h3.IP4}})
	defer func() {
		if t.Failed() {
			for _, h := range l.Hosts {
				t.Logf("%s log:\n%s", h.Name, h.Log)
			}
		}
	}()
	for _, h := range l.Hosts {
		h.Start()
	}
	if !l.Configured(nslab.Converge) {
		t.Fatal("the hosts run no committed cluster configuration")
	}
	for _, h := range l.Hosts {
		if !nslab.Poll(nslab.Converge, func() bool { _, ok := bgpOf(h); return ok }) {
			t.Fatalf("%s's BGP API did not answer", h.Name)
		}
	}
	observe(t, 3*time.Second, "peers configured with the wrong AS number", func() string {
		if hops := r.nextHops(vip); len(hops) > 0 {
			return fmt.Sprintf("the router has next hops %v", hops)
		}
		return ""
	})

	apply := func(from, to string, version int) time.Time {
		t.Helper()
		cur, err := h1.Edgelb("config", "get", "--api", "http://127.0.0.1:9080")
		if err != nil {
			t.Fatalf("edgelb config get: %v\n%s", err, cur)
		}
		next := strings.Replace(cur, from, to, 1)
		if next == cur {
			t.Fatalf("%q is not in the cluster configuration:\n%s", from, cur)
		}
		spec := filepath.Join(l.Dir, fmt.Sprintf("spec-%d.yaml", version))
		nslab.WriteFile(t, spec, next)
		start := time.Now()
		out, err := h1.Edgelb("config", "apply", "-f", spec, "--api", "http://127.0.0.1:9080")
		if err != nil || !strings.HasPrefix(out, fmt.Sprintf("applied: version %d", version)) {
			t.Fatalf("edgelb config apply (%s -> %s): %v\n%s", from, to, err, out)
		}
		return start
	}

	// The right AS number: every host's session comes up and the router
	// spreads the VIP over the three.
	start := apply("asn: 64999", fmt.Sprintf("asn: %d", routerASN), 2)
	r.waitNextHops(vip, h1, h2, h3)
	t.Logf("peer AS corrected on h1: three next hops %v after the apply", time.Since(start).Round(time.Millisecond))
	for _, h := range l.Hosts {
		if st, ok := bgpOf(h); !ok || !established(h) || st.Peers[0].ASN != routerASN || st.Peers[0].PrefixesSent != 1 {
			t.Errorf("%s's GET /api/v1/bgp: %+v", h.Name, st)
		}
	}
	answers := probeFromRouter(t, r, 30)
	t.Logf("30 connections from the router: %v", answers)
	if answers["fail"] != 0 || len(answers) < 2 {
		t.Errorf("connections through the router's ECMP route: %v, want none failed and more than one host", answers)
	}

	// A changed peer (a TCP MD5 password the router does not have): its
	// session is reset with the new setting and cannot come back.
	start = apply(fmt.Sprintf("asn: %d", routerASN), fmt.Sprintf("asn: %d\n      password: not-the-routers", routerASN), 3)
	if !nslab.Poll(nslab.Converge, func() bool { return len(r.nextHops(vip)) == 0 }) {
		t.Fatalf("the router still has next hops %v after the peers got a password it does not have", r.nextHops(vip))
	}
	t.Logf("peer password set on h1: the router's route gone %v after the apply", time.Since(start).Round(time.Millisecond))
	for _, h := range l.Hosts {
		if n := strings.Count(h.Log.String(), "starting edgelb"); n != 1 {
			t.Errorf("%s started %d times, want once: the changes must not need a restart", h.Name, n)
		}
		if !strings.Contains(h.Log.String(), "BGP peer added") {
			t.Errorf("%s's log does not show the peer taken up at run time", h.Name)
		}
	}
}
