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
