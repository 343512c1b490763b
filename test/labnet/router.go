package labnet

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The router of the lab: FRR in the namespace "router" on the bridge,
// peering over eBGP with the appliances, which advertise their bgp VIPs
// from ClusterASN.
const (
	RouterNS   = "router"
	RouterAddr = "10.0.0.254"
	RouterASN  = 64500
	ClusterASN = 64512
	frrDir     = "/usr/lib/frr"
)

// RouterNet is a bash script, run after Topology and Uplink in the same
// script (it uses Topology's add), that adds
// the router namespace on br0 at RouterAddr, forwarding and spreading
// flows over equal-cost next hops by their L4 ports
// (fib_multipath_hash_policy=1), and routes prefix from the namespace it
// runs in (the lab's client side) through the router, so that those flows
// go through its ECMP.
func RouterNet(prefix string) string {
	return fmt.Sprintf(`
add %[1]s %[2]s
ip netns exec %[1]s sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1
ip route add %[3]s via %[2]s
`, RouterNS, RouterAddr, prefix)
}

// RouterConf is bgpd.conf of a router in AS RouterASN with an eBGP
// session to each of peers (in ClusterASN) and ECMP over up to
// maxPaths of them.
func RouterConf(peers []string, maxPaths int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "router bgp %d\n bgp router-id %s\n no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n", RouterASN, RouterAddr)
	for _, p := range peers {
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n neighbor %s timers connect 1\n", p, ClusterASN, p)
	}
	fmt.Fprintf(&b, " address-family ipv4 unicast\n  maximum-paths %d\n", maxPaths)
	for _, p := range peers {
		fmt.Fprintf(&b, "  neighbor %s activate\n", p)
	}
	b.WriteString(" exit-address-family\n")
	return b.String()
}

// FRR is zebra, bgpd and bfdd running in a namespace, with their files
// (configs, pid files, sockets) in Dir.
type FRR struct {
	NS, Dir string
	procs   []*exec.Cmd
}

// StartFRR starts zebra, bgpd (configured with bgpdConf) and bfdd as
// root in namespace ns, their files in dir and their logs to log, and
// waits until vtysh answers. Stop ends them.
func StartFRR(ctx context.Context, ns, dir, bgpdConf string, log io.Writer) (*FRR, error) {
	f := &FRR{NS: ns, Dir: dir}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	confs := map[string]string{"zebra": "hostname " + ns + "\n", "bgpd": bgpdConf, "bfdd": ""}
	for _, d := range []string{"zebra", "bgpd", "bfdd"} {
		conf := filepath.Join(dir, d+".conf")
		if err := os.WriteFile(conf, []byte(confs[d]), 0o644); err != nil {
			return nil, err
		}
		cmd := exec.Command("ip", "netns", "exec", ns, filepath.Join(frrDir, d), "-u", "root", "-g", "root", "-N", ns,
			"-f", conf, "-i", filepath.Join(dir, d+".pid"), "-z", filepath.Join(dir, "zserv.api"),
			"--vty_socket", dir, "--log", "stdout")
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			f.Stop()
			return nil, fmt.Errorf("starting %s: %w", d, err)
		}
		f.procs = append(f.procs, cmd)
		// bgpd and bfdd connect to zebra's socket at start.
		if d == "zebra" && !poll(ctx, func() bool { _, err := os.Stat(filepath.Join(dir, "zserv.api")); return err == nil }) {
			f.Stop()
			return nil, fmt.Errorf("zebra did not start in %s", ns)
		}
	}
	if !poll(ctx, func() bool { _, err := f.Vtysh("show bgp summary"); return err == nil }) {
		f.Stop()
		return nil, fmt.Errorf("bgpd did not answer vtysh in %s", ns)
	}
	return f, nil
}

// poll checks ok every 100 ms for up to 30 s (the VM is emulated).
func poll(ctx context.Context, ok func() bool) bool {
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end) && ctx.Err() == nil; time.Sleep(100 * time.Millisecond) {
		if ok() {
			return true
		}
	}
	return false
}

// Vtysh runs one FRR command on the router and returns its output.
func (f *FRR) Vtysh(command string) (string, error) {
	out, err := exec.Command("ip", "netns", "exec", f.NS, "vtysh", "--vty_socket", f.Dir, "-c", command).CombinedOutput()
	return string(out), err
}

// Stop ends the daemons.
func (f *FRR) Stop() {
	for _, p := range f.procs {
		p.Process.Kill()
		p.Wait()
	}
}
