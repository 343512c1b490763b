//go:build vm

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgelb/edgelb/test/labnet"
)

// routerPaths is the router's BGP paths for a prefix, by next hop: whether
// each carries GRACEFUL_SHUTDOWN.
func routerPaths(frr *labnet.FRR, prefix string) (map[string]bool, error) {
	out, err := frr.Vtysh("show bgp ipv4 unicast " + prefix + " json")
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	var r struct {
		Paths []struct {
			Nexthops []struct {
				IP string `json:"ip"`
			} `json:"nexthops"`
			Community *struct {
				String string `json:"string"`
			} `json:"community"`
		} `json:"paths"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	m := map[string]bool{}
	for _, p := range r.Paths {
		if len(p.Nexthops) > 0 {
			m[p.Nexthops[0].IP] = p.Community != nil && strings.Contains(p.Community.String, "graceful-shutdown")
		}
	}
	return m, nil
}

// kernelNextHops is the router's kernel route to addr: its next hops.
func kernelNextHops(t *testing.T, addr string) []string {
	out, _ := exec.Command("ip", "-n", labnet.RouterNS, "route", "show", addr+"/32").CombinedOutput()
	var hops []string
	for _, f := range strings.Split(string(out), "via ")[1:] {
		hops = append(hops, strings.Fields(f)[0])
	}
	slices.Sort(hops)
	return hops
}

// TestBGPDrainNat: a nat bgp VIP behind FRR, the routers' way of draining
// a speaker (RFC 8326). Three hosts advertise it to the router, which
// spreads the client's flows over them (ECMP on L4). Draining a host first
// marks its path GRACEFUL_SHUTDOWN: FRR lowers it to local-pref 0 and
// takes its next hop out of the route while the host still forwards; the
// path is withdrawn withdrawDelay later. New connections through the VIP,
// one every 10 ms from the client behind the router, must all succeed
// meanwhile (a request in flight at the route change may be reset: it
// is counted apart): IPVS nat, with the source NAT that makes replies
// return through the host that forwarded them.
func TestBGPDrainNat(t *testing.T) {
	if _, err := os.Stat("/run/netns/node1"); err != nil {
		topology(t)
	}
	const vip = "10.0.6.1"
	// Scaled for the emulated VM, where one vtysh query of the router
	// takes a good part of a second.
	const withdrawDelay = 5 * time.Second
	// The router on the LAN; the client reaches the VIP through it. It
	// forwards back out of the interface it received on, so it must not
	// send redirects (the client would then bypass its ECMP).
	sh(t, fmt.Sprintf(`
ip netns add %[1]s
ip link add v-%[1]s type veth peer name eth0 netns %[1]s
ip link set v-%[1]s master br0 up
ip -n %[1]s link set lo up
ip -n %[1]s link set eth0 up
ip -n %[1]s addr add %[2]s/24 dev eth0
ip netns exec %[1]s sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1 net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.eth0.send_redirects=0
ip netns exec client sysctl -qw net.ipv4.conf.all.accept_redirects=0 net.ipv4.conf.eth0.accept_redirects=0
ip -n client route replace %[3]s/32 via %[2]s
# An earlier test may have left a host's link down.
for i in 1 2 3; do ip -n lb$i link set eth0 up; done
`, labnet.RouterNS, labnet.RouterAddr, vip))
	t.Cleanup(func() {
		exec.Command("ip", "-n", "client", "route", "del", vip+"/32").Run()
		exec.Command("ip", "netns", "del", labnet.RouterNS).Run()
	})
	flog, err := os.Create("/tmp/drain-frr.log")
	if err != nil {
		t.Fatal(err)
	}
	defer flog.Close()
	peers := []string{"10.0.0.11", "10.0.0.12", "10.0.0.13"}
	frr, err := labnet.StartFRR(context.Background(), labnet.RouterNS, "/tmp/drain-frr", labnet.RouterConf(peers, 3), flog)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(frr.Stop)

	services := fmt.Sprintf("  - {name: bgp-nat, vip: %s, method: nat, announce: bgp, ports: [{port: 80, targetPort: 30080}], backends: [10.0.0.21, 10.0.0.22, 10.0.0.23]}\n", vip)
	var lbs []*edgelb
	for i := 1; i <= 3; i++ {
		ns := fmt.Sprintf("lb%d", i)
		cfg := hostConfig(i, "{backend: ipvs, mode: nodeport, method: nat}", "127.0.0.1:9083",
			fmt.Sprintf("bgp: {asn: %d, withdrawDelay: %s, peers: [{address: %s, asn: %d, holdTime: 9s}]}\n", labnet.ClusterASN, withdrawDelay, labnet.RouterAddr, labnet.RouterASN), services)
		lbs = append(lbs, startEdgelbAs(t, ns, "drain-"+ns, cfg))
	}
	defer func() {
		if t.Failed() {
			for _, e := range lbs {
				e.dumpLog(t)
			}
			b, _ := os.ReadFile(flog.Name())
			t.Logf("FRR log:\n%s", b)
		}
	}()
	waitFor(t, "the router's route to "+vip+" through the three hosts", 3*time.Minute, func() bool {
		return slices.Equal(kernelNextHops(t, vip), peers)
	})
	url := "http://" + vip + "/"
	if r := helper(t, "client", "http", "30", url); r.Errors != 0 || len(nodes(r)) == 0 {
		t.Fatalf("through the router before the drain: %+v", r)
	}

	// Sample the router every 100 ms through the drain, with new
	// connections from the client.
	type sample struct {
		at                  time.Time
		present, gshut, hop bool
	}
	var (
		mu      sync.Mutex
		samples []sample
	)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			paths, err := routerPaths(frr, vip+"/32")
			if err != nil {
				t.Error(err)
				return
			}
			g, ok := paths[peers[0]]
			s := sample{at: time.Now(), present: ok, gshut: g, hop: slices.Contains(kernelNextHops(t, vip), peers[0])}
			mu.Lock()
			samples = append(samples, s)
			mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
	}()
	probeSecs := int((withdrawDelay + 14*time.Second).Seconds())
	probe := make(chan labnet.ProbeResult, 1)
	go func() {
		self, _ := os.Executable()
		cmd := exec.Command("ip", "netns", "exec", "client", self)
		cmd.Env = append(os.Environ(), "EDGELB_HELPER=probe", fmt.Sprintf("EDGELB_ARGS=%s 10ms %d", url, probeSecs))
		out, err := cmd.Output()
		var r labnet.ProbeResult
		if err == nil {
			err = json.Unmarshal(out, &r)
		}
		if err != nil {
			r.Errors = append(r.Errors, fmt.Sprintf("probe helper: %v: %s", err, out))
			r.Failed = -1
		}
		probe <- r
	}()
	time.Sleep(2 * time.Second)
	drained := time.Now()
	helper0(t, "lb1", "post", "http://127.0.0.1:9083/api/v1/members/lb1/drain")
	r := <-probe
	stop()
	wg.Wait()
	var gshutAt, hopGoneAt, goneAt time.Time
	for _, s := range samples {
		if s.at.Before(drained) {
			continue
		}
		if s.gshut && gshutAt.IsZero() {
			gshutAt = s.at
		}
		if !s.hop && hopGoneAt.IsZero() {
			hopGoneAt = s.at
		}
		if !s.present && goneAt.IsZero() {
			goneAt = s.at
		}
	}
	since := func(at time.Time) string {
		if at.IsZero() {
			return "never"
		}
		return at.Sub(drained).Round(10 * time.Millisecond).String()
	}
	t.Logf("FIGURE drain of lb1 behind FRR, nat bgp VIP: graceful-shutdown on its path after %s, its next hop out of the router's kernel route after %s, path withdrawn after %s (withdrawDelay %v); requests from the client through the router (a new connection every 10 ms, drain at %s): %d failed of %d, %d of them in flight (connected, then reset), longest %d ms without an answer; answered by %v; errors %q",
		since(gshutAt), since(hopGoneAt), since(goneAt), withdrawDelay, drained.Format("15:04:05.000"), r.Failed, r.OK+r.Failed, r.InFlight, r.LongestGap, r.Answers, r.Errors)
	switch {
	case gshutAt.IsZero():
		t.Errorf("the router never saw graceful-shutdown on lb1's path")
	case goneAt.IsZero():
		t.Errorf("lb1's path was not withdrawn within %ds of the drain", probeSecs)
	case !gshutAt.Before(goneAt):
		t.Errorf("graceful-shutdown (%s) not before the withdrawal (%s)", since(gshutAt), since(goneAt))
	case hopGoneAt.IsZero() || !hopGoneAt.Before(goneAt):
		t.Errorf("lb1's next hop left the route at %s, not before its path was withdrawn (%s)", since(hopGoneAt), since(goneAt))
	}
	// A request in flight when the router's route changes may be rehashed
	// to another host (hash-threshold ECMP moves some flows of the hosts
	// that stay too), which has no state for it with nat: that one is
	// reset, as in the planned handovers of the l2 tests. New connections
	// must all succeed.
	if r.Failed-r.InFlight != 0 || r.InFlight > 1 || r.OK == 0 {
		t.Errorf("connections through %s during the drain: %d failed of %d (%d in flight): %v", vip, r.Failed, r.OK+r.Failed, r.InFlight, r.Errors)
	}
	helper0(t, "lb1", "post", "http://127.0.0.1:9083/api/v1/members/lb1/undrain")
}

// helper0 runs a helper that prints no JSON result (post, get) and fails
// the test if it fails.
func helper0(t *testing.T, ns, name string, args ...string) string {
	t.Helper()
	self, _ := os.Executable()
	cmd := exec.Command("ip", "netns", "exec", ns, self)
	cmd.Env = append(os.Environ(), "EDGELB_HELPER="+name, "EDGELB_ARGS="+strings.Join(args, " "))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper %s %v in %s: %v\n%s", name, args, ns, err, out)
	}
	return string(out)
}
