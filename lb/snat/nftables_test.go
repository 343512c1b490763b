package snat_test

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/edgelb/edgelb/lb/snat"
	"github.com/edgelb/edgelb/test/prereq"
)

// requireRoot skips (or, with CI=true, fails) when the test cannot create
// network namespaces or use nftables.
func requireNetNS(t *testing.T) {
	t.Helper()
	missing := ""
	if os.Geteuid() != 0 {
		missing = "root"
	} else if _, err := exec.LookPath("nft"); err != nil {
		missing = "the nft command (package nftables)"
	} else if _, err := exec.LookPath("ip"); err != nil {
		missing = "the ip command (package iproute2)"
	}
	if missing != "" {
		prereq.Missing(t, "this test needs %s", missing)
	}
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestSyncInNetNS(t *testing.T) {
	requireNetNS(t)
	ns := fmt.Sprintf("edgelb-snat-%d", os.Getpid())
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	f, err := os.Open("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// A foreign table that must survive.
	run(t, "ip", "netns", "exec", ns, "nft", "add table ip other")

	n := snat.NewInNetNS(int(f.Fd()))
	vips := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::1")}
	for range 2 { // idempotent
		if err := n.Sync(vips); err != nil {
			t.Fatal(err)
		}
	}
	out := run(t, "ip", "netns", "exec", ns, "nft", "list ruleset")
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
	out = run(t, "ip", "netns", "exec", ns, "nft", "list ruleset")
	if strings.Contains(out, "192.0.2.1 ") || strings.Contains(out, "192.0.2.1,") || strings.Contains(out, "ip6 edgelb") || !strings.Contains(out, "192.0.2.2") || !strings.Contains(out, "table ip other") {
		t.Errorf("after shrinking to one VIP:\n%s", out)
	}
}
