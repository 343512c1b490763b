//go:build vm

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgelb/edgelb/test/labnet"
	"github.com/edgelb/edgelb/test/prereq"
)

func TestMain(m *testing.M) {
	if h := os.Getenv("EDGELB_HELPER"); h != "" {
		os.Exit(runHelper(h, strings.Fields(os.Getenv("EDGELB_ARGS"))))
	}
	if os.Getenv("EDGELB_IN_VM") != "1" {
		fmt.Println("these tests change the machine's network; they run inside the VM started by test/vm")
		os.Exit(1)
	}
	if err := os.WriteFile(gossipKey, []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// gossipKey is the three hosts' gossip key: with cluster.insecure they
// would share only ownership, not the configuration or drains.
const gossipKey = "/tmp/e2e-gossip.key"

const edgelbBin = "/usr/local/bin/edgelb"

func sh(t testing.TB, script string) string {
	t.Helper()
	out, err := exec.Command("bash", "-ec", script).CombinedOutput()
	if err != nil {
		t.Fatalf("%s\n%v\n%s", script, err, out)
	}
	return string(out)
}

// topology builds the network of labnet.Topology in the VM's own namespace
// and starts the servers of the three cluster nodes.
func topology(t testing.TB) {
	sh(t, labnet.Topology)
	for i := 1; i <= 3; i++ {
		startServer(t, i)
	}
}

var servers = map[int]*exec.Cmd{}

func startServer(t testing.TB, i int) {
	t.Helper()
	self, _ := os.Executable()
	cmd := exec.Command("ip", "netns", "exec", fmt.Sprintf("node%d", i), self)
	cmd.Env = append(os.Environ(), "EDGELB_HELPER=serve", fmt.Sprintf("EDGELB_ARGS=node%d", i))
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "serving") {
		t.Fatalf("server on node%d: %q %v", i, line, err)
	}
	servers[i] = cmd
}

func stopServer(i int) {
	if c := servers[i]; c != nil {
		c.Process.Kill()
		c.Wait()
		delete(servers, i)
	}
}

// helper runs a helper of this binary in a namespace and decodes its JSON.
func helper(t *testing.T, ns, name string, args ...string) result {
	t.Helper()
	self, _ := os.Executable()
	cmd := exec.Command("ip", "netns", "exec", ns, self)
	cmd.Env = append(os.Environ(), "EDGELB_HELPER="+name, "EDGELB_ARGS="+strings.Join(args, " "))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper %s %v in %s: %v\n%s", name, args, ns, err, out)
	}
	r := result{}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("helper %s output %q: %v", name, out, err)
	}
	return r
}

type edgelb struct {
	ns, cfg, log string
	cmd          *exec.Cmd
	// logFrom is where the current process's lines start in log.
	logFrom int64
	// env is added to the process's environment.
	env []string
	// stated: the state directory was set up (the first start).
	stated bool
}

// stateDir gives e, at its first start, a fresh state directory of its
// own next to its config file unless env names one or e is a lone host
// (its config joins no one): a cluster of several
// hosts keeps its consensus log there (systemd's StateDirectory= for the
// packaged unit), and no version from another test's run may be in it.
// Later starts keep it, as a restarted host does.
func (e *edgelb) stateDir(t *testing.T) {
	if e.stated {
		return
	}
	e.stated = true
	for _, kv := range e.env {
		if strings.HasPrefix(kv, "STATE_DIRECTORY=") {
			return
		}
	}
	// A lone host keeps no state between runs without one: its file's
	// keys are what it runs at each start, as the tests that restart it
	// with another file expect.
	if b, err := os.ReadFile(e.cfg); err == nil && !strings.Contains(string(b), "join:") {
		return
	}
	dir := strings.TrimSuffix(e.cfg, ".yaml") + "-state"
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	e.env = append(e.env, "STATE_DIRECTORY="+dir)
}

func startEdgelb(t *testing.T, ns, config string) *edgelb {
	t.Helper()
	return startEdgelbAs(t, ns, ns, config)
}

