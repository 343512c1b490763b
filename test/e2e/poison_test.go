package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/test/nslab"
)

// hostStatus is `edgelb status --output json` on h.
func hostStatus(h *nslab.Host) (st struct {
	Status api.Status `json:"status"`
	VIPs   []api.VIP  `json:"vips"`
}, err error) {
	out, err := h.Edgelb("status", "--output", "json", "--api", "http://127.0.0.1:9080")
	if err != nil {
		return st, fmt.Errorf("%v: %s", err, out)
	}
	return st, json.Unmarshal([]byte(out), &st)
}

// One bad input breaks one thing (issue 22), on the real binary:
//
//   - VIPs that can never work (multicast, loopback, link-local) are
//     refused by the API with the field named, and nothing changes;
//   - a VIP the kernel refuses on every host — IPv6 switched off on every
//     host's interface while the IPv6 VIP is held — costs that VIP only:
//     every host stays healthy, says who refuses it, and the IPv4 VIP
//     keeps its one owner and answers every probe all along. Before, the
//     owner became unhealthy, its VIPs moved to the next host, which
//     failed the same way, until no host held any VIP.
//   - Once IPv6 is back, the VIP is tried again and answers.
//
// It also sends what a DNS-rebinding page sends to the token-less
// loopback API (a foreign Host and Origin): refused.
func TestOneBadVIPCostsThatVIPOnly(t *testing.T) {
	l := startCluster(t, 3)
	h1 := l.Hosts[0]
	owner4 := l.StableOwner(vip4, time.Second)
	p4 := l.Probe(vip4, 300*time.Millisecond)
	if !nslab.Poll(2*time.Second, func() bool { return p4.Last().OK }) {
		t.Fatalf("no answer from %s: %+v", vip4, p4.Last())
	}
	watch := l.WatchVIPs(50*time.Millisecond, vip4)

	// A page on another site whose name the attacker points at 127.0.0.1
	// (DNS rebinding) sends its own Host and Origin to the token-less
	// loopback API: refused (421), and nobody drains.
	h2 := l.Hosts[1]
	out, err := exec.Command("ip", "netns", "exec", h1.NS, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
		"-X", "POST", "-H", "Host: rebind.example:9080", "-H", "Origin: http://rebind.example:9080", "-H", "Content-Type: application/json",
		"http://127.0.0.1:9080/api/v1/members/"+h2.Name+"/drain").CombinedOutput()
	if err != nil || string(out) != "421" {
		t.Fatalf("a rebinding request to drain %s: %v, HTTP %s, want 421", h2.Name, err, out)
	}
	if st, err := hostStatus(h2); err != nil || st.Status.Draining {
		t.Fatalf("%s draining after a refused rebinding request (%v)", h2.Name, err)
	}
	t.Log("a DNS-rebinding request to drain a member was refused with 421")

	for _, bad := range []string{"ff0e::1", "127.0.0.5", "fe80::10", "224.0.0.5"} {
		spec := filepath.Join(l.Dir, "bad.yaml")
		nslab.WriteFile(t, spec, fmt.Sprintf(`services:
  - {name: web4, vip: %s, ports: [{port: 8080}]}
  - {name: web6, vip: "%s", ports: [{port: 8080}]}
  - {name: bad, vip: "%s", ports: [{port: 8080}]}
`, vip4, vip6, bad))
		out, err := h1.Edgelb("config", "apply", "-f", spec, "--api", "http://127.0.0.1:9080")
		if err == nil || !strings.Contains(out, "services[2].vip") {
			t.Fatalf("a VIP %s was not refused with its field: %v\n%s", bad, err, out)
		}
		t.Logf("VIP %s refused: %s", bad, strings.TrimSpace(out))
	}

	owner6 := l.StableOwner(vip6, 300*time.Millisecond)
	for _, h := range l.Hosts {
		l.Sysctl(h.NS, "net.ipv6.conf.eth0.disable_ipv6=1")
	}
	t.Logf("IPv6 switched off on every host; %s was on %s, %s is on %s", vip6, owner6.Name, vip4, owner4.Name)
	var last string
	if !nslab.Poll(converge, func() bool {
		for _, h := range l.Hosts {
			st, err := hostStatus(h)
			if err != nil {
				last = err.Error()
				return false
			}
			if !st.Status.Healthy {
				t.Fatalf("%s is unhealthy for one VIP: %s", h.Name, st.Status.Problem)
			}
			i := slices.IndexFunc(st.VIPs, func(v api.VIP) bool { return v.Address == vip6.String() })
			if i < 0 {
				last = h.Name + " does not list " + vip6.String()
				return false
			}
			v := st.VIPs[i]
			if v.Owner != "" || len(v.RefusedBy) != 3 || !v.Refused {
				last = fmt.Sprintf("%s shows %+v", h.Name, v)
				return false
			}
		}
		return len(l.Holders(vip6)) == 0
	}) {
		t.Fatalf("the IPv6 VIP is not refused by every host: %s", last)
	}
	st, _ := hostStatus(h1)
	for _, v := range st.VIPs {
		t.Logf("h1: %s owner %q refusedBy %v problem %q", v.Address, v.Owner, v.RefusedBy, v.Problem)
	}

	// The other VIP never noticed.
	time.Sleep(time.Second)
	res := p4.Stop()
	if failed, d := nslab.Outage(res); failed > 0 {
		t.Errorf("%d of %d probes of %s failed (%s) while %s was refused", failed, len(res), vip4, d, vip6)
	}
	for _, s := range watch() {
		if h := s.Holders[vip4]; !slices.Equal(h, []string{owner4.Name}) {
			t.Fatalf("at %s %s was held by %v, want %s all along", s.At.Format("15:04:05.000"), vip4, h, owner4.Name)
		}
	}
	t.Logf("%s: %d probes, all answered by %s", vip4, len(res), owner4.Name)

	// The fault is gone: nobody owns the VIP, so it is tried again after
	// its hold (10 s, doubled for each failed trial) and answers.
	start := time.Now()
	for _, h := range l.Hosts {
		// Switching IPv6 off took the host's own address (and with it the
		// route back to the client) too: the operator puts it back.
		l.Sysctl(h.NS, "net.ipv6.conf.eth0.disable_ipv6=0")
		l.IP(h.NS, "addr", "add", h.IP6.String()+"/64", "dev", "eth0", "nodad")
	}
	p6 := l.Probe(vip6, 300*time.Millisecond)
	defer p6.Stop()
	if !nslab.Poll(90*time.Second, func() bool { return len(l.Holders(vip6)) == 1 && p6.Last().OK }) {
		t.Fatalf("%s not back on one host after IPv6 came back: held by %v, %+v", vip6, nslab.Names(l.Holders(vip6)), p6.Last())
	}
	t.Logf("%s back on %s %s after IPv6 came back", vip6, l.Holders(vip6)[0].Name, time.Since(start).Round(time.Second))
}
