package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
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
)

var (
	edgelbBin string // built by TestMain
	selfBin   string // this test binary, re-executed in roles
	skipAll   string // why the lab cannot run here
	labSeq    atomic.Int32
)

var (
	vip4 = netip.MustParseAddr("10.99.0.100")
	vip6 = netip.MustParseAddr("fd99::100")
)

func TestMain(m *testing.M) {
	switch os.Getenv("ELBT_ROLE") {
	case "responder":
		responder()
		return
	case "prober":
		prober()
		return
	case "holder":
		holder()
		return
	}
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	skipAll = prerequisites()
	if skipAll != "" && prereq.CI() {
		return prereq.MissingMain("e2e: %s", skipAll)
	}
	if skipAll == "" {
		dir, err := os.MkdirTemp("", "elbt-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		edgelbBin = filepath.Join(dir, "edgelb")
		out, err := exec.Command("go", "build", "-o", edgelbBin, "github.com/edgelb/edgelb/cmd/edgelb").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "building edgelb: %v\n%s", err, out)
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

func requireLab(t testing.TB) {
	t.Helper()
	if skipAll != "" {
		prereq.Missing(t, "needs network namespaces: %s", skipAll)
	}
}

// lab is a bridge in its own namespace with appliance hosts and a client.
type lab struct {
	t      testing.TB
	prefix string
	dir    string
	key    string // gossip key file shared by the hosts
	hosts  []*host
	client string // namespace
	nss    []string
	closed bool
}

type host struct {
	lab  *lab
	name string
	ns   string
	port string // its veth in the switch namespace
	ip4  netip.Addr
	ip6  netip.Addr
	mac  string
	key  string // key file
	proc *exec.Cmd
	exit chan error
	log  *lockedBuffer
	logs []string // logs of earlier runs
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

const goodKey = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LWtleSE=" // 32 bytes, test only
const badKey = "b3RoZXIta2V5LW90aGVyLWtleS1vdGhlci1rZXktISE="  // another 32 bytes

// newLab builds a bridge with n hosts (h1..hn) and a client; it removes
// everything when the test ends.
func newLab(t testing.TB, n int) *lab {
	t.Helper()
	requireLab(t)
	l := &lab{t: t, prefix: fmt.Sprintf("elbt-%d-%d", os.Getpid()%100000, labSeq.Add(1)), dir: t.TempDir()}
	l.key = filepath.Join(l.dir, "gossip.key")
	if err := os.WriteFile(l.key, []byte(goodKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.cleanup)
	sw := l.prefix + "-sw"
	l.addNS(sw)
	l.ip(sw, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	l.ip(sw, "link", "set", "br0", "up")
	// The client plays the LAN's router: with arp_accept and (as a
	// router) accept_untracked_na, an announcement alone creates its
	// neighbour entry, so the tests can see it.
	l.client = l.prefix + "-c"
	l.addNS(l.client)
	l.sysctl(l.client, "net.ipv4.conf.all.arp_accept=1", "net.ipv4.conf.default.arp_accept=1",
		"net.ipv6.conf.all.forwarding=1", "net.ipv6.conf.all.accept_untracked_na=1", "net.ipv6.conf.default.accept_untracked_na=1")
	l.plug(l.client, "c", "02:99:00:00:00:02", "10.99.0.2", "fd99::2")
	for i := 1; i <= n; i++ {
		l.addHost(fmt.Sprintf("h%d", i), l.key)
	}
	return l
}

func (l *lab) addNS(ns string) {
	l.nss = append(l.nss, ns)
	l.run("ip", "netns", "add", ns)
	l.sysctl(ns, "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	l.ip(ns, "link", "set", "lo", "up")
}

// plug connects ns to the bridge with eth0.
func (l *lab) plug(ns, port, mac, ip4, ip6 string) {
	sw := l.prefix + "-sw"
	l.ip(sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
	l.ip(sw, "link", "set", port, "master", "br0", "up")
	l.ip(ns, "link", "set", "eth0", "address", mac)
	l.ip(ns, "addr", "add", ip4+"/24", "dev", "eth0")
	l.ip(ns, "addr", "add", ip6+"/64", "dev", "eth0", "nodad")
	l.ip(ns, "link", "set", "eth0", "up")
}

func (l *lab) addHost(name, key string) *host {
	i := len(l.hosts) + 1
	h := &host{
		lab:  l,
		name: name,
		ns:   l.prefix + "-" + name,
		port: name,
		ip4:  netip.MustParseAddr(fmt.Sprintf("10.99.0.%d", 10+i)),
		ip6:  netip.MustParseAddr(fmt.Sprintf("fd99::%d", 10+i)),
		mac:  fmt.Sprintf("02:99:00:00:00:%02x", 0x10+i),
		key:  key,
	}
	l.addNS(h.ns)
	l.plug(h.ns, h.port, h.mac, h.ip4.String(), h.ip6.String())
	l.hosts = append(l.hosts, h)
	return h
}

// config writes h's edgelb config: the lab's first three hosts are the
// configured cluster.
func (h *host) config() string {
	var join []string
	for _, o := range h.lab.hosts[:min(3, len(h.lab.hosts))] {
		join = append(join, strconv.Quote(o.ip4.String()))
	}
	cfg := fmt.Sprintf(`node: {name: %s, interface: eth0}
cluster:
  bindAddr: %s
  join: [%s]
  secretKeyFile: %s
dataplane: {backend: none}
services:
  - {name: web4, vip: %s, ports: [{port: 8080}]}
  - {name: web6, vip: "%s", ports: [{port: 8080}]}
`, h.name, h.ip4, strings.Join(join, ", "), h.key, vip4, vip6)
	path := filepath.Join(h.lab.dir, h.name+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		h.lab.t.Fatal(err)
	}
	return path
}

// start runs the responder (once) and edgelb on h.
func (h *host) start() {
	l := h.lab
	if h.log == nil {
		resp := exec.Command("ip", "netns", "exec", h.ns, selfBin)
		resp.Env = append(os.Environ(), "ELBT_ROLE=responder", "ELBT_NAME="+h.name)
		if err := resp.Start(); err != nil {
			l.t.Fatal(err)
		}
		l.t.Cleanup(func() { resp.Process.Kill(); resp.Wait() })
	} else {
		h.logs = append(h.logs, h.log.String())
	}
	h.log = &lockedBuffer{}
	cmd := exec.Command("ip", "netns", "exec", h.ns, edgelbBin, "run", "--config", h.config())
	cmd.Stdout, cmd.Stderr = h.log, h.log
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	h.proc, h.exit = cmd, make(chan error, 1)
	go func() { h.exit <- cmd.Wait() }()
}

// stop sends SIGTERM and waits for edgelb to exit.
func (h *host) stop(timeout time.Duration) error {
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

// restart restarts edgelb on h as `systemctl restart` does with the
// packaged unit: SIGUSR2 (its RestartKillSignal), wait for the process to
// exit, check that it exited 0, start it again. It returns how long the
// old process took to exit.
func (h *host) restart(timeout time.Duration) (time.Duration, error) {
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
		h.start()
		return took, nil
	case <-time.After(timeout):
		return 0, errors.New("edgelb did not exit in time on SIGUSR2")
	}
}

func (h *host) kill() {
	if h.proc != nil {
		h.proc.Process.Kill()
		<-h.exit
		h.proc = nil
	}
}

// setLink sets h's port on the bridge up or down.
func (h *host) setLink(up bool) {
	state := "down"
	if up {
		state = "up"
	}
	h.lab.ip(h.lab.prefix+"-sw", "link", "set", h.port, state)
}

// has reports whether vip is configured on h's eth0.
func (h *host) has(vip netip.Addr) bool {
	out, err := exec.Command("ip", "-n", h.ns, "-o", "addr", "show", "dev", "eth0").Output()
	if err != nil {
		return false
	}
	bits := 32
	if vip.Is6() {
		bits = 128
	}
	return strings.Contains(string(out), " "+netip.PrefixFrom(vip, bits).String()+" ")
}

// holders returns the hosts that have vip configured.
func (l *lab) holders(vip netip.Addr) []*host {
	var out []*host
	for _, h := range l.hosts {
		if h.has(vip) {
			out = append(out, h)
		}
	}
	return out
}

func names(hs []*host) []string {
	var out []string
	for _, h := range hs {
		out = append(out, h.name)
	}
	return out
}

// owner waits until vip is on exactly one host and returns it.
func (l *lab) owner(vip netip.Addr, timeout time.Duration) *host {
	l.t.Helper()
	var hs []*host
	ok := poll(timeout, func() bool {
		hs = l.holders(vip)
		return len(hs) == 1
	})
	if !ok {
		l.t.Fatalf("%s is not on exactly one host after %s: on %v", vip, timeout, names(hs))
	}
	return hs[0]
}

// neighbour returns the client's neighbour entry's hardware address for ip.
func (l *lab) neighbour(ip netip.Addr) string {
	out, _ := exec.Command("ip", "-n", l.client, "neigh", "show", ip.String(), "dev", "eth0").Output()
	f := strings.Fields(string(out))
	if i := slices.Index(f, "lladdr"); i >= 0 && i+1 < len(f) {
		return f[i+1]
	}
	return ""
}

// poll calls cond every 10 ms until it returns true or timeout passes.
func poll(timeout time.Duration, cond func() bool) bool {
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

func (l *lab) ip(ns string, args ...string) {
	l.run("ip", append([]string{"-n", ns}, args...)...)
}

func (l *lab) sysctl(ns string, kv ...string) {
	l.run("ip", append([]string{"netns", "exec", ns, "sysctl", "-qw"}, kv...)...)
}

func (l *lab) run(name string, args ...string) {
	l.t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		l.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// cleanup stops everything in the lab and removes its namespaces; it
// may be called more than once.
func (l *lab) cleanup() {
	if l.closed {
		return
	}
	l.closed = true
	for _, h := range l.hosts {
		h.kill()
		if l.t.Failed() && h.log != nil {
			logs := append(h.logs, h.log.String())
			l.t.Logf("--- edgelb log of %s ---\n%s", h.name, strings.Join(logs, "--- restarted ---\n"))
		}
	}
	for _, ns := range l.nss {
		exec.Command("ip", "netns", "del", ns).Run()
	}
}

// probes is a running prober in the client namespace.
type probes struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	res  []probeResult
	done chan struct{}
}

type probeResult struct {
	start time.Time
	ok    bool
	host  string // or the error
}

// probe starts probing target every 10 ms with the given per-probe
// timeout until stop.
func (l *lab) probe(target netip.Addr, timeout time.Duration) *probes {
	cmd := exec.Command("ip", "netns", "exec", l.client, selfBin)
	cmd.Env = append(os.Environ(), "ELBT_ROLE=prober", "ELBT_TARGET="+netip.AddrPortFrom(target, 8080).String(),
		"ELBT_INTERVAL=10ms", "ELBT_TIMEOUT="+timeout.String())
	out, err := cmd.StdoutPipe()
	if err != nil {
		l.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	p := &probes{cmd: cmd, done: make(chan struct{})}
	go p.read(out)
	l.t.Cleanup(func() { p.stop() })
	return p
}

func (p *probes) read(r io.Reader) {
	defer close(p.done)
	s := bufio.NewScanner(r)
	for s.Scan() {
		f := strings.SplitN(s.Text(), " ", 3)
		if len(f) != 3 {
			continue
		}
		ns, _ := strconv.ParseInt(f[0], 10, 64)
		p.mu.Lock()
		p.res = append(p.res, probeResult{start: time.Unix(0, ns), ok: f[1] == "ok", host: f[2]})
		p.mu.Unlock()
	}
}

// stop ends the prober, waiting for probes in flight, and returns all
// results in start order.
func (p *probes) stop() []probeResult {
	if p.cmd.Process != nil {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	<-p.done
	p.cmd.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	slices.SortFunc(p.res, func(a, b probeResult) int { return a.start.Compare(b.start) })
	return slices.Clone(p.res)
}

// hold opens one long-lived TCP connection from the client to target's
// echo port (8081) that exchanges a line every 100 ms until stop; the
// results have the prober's form.
func (l *lab) hold(target netip.Addr) *probes {
	cmd := exec.Command("ip", "netns", "exec", l.client, selfBin)
	cmd.Env = append(os.Environ(), "ELBT_ROLE=holder", "ELBT_TARGET="+netip.AddrPortFrom(target, 8081).String(),
		"ELBT_INTERVAL=100ms")
	out, err := cmd.StdoutPipe()
	if err != nil {
		l.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	p := &probes{cmd: cmd, done: make(chan struct{})}
	go p.read(out)
	l.t.Cleanup(func() { p.stop() })
	return p
}

// lastOK returns the host that answered the newest probe, or "".
func (p *probes) last() probeResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.res) == 0 {
		return probeResult{}
	}
	return p.res[len(p.res)-1]
}

// outage summarises probe results: the number of failed probes and the
// time from the first failed probe to the first successful one after the
// last failure (0 without failures).
func outage(res []probeResult) (failed int, d time.Duration) {
	first, last := -1, -1
	for i, r := range res {
		if !r.ok {
			failed++
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return 0, 0
	}
	for _, r := range res[last+1:] {
		if r.ok {
			return failed, r.start.Sub(res[first].start)
		}
	}
	return failed, res[len(res)-1].start.Sub(res[first].start)
}

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
