package datapath

import (
	"context"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/edgelb/edgelb/test/prereq"
)

// inNetns runs f on a thread moved into a fresh network namespace with a
// veth pair: elbt0 (10.99.1.1/24, fd00:1::1/64, default routes through
// the peer) and elbt1, in a namespace of its own, the gateway (10.99.1.254/24, fd00:1::fe/64). It
// needs root; without it the test skips, or fails when CI=true.
func inNetns(t *testing.T, f func()) {
	prereq.Require(t, os.Geteuid() == 0, "needs root for a network namespace")
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // left locked: the thread exits with the goroutine
		ns, err := netns.New()
		if err != nil {
			t.Error(err)
			return
		}
		defer ns.Close()
		// The gateway's side lives in a namespace of its own: the kernel
		// does not answer ARP from one of its own addresses.
		gwNS, err := netns.New()
		if err != nil {
			t.Error(err)
			return
		}
		defer gwNS.Close()
		for _, n := range []netns.NsHandle{gwNS, ns} {
			netns.Set(n)
			for _, k := range []string{"all", "default"} {
				os.WriteFile("/proc/sys/net/ipv6/conf/"+k+"/accept_dad", []byte("0"), 0)
			}
		}
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "elbt0"}, PeerName: "elbt1"}); err != nil {
			t.Error(err)
			return
		}
		peer, _ := netlink.LinkByName("elbt1")
		if err := netlink.LinkSetNsFd(peer, int(gwNS)); err != nil {
			t.Error(err)
			return
		}
		gwh, err := netlink.NewHandleAt(gwNS)
		if err != nil {
			t.Error(err)
			return
		}
		defer gwh.Close()
		self, err := netlink.NewHandle()
		if err != nil {
			t.Error(err)
			return
		}
		defer self.Close()
		for _, side := range []struct {
			h     *netlink.Handle
			name  string
			addrs []string
		}{{gwh, "elbt1", []string{"10.99.1.254/24", "fd00:1::fe/64"}}, {self, "elbt0", []string{"10.99.1.1/24", "fd00:1::1/64"}}} {
			l, err := side.h.LinkByName(side.name)
			if err != nil {
				t.Error(err)
				return
			}
			for _, s := range side.addrs {
				a, _ := netlink.ParseAddr(s)
				a.Flags = 0x02 // IFA_F_NODAD
				if err := side.h.AddrAdd(l, a); err != nil {
					t.Error(err)
					return
				}
			}
			side.h.LinkSetUp(l)
		}
		l, _ := netlink.LinkByName("elbt0")
		for _, gw := range []string{"10.99.1.254", "fd00:1::fe"} {
			a := netip.MustParseAddr(gw)
			r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: a.AsSlice(), Family: netlink.FAMILY_V4}
			if a.Is6() {
				r.Family = netlink.FAMILY_V6
			}
			if err := netlink.RouteAdd(r); err != nil {
				t.Error(gw, err)
				return
			}
		}
		// The link-local address the NDP socket binds to.
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			as, _ := netlink.AddrList(l, netlink.FAMILY_V6)
			if slices.ContainsFunc(as, func(a netlink.Addr) bool { return a.IP.IsLinkLocalUnicast() && a.Flags&0x40 == 0 }) { // not IFA_F_TENTATIVE
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		f()
	}()
	<-done
}

// The real kernel finds the gateways of the interface's routes and gets
// answers from them with ARP and NDP; an address nobody has is no answer
// within the deadline.
func TestKernel(t *testing.T) {
	inNetns(t, func() {
		k := Kernel{Interface: "elbt0"}
		got, err := k.Targets()
		want := []netip.Addr{netip.MustParseAddr("10.99.1.254"), netip.MustParseAddr("fd00:1::fe")}
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("targets %v, %v: want %v", got, err, want)
		}
		conf := Kernel{Interface: "elbt0", Configured: []netip.Addr{netip.MustParseAddr("10.99.1.9")}}
		if got, _ := conf.Targets(); !slices.Equal(got, conf.Configured) {
			t.Errorf("configured targets %v", got)
		}
		for _, c := range []struct {
			target string
			answer bool
		}{{"10.99.1.254", true}, {"fd00:1::fe", true}, {"10.99.1.77", false}, {"fd00:1::77", false}} {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			start := time.Now()
			err := k.Probe(ctx, netip.MustParseAddr(c.target))
			cancel()
			if (err == nil) != c.answer {
				t.Errorf("probe %s: %v, want answered %v", c.target, err, c.answer)
			}
			if took := time.Since(start); took > 500*time.Millisecond {
				t.Errorf("probe %s took %s with a 300ms deadline", c.target, took)
			}
		}
	})
}
