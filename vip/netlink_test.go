package vip

import (
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

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
			if err := n.AddVIP(v, 0); err != nil {
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
		if err := n.AddVIP(netip.MustParseAddr("10.99.1.200"), 0); err == nil {
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

func TestNetlinkLifetimeRenewAndKeep(t *testing.T) {
	inNetns(t, func() {
		n := &Netlink{Interface: "elbt0"}
		v4, v6 := netip.MustParseAddr("10.99.1.101"), netip.MustParseAddr("fd99:1::101")
		lft := func(v netip.Addr) kernelAddr {
			t.Helper()
			l, _ := netlink.LinkByName("elbt0")
			addrs, err := listAddrs(l.Attrs().Index)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range addrs {
				if a.prefix.Addr() == v {
					return a
				}
			}
			t.Fatalf("%s is not on the interface", v)
			return kernelAddr{}
		}
		for _, v := range []netip.Addr{v4, v6} {
			if err := n.AddVIP(v, 30*time.Second); err != nil {
				t.Fatal(err)
			}
		}
		// IPv4: preferred = valid; IPv6: deprecated (preferred 0).
		if a := lft(v4); a.valid < 29 || a.valid > 30 || a.preferred != a.valid || a.proto != AddrProto {
			t.Fatalf("%s: valid %d preferred %d proto %#x, want 30 s both, proto %#x", v4, a.valid, a.preferred, a.proto, AddrProto)
		}
		if a := lft(v6); a.valid < 29 || a.valid > 30 || a.preferred != 0 || a.proto != AddrProto {
			t.Fatalf("%s: valid %d preferred %d proto %#x, want 30 s and deprecated", v6, a.valid, a.preferred, a.proto)
		}
		// Renewal replaces the lifetime and keeps the mark.
		for _, v := range []netip.Addr{v4, v6} {
			if err := n.RenewVIP(v, 90*time.Second, false); err != nil {
				t.Fatal(err)
			}
			if a := lft(v); a.valid < 89 || a.valid > 90 || a.proto != AddrProto {
				t.Fatalf("%s after renewal: valid %d proto %#x", v, a.valid, a.proto)
			}
		}
		if a := lft(v6); a.preferred != 0 {
			t.Fatalf("%s preferred %d after renewal, want still deprecated", v6, a.preferred)
		}
		// Kept for a restart: marked apart, listed by both VIPs and Kept.
		if err := n.RenewVIP(v4, 20*time.Second, true); err != nil {
			t.Fatal(err)
		}
		if a := lft(v4); a.valid < 19 || a.valid > 20 || a.proto != AddrProtoKept {
			t.Fatalf("%s kept: valid %d proto %#x", v4, a.valid, a.proto)
		}
		if err := n.RenewVIP(v6, 20*time.Second, true); err != nil {
			t.Fatal(err)
		}
		if a := lft(v6); a.proto != AddrProtoKept || a.preferred != 0 {
			t.Fatalf("%s kept: proto %#x preferred %d", v6, a.proto, a.preferred)
		}
		kept, err := n.Kept()
		if err != nil || !slices.Equal(kept, []netip.Addr{v4, v6}) {
			t.Fatalf("Kept() = %v, %v", kept, err)
		}
		if all, _ := n.VIPs(); !slices.Equal(all, []netip.Addr{v4, v6}) {
			t.Fatalf("VIPs() = %v: kept VIPs are edgelb's too", all)
		}
		if link, _ := n.Link(); slices.ContainsFunc(link.Networks, func(p netip.Prefix) bool { return p.Addr() == v4 }) {
			t.Fatalf("a kept VIP is listed as the interface's own network: %v", link.Networks)
		}
		// A foreign address is never renewed.
		l, _ := netlink.LinkByName("elbt0")
		foreign, _ := netlink.ParseAddr("10.99.1.201/32")
		netlink.AddrAdd(l, foreign)
		if err := n.RenewVIP(netip.MustParseAddr("10.99.1.201"), time.Minute, false); err == nil {
			t.Fatal("renewed an address edgelb did not add")
		}
		// The kernel drops an address whose lifetime runs out, and says
		// so (RTM_DELADDR): the test waits for its address updates.
		updates, stop := make(chan netlink.AddrUpdate, 16), make(chan struct{})
		if err := netlink.AddrSubscribe(updates, stop); err != nil {
			t.Fatal(err)
		}
		defer func() {
			close(stop)
			for range updates { // closed once the subscription ends
			}
		}()
		if err := n.RenewVIP(v4, time.Second, false); err != nil {
			t.Fatal(err)
		}
		timeout := time.After(5 * time.Second)
		for {
			vips, _ := n.VIPs()
			if !slices.Contains(vips, v4) {
				break
			}
			select {
			case <-updates:
			case <-timeout:
				t.Fatalf("%s still there 5 s after its 1 s lifetime", v4)
			}
		}
		out, _ := exec.Command("ip", "-d", "addr", "show", "dev", "elbt0").CombinedOutput()
		t.Logf("ip -d addr:\n%s", out)
	})
}

// The kept-VIPs file stands in for the address mark on kernels that do
// not change IFA_PROTO on replace (Linux 6.1): it lists what a restarting
// process kept, and a stale one is ignored.
func TestKeptFile(t *testing.T) {
	n := &Netlink{KeptFile: filepath.Join(t.TempDir(), "kept-vips")}
	a, b := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")
	if err := n.recordKept(a); err != nil {
		t.Fatal(err)
	}
	if err := n.recordKept(b); err != nil {
		t.Fatal(err)
	}
	if got := n.readKeptFile(); len(got) != 2 || got[0] != a || got[1] != b {
		t.Fatalf("kept file lists %v, want [%v %v]", got, a, b)
	}
	old := time.Now().Add(-keptMaxAge - time.Minute)
	if err := os.Chtimes(n.KeptFile, old, old); err != nil {
		t.Fatal(err)
	}
	if got := n.readKeptFile(); len(got) != 0 {
		t.Errorf("a stale kept file still lists %v", got)
	}
}

// Before Linux 6.1 the kernel ignores IFA_PROTO: the VIPs edgelb adds
// carry no mark. With an AddedFile they are listed there instead, so that
// they can still be added, found (by a later process too) and removed;
// without one AddVIP refuses, as edgelb could not tell them from others.
func TestNetlinkWithoutAddrProto(t *testing.T) {
	inNetns(t, func() {
		file := filepath.Join(t.TempDir(), "added-vips")
		n := &Netlink{Interface: "elbt0", AddedFile: file, noProto: true}
		v4, v6 := netip.MustParseAddr("10.99.1.110"), netip.MustParseAddr("fd99:1::110")
		for _, v := range []netip.Addr{v4, v6} {
			if err := n.AddVIP(v, time.Minute); err != nil {
				t.Fatalf("adding %s without the mark: %v", v, err)
			}
		}
		l, _ := netlink.LinkByName("elbt0")
		foreign, _ := netlink.ParseAddr("10.99.1.210/32")
		if err := netlink.AddrAdd(l, foreign); err != nil {
			t.Fatal(err)
		}
		// A later process finds them through the file.
		later := &Netlink{Interface: "elbt0", AddedFile: file, noProto: true}
		if got, err := later.VIPs(); err != nil || !slices.Equal(got, []netip.Addr{v4, v6}) {
			t.Fatalf("VIPs() = %v, %v; want [%s %s]", got, err, v4, v6)
		}
		if link, _ := later.Link(); slices.ContainsFunc(link.Networks, func(p netip.Prefix) bool { return p.Addr() == v4 }) {
			t.Fatalf("an unmarked VIP is listed as the interface's own network: %v", link.Networks)
		}
		if err := later.RenewVIP(v4, 2*time.Minute, true); err != nil {
			t.Fatal(err)
		}
		if err := later.RenewVIP(netip.MustParseAddr("10.99.1.210"), time.Minute, false); err == nil {
			t.Fatal("renewed an address edgelb did not add")
		}
		if err := later.DelVIP(v6); err != nil {
			t.Fatal(err)
		}
		if got, _ := later.VIPs(); !slices.Equal(got, []netip.Addr{v4}) {
			t.Fatalf("VIPs() = %v after removing %s", got, v6)
		}
		// An address that went away (its lifetime ran out) is forgotten:
		// added again by hand, it is not edgelb's.
		host, _ := netlink.ParseAddr(v4.String() + "/32")
		if err := netlink.AddrDel(l, host); err != nil {
			t.Fatal(err)
		}
		later.VIPs()
		if err := netlink.AddrAdd(l, host); err != nil {
			t.Fatal(err)
		}
		if got, _ := later.VIPs(); len(got) != 0 {
			t.Fatalf("VIPs() = %v: an address added by hand is taken for edgelb's", got)
		}
		// Without a file there is no way to tell: refused, nothing left.
		bare := &Netlink{Interface: "elbt0", noProto: true}
		v := netip.MustParseAddr("10.99.1.111")
		if err := bare.AddVIP(v, 0); !errors.Is(err, ErrNoAddrProto) {
			t.Fatalf("AddVIP without the mark and without a file: %v, want ErrNoAddrProto", err)
		}
		if addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4); slices.ContainsFunc(addrs, func(a netlink.Addr) bool { return a.IP.Equal(v.AsSlice()) }) {
			t.Fatalf("%s left on the interface", v)
		}
	})
}
