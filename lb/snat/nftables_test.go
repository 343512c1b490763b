package snat_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/edgelb/edgelb/lb/snat"
	"github.com/edgelb/edgelb/test/nstest"
)

func TestSyncInNetNS(t *testing.T) {
	ns, fd := nstest.New(t, "snat")
	// A foreign table that must survive.
	nstest.Run(t, "ip", "netns", "exec", ns, "nft", "add table ip other")

	n := snat.NewInNetNS(fd)
	vips := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::1")}
	for range 2 { // idempotent
		if err := n.Sync(vips); err != nil {
			t.Fatal(err)
		}
	}
	out := nstest.Run(t, "ip", "netns", "exec", ns, "nft", "list ruleset")
	for _, want := range []string{"table ip edgelb", "table ip6 edgelb", "192.0.2.1", "192.0.2.2", "2001:db8::1",
		"ip daddr @vips ct mark set ct mark | 0x01000000", "ip6 daddr @vips ct mark set ct mark | 0x01000000",
		"ct mark & 0x01000000 != 0x00000000 masquerade", "table ip other",
		"type nat hook postrouting priority srcnat"} {
		if !strings.Contains(out, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "masquerade") != 2 {
		t.Errorf("want exactly two masquerade rules:\n%s", out)
	}
	if err := n.Sync(vips[1:2]); err != nil {
		t.Fatal(err)
	}
	out = nstest.Run(t, "ip", "netns", "exec", ns, "nft", "list ruleset")
	if strings.Contains(out, "192.0.2.1 ") || strings.Contains(out, "192.0.2.1,") || strings.Contains(out, "ip6 edgelb") || !strings.Contains(out, "192.0.2.2") || !strings.Contains(out, "table ip other") {
		t.Errorf("after shrinking to one VIP:\n%s", out)
	}
}

// Connections to the VIPs FromVIP names are tagged with a second bit and
// leave with their VIP as source; the others are masqueraded; nft lists
// the result (nft 1.0.6 aborts on some conntrack loads it cannot type).
func TestFromVIP(t *testing.T) {
	ns, fd := nstest.New(t, "snatvip")
	n := snat.NewInNetNS(fd).FromVIP(func(a netip.Addr) bool { return a != netip.MustParseAddr("192.0.2.2") })
	vips := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::1")}
	if err := n.Sync(vips); err != nil {
		t.Fatal(err)
	}
	out := nstest.Run(t, "ip", "netns", "exec", ns, "nft", "list ruleset")
	for _, want := range []string{
		"ip daddr @own ct mark set ct mark | 0x02000000", "ip6 daddr @own ct mark set ct mark | 0x02000000",
		"ct mark & 0x02000000 != 0x00000000 snat to ct original ip daddr",
		"ct mark & 0x02000000 != 0x00000000 snat to ct original ip6 daddr",
		"ct mark & 0x01000000 != 0x00000000 masquerade",
		"ip daddr @vips return", "ip6 daddr @vips return",
		"type filter hook input priority 150",
		"ip daddr @own tcp flags != syn / fin,syn,rst,ack drop",
		"ip6 daddr @own tcp flags != syn / fin,syn,rst,ack drop"} {
		if !strings.Contains(out, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, out)
		}
	}
	own := nstest.Run(t, "ip", "netns", "exec", ns, "nft", "list set ip edgelb own")
	if !strings.Contains(own, "192.0.2.1") || strings.Contains(own, "192.0.2.2") {
		t.Errorf("set own:\n%s", own)
	}
	// The VIP source comes first: its rule ends the chain for them.
	if strings.Index(out, "snat to ct original ip daddr") > strings.Index(out, "masquerade") {
		t.Errorf("masquerade comes before the VIP source:\n%s", out)
	}
}