// startEdgelbAs is startEdgelb with the config, log and state kept in
// /tmp/<file>.yaml, .log and -state: a test of its own keeps its hosts'
// files apart from the others'.
func startEdgelbAs(t *testing.T, ns, file, config string) *edgelb {
	t.Helper()
	e := &edgelb{ns: ns, cfg: "/tmp/" + file + ".yaml", log: "/tmp/" + file + ".log"}
	if err := os.WriteFile(e.cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(edgelbBin, "check", "--config", e.cfg).CombinedOutput(); err != nil {
		t.Fatalf("edgelb check: %v\n%s", err, out)
	}
	e.start(t)
	t.Cleanup(func() { e.stop(t) })
	return e
}

func (e *edgelb) start(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(e.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := f.Stat(); err == nil {
		e.logFrom = fi.Size()
	}
	e.stateDir(t)
	e.cmd = exec.Command("ip", "netns", "exec", e.ns, edgelbBin, "run", "--config", e.cfg)
	e.cmd.Env = append(os.Environ(), e.env...)
	e.cmd.Stdout, e.cmd.Stderr = f, f
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
}

func (e *edgelb) stop(t *testing.T) {
	if e.cmd == nil {
		return
	}
	e.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- e.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		e.cmd.Process.Kill()
		<-done
		t.Errorf("edgelb in %s did not stop on SIGTERM", e.ns)
	}
	e.cmd = nil
}

// waitReady waits until the running process has logged that its
// dataplane is programmed (its first full pass is done).
func (e *edgelb) waitReady(t *testing.T) {
	t.Helper()
	waitFor(t, "edgelb in "+e.ns+" to be ready", 30*time.Second, func() bool {
		b, _ := os.ReadFile(e.log)
		return int64(len(b)) > e.logFrom && strings.Contains(string(b[e.logFrom:]), "ready: informers synced and dataplane programmed")
	})
}

func (e *edgelb) dumpLog(t *testing.T) {
	b, _ := os.ReadFile(e.log)
	t.Logf("edgelb log (%s):\n%s", e.ns, b)
}

func ipvsadm(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "ipvsadm"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ipvsadm %v: %v\n%s", args, err, out)
	}
	return string(out)
}

var spaces = regexp.MustCompile(`\s+`)

// table returns ipvsadm -Ln without the connection counters, one
// normalised line per service or real server.
func table(t *testing.T, ns string, args ...string) []string {
	var out []string
	raw, err := exec.Command("ip", append([]string{"netns", "exec", ns, "ipvsadm", "-Ln"}, args...)...).CombinedOutput()
	if err != nil {
		if len(args) > 0 {
			return nil // that virtual service does not exist (yet)
		}
		t.Fatalf("ipvsadm -Ln: %v\n%s", err, raw)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] == "IP" || f[0] == "Prot" || (f[0] == "->" && f[1] == "RemoteAddress:Port") {
			continue
		}
		if f[0] == "->" && len(f) >= 6 {
			f = f[:4]
		}
		out = append(out, strings.Join(f, " "))
	}
	return out
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

func hasLine(lines []string, want string) bool {
	return slices.ContainsFunc(lines, func(l string) bool { return spaces.ReplaceAllString(l, " ") == want })
}

