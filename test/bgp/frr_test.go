package bgp

import (
	"cmp"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgelb/edgelb/test/nslab"
	"github.com/edgelb/edgelb/test/prereq"
)

// The router's side.
const (
	routerASN = 64500
	clusterAS = 64512
	frrDir    = "/usr/lib/frr"
)

var routerIP = netip.MustParseAddr("10.99.0.254")

// router is FRR in its own namespace: zebra installs what bgpd selects
// in the namespace's kernel routing table.
type router struct {
	t   testing.TB
	l   *nslab.Lab
	ns  string
	dir string
}

// neighbor is one host as the router knows it.
type neighbor struct {
	addr netip.Addr
	// remoteAS is the AS number the router expects from the host;
	// 0 is the cluster's.
	remoteAS int
	password string
	bfd      bool
	// bfdProfile names a profile of bfdd.conf (bfdProfiles) for the
	// session; "" is FRR's default (300 ms x 3).
	bfdProfile string
}

// bfdProfiles is the router's bfdd.conf: "fast" detects a lost peer
// after 3 missed packets 100 ms apart.
const bfdProfiles = `bfd
 profile fast
  detect-multiplier 3
  receive-interval 100
  transmit-interval 100
 exit
exit
`

// bgpdConf is the router's bgpd.conf: AS asn, every neighbor in the
// cluster's AS (eBGP unless asn is clusterAS), ECMP over up to 16 paths.
func bgpdConf(asn int, neighbors []neighbor) string {
	var b strings.Builder
	fmt.Fprintf(&b, "router bgp %d\n bgp router-id %s\n no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n timers bgp 1 3\n", asn, routerIP)
	for _, n := range neighbors {
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n neighbor %s timers connect 1\n", n.addr, cmp.Or(n.remoteAS, clusterAS), n.addr)
		if n.password != "" {
			fmt.Fprintf(&b, " neighbor %s password %s\n", n.addr, n.password)
		}
		if n.bfd {
			fmt.Fprintf(&b, " neighbor %s bfd\n", n.addr)
		}
		if n.bfdProfile != "" {
			fmt.Fprintf(&b, " neighbor %s bfd profile %s\n", n.addr, n.bfdProfile)
		}
	}
	for _, af := range []string{"ipv4", "ipv6"} {
		fmt.Fprintf(&b, " address-family %s unicast\n  maximum-paths 16\n  maximum-paths ibgp 16\n", af)
		for _, n := range neighbors {
			if n.addr.Is4() == (af == "ipv4") {
				fmt.Fprintf(&b, "  neighbor %s activate\n", n.addr)
			}
		}
		b.WriteString(" exit-address-family\n")
	}
	return b.String()
}

// startRouter adds the router namespace and starts zebra, bgpd and
// bfdd, their files in a directory of their own (-f, -i, -z,
// --vty_socket, -N).
func startRouter(t testing.TB, l *nslab.Lab, asn int, neighbors []neighbor) *router {
	daemons := []string{"zebra", "bgpd", "bfdd"}
	for _, d := range daemons {
		if _, err := os.Stat(filepath.Join(frrDir, d)); err != nil {
			prereq.Missing(t, "FRR's %s is not installed (Debian package frr, hack/test-deps.sh)", d)
		}
	}
	if _, err := exec.LookPath("vtysh"); err != nil {
		prereq.Missing(t, "FRR's vtysh is not installed (Debian package frr, hack/test-deps.sh)")
	}
	r := &router{t: t, l: l, ns: l.AddPeer("r", "02:99:00:00:00:fe", routerIP, netip.MustParseAddr("fd99::fe"))}
	// Locally generated flows are spread over the next hops by ports
	// too, so that probes from the router itself reach every host.
	l.Sysctl(r.ns, "net.ipv4.fib_multipath_hash_policy=1")
	dir, err := os.MkdirTemp("", "elbt-frr-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// The daemons drop to the frr user: their directory must be theirs too.
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	r.dir = dir
	nslab.WriteFile(t, filepath.Join(dir, "bgpd.conf"), bgpdConf(asn, neighbors))
	nslab.WriteFile(t, filepath.Join(dir, "zebra.conf"), "hostname "+r.ns+"\n")
	nslab.WriteFile(t, filepath.Join(dir, "bfdd.conf"), bfdProfiles)
	for _, d := range daemons {
		if err := os.Chmod(filepath.Join(dir, d+".conf"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range daemons {
		log, err := os.Create(filepath.Join(dir, d+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("ip", "netns", "exec", r.ns, filepath.Join(frrDir, d), "-N", r.ns,
			"-f", filepath.Join(dir, d+".conf"), "-i", filepath.Join(dir, d+".pid"),
			"-z", filepath.Join(dir, "zserv.api"), "--vty_socket", dir, "--log", "stdout")
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
			log.Close()
			if t.Failed() {
				out, _ := os.ReadFile(log.Name())
				t.Logf("%s log:\n%s", d, out)
			}
		})
		// bgpd connects to zebra's socket at start.
		if d == "zebra" && !nslab.Poll(10*time.Second, func() bool {
			_, err := os.Stat(filepath.Join(dir, "zserv.api"))
			return err == nil
		}) {
			t.Fatal("zebra did not start")
		}
	}
	if !nslab.Poll(10*time.Second, func() bool { _, err := r.vtysh("show bgp summary"); return err == nil }) {
		t.Fatal("bgpd did not start")
	}
	return r
}

// vtysh runs an FRR command on the router.
func (r *router) vtysh(cmd string) (string, error) {
	out, err := exec.Command("ip", "netns", "exec", r.ns, "vtysh", "--vty_socket", r.dir, "-c", cmd).CombinedOutput()
	return string(out), err
}

var via = regexp.MustCompile(`via (\S+)`)

// nextHops returns the next hops of the router's kernel route to vip,
// sorted; none without a route.
func (r *router) nextHops(vip netip.Addr) []netip.Addr {
	family := "-4"
	if vip.Is6() {
		family = "-6"
	}
	out, err := exec.Command("ip", family, "-n", r.ns, "route", "show", netip.PrefixFrom(vip, vip.BitLen()).String()).CombinedOutput()
	if err != nil {
		r.t.Fatalf("ip route: %v: %s", err, out)
	}
	var hops []netip.Addr
	for _, m := range via.FindAllStringSubmatch(string(out), -1) {
		if a, err := netip.ParseAddr(m[1]); err == nil {
			hops = append(hops, a)
		}
	}
	slices.SortFunc(hops, netip.Addr.Compare)
	return hops
}

// waitNextHops waits until the router's route to vip has exactly the
// addresses of hosts (of vip's family) as next hops and returns how long
// that took.
func (r *router) waitNextHops(vip netip.Addr, hosts ...*nslab.Host) time.Duration {
	r.t.Helper()
	var want []netip.Addr
	for _, h := range hosts {
		if vip.Is4() {
			want = append(want, h.IP4)
		} else {
			want = append(want, h.IP6)
		}
	}
	slices.SortFunc(want, netip.Addr.Compare)
	start := time.Now()
	if !nslab.Poll(nslab.Converge+10*time.Second, func() bool { return slices.Equal(r.nextHops(vip), want) }) {
		route, _ := r.vtysh("show ip route " + vip.String())
		if vip.Is6() {
			route, _ = r.vtysh("show ipv6 route " + vip.String())
		}
		summary, _ := r.vtysh("show bgp summary")
		r.t.Fatalf("router's next hops for %s: %v, want %v\n%s\n%s", vip, r.nextHops(vip), want, route, summary)
	}
	return time.Since(start)
}
