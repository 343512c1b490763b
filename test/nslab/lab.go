package nslab

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgelb/edgelb/test/prereq"
	"github.com/edgelb/edgelb/test/testenv"
)

var (
	edgelbBin string // built by Main
	crashBin  string // the unit's ExecStopPost= binary, built by Main
	selfBin   string // this test binary, re-executed in roles
	skipAll   string // why the lab cannot run here
	labSeq    atomic.Int32
)

// The VIPs of the lab's two static services (Lab.Services).
var (
	VIP4 = netip.MustParseAddr("10.99.0.100")
	VIP6 = netip.MustParseAddr("fd99::100")
)

// Converge bounds how long the tests wait for the cluster to settle
// after a change.
const Converge = 15 * time.Second

// UplinkAddr is the test's side of the bridge after Uplink.
var UplinkAddr = netip.MustParseAddr("10.99.0.1")

// Gossip keys, test only: the lab's key and another one.
const (
	GoodKey = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LWtleSE=" // 32 bytes
	BadKey  = "b3RoZXIta2V5LW90aGVyLWtleS1vdGhlci1rZXktISE=" // another 32 bytes
)

// Main is a test package's TestMain body: it runs the role this process
// was started in, if any; otherwise it checks the prerequisites, builds
// edgelb and runs the tests. Use it as os.Exit(nslab.Main(m)).
func Main(m *testing.M) int {
	if role, ok := roles[os.Getenv("ELBT_ROLE")]; ok {
		role()
		return 0
	}
	skipAll = prerequisites()
	if skipAll != "" && prereq.CI() {
		return prereq.MissingMain("network-namespace lab: %s", skipAll)
	}
	if skipAll == "" {
		dir, err := os.MkdirTemp("", "elbt-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		if edgelbBin, err = testenv.BuildEdgelb(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if crashBin, err = testenv.BuildCrashCleanup(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		selfBin, _ = os.Executable()
	}
	return m.Run()
}

// prerequisites returns why network-namespace tests cannot run, or "".
func prerequisites() string {
	if os.Geteuid() != 0 {
		return "not root: network namespaces need root"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "iproute2's ip is not installed (hack/test-deps.sh)"
	}
	if _, err := exec.LookPath("go"); err != nil {
		return "go is not on PATH to build edgelb"
	}
	name := fmt.Sprintf("elbt-probe-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Sprintf("cannot create a network namespace: %v: %s", err, out)
	}
	exec.Command("ip", "netns", "del", name).Run()
	return ""
}

// Require skips t (fails it under CI=true) when the lab cannot run here.
func Require(t testing.TB) {
	t.Helper()
	if skipAll != "" {
		prereq.Missing(t, "needs network namespaces: %s", skipAll)
	}
}

// Lab is a bridge in its own namespace with appliance hosts and a client.
type Lab struct {
	T      testing.TB
	Prefix string
	Dir    string
	Key    string // gossip key file shared by the hosts
	Hosts  []*Host
	Client string // namespace
	// Join is how many of the first hosts make the configured cluster
	// (cluster.join) in every host's config; 0 means three.
	Join int
	// Services is the YAML of the config's services key: by default
	// web4 and web6 on VIP4 and VIP6, port 8080; "" for none.
	Services string
	// Extra is appended to every host's config (kubernetes, pools).
	Extra string
	// Cluster are more keys under every host's cluster key, each line
	// indented by two spaces ("  neighbourRepair: 0\n").
	Cluster string

	nss         []string
	data        bool // AddDataLink: VIPs on eth1
	partitioned bool
	closed      bool
}

// Host is one appliance host: a namespace with eth0 on the bridge.
type Host struct {
	Lab  *Lab
	Name string
	NS   string
	Port string // its veth in the switch namespace
	IP4  netip.Addr
	IP6  netip.Addr
	MAC  string
	// DataPort, DataMAC and DataIP4 are h's data link after
	// Lab.AddDataLink: eth1, its port on the data bridge.
	DataPort string
	DataMAC  string
	DataIP4  netip.Addr
	Key      string // key file
	Log      *LockedBuffer
	Logs     []string // logs of earlier runs

	proc *exec.Cmd
	exit chan error
	// witness: the process is `edgelb witness` (StartWitness).
	witness bool
}

// LockedBuffer is a bytes.Buffer safe for concurrent writes and reads.
type LockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// New builds a bridge with n hosts (h1..hn) and a client; it removes
// everything when the test ends.
func New(t testing.TB, n int) *Lab {
	t.Helper()
	Require(t)
	l := &Lab{T: t, Prefix: fmt.Sprintf("elbt-%d-%d", os.Getpid()%100000, labSeq.Add(1)), Dir: t.TempDir()}
	l.Services = fmt.Sprintf(`
  - {name: web4, vip: %s, ports: [{port: 8080}]}
  - {name: web6, vip: "%s", ports: [{port: 8080}]}`, VIP4, VIP6)
	l.Key = filepath.Join(l.Dir, "gossip.key")
	WriteFile(t, l.Key, GoodKey+"\n")
	t.Cleanup(l.Cleanup)
	sw := l.sw()
	l.addNS(sw)
	l.IP(sw, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	l.IP(sw, "link", "set", "br0", "up")
	// The client plays the LAN's router: with arp_accept and (as a
	// router) accept_untracked_na, an announcement alone creates its
	// neighbour entry, so the tests can see it.
	l.Client = l.Prefix + "-c"
	l.addNS(l.Client)
	l.Sysctl(l.Client, "net.ipv4.conf.all.arp_accept=1", "net.ipv4.conf.default.arp_accept=1",
		"net.ipv6.conf.all.forwarding=1", "net.ipv6.conf.all.accept_untracked_na=1", "net.ipv6.conf.default.accept_untracked_na=1")
	l.plug(l.Client, "c", "02:99:00:00:00:02", "10.99.0.2", "fd99::2")
	for i := 1; i <= n; i++ {
		l.AddHost(fmt.Sprintf("h%d", i), l.Key)
	}
	return l
}

func (l *Lab) sw() string { return l.Prefix + "-sw" }

func (l *Lab) addNS(ns string) {
	l.nss = append(l.nss, ns)
	l.Run("ip", "netns", "add", ns)
	l.Sysctl(ns, "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	l.IP(ns, "link", "set", "lo", "up")
}

// plug connects ns to the bridge with eth0.
func (l *Lab) plug(ns, port, mac, ip4, ip6 string) {
	l.IP(l.sw(), "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
	l.IP(l.sw(), "link", "set", port, "master", "br0", "up")
	l.IP(ns, "link", "set", "eth0", "address", mac)
	l.IP(ns, "addr", "add", ip4+"/24", "dev", "eth0")
	l.IP(ns, "addr", "add", ip6+"/64", "dev", "eth0", "nodad")
	l.IP(ns, "link", "set", "eth0", "up")
}

// AddHost adds a host (not started) whose gossip key is in the file key.
func (l *Lab) AddHost(name, key string) *Host {
	i := len(l.Hosts) + 1
	h := &Host{
		Lab:  l,
		Name: name,
		NS:   l.Prefix + "-" + name,
		Port: name,
		IP4:  netip.MustParseAddr(fmt.Sprintf("10.99.0.%d", 10+i)),
		IP6:  netip.MustParseAddr(fmt.Sprintf("fd99::%d", 10+i)),
		MAC:  fmt.Sprintf("02:99:00:00:00:%02x", 0x10+i),
		Key:  key,
	}
	l.addNS(h.NS)
	l.plug(h.NS, h.Port, h.MAC, h.IP4.String(), h.IP6.String())
	l.Hosts = append(l.Hosts, h)
	return h
}

// Uplink plugs a veth from the test's own namespace into the bridge with
// UplinkAddr, so that a server listening there (the test kube-apiserver)
// is reachable from the hosts. The veth goes away with the lab.
func (l *Lab) Uplink() netip.Addr {
	root := strings.Replace(l.Prefix, "elbt-", "elbu-", 1)
	l.Run("ip", "link", "add", root, "type", "veth", "peer", "name", "uplink", "netns", l.sw())
	l.IP(l.sw(), "link", "set", "uplink", "master", "br0", "up")
	l.Run("ip", "addr", "add", UplinkAddr.String()+"/24", "dev", root)
	l.Run("ip", "link", "set", root, "up")
	return UplinkAddr
}

// Partition splits the LAN in two: the given hosts' ports move to a
// second bridge, where they reach only each other; the client and the
// uplink stay with the rest. Their links stay up: the hosts see silence,
// not a cable pulled. Heal joins the two sides again.
func (l *Lab) Partition(side ...*Host) {
	if !l.partitioned {
		l.IP(l.sw(), "link", "add", "br1", "type", "bridge", "mcast_snooping", "0")
		l.IP(l.sw(), "link", "set", "br1", "up")
		l.partitioned = true
	}
	for _, h := range side {
		l.IP(l.sw(), "link", "set", h.Port, "master", "br1")
	}
}

// Heal moves every host back onto the one bridge.
func (l *Lab) Heal() {
	for _, h := range l.Hosts {
		l.IP(l.sw(), "link", "set", h.Port, "master", "br0")
	}
}

// Config writes h's edgelb config and returns its path: the lab's first
// Join hosts are the configured cluster.
func (h *Host) Config() string {
	n := h.Lab.Join
	if n == 0 {
		n = 3
	}
	var join []string
	for _, o := range h.Lab.Hosts[:min(n, len(h.Lab.Hosts))] {
		join = append(join, strconv.Quote(o.IP4.String()))
	}
	services := h.Lab.Services
	if services == "" {
		services = " []"
	}
	iface := "eth0"
	if h.Lab.data {
		iface = "eth1"
	}
	cfg := fmt.Sprintf(`node: {name: %s, interface: %s}
cluster:
  bindAddr: %s
  join: [%s]
  secretKeyFile: %s
%sdataplane: {backend: none}
services:%s
%s`, h.Name, iface, h.IP4, strings.Join(join, ", "), h.Key, h.Lab.Cluster, services, h.Lab.Extra)
	path := filepath.Join(h.Lab.Dir, h.Name+".yaml")
	WriteFile(h.Lab.T, path, cfg)
	return path
}

// Start runs the responder (once) and edgelb on h.
func (h *Host) Start() {
	l := h.Lab
	if h.Log == nil {
		h.StartResponder()
	} else {
		h.Logs = append(h.Logs, h.Log.String())
	}
	h.Log = &LockedBuffer{}
	h.witness = false
	args := []string{"netns", "exec", h.NS, edgelbBin, "run", "--config", h.Config()}
	if lvl := os.Getenv("ELBT_LOG_LEVEL"); lvl != "" {
		args = append(args, "--log-level", lvl) // by hand: debug logs of a failing run
	}
	cmd := exec.Command("ip", args...)
	// Each host has its own state directory (the cluster configuration,
	// the VIPs kept for a restart), kept across its restarts in the lab.
	cmd.Env = append(os.Environ(), "STATE_DIRECTORY="+h.StateDir())
	cmd.Stdout, cmd.Stderr = h.Log, h.Log
	if err := cmd.Start(); err != nil {
		l.T.Fatal(err)
	}
	h.proc, h.exit = cmd, make(chan error, 1)
	go func() { h.exit <- cmd.Wait() }()
}

// StartResponder runs only h's responder (Start runs it with edgelb):
// :8080 answers with h's name, :8081 echoes. Another VIP manager
// (keepalived, say) can then be compared with edgelb on the same lab.
func (h *Host) StartResponder() {
	resp := exec.Command("ip", "netns", "exec", h.NS, selfBin)
	resp.Env = append(os.Environ(), "ELBT_ROLE=responder", "ELBT_NAME="+h.Name)
	if err := resp.Start(); err != nil {
		h.Lab.T.Fatal(err)
	}
	h.Lab.T.Cleanup(func() { resp.Process.Kill(); resp.Wait() })
}

// StateDir is h's state directory ($STATE_DIRECTORY), created if needed.
func (h *Host) StateDir() string {
	dir := filepath.Join(h.Lab.Dir, h.Name+"-state")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		h.Lab.T.Fatal(err)
	}
	return dir
}

// Running reports whether edgelb runs on h.
func (h *Host) Running() bool { return h.proc != nil }

// Stop sends SIGTERM and waits for edgelb to exit, as systemctl stop does.
func (h *Host) Stop(timeout time.Duration) error {
	if h.proc == nil {
		return nil
	}
	h.proc.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-h.exit:
		h.proc = nil
		return err
	case <-time.After(timeout):
		return errors.New("edgelb did not stop in time")
	}
}

// Restart restarts edgelb on h as `systemctl restart` does with the
// packaged unit: SIGUSR2 (its RestartKillSignal), wait for the process to
// exit, check that it exited 0, start it again. It returns how long the
// old process took to exit.
func (h *Host) Restart(timeout time.Duration) (time.Duration, error) {
	if h.proc == nil {
		return 0, errors.New("edgelb is not running")
	}
	start := time.Now()
	h.proc.Process.Signal(syscall.SIGUSR2)
	select {
	case err := <-h.exit:
		h.proc = nil
		took := time.Since(start)
		if err != nil {
			return took, fmt.Errorf("edgelb exited on SIGUSR2: %w", err)
		}
		h.Start()
		return took, nil
	case <-time.After(timeout):
		return 0, errors.New("edgelb did not exit in time on SIGUSR2")
	}
}

// Kill SIGKILLs edgelb on h and waits for it to be gone.
func (h *Host) Kill() {
	if h.proc != nil {
		h.proc.Process.Kill()
		<-h.exit
		h.proc = nil
	}
}

// Crash SIGKILLs edgelb on h and then does what systemd does after a crash
// of the packaged unit: it runs the unit's ExecStopPost=
// (edgelb-crash-cleanup) with the variables systemd sets for a process
// killed by a signal. It returns the cleanup's output.
func (h *Host) Crash() string {
	h.Kill()
	cmd := exec.Command("ip", "netns", "exec", h.NS, crashBin, "--config", h.Config())
	cmd.Env = append(os.Environ(), "SERVICE_RESULT=signal", "EXIT_CODE=killed", "EXIT_STATUS=KILL")
	out, err := cmd.CombinedOutput()
	if err != nil {
		h.Lab.T.Errorf("%s: ExecStopPost (edgelb cleanup) after the crash: %v\n%s", h.Name, err, out)
	}
	return string(out)
}

// SetLink sets h's port on the bridge up or down.
func (h *Host) SetLink(up bool) {
	state := "down"
	if up {
		state = "up"
	}
	h.Lab.IP(h.Lab.sw(), "link", "set", h.Port, state)
}

// Has reports whether vip is configured on h's VIP interface (eth0, or
// eth1 after AddDataLink).
func (h *Host) Has(vip netip.Addr) bool {
	out, err := h.addrs()
	return err == nil && hasAddr(out, vip)
}

func (h *Host) addrs() (string, error) {
	dev := "eth0"
	if h.Lab.data {
		dev = "eth1"
	}
	out, err := exec.Command("ip", "-n", h.NS, "-o", "addr", "show", "dev", dev).Output()
	return string(out), err
}

// hasAddr reports whether the output of `ip -o addr show` lists vip as a
// host address.
func hasAddr(out string, vip netip.Addr) bool {
	bits := 32
	if vip.Is6() {
		bits = 128
	}
	return strings.Contains(out, " "+netip.PrefixFrom(vip, bits).String()+" ")
}

// Holders returns the hosts that have vip configured.
func (l *Lab) Holders(vip netip.Addr) []*Host {
	var out []*Host
	for _, h := range l.Hosts {
		if h.Has(vip) {
			out = append(out, h)
		}
	}
	return out
}

// Names returns the hosts' names.
func Names(hs []*Host) []string {
	var out []string
	for _, h := range hs {
		out = append(out, h.Name)
	}
	return out
}

// Owner waits until vip is on exactly one host and returns it.
func (l *Lab) Owner(vip netip.Addr, timeout time.Duration) *Host {
	l.T.Helper()
	var hs []*Host
	ok := Poll(timeout, func() bool {
		hs = l.Holders(vip)
		return len(hs) == 1
	})
	if !ok {
		l.T.Fatalf("%s is not on exactly one host after %s: on %v", vip, timeout, Names(hs))
	}
	return hs[0]
}

// StableOwner checks that vip stays on exactly one host, the same, for d.
func (l *Lab) StableOwner(vip netip.Addr, d time.Duration) *Host {
	l.T.Helper()
	o := l.Owner(vip, Converge)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if hs := l.Holders(vip); len(hs) != 1 || hs[0] != o {
			l.T.Fatalf("%s moved from %s to %v without a reason", vip, o.Name, Names(hs))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return o
}

// SettledOwner waits until vip has stayed on one host for d — the hosts
// start one after the other, and a VIP moves when a later one wins it —
// and returns that host.
func (l *Lab) SettledOwner(vip netip.Addr, d time.Duration) *Host {
	l.T.Helper()
	var last *Host
	var since time.Time
	if !Poll(Converge, func() bool {
		hs := l.Holders(vip)
		if len(hs) != 1 {
			last = nil
			return false
		}
		if hs[0] != last {
			last, since = hs[0], time.Now()
		}
		return time.Since(since) >= d
	}) {
		l.T.Fatalf("%s did not settle on one host: on %v", vip, Names(l.Holders(vip)))
	}
	return last
}

// VIPSample is which hosts had each VIP configured at one moment.
type VIPSample struct {
	At      time.Time
	Holders map[netip.Addr][]string
}

// WatchVIPs polls `ip addr` in every host's namespace, pausing every
// between passes (each pass runs one `ip` per host), until the returned
// stop is called, which returns every sample.
func (l *Lab) WatchVIPs(every time.Duration, vips ...netip.Addr) (stop func() []VIPSample) {
	done := make(chan struct{})
	out := make(chan []VIPSample, 1)
	go func() {
		var samples []VIPSample
		for {
			s := VIPSample{At: time.Now(), Holders: map[netip.Addr][]string{}}
			for _, h := range l.Hosts {
				addrs, err := h.addrs()
				if err != nil {
					continue
				}
				for _, v := range vips {
					if hasAddr(addrs, v) {
						s.Holders[v] = append(s.Holders[v], h.Name)
					}
				}
			}
			samples = append(samples, s)
			select {
			case <-done:
				out <- samples
				return
			case <-time.After(every):
			}
		}
	}()
	return func() []VIPSample {
		close(done)
		return <-out
	}
}

// Neighbour returns the client's neighbour entry's hardware address for ip.
func (l *Lab) Neighbour(ip netip.Addr) string {
	out, _ := exec.Command("ip", "-n", l.Client, "neigh", "show", ip.String(), "dev", "eth0").Output()
	f := strings.Fields(string(out))
	if i := slices.Index(f, "lladdr"); i >= 0 && i+1 < len(f) {
		return f[i+1]
	}
	return ""
}

// Poll calls cond every 10 ms until it returns true or timeout passes.
func Poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// IP runs `ip -n ns args...`; a failure fails the test.
func (l *Lab) IP(ns string, args ...string) {
	l.Run("ip", append([]string{"-n", ns}, args...)...)
}

// Sysctl sets kernel parameters (key=value) in ns.
func (l *Lab) Sysctl(ns string, kv ...string) {
	l.Run("ip", append([]string{"netns", "exec", ns, "sysctl", "-qw"}, kv...)...)
}

// Run runs a command; a failure fails the test.
func (l *Lab) Run(name string, args ...string) {
	l.T.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		l.T.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// Cleanup stops everything in the lab and removes its namespaces; it
// may be called more than once.
func (l *Lab) Cleanup() {
	if l.closed {
		return
	}
	l.closed = true
	for _, h := range l.Hosts {
		h.Kill()
		if l.T.Failed() && h.Log != nil {
			logs := append(h.Logs, h.Log.String())
			l.T.Logf("--- edgelb log of %s ---\n%s", h.Name, strings.Join(logs, "--- restarted ---\n"))
		}
	}
	for _, ns := range l.nss {
		exec.Command("ip", "netns", "del", ns).Run()
	}
}

// WriteFile writes a test file; a failure fails the test.
func WriteFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