func nodes(r result) []string {
	var out []string
	for k := range r.Counts {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Health checks under CPU emulation: a 300 ms timeout flapped backends
// (weights to 0 and back) in the middle of the tests.
const healthInterval = time.Second

// dataPath is node.dataPath scaled for the emulator, as in the Debian
// test bed: with the default 100 ms timeout every 150 ms, three hosts in
// one emulated CPU reported their paths failing with nothing wrong, gave
// up their VIPs and took them back in a loop, and the churn starved the
// consensus log (a drain through the API not acknowledged in 5 s).
const dataPath = "dataPath: {interval: 500ms, timeout: 400ms, fall: 4}"

func config(name, method string, services string) string {
	return fmt.Sprintf(`node: {name: %s, interface: eth0, %s}
cluster: {bindAddr: 127.0.0.1, insecure: true}
dataplane: {backend: ipvs, mode: nodeport, method: %s, scheduler: rr, drainTimeout: 30s}
healthCheck: {interval: %s, timeout: 800ms, rise: 2, fall: 2}
api: {listen: "127.0.0.1:9080"}
services:
%s`, name, dataPath, method, healthInterval, services)
}

// hostConfig is lb<i>'s config in a three-host cluster on the VM's LAN,
// with gossip timers for a loaded emulator; extra goes before services.
func hostConfig(i int, dataplane, apiListen, extra, services string) string {
	return fmt.Sprintf(`node: {name: lb%d, interface: eth0, %s}
cluster: {bindAddr: 10.0.0.1%d, join: ["10.0.0.11", "10.0.0.12", "10.0.0.13"], secretKeyFile: %s,
          probeInterval: 1s, probeTimeout: 500ms, suspicionMult: 4, gossipInterval: 200ms,
          heartbeat: {interval: 250ms, multiplier: 4}}
dataplane: %s
healthCheck: {interval: %s, timeout: 800ms, rise: 2, fall: 2}
api: {listen: %q}
%sservices:
%s`, i, dataPath, i, gossipKey, dataplane, healthInterval, apiListen, extra, services)
}

const natServices = `
  - {name: web, vip: 10.0.0.100, ports: [{port: 80, targetPort: 30080}], backends: [10.0.0.21, 10.0.0.22, 10.0.0.23]}
  - {name: dns, vip: 10.0.0.100, ports: [{port: 53, protocol: UDP, targetPort: 30053}], backends: [10.0.0.21, 10.0.0.22, 10.0.0.23]}
  - {name: echo, vip: 10.0.0.100, ports: [{port: 9000, targetPort: 30090}], backends: [10.0.0.21, 10.0.0.22, 10.0.0.23]}
  - {name: pods, vip: 10.0.0.101, ports: [{port: 80}], backends: ["10.244.1.2:8080", "10.244.2.2:8080", "10.244.3.2:8080"]}
  - {name: sticky, vip: 10.0.0.102, persistence: 60s, ports: [{port: 80, targetPort: 30080}], backends: [10.0.0.21, 10.0.0.22, 10.0.0.23]}
  - {name: web6, vip: "fd00::100", ports: [{port: 80, targetPort: 30080}], backends: ["fd00::21", "fd00::22", "fd00::23"]}
`

func TestDataplane(t *testing.T) {
	topology(t)
	// lb1 is a one-member cluster: it owns 10.0.0.100-102 and its VIP
	// manager adds them to eth0.
	// A foreign virtual service that edgelb must never touch.
	ipvsadm(t, "lb1", "-A", "-t", "10.9.9.9:80", "-s", "wlc")
	ipvsadm(t, "lb1", "-a", "-t", "10.9.9.9:80", "-r", "10.0.0.21:80", "-g", "-w", "3")

	lb1 := startEdgelb(t, "lb1", config("lb1", "nat", natServices))
	defer func() {
		if t.Failed() {
			lb1.dumpLog(t)
		}
	}()
	waitFor(t, "edgelb to program 10.0.0.100:80 and own its VIPs", 30*time.Second, func() bool {
		return hasLine(table(t, "lb1"), "-> 10.0.0.23:30080 Masq 1") &&
			strings.Count(sh(t, "ip -n lb1 -br addr show dev eth0"), "10.0.0.10") == 3
	})
	t.Logf("ipvsadm -Ln in lb1:\n%s", ipvsadm(t, "lb1", "-Ln"))

	t.Run("ipvsadm shows the virtual services", func(t *testing.T) {
		tb := table(t, "lb1")
		for _, want := range []string{"TCP 10.0.0.100:80 rr", "UDP 10.0.0.100:53 rr", "TCP 10.0.0.101:80 rr",
			"TCP 10.0.0.102:80 rr persistent 60", "-> 10.0.0.21:30080 Masq 1", "-> 10.0.0.22:30080 Masq 1",
			"-> 10.244.2.2:8080 Masq 1", "TCP 10.9.9.9:80 wlc", "-> 10.0.0.21:80 Route 3"} {
			if !hasLine(tb, want) {
				t.Errorf("ipvsadm -Ln lacks %q:\n%s", want, strings.Join(tb, "\n"))
			}
		}
	})

	t.Run("TCP spreads over all nodes and replies return through the appliance", func(t *testing.T) {
		r := helper(t, "client", "http", "30", "http://10.0.0.100/")
		t.Logf("answers per node: %v, source addresses seen by the nodes: %v", r.Counts, r.Remotes)
		if r.Errors != 0 {
			t.Errorf("%d requests failed, last: %s", r.Errors, r.LastErr)
		}
		if got := nodes(r); !slices.Equal(got, []string{"node1", "node2", "node3"}) {
			t.Errorf("answered by %v, want all three nodes", got)
		}
		// The nodes are on the client's subnet: without source NAT they
		// would answer the client directly and the requests would fail.
		// The source is the VIP (dataplane.natSource: vip), whose owner
		// the replies go back to.
		if len(r.Remotes) != 1 || r.Remotes["10.0.0.100"] == 0 {
			t.Errorf("nodes saw sources %v, want only the VIP 10.0.0.100 (nat)", r.Remotes)
		}
		out := sh(t, "ip netns exec lb1 nft list table ip edgelb")
		if !strings.Contains(out, "10.0.0.100") || !strings.Contains(out, "snat to ct original ip daddr") {
			t.Errorf("nft table ip edgelb:\n%s", out)
		}
	})

	t.Run("IPv6", func(t *testing.T) {
		waitFor(t, "the IPv6 VIP", 20*time.Second, func() bool {
			return hasLine(table(t, "lb1", "-t", "[fd00::100]:80"), "-> [fd00::23]:30080 Masq 1") &&
				strings.Contains(sh(t, "ip -n lb1 -br addr show dev eth0"), "fd00::100")
		})
		r := helper(t, "client", "http", "15", "http://[fd00::100]/")
		t.Logf("answers per node: %v, source addresses seen by the nodes: %v", r.Counts, r.Remotes)
		if r.Errors != 0 || !slices.Equal(nodes(r), []string{"node1", "node2", "node3"}) {
			t.Errorf("answered by %v, %d errors (%s)", r.Counts, r.Errors, r.LastErr)
		}
		// The source is the VIP, as for IPv4.
		if r.Remotes["fd00::100"] != 15 {
			t.Errorf("nodes saw sources %v, want the VIP (nat)", r.Remotes)
		}
	})

	t.Run("UDP", func(t *testing.T) {
		r := helper(t, "client", "udp", "15", "10.0.0.100:53")
		t.Logf("answers per node: %v", r.Counts)
		if r.Errors != 0 {
			t.Errorf("%d datagrams unanswered, last: %s", r.Errors, r.LastErr)
		}
		if got := nodes(r); !slices.Equal(got, []string{"node1", "node2", "node3"}) {
			t.Errorf("answered by %v, want all three nodes", got)
		}
	})

	t.Run("direct mode reaches pod addresses", func(t *testing.T) {
		r := helper(t, "client", "http", "15", "http://10.0.0.101/")
		t.Logf("pod addresses answering: %v", r.Locals)
		if r.Errors != 0 {
			t.Errorf("%d requests failed, last: %s", r.Errors, r.LastErr)
		}
		for _, pod := range []string{"10.244.1.2", "10.244.2.2", "10.244.3.2"} {
			if r.Locals[pod] == 0 {
				t.Errorf("pod %s got no request: %v", pod, r.Locals)
			}
		}
	})

	t.Run("persistence keeps a client on one backend", func(t *testing.T) {
		r := helper(t, "client", "http", "12", "http://10.0.0.102/")
		t.Logf("answers per node: %v", r.Counts)
		if r.Errors != 0 || len(r.Counts) != 1 {
			t.Errorf("answered by %v (%d errors), want exactly one node", r.Counts, r.Errors)
		}
	})

	t.Run("a killed backend leaves the rotation and comes back", func(t *testing.T) {
		web := func() []string { return table(t, "lb1", "-t", "10.0.0.100:80") }
		stopServer(2)
		took := waitFor(t, "node2 to get weight 0", 10*time.Second, func() bool {
			return hasLine(web(), "-> 10.0.0.22:30080 Masq 0")
		})
		t.Logf("node2 left the rotation %s after its server was killed (interval %s, fall 2)", took.Round(10*time.Millisecond), healthInterval)
		r := helper(t, "client", "http", "12", "http://10.0.0.100/")
		if r.Errors != 0 || r.Counts["node2"] != 0 || len(r.Counts) != 2 {
			t.Errorf("with node2 down: %v, %d errors (%s)\n%s", r.Counts, r.Errors, r.LastErr, ipvsadm(t, "lb1", "-Ln", "-t", "10.0.0.100:80"))
		}
		startServer(t, 2)
		took = waitFor(t, "node2 to come back", 10*time.Second, func() bool {
			return hasLine(web(), "-> 10.0.0.22:30080 Masq 1")
		})
		t.Logf("node2 came back %s after its server restarted (rise 2)", took.Round(10*time.Millisecond))
		r = helper(t, "client", "http", "12", "http://10.0.0.100/")
		if r.Errors != 0 || r.Counts["node2"] == 0 {
			t.Errorf("after node2 returned: %v, %d errors", r.Counts, r.Errors)
		}
	})

	t.Run("restarting edgelb keeps connections and flushes nothing", func(t *testing.T) {
		before := table(t, "lb1")
		conns := func() string {
			for _, l := range strings.Split(ipvsadm(t, "lb1", "-Ln", "--stats", "-t", "10.0.0.100:80"), "\n") {
				if f := strings.Fields(l); len(f) > 2 && f[0] == "TCP" {
					return f[2]
				}
			}
			return ""
		}
		connsBefore := conns()
		hold, rd := holdConnection(t, "10.0.0.100:9000", 8)
		lb1.stop(t)
		if after := table(t, "lb1"); !slices.Equal(after, before) {
			t.Errorf("stopping edgelb changed the table:\nbefore %v\nafter  %v", before, after)
		}
		lb1.start(t)
		lb1.waitReady(t) // the restarted edgelb has run its full pass
		if after := table(t, "lb1"); !slices.Equal(after, before) {
			t.Errorf("restarting edgelb changed the table:\nbefore %v\nafter  %v", before, after)
		}
		rest, _ := rd.ReadString('\n')
		if err := hold.Wait(); err != nil || !strings.HasPrefix(rest, "held") {
			t.Errorf("long-lived connection broke across the restart: %q %v", rest, err)
		}
		if c := conns(); c < connsBefore || c == "" {
			t.Errorf("10.0.0.100:80 connection counter went from %s to %s: the service was recreated", connsBefore, c)
		}
		if !hasLine(table(t, "lb1"), "TCP 10.9.9.9:80 wlc") {
			t.Error("the foreign virtual service is gone")
		}
	})
}

func TestDirectRoutingAndTunnel(t *testing.T) {
	if _, err := os.Stat("/run/netns/node1"); err != nil {
		prereq.Missing(t, "needs the topology of TestDataplane (run the whole package)")
	}
	// Nodes accept the VIPs without answering ARP for them: on lo for dr,
	// on the IPIP device for tunnel (kube-proxy does the equivalent for
	// LoadBalancer ingress IPs).
	sh(t, `
for i in 1 2 3; do
	ip netns exec node$i sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
	ip -n node$i addr add 10.0.0.110/32 dev lo
	ip -n node$i link set tunl0 up
	ip -n node$i addr add 10.0.0.120/32 dev tunl0
	ip netns exec node$i sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.tunl0.rp_filter=0
done
`)
	for _, c := range []struct{ ns, method, vip, fwd string }{
		{"lb2", "dr", "10.0.0.110", "Route"},
		{"lb3", "tunnel", "10.0.0.120", "Tunnel"},
	} {
		t.Run(c.method, func(t *testing.T) {
			e := startEdgelb(t, c.ns, config(c.ns, c.method, fmt.Sprintf(
				"  - {name: web, vip: %s, sourceRanges: [10.0.0.2/32], ports: [{port: 30080}], backends: [10.0.0.21, 10.0.0.22, 10.0.0.23]}\n", c.vip)))
			defer func() {
				if t.Failed() {
					e.dumpLog(t)
				}
			}()
			waitFor(t, "edgelb to program and own "+c.vip, 30*time.Second, func() bool {
				return hasLine(table(t, c.ns), "-> 10.0.0.23:30080 "+c.fwd+" 1") &&
					strings.Contains(sh(t, "ip -n "+c.ns+" -br addr show dev eth0"), c.vip)
			})
			r := helper(t, "client", "http", "15", "http://"+c.vip+":30080/")
			t.Logf("answers per node: %v, source addresses seen: %v", r.Counts, r.Remotes)
			if r.Errors != 0 {
				t.Errorf("%d requests failed, last: %s", r.Errors, r.LastErr)
			}
			if got := nodes(r); !slices.Equal(got, []string{"node1", "node2", "node3"}) {
				t.Errorf("answered by %v, want all three nodes", got)
			}
			if len(r.Remotes) != 1 || r.Remotes["10.0.0.2"] == 0 {
				t.Errorf("nodes saw sources %v, want the client's own 10.0.0.2", r.Remotes)
			}
			// The source ranges hold with this method too.
			clientAliases(t)
			wantBlocked(t, "http://"+c.vip+":30080/", "10.0.0.3")
		})
	}
}

// TestFailover runs three appliance hosts in one gossip cluster, all
// programming the same virtual service; killing the VIP's owner moves the
// VIP and forwarding continues from the new owner. The gossip uses
// memberlist's LAN timers: the default 200 ms probes see false failures in
// the emulated, shared VM.
func TestFailover(t *testing.T) {
	if _, err := os.Stat("/run/netns/node1"); err != nil {
		topology(t)
	}
	const vip = "10.0.0.130"
	var lbs []*edgelb
	for i := 1; i <= 3; i++ {
		ns := fmt.Sprintf("lb%d", i)
		cfg := hostConfig(i, "{backend: ipvs, mode: nodeport, method: nat, scheduler: rr}", "127.0.0.1:9081", "",
			fmt.Sprintf("  - {name: ha, vip: %s, ports: [{port: 80, targetPort: 30080}], backends: [10.0.0.21, 10.0.0.22, 10.0.0.23]}\n", vip))
		lbs = append(lbs, startEdgelbAs(t, ns, "ha-"+ns, cfg))
	}
	defer func() {
		if t.Failed() {
			for _, e := range lbs {
				e.dumpLog(t)
			}
		}
	}()
	owner := func() int {
		n := 0
		for i := 1; i <= 3; i++ {
			if strings.Contains(sh(t, fmt.Sprintf("ip -n lb%d -br addr show dev eth0", i)), vip+"/") {
				if n != 0 {
					return -1 // two owners
				}
				n = i
			}
		}
		return n
	}
	// The cluster has converged when the same single owner is seen on
	// five polls in a row.
	first, same := 0, 0
	waitFor(t, "one stable owner of "+vip+" and the service programmed on every host", 60*time.Second, func() bool {
		for i := 1; i <= 3; i++ {
			if !hasLine(table(t, fmt.Sprintf("lb%d", i), "-t", vip+":80"), "-> 10.0.0.23:30080 Masq 1") {
				return false
			}
		}
		o := owner()
		if o <= 0 || o != first {
			first, same = o, 0
			return false
		}
		same++
		return same >= 5
	})
	t.Logf("%s is owned by lb%d", vip, first)
	r := helper(t, "client", "http", "9", "http://"+vip+"/")
	if r.Errors != 0 || len(r.Counts) != 3 {
		t.Fatalf("before failover: %v, %d errors (%s)", r.Counts, r.Errors, r.LastErr)
	}
	// A crash: the owner is killed without handing over.
	killed := lbs[first-1]
	killed.cmd.Process.Kill()
	killed.cmd.Wait()
	killed.cmd = nil
	sh(t, fmt.Sprintf("ip -n lb%d addr del %s/32 dev eth0 2>/dev/null || true; ip -n lb%d link set eth0 down", first, vip, first))
	second := 0
	took := waitFor(t, "another host to own "+vip, 60*time.Second, func() bool {
		second = owner()
		return second > 0 && second != first
	})
	t.Logf("after lb%d was killed, lb%d owns %s (%s)", first, second, vip, took.Round(10*time.Millisecond))
	r = helper(t, "client", "http", "9", "http://"+vip+"/")
	t.Logf("answers per node through lb%d: %v, sources seen: %v", second, r.Counts, r.Remotes)
	if r.Errors != 0 || len(r.Counts) != 3 {
		t.Errorf("after failover: %v, %d errors (%s)", r.Counts, r.Errors, r.LastErr)
	}
	if r.Remotes[vip] != 9 {
		t.Errorf("nodes saw %v, want the VIP %s (nat from the new owner lb%d)", r.Remotes, vip, second)
	}
}
