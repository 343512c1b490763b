package e2e

import (
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/edgelb/edgelb/test/nslab"
)

// A reload of Debian's nftables.service runs `nft flush ruleset`, which
// also removes edgelb's filter table. On the owner of a restricted VIP,
// with a denied client and an allowed one probing it, the table must be
// back within a second or so (edgelb watches the ruleset), not at the
// next minute's resync: the test reports how long the deny was gone.
func TestForeignFlushRepaired(t *testing.T) {
	l := nslab.New(t, 3)
	allowed := netip.MustParseAddr("10.99.0.3")
	l.Services = fmt.Sprintf(`
  - {name: web4, vip: %s, ports: [{port: 8080}], sourceRanges: ["%s/32"]}
  - {name: web6, vip: "%s", ports: [{port: 8080}]}`, vip4, allowed, vip6)
	peer := l.AddPeer("ok", "02:99:00:00:00:03", allowed, netip.MustParseAddr("fd99::3"))
	for _, h := range l.Hosts {
		h.Start()
	}
	owner := l.SettledOwner(vip4, time.Second)
	l.Owner(vip6, converge)

	hasTable := func() bool {
		out, err := exec.Command("ip", "netns", "exec", owner.NS, "nft", "list", "table", "inet", "edgelb_filter").CombinedOutput()
		return err == nil && strings.Contains(string(out), vip4.String()+" . tcp . 8080 . "+allowed.String()) &&
			strings.Contains(string(out), "@restricted4 drop")
	}
	if !nslab.Poll(converge, hasTable) {
		t.Fatalf("%s has no filter table for %s", owner.Name, vip4)
	}
	good := l.ProbeFrom(peer, vip4, 300*time.Millisecond)
	if !nslab.Poll(3*time.Second, func() bool { return good.Last().OK }) {
		t.Fatalf("the allowed client gets no answer from %s: %+v", vip4, good.Last())
	}
	denied := l.Probe(vip4, 300*time.Millisecond)
	time.Sleep(time.Second)
	for _, r := range denied.Stop() {
		if r.OK {
			t.Fatalf("the denied client got an answer from %s before the flush", r.Host)
		}
	}
	open6 := l.Probe(vip6, 300*time.Millisecond)

	denied = l.Probe(vip4, 300*time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	flushed := time.Now()
	if out, err := exec.Command("ip", "netns", "exec", owner.NS, "nft", "flush", "ruleset").CombinedOutput(); err != nil {
		t.Fatalf("nft flush ruleset: %v: %s", err, out)
	}
	if !nslab.Poll(5*time.Second, hasTable) {
		t.Fatalf("the filter table is not back on %s 5 s after nft flush ruleset", owner.Name)
	}
	back := time.Since(flushed)
	// The deny holds again: a second of probes after the repair, none
	// answered.
	time.Sleep(1300 * time.Millisecond)
	res := denied.Stop()
	var lastOpen time.Time
	answered := 0
	for _, r := range res {
		if r.OK {
			answered++
			lastOpen = r.Start
		}
	}
	for _, r := range res {
		if r.OK && r.Start.After(flushed.Add(back)) {
			t.Errorf("a denied probe started %s after the flush, after the table was back, was answered", r.Start.Sub(flushed))
		}
	}
	gap := time.Duration(0)
	if answered > 0 {
		gap = lastOpen.Sub(flushed)
	}
	t.Logf("FIGURE nft flush ruleset on %s: filter table back after %s (polled with nft list); %d denied probes answered meanwhile, the last started %s after the flush",
		owner.Name, back.Round(time.Millisecond), answered, gap.Round(time.Millisecond))

	if failed, _ := nslab.Outage(good.Stop()); failed > 0 {
		t.Errorf("the allowed client lost %d probes", failed)
	}
	if failed, _ := nslab.Outage(open6.Stop()); failed > 0 {
		t.Errorf("the unrestricted %s lost %d probes", vip6, failed)
	}
	if got := l.Holders(vip4); len(got) != 1 || got[0] != owner {
		t.Errorf("%s moved from %s to %v", vip4, owner.Name, nslab.Names(got))
	}
}

// A Service whose ranges the kernel really refuses: before edgelb starts,
// another program created edgelb's allowed set with room for two
// elements on every host. The kernel then refuses the Service with three
// ranges (ENFILE). It costs that Service only: its VIP is owned and
// closed (even an allowed client gets nothing), every host stays healthy,
// says so in `edgelb status` and the metrics, and the other restricted
// Service and the unrestricted one serve as before.
func TestRefusedRangesCostTheirServiceOnly(t *testing.T) {
	l := nslab.New(t, 3)
	allowed := netip.MustParseAddr("10.99.0.3")
	refused := netip.MustParseAddr("10.99.0.101")
	l.Services = fmt.Sprintf(`
  - {name: web4, vip: %s, ports: [{port: 8080}], sourceRanges: ["%s/32"]}
  - {name: toomany, vip: %s, ports: [{port: 8080}], sourceRanges: ["%s/32", "192.0.2.0/24", "198.51.100.0/24"]}
  - {name: web6, vip: "%s", ports: [{port: 8080}]}`, vip4, allowed, refused, allowed, vip6)
	peer := l.AddPeer("ok", "02:99:00:00:00:03", allowed, netip.MustParseAddr("fd99::3"))
	for _, h := range l.Hosts {
		out, err := exec.Command("ip", "netns", "exec", h.NS, "nft", "add table inet edgelb_filter; "+
			"add set inet edgelb_filter allowed4 { type ipv4_addr . inet_proto . inet_service . ipv4_addr; flags interval; size 2; }").CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v: %s", h.Name, err, out)
		}
		h.Start()
	}
	l.Owner(vip4, converge)
	l.Owner(vip6, converge)
	l.Owner(refused, converge)

	for _, h := range l.Hosts {
		var out string
		if !nslab.Poll(converge, func() bool {
			out, _ = h.Edgelb("status", "--api", "http://127.0.0.1:9080")
			return strings.Contains(out, "PROBLEM _static/toomany 10.99.0.101:8080/tcp: the kernel refused its Service's source ranges")
		}) {
			t.Fatalf("%s's status does not report the refused Service:\n%s", h.Name, out)
		}
		if !strings.Contains(out, ": healthy, ready") || strings.Contains(out, "PROBLEM _static/web4") {
			t.Errorf("%s is not healthy and ready, or reports the good Service:\n%s", h.Name, out)
		}
		metrics, _ := exec.Command("ip", "netns", "exec", h.NS, "curl", "-s", "http://127.0.0.1:9080/metrics").Output()
		if !strings.Contains(string(metrics), `edgelb_source_range_refused{namespace="_static",service="toomany"} 1`) ||
			!strings.Contains(string(metrics), `edgelb_source_range_refused{namespace="_static",service="web4"} 0`) {
			t.Errorf("%s's metrics lack the refused Service:\n%s", h.Name, grep(string(metrics), "source_range"))
		}
	}

	good := l.ProbeFrom(peer, vip4, 300*time.Millisecond)
	closed := l.ProbeFrom(peer, refused, 300*time.Millisecond)
	denied := l.Probe(vip4, 300*time.Millisecond)
	open6 := l.Probe(vip6, 300*time.Millisecond)
	time.Sleep(1500 * time.Millisecond)
	count := func(res []nslab.ProbeResult) (ok, all int) {
		for _, r := range res {
			if r.OK {
				ok++
			}
		}
		return ok, len(res)
	}
	if ok, all := count(good.Stop()); ok != all || all == 0 {
		t.Errorf("the allowed client reached the good restricted Service %d times of %d", ok, all)
	}
	if ok, all := count(open6.Stop()); ok != all || all == 0 {
		t.Errorf("the unrestricted Service answered %d probes of %d", ok, all)
	}
	if ok, all := count(denied.Stop()); ok != 0 || all == 0 {
		t.Errorf("the denied client reached the good restricted Service %d times of %d", ok, all)
	}
	if ok, all := count(closed.Stop()); ok != 0 || all == 0 {
		t.Errorf("the refused Service is not closed: %d of %d probes answered", ok, all)
	}
}

func grep(text, s string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
