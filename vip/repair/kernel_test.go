package repair

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/edgelb/edgelb/test/prereq"
	"github.com/edgelb/edgelb/vip"
)

// TestKernelRepairsWithinLocktime runs one round of the real Kernel's
// repair from a host namespace at its gateway, a Linux namespace whose
// entries for the VIPs point at another (the old owner's) address and
// were updated just now — inside their locktime, where Linux ignores an
// ARP reply — and that ignores gratuitous ARP (arp_accept 0): its entries
// move to the host at once, and it is counted repaired.
func TestKernelRepairsWithinLocktime(t *testing.T) {
	prereq.RootWith(t, "ip (package iproute2)")
	host, client := fmt.Sprintf("elbr-h-%d", os.Getpid()), fmt.Sprintf("elbr-c-%d", os.Getpid())
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{host, client} {
		run("ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	}
	const hostMAC, clientMAC, oldMAC = "02:00:00:00:00:01", "02:00:00:00:00:fe", "02:00:00:00:00:ee"
	v4, v6 := netip.MustParseAddr("10.99.2.100"), netip.MustParseAddr("fd00:2::100")
	gw4, gw6 := netip.MustParseAddr("10.99.2.254"), netip.MustParseAddr("fd00:2::fe")
	run("ip", "-n", host, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", client)
	run("ip", "-n", host, "link", "set", "eth0", "address", hostMAC, "up")
	run("ip", "-n", client, "link", "set", "eth0", "address", clientMAC, "up")
	for _, a := range [][]string{{host, "10.99.2.1/24"}, {host, "fd00:2::1/64"}, {host, v4.String() + "/32"}, {host, v6.String() + "/128"},
		{client, gw4.String() + "/24"}, {client, gw6.String() + "/64"}} {
		run("ip", "-n", a[0], "addr", "add", a[1], "dev", "eth0", "nodad")
	}
	run("ip", "-n", host, "route", "add", "203.0.113.0/24", "via", gw4.String())
	run("ip", "-n", host, "-6", "route", "add", "2001:db8:beef::/48", "via", gw6.String())
	run("ip", "netns", "exec", client, "sysctl", "-qw", "net.ipv4.conf.all.arp_accept=0", "net.ipv4.conf.eth0.arp_accept=0")
	// Let the link-local addresses settle: NDP from the host needs one.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		out, _ := exec.Command("ip", "-n", host, "-6", "addr", "show", "dev", "eth0", "scope", "link", "-tentative").Output()
		if strings.Contains(string(out), "fe80") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	entry := func(v netip.Addr) string {
		out, _ := exec.Command("ip", "-n", client, "neigh", "show", v.String(), "dev", "eth0").Output()
		f := strings.Fields(string(out))
		if i := slices.Index(f, "lladdr"); i >= 0 && i+1 < len(f) {
			return f[i+1]
		}
		return ""
	}
	for _, v := range []netip.Addr{v4, v6} {
		// The old owner's, updated now: inside the locktime.
		run("ip", "-n", client, "neigh", "replace", v.String(), "lladdr", oldMAC, "nud", "stale", "dev", "eth0")
		run("ip", "-n", client, "neigh", "change", v.String(), "lladdr", oldMAC, "nud", "reachable", "dev", "eth0")
	}

	type result struct {
		res []Result
		gws []netip.Addr
		err error
	}
	done := make(chan result)
	go func() {
		runtime.LockOSThread() // left locked: the thread ends with the goroutine
		var out result
		defer func() { done <- out }()
		h, err := netns.GetFromName(host)
		if err != nil {
			out.err = err
			return
		}
		defer h.Close()
		if out.err = netns.Set(h); out.err != nil {
			return
		}
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			out.err = err
			return
		}
		l := vip.Link{Name: "eth0", Index: ifi.Index, HardwareAddr: ifi.HardwareAddr, Up: true,
			Networks: []netip.Prefix{netip.MustParsePrefix("10.99.2.0/24"), netip.MustParsePrefix("fd00:2::/64")}}
		k := Kernel{}
		out.gws, out.err = k.Gateways(l)
		r := New(Options{Sources: k, Dialer: k, Schedule: []time.Duration{0}, Timeout: time.Second})
		for _, v := range []netip.Addr{v4, v6} {
			out.res = append(out.res, r.Repair(context.Background(), l, v))
		}
	}()
	got := <-done
	if got.err != nil {
		t.Fatal(got.err)
	}
	if !slices.Equal(got.gws, []netip.Addr{gw4, gw6}) {
		t.Fatalf("gateways %v, want [%s %s]", got.gws, gw4, gw6)
	}
	for i, v := range []netip.Addr{v4, v6} {
		res := got.res[i]
		if !slices.Contains(res.Repaired, res.Targets[0].Addr) || res.Targets[0].Why != FromGateway {
			t.Errorf("%s: targets %v, repaired %v, not confirmed %v: want the gateway repaired", v, res.Targets, res.Repaired, res.NotConfirmed)
		}
		if e := entry(v); e != hostMAC {
			t.Errorf("client's entry for %s is %s after one round, want the host's %s", v, e, hostMAC)
		}
		t.Logf("%s: repaired %v in %s with %d frames", v, res.Repaired, res.Took, res.Sent)
	}
}

func TestKernelClientsWithoutIPVS(t *testing.T) {
	got, err := Kernel{ConnFile: "/nonexistent/ip_vs_conn"}.Clients(netip.MustParseAddr("192.0.2.10"))
	if err != nil || got != nil {
		t.Fatalf("Clients without IPVS: %v, %v; want none and no error", got, err)
	}
}
