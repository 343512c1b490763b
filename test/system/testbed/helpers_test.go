//go:build sysvm

package testbed

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgelb/edgelb/test/labnet"
)

// runHelper is the test binary acting as a client or a backend inside a
// network namespace of the VM (EDGELB_HELPER); it runs until SIGTERM.
func runHelper(name string, args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	enc := json.NewEncoder(os.Stdout)
	switch name {
	case "serve": // serve NAME: a cluster node's servers (HTTP :8080, echo :30090)
		if err := labnet.Serve(ctx, args[0], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "serve:", err)
			return 1
		}
	case "probe": // probe URL INTERVAL
		every, _ := time.ParseDuration(args[1])
		fmt.Println("probing")
		enc.Encode(labnet.Probe(ctx, args[0], every))
	case "hold": // hold ADDR INTERVAL
		every, _ := time.ParseDuration(args[1])
		r := labnet.Hold(ctx, args[0], every, func(local string) { fmt.Println("connected", local) })
		if r.Local == "" {
			fmt.Println("connected none")
		}
		enc.Encode(r)
	case "arpwatch": // arpwatch IFACE ADDR INTERVAL GAP
		every, _ := time.ParseDuration(args[2])
		gap, _ := time.ParseDuration(args[3])
		enc.Encode(labnet.ARPWatch(ctx, args[0], netip.MustParseAddr(args[1]), every, gap, func() { fmt.Println("watching") }))
	default:
		fmt.Fprintf(os.Stderr, "unknown helper %q\n", name)
		return 2
	}
	return 0
}

// sh runs a bash script in the VM itself.
func sh(t testing.TB, script string) string {
	t.Helper()
	out, err := exec.Command("bash", "-ec", script).CombinedOutput()
	if err != nil {
		t.Fatalf("%s\n%v\n%s", script, err, out)
	}
	return string(out)
}

// host is one Debian host of the test bed: a systemd-nspawn container
// booted from the image, with a persistent overlay as its disk.
type host struct {
	name string
	addr string // on the LAN, 10.0.0.0/24
}

func (h host) unit() string { return "tb-" + h.name }
func (h host) root() string { return "/var/lib/machines/" + h.name }

// boot starts the container with systemd as PID 1 and returns when its
// boot has finished.
func (h host) boot(t testing.TB) {
	t.Helper()
	h.start(t)
	h.waitBooted(t)
}

// start powers the container on: systemd-nspawn boots the image's systemd
// on the host's persistent overlay, with a veth on the LAN bridge.
func (h host) start(t testing.TB) {
	t.Helper()
	state := "/var/lib/testbed/" + h.name
	if _, err := os.Stat(h.root() + "/etc"); err != nil {
		sh(t, fmt.Sprintf(`mkdir -p %[1]s/upper %[1]s/work %[2]s
mount -t overlay overlay -o lowerdir=/srv/base,upperdir=%[1]s/upper,workdir=%[1]s/work %[2]s`, state, h.root()))
	}
	sh(t, fmt.Sprintf(`systemctl reset-failed %[1]s 2>/dev/null || true
systemd-run --quiet --unit=%[1]s -p Delegate=yes -p KillMode=mixed --service-type=notify -- \
	systemd-nspawn --quiet --boot --notify-ready=yes --register=no --keep-unit --machine=%[2]s \
	--directory=%[3]s --network-bridge=br0 --bind-ro=/job:/root/job --console=passive`, h.unit(), h.name, h.root()))
}

// waitBooted waits until the container's systemd has finished booting.
func (h host) waitBooted(t testing.TB) {
	t.Helper()
	waitFor(t, 5*time.Minute, h.name+" to finish booting", func() (bool, string) {
		out, err := h.tryRun("systemctl", "is-system-running")
		s := strings.TrimSpace(out)
		return err == nil && s == "running" || s == "degraded", s
	})
}

// leader is the PID (in the VM) of the container's PID 1.
func (h host) leader() (int, error) {
	out, err := exec.Command("systemctl", "show", "-P", "MainPID", h.unit()).Output()
	if err != nil {
		return 0, err
	}
	nspawn := strings.TrimSpace(string(out))
	self, _ := os.Readlink("/proc/self/ns/pid")
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil || !strings.Contains(string(b), "\nPPid:\t"+nspawn+"\n") {
			continue
		}
		if ns, _ := os.Readlink(filepath.Join("/proc", e.Name(), "ns/pid")); ns != self {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("%s: no container init under nspawn %s", h.name, nspawn)
}

// cmd is a command that runs inside the container, in all its namespaces.
func (h host) cmd(args ...string) (*exec.Cmd, error) {
	pid, err := h.leader()
	if err != nil {
		return nil, err
	}
	c := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(pid), "-a", "--"}, args...)...)
	c.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root",
		"DEBIAN_FRONTEND=noninteractive", "LANG=C.UTF-8", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0"}
	c.Dir = "/"
	return c, nil
}

func (h host) tryRun(args ...string) (string, error) {
	c, err := h.cmd(args...)
	if err != nil {
		return "", err
	}
	out, err := c.CombinedOutput()
	return string(out), err
}

// run runs a command in the container and fails the test if it fails.
func (h host) run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := h.tryRun(args...)
	if err != nil {
		t.Fatalf("%s: %s: %v\n%s", h.name, strings.Join(args, " "), err, out)
	}
	return out
}

