// Command labvm is the part of `make lab` that runs inside the test VM: it
// builds the network of test/labnet (a bridge, three appliance namespaces
// lb1..lb3, three cluster nodes node1..node3 with their servers and a
// router running FRR), runs `edgelb run` in each appliance namespace with
// the config test/lab wrote for it (/job/lbN.yaml), and forwards the ports
// QEMU brings in from the host to the dashboard and the VIPs. The VM's own
// namespace is the client side: it reaches the bgp VIPs through the
// router, which spreads flows over the appliances that advertise them
// (ECMP). A small HTTP control endpoint (control.go) shows the router's
// route and kills a host. It runs until the VM is stopped.
//
//	labvm up -bgp VIP:PORT -control LISTEN LISTEN=TARGET...   (in the VM's own namespace)
//	labvm serve NAME                                          (in a node's namespace: labnet.Serve)
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/edgelb/edgelb/test/labnet"
)

const edgelbBin = "/job/edgelb"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: labvm up -bgp VIP:PORT -control LISTEN LISTEN=TARGET... | labvm serve NAME")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "up":
		err = up(ctx, os.Args[2:])
	case "serve":
		err = labnet.Serve(ctx, os.Args[2], os.Stdout)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "labvm:", err)
		os.Exit(1)
	}
}

// out serialises the lines of the programs labvm runs onto the console.
var out = struct {
	sync.Mutex
	io.Writer
}{Writer: os.Stdout}

func say(format string, args ...any) {
	out.Lock()
	defer out.Unlock()
	fmt.Fprintf(out.Writer, "labvm: "+format+"\n", args...)
}

// prefix copies r's lines to the console, each prefixed by name, and all
// of them to the file log. memberlist's own lines stay out of the console:
// an emulated serial port costs CPU the emulated hosts need.
func prefix(name string, r io.Reader, log io.Writer) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fmt.Fprintln(log, sc.Text())
		if strings.Contains(sc.Text(), "lib=memberlist") {
			continue
		}
		out.Lock()
		fmt.Fprintf(out.Writer, "%s| %s\n", name, sc.Text())
		out.Unlock()
	}
}

// bgpNet is what the bgp VIPs need besides the router: the VIPs'
// prefix (reached through the router), and, on the nodes, the VIP on lo
// without answering ARP for it, as a node behind a dr Service must.
func bgpNet(vip netip.Addr) string {
	return labnet.RouterNet(bgpPrefix) + fmt.Sprintf(`
for i in 1 2 3; do
	ip netns exec node$i sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
	ip -n node$i addr add %s/32 dev lo
done
`, vip)
}

// bgpPrefix holds the bgp pool of test/lab, outside the bridge's LAN.
const bgpPrefix = "10.0.5.0/24"

func up(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	bgp := fs.String("bgp", "", "the bgp demo Service's VIP:PORT")
	control := fs.String("control", "", "where the control endpoint listens")
	if err := fs.Parse(args); err != nil {
		return err
	}
	forwards := fs.Args()
	bgpSvc, err := netip.ParseAddrPort(*bgp)
	if err != nil {
		return fmt.Errorf("-bgp: %w", err)
	}
	if b, err := exec.Command("bash", "-ec", labnet.Topology+labnet.Uplink+bgpNet(bgpSvc.Addr())).CombinedOutput(); err != nil {
		return fmt.Errorf("building the network: %v\n%s", err, b)
	}
	frrLog, err := os.Create("/tmp/frr.log")
	if err != nil {
		return err
	}
	defer frrLog.Close()
	frr, err := labnet.StartFRR(ctx, labnet.RouterNS, "/run/frr-router",
		labnet.RouterConf([]string{"10.0.0.11", "10.0.0.12", "10.0.0.13"}, 3), frrLog)
	if err != nil {
		return err
	}
	defer frr.Stop()
	say("router (FRR: zebra, bgpd, bfdd) at %s, AS %d, peers lb1..lb3 (AS %d), maximum-paths 3; its log in the VM's /tmp/frr.log",
		labnet.RouterAddr, labnet.RouterASN, labnet.ClusterASN)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var procs []*exec.Cmd
	hosts := map[string]*exec.Cmd{}
	defer func() {
		for _, p := range procs {
			p.Process.Signal(syscall.SIGTERM)
		}
		for _, p := range procs {
			p.Wait()
		}
	}()
	for i := 1; i <= 3; i++ {
		node := fmt.Sprintf("node%d", i)
		cmd := exec.Command("ip", "netns", "exec", node, self, "serve", node)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		procs = append(procs, cmd)
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "serving") {
			return fmt.Errorf("the servers of %s did not start: %q %v", node, line, err)
		}
	}
	say("cluster nodes node1..node3 (10.0.0.21-23) serve NodePorts 30080, 30081 and 30053/udp")
	for i := 1; i <= 3; i++ {
		lb, cfg := fmt.Sprintf("lb%d", i), fmt.Sprintf("/job/lb%d.yaml", i)
		if b, err := exec.Command(edgelbBin, "check", "--config", cfg).CombinedOutput(); err != nil {
			return fmt.Errorf("edgelb check --config %s: %v\n%s", cfg, err, b)
		}
		cmd := exec.Command("ip", "netns", "exec", lb, edgelbBin, "run", "--config", cfg)
		// Each host keeps its consensus log in a state directory of its
		// own, as systemd's StateDirectory= gives the packaged unit.
		state := "/tmp/" + lb + "-state"
		if err := os.MkdirAll(state, 0o700); err != nil {
			return err
		}
		cmd.Env = append(os.Environ(), "STATE_DIRECTORY="+state)
		pr, pw := io.Pipe()
		cmd.Stdout, cmd.Stderr = pw, pw
		if err := cmd.Start(); err != nil {
			return err
		}
		procs = append(procs, cmd)
		hosts[lb] = cmd
		logf, err := os.Create("/tmp/" + lb + ".log")
		if err != nil {
			return err
		}
		defer logf.Close()
		go prefix(lb, pr, logf)
	}
	say("edgelb runs in lb1..lb3 (10.0.0.11-13), full logs in the VM's /tmp/lbN.log")
	errc := make(chan error, len(forwards)+1)
	c := &controller{frr: frr, svc: bgpSvc, hosts: hosts}
	go func() { errc <- c.serve(ctx, *control) }()
	say("control endpoint on %s", *control)
	for _, f := range forwards {
		listen, target, ok := strings.Cut(f, "=")
		if !ok {
			return fmt.Errorf("forward %q: want LISTEN=TARGET", f)
		}
		go func() { errc <- labnet.Forward(ctx, listen, target) }()
		say("forwarding %s to %s", listen, target)
	}
	say("ready")
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	}
}
