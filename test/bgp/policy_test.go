package bgp

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgelb/edgelb/test/nslab"
)

// frrPath is one path of `show bgp ipv4 unicast PREFIX json` (FRR 8.4).
type frrPath struct {
	LocPrf    *uint32 `json:"locPrf"`
	Community *struct {
		String string `json:"string"`
	} `json:"community"`
	LargeCommunity *struct {
		String string `json:"string"`
	} `json:"largeCommunity"`
	Multipath bool `json:"multipath"`
	Bestpath  *struct {
		Overall bool `json:"overall"`
	} `json:"bestpath"`
	Nexthops []struct {
		IP string `json:"ip"`
	} `json:"nexthops"`
	Peer struct {
		PeerID string `json:"peerId"`
	} `json:"peer"`
}

// paths returns the router's BGP paths to prefix by the peer that sent
// each.
func (r *router) paths(prefix string) map[string]frrPath {
	out, err := exec.Command("ip", "netns", "exec", r.ns, "vtysh", "--vty_socket", r.dir,
		"-c", "show bgp ipv4 unicast "+prefix+" json").CombinedOutput()
	if err != nil {
		r.t.Fatalf("show bgp: %v: %s", err, out)
	}
	var doc struct {
		Paths []frrPath `json:"paths"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		r.t.Fatalf("show bgp json: %v: %s", err, out)
	}
	m := map[string]frrPath{}
	for _, p := range doc.Paths {
		m[p.Peer.PeerID] = p
	}
	return m
}

// configure runs configuration commands on the router.
func (r *router) configure(lines ...string) {
	args := []string{"netns", "exec", r.ns, "vtysh", "--vty_socket", r.dir, "-c", "configure terminal"}
	for _, l := range lines {
		args = append(args, "-c", l)
	}
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil || strings.Contains(string(out), "%") {
		r.t.Fatalf("configuring the router: %v: %s", err, out)
	}
}

// A static service's communities, large communities and local-pref
// reach an iBGP router as path attributes; a drained host's path first
// carries GRACEFUL_SHUTDOWN and local-pref 0 (RFC 8326, with no policy on
// the router), so its next hop leaves the router's route while the host
// still forwards, and is withdrawn withdrawDelay later. New connections
// through the VIP, from the router, all succeed meanwhile, and through a
// stop. (TestECMPWithFRR shows an eBGP router acting on the community
// alone.)
func TestPolicyAndGracefulShutdownWithFRR(t *testing.T) {
	const withdrawDelay = 2 * time.Second
	l := nslab.New(t, 3)
	l.Services = fmt.Sprintf(`
  - name: web-bgp
    vip: %s
    announce: bgp
    ports: [{port: 8080}]
    bgp: {communities: ["65000:100", no-export], largeCommunities: ["65000:1:2"], localPref: 250}`, vip)
	l.Extra = fmt.Sprintf("bgp:\n  asn: %d\n  withdrawDelay: %s\n  peers:\n    - {address: %s, asn: %d, holdTime: 3s}\n",
		clusterAS, withdrawDelay, routerIP, clusterAS)
	h1, h2, h3 := l.Hosts[0], l.Hosts[1], l.Hosts[2]
	r := startRouter(t, l, clusterAS, []neighbor{{addr: h1.IP4}, {addr: h2.IP4}, {addr: h3.IP4}})
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
	r.waitNextHops(vip, h1, h2, h3)
	prefix := vip.String() + "/32"
	paths := r.paths(prefix)
	detail, _ := r.vtysh("show bgp ipv4 unicast " + prefix)
	t.Logf("the router's paths:\n%s", detail)
	for _, h := range l.Hosts {
		p, ok := paths[h.IP4.String()]
		switch {
		case !ok:
			t.Errorf("no path from %s", h.Name)
		case p.Community == nil || p.Community.String != "65000:100 no-export":
			t.Errorf("%s's path communities %+v, want 65000:100 no-export", h.Name, p.Community)
		case p.LargeCommunity == nil || p.LargeCommunity.String != "65000:1:2":
			t.Errorf("%s's path large communities %+v, want 65000:1:2", h.Name, p.LargeCommunity)
		case p.LocPrf == nil || *p.LocPrf != 250:
			t.Errorf("%s's path local-pref %v, want 250", h.Name, p.LocPrf)
		}
	}

	// Watch h1's path and the router's next hops every 20 ms through a
	// drain, with new connections to the VIP from the router.
	type sample struct {
		at        time.Time
		present   bool
		gshut     bool
		locPrf    uint32
		nextHops  int
		h1NextHop bool
	}
	var (
		mu      sync.Mutex
		samples []sample
		done    = make(chan struct{})
		stopped = make(chan struct{})
	)
	go func() {
		defer close(stopped)
		for {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			p, ok := r.paths(prefix)[h1.IP4.String()]
			s := sample{at: time.Now(), present: ok}
			if ok {
				s.gshut = p.Community != nil && strings.Contains(p.Community.String, "graceful-shutdown")
				if p.LocPrf != nil {
					s.locPrf = *p.LocPrf
				}
			}
			hops := r.nextHops(vip)
			s.nextHops, s.h1NextHop = len(hops), slices.Contains(hops, h1.IP4)
			mu.Lock()
			samples = append(samples, s)
			mu.Unlock()
		}
	}()
	probes := l.ProbeFrom(r.ns, vip, time.Second)
	time.Sleep(500 * time.Millisecond)
	drained := time.Now()
	call(t, h1, "POST", "/api/v1/members/h1/drain")
	r.waitNextHops(vip, h2, h3)
	if !nslab.Poll(withdrawDelay+5*time.Second, func() bool { _, ok := r.paths(prefix)[h1.IP4.String()]; return !ok }) {
		t.Fatalf("h1's path is still there %s after the drain", withdrawDelay+5*time.Second)
	}
	time.Sleep(500 * time.Millisecond)
	close(done)
	<-stopped
	res := probes.Stop()

	var gshutAt, lowAt, hopGoneAt, goneAt time.Time
	for _, s := range samples {
		if s.at.Before(drained) {
			if !s.present || s.gshut || !s.h1NextHop {
				t.Errorf("before the drain: %+v", s)
			}
			continue
		}
		if s.gshut && gshutAt.IsZero() {
			gshutAt = s.at
		}
		if s.present && s.locPrf == 0 && lowAt.IsZero() {
			lowAt = s.at
		}
		if !s.h1NextHop && hopGoneAt.IsZero() {
			hopGoneAt = s.at
		}
		if !s.present && goneAt.IsZero() {
			goneAt = s.at
		}
	}
	since := func(at time.Time) time.Duration { return at.Sub(drained).Round(time.Millisecond) }
	t.Logf("drain of h1: graceful-shutdown seen after %v (local-pref 0 after %v), h1's next hop out of the kernel route after %v, path withdrawn after %v (withdrawDelay %v)",
		since(gshutAt), since(lowAt), since(hopGoneAt), since(goneAt), withdrawDelay)
	switch {
	case gshutAt.IsZero():
		t.Errorf("the router never saw graceful-shutdown on h1's path")
	case goneAt.IsZero() || !gshutAt.Before(goneAt):
		t.Errorf("graceful-shutdown (%v) not before the withdrawal (%v)", since(gshutAt), since(goneAt))
	case goneAt.Sub(gshutAt) < withdrawDelay-200*time.Millisecond:
		t.Errorf("withdrawn %v after graceful-shutdown, want about withdrawDelay %v", goneAt.Sub(gshutAt), withdrawDelay)
	case hopGoneAt.IsZero() || hopGoneAt.After(gshutAt.Add(time.Second)):
		t.Errorf("h1's next hop left the router's route at %v, long after graceful-shutdown (%v)", since(hopGoneAt), since(gshutAt))
	}
	failed := 0
	for _, p := range res {
		if !p.OK {
			failed++
		}
	}
	t.Logf("new connections from the router to %s during the drain: %d, %d failed", vip, len(res), failed)
	if failed > 0 || len(res) == 0 {
		t.Errorf("%d of %d new connections failed during the drain", failed, len(res))
	}

	// A stop: graceful-shutdown first as well, then the withdrawal; no
	// new connection fails.
	probes = l.ProbeFrom(r.ns, vip, time.Second)
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	stopErr := make(chan error, 1)
	go func() { stopErr <- h2.Stop(30 * time.Second) }()
	var sawGshut bool
	if !nslab.Poll(withdrawDelay+5*time.Second, func() bool {
		p, ok := r.paths(prefix)[h2.IP4.String()]
		sawGshut = sawGshut || (ok && p.Community != nil && strings.Contains(p.Community.String, "graceful-shutdown"))
		return !ok
	}) {
		t.Fatal("h2's path is still there after its stop")
	}
	gone := time.Since(start)
	if err := <-stopErr; err != nil {
		t.Errorf("h2's stop: %v", err)
	}
	exited := time.Since(start)
	time.Sleep(300 * time.Millisecond)
	res = probes.Stop()
	failed = 0
	for _, p := range res {
		if !p.OK {
			failed++
		}
	}
	t.Logf("stop of h2: path withdrawn after %v, process exited after %v; %d new connections, %d failed", gone.Round(time.Millisecond), exited.Round(time.Millisecond), len(res), failed)
	if !sawGshut {
		t.Errorf("the router never saw graceful-shutdown on h2's path before its withdrawal")
	}
	if gone < withdrawDelay-200*time.Millisecond {
		t.Errorf("h2's path withdrawn %v after SIGTERM, want withdrawDelay %v first", gone, withdrawDelay)
	}
	if failed > 0 {
		t.Errorf("%d of %d new connections failed during the stop", failed, len(res))
	}
}