// sh runs a bash script in the container.
func (h host) sh(t testing.TB, script string) string {
	t.Helper()
	return h.run(t, "bash", "-ec", script)
}

func (h host) writeFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	c, err := h.cmd("bash", "-ec", fmt.Sprintf("umask 077; cat >%q.tmp; chmod %o %q.tmp; mv %q.tmp %q", path, mode, path, path, path))
	if err != nil {
		t.Fatal(err)
	}
	c.Stdin = strings.NewReader(content)
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("%s: writing %s: %v\n%s", h.name, path, err, out)
	}
}

func (h host) prop(t testing.TB, p string) string {
	t.Helper()
	return strings.TrimSpace(h.run(t, "systemctl", "show", "-P", p, "edgelb.service"))
}

// props returns properties of edgelb.service by name. (`systemctl show -P
// A,B` prints the values in systemd's order, not in the order asked.)
func (h host) props(keys ...string) (map[string]string, string) {
	args := []string{"systemctl", "show"}
	for _, k := range keys {
		args = append(args, "-p", k)
	}
	out, _ := h.tryRun(append(args, "edgelb.service")...)
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok {
			m[k] = v
		}
	}
	return m, out
}

// holdsVIP reports whether the VIP is on the host's LAN interface.
func (h host) holdsVIP(t testing.TB, vip string) bool {
	t.Helper()
	return strings.Contains(h.run(t, "ip", "-o", "addr", "show", "dev", "host0"), " "+vip+"/")
}

// waitActive waits until systemd reports edgelb active (after READY=1).
func (h host) waitActive(t testing.TB, d time.Duration) {
	t.Helper()
	waitFor(t, d, h.name+": edgelb active", func() (bool, string) {
		out, _ := h.tryRun("systemctl", "is-active", "edgelb")
		return strings.TrimSpace(out) == "active", out
	})
}

// waitFor polls cond every 100 ms until it holds or d has passed.
func waitFor(t testing.TB, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	start := time.Now()
	end := start.Add(d)
	var last string
	checks := 0
	for {
		checks++
		ok, l := cond()
		if ok {
			// A slow wait says what it waited for, to tell where a
			// step's time went.
			if took := time.Since(start); took > 20*time.Second {
				t.Logf("waited %v for %s (%d checks; the last that failed: %q)", took.Round(100*time.Millisecond), what, checks, strings.TrimSpace(last))
			}
			return
		}
		last = l
		if time.Now().After(end) {
			t.Fatalf("timed out after %v waiting for %s (last: %s)", d, what, strings.TrimSpace(last))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// helper is a client or server process running in a network namespace
// of the VM.
type helper struct {
	cmd *exec.Cmd
	out *bufio.Reader
}

func startHelper(t testing.TB, netns, name string, args ...string) *helper {
	t.Helper()
	self, _ := os.Executable()
	c := exec.Command("ip", "netns", "exec", netns, self)
	c.Env = append(os.Environ(), "EDGELB_HELPER="+name, "EDGELB_ARGS="+strings.Join(args, " "))
	pr, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.Stderr = os.Stderr
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{cmd: c, out: bufio.NewReader(pr)}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	line, err := h.out.ReadString('\n')
	if err != nil || strings.HasSuffix(line, " none\n") {
		t.Fatalf("%s in %s did not start: %q %v", name, netns, line, err)
	}
	return h
}

// stop ends the helper and decodes its JSON report into v.
func (h *helper) stop(t testing.TB, v any) {
	t.Helper()
	h.cmd.Process.Signal(syscall.SIGTERM)
	b, _ := io.ReadAll(h.out)
	h.cmd.Wait()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("helper report %q: %v", b, err)
	}
}

func startProbe(t testing.TB, netns, url string) *helper {
	return startHelper(t, netns, "probe", url, "10ms")
}

func stopProbe(t testing.TB, p *helper) labnet.ProbeResult {
	t.Helper()
	var r labnet.ProbeResult
	p.stop(t, &r)
	return r
}

func startHold(t testing.TB, netns, addr string) *helper {
	return startHelper(t, netns, "hold", addr, "100ms")
}

func stopHold(t testing.TB, p *helper) labnet.HoldResult {
	t.Helper()
	var r labnet.HoldResult
	p.stop(t, &r)
	return r
}

// probeEvery probes url from the client until each of the three nodes has
// answered, and returns what the client saw. It stops at the first failed
// request, or after two minutes: under emulation, on a loaded machine, a
// request can take seconds, so a fixed time cannot promise answers from
// every node.
func probeEvery(t testing.TB, url string) labnet.ProbeResult {
	t.Helper()
	all := labnet.ProbeResult{Answers: map[string]int{}}
	end := time.Now().Add(2 * time.Minute)
	for len(all.Answers) < 3 && all.Failed == 0 && time.Now().Before(end) {
		p := startProbe(t, "client", url)
		time.Sleep(3 * time.Second)
		r := stopProbe(t, p)
		all.OK, all.Failed, all.InFlight = all.OK+r.OK, all.Failed+r.Failed, all.InFlight+r.InFlight
		all.Slowest = max(all.Slowest, r.Slowest)
		all.Errors = append(all.Errors, r.Errors...)
		for n, c := range r.Answers {
			all.Answers[n] += c
		}
	}
	return all
}
