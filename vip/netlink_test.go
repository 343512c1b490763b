package vip

import (
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/edgelb/edgelb/test/prereq"
)

// inNetns runs f on a thread moved into a fresh network namespace with a
// dummy interface "elbt0" (10.99.1.1/24). It needs root; without it the
// test skips, or fails when CI=true.
func inNetns(t *testing.T, f func()) {
	prereq.Require(t, os.Geteuid() == 0, "needs root for a network namespace")
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The thread is left locked so that it exits with the goroutine
		// and never runs anything else in the test namespace.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			t.Error(err)
			return
		}
		defer orig.Close()
		ns, err := netns.New()
		if err != nil {
			t.Error(err)
			return
		}
		defer ns.Close()
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "elbt0"}, PeerName: "elbt1"}); err != nil {
			t.Error(err)
			return
		}
		for _, name := range []string{"elbt1", "elbt0"} {
			l, _ := netlink.LinkByName(name)
			netlink.LinkSetUp(l)
		}
		l, _ := netlink.LinkByName("elbt0")
		a, _ := netlink.ParseAddr("10.99.1.1/24")
		netlink.AddrAdd(l, a)
		f()
	}()
	<-done
}

func TestNetlinkMarksAndRemovesOnlyItsVIPs(t *testing.T) {
	inNetns(t, func() {
		n := &Netlink{Interface: "elbt0"}
		v4, v6 := netip.MustParseAddr("10.99.1.100"), netip.MustParseAddr("fd99:1::100")
		for _, v := range []netip.Addr{v4, v6} {
			if err := n.AddVIP(v); err != nil {
				t.Fatal(err)
			}
		}
		// Someone else's /32 on the same interface is not ours.
		l, _ := netlink.LinkByName("elbt0")
		foreign, _ := netlink.ParseAddr("10.99.1.200/32")
		if err := netlink.AddrAdd(l, foreign); err != nil {
			t.Fatal(err)
		}
		got, err := n.VIPs()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, []netip.Addr{v4, v6}) {
			t.Fatalf("VIPs() = %v, want [%s %s]", got, v4, v6)
		}
		if err := n.AddVIP(netip.MustParseAddr("10.99.1.200")); err == nil {
			t.Fatal("adding over a foreign address succeeded")
		}
		link, err := n.Link()
		if err != nil {
			t.Fatal(err)
		}
		if !link.Up || !slices.Equal(link.Networks, []netip.Prefix{netip.MustParsePrefix("10.99.1.0/24"), netip.MustParsePrefix("10.99.1.200/32")}) {
			t.Fatalf("link %+v: want up, networks 10.99.1.0/24 and the foreign /32, not the VIPs", link)
		}
		// IPv6 VIPs are usable at once (no DAD): not tentative.
		addrs, _ := netlink.AddrList(l, netlink.FAMILY_V6)
		for _, a := range addrs {
			if a.IP.Equal(v6.AsSlice()) && a.Flags&0x40 != 0 { // IFA_F_TENTATIVE
				t.Errorf("%s is tentative", v6)
			}
		}
		out, _ := exec.Command("ip", "-d", "addr", "show", "dev", "elbt0").CombinedOutput()
		t.Logf("ip -d addr:\n%s", out)
		for _, v := range []netip.Addr{v4, v6} {
			if err := n.DelVIP(v); err != nil {
				t.Fatal(err)
			}
		}
		if got, _ := n.VIPs(); len(got) != 0 {
			t.Fatalf("VIPs left: %v", got)
		}
		if addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4); !slices.ContainsFunc(addrs, func(a netlink.Addr) bool { return strings.HasPrefix(a.IPNet.String(), "10.99.1.200/") }) {
			t.Fatal("the foreign address is gone")
		}
	})
}
