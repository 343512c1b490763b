//go:build vm

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBackendAdminStates (run after TestContinuity: it reuses its
// topology): a backend drained through one host's API keeps
// its open connection and gets no new one, on every host (weight 0 in
// every host's IPVS table); disabled, it leaves every host's table;
// enabled, it is back everywhere. Three hosts share the cluster
// configuration over gossip; the change is made on a host that does not
// own the VIP.
func TestBackendAdminStates(t *testing.T) {
	if _, err := os.Stat("/run/netns/node1"); err != nil {
		topology(t)
	}
	sh(t, `for i in 1 2 3; do ip -n lb$i link set eth0 up; done`)
	const vip = "10.0.0.160"
	services := `  - {name: adm, vip: ` + vip + `, scheduler: rr, ports: [{port: 80, targetPort: 30080}, {port: 9000, targetPort: 30090}], backends: [10.0.0.21, 10.0.0.22, 10.0.0.23]}
`
	var lbs []*edgelb
	for i := 1; i <= 3; i++ {
		ns := fmt.Sprintf("lb%d", i)
		cfg := hostConfig(i, "{backend: ipvs, mode: nodeport, method: nat, drainTimeout: 60s}", "127.0.0.1:9083", "", services)
		// A state directory of its own: no cluster configuration from
		// another test's run.
		state := "/tmp/adm-state-" + ns
		os.RemoveAll(state)
		os.MkdirAll(state, 0o700)
		e := &edgelb{ns: ns, cfg: "/tmp/adm-" + ns + ".yaml", log: "/tmp/adm-" + ns + ".log", env: []string{"STATE_DIRECTORY=" + state}}
		os.WriteFile(e.cfg, []byte(cfg), 0o644)
		if out, err := exec.Command(edgelbBin, "check", "--config", e.cfg).CombinedOutput(); err != nil {
			t.Fatalf("edgelb check: %v\n%s", err, out)
		}
		e.start(t)
		t.Cleanup(func() {
			e.stop(t)
			// Leave no virtual service or nftables table of this test
			// to the next one.
			cmd := exec.Command("ip", "netns", "exec", ns, edgelbBin, "cleanup", "--config", e.cfg)
			cmd.Env = append(os.Environ(), e.env...)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("edgelb cleanup in %s: %v\n%s", ns, err, out)
			}
		})
		lbs = append(lbs, e)
	}
	defer func() {
		if t.Failed() {
			for _, e := range lbs {
				e.dumpLog(t)
			}
		}
	}()
	owner := ""
	// rs is the line of table() for a real server of port 9000 (or "").
	rs := func(i int, port, backend string) string {
		for _, l := range table(t, fmt.Sprintf("lb%d", i), "-t", vip+":"+port) {
			if strings.HasPrefix(l, "-> "+backend+" ") {
				return l
			}
		}
		return ""
	}
	everywhere := func(what string, ok func(i int) bool) time.Duration {
		return waitFor(t, what, 60*time.Second, func() bool {
			for i := 1; i <= 3; i++ {
				if !ok(i) {
					return false
				}
			}
			return true
		})
	}
	everywhere("every host to program "+vip+" with three backends", func(i int) bool {
		return len(table(t, fmt.Sprintf("lb%d", i), "-t", vip+":9000")) == 4 && len(table(t, fmt.Sprintf("lb%d", i), "-t", vip+":80")) == 4
	})
	waitFor(t, "one owner of "+vip, 60*time.Second, func() bool {
		n := 0
		for i := 1; i <= 3; i++ {
			if strings.Contains(sh(t, fmt.Sprintf("ip -n lb%d -br addr show dev eth0", i)), vip+"/") {
				n, owner = n+1, fmt.Sprintf("lb%d", i)
			}
		}
		return n == 1
	})
	other := "lb1"
	if owner == "lb1" {
		other = "lb2"
	}

	// The held connection's backend, from the owner's connection table.
	// Held until it is stopped (SIGTERM) once the drain is checked.
	hold, rd := holdConnection(t, vip+":9000", 300)
	defer hold.Process.Kill()
	var backend string
	waitFor(t, "the held connection in "+owner+"'s IPVS connection table", 10*time.Second, func() bool {
		for _, l := range strings.Split(ipvsadm(t, owner, "-Lnc"), "\n") {
			f := strings.Fields(l)
			if len(f) >= 6 && f[0] == "TCP" && f[2] == "ESTABLISHED" && f[4] == vip+":9000" {
				backend = strings.TrimSuffix(f[5], ":30090")
				return true
			}
		}
		return false
	})
	node := map[string]string{"10.0.0.21": "node1", "10.0.0.22": "node2", "10.0.0.23": "node3"}[backend]
	t.Logf("the held connection goes to %s (%s) through %s; the change is made on %s", backend, node, owner, other)

	// admin POSTs action for the backend on each target port, through
	// other's API (one helper process: each takes seconds to start
	// under emulation).
	admin := func(action string, ports ...string) {
		t.Helper()
		var urls []string
		for _, port := range ports {
			urls = append(urls, fmt.Sprintf("http://127.0.0.1:9083/api/v1/services/_static/adm/backends/%s:%s/%s", backend, port, action))
		}
		self, _ := os.Executable()
		cmd := exec.Command("ip", "netns", "exec", other, self)
		cmd.Env = append(os.Environ(), "EDGELB_HELPER=post", "EDGELB_ARGS="+strings.Join(urls, " "))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %s on %s: %v\n%s", action, backend, other, err, out)
		}
	}

	start := time.Now()
	admin("drain", "30090", "30080")
	took := everywhere(backend+" at weight 0 on every host", func(i int) bool {
		return strings.HasSuffix(rs(i, "9000", backend+":30090"), " 0") && strings.HasSuffix(rs(i, "80", backend+":30080"), " 0")
	})
	t.Logf("FIGURE backend drain through %s's API -> weight 0 in all three hosts' IPVS: %v (the last %v of it waiting)", other, time.Since(start).Round(10*time.Millisecond), took.Round(10*time.Millisecond))
	r := helper(t, "client", "http", "30", "http://"+vip+"/")
	t.Logf("new connections after the drain: %v", r.Counts)
	if r.Counts[node] != 0 || r.Errors != 0 {
		t.Errorf("after the drain of %s, %d of 30 new connections reached it (errors %d: %s)", node, r.Counts[node], r.Errors, r.LastErr)
	}
	hold.Process.Signal(syscall.SIGTERM)
	if line, err := rd.ReadString('\n'); err != nil || strings.TrimSpace(line) != "held" {
		t.Errorf("the connection held through the drain broke: %q %v", line, err)
	}
	hold.Wait()

	admin("disable", "30090")
	everywhere(backend+" out of every host's table", func(i int) bool { return rs(i, "9000", backend+":30090") == "" })
	admin("enable", "30090", "30080")
	everywhere(backend+" back at weight 1 on every host", func(i int) bool {
		return strings.HasSuffix(rs(i, "9000", backend+":30090"), " 1") && strings.HasSuffix(rs(i, "80", backend+":30080"), " 1")
	})
	r = helper(t, "client", "http", "30", "http://"+vip+"/")
	if r.Counts[node] == 0 {
		t.Errorf("after the enable, no new connection reached %s: %v", node, r.Counts)
	}

	// The dataplane keys are cluster configuration taken up at run
	// time: continuity off (sloppy pickup off in every host's IPVS) and
	// the wrr scheduler, applied on one host with `edgelb config
	// apply`. Nothing restarts and nothing is flushed: the virtual
	// services stay, with their backends.
	sloppy := func(i int) string {
		return strings.TrimSpace(sh(t, fmt.Sprintf("ip netns exec lb%d cat /proc/sys/net/ipv4/vs/sloppy_tcp", i)))
	}
	everywhere("sloppy pickup on (continuity's default)", func(i int) bool { return sloppy(i) == "1" })
	spec := "/tmp/adm-spec.yaml"
	os.WriteFile(spec, []byte(hostConfig(1, "{backend: ipvs, mode: nodeport, method: nat, drainTimeout: 60s, continuity: false}", "127.0.0.1:9083", "",
		strings.Replace(services, "scheduler: rr", "scheduler: wrr", 1))), 0o644)
	start = time.Now()
	if out, err := exec.Command("ip", "netns", "exec", other, edgelbBin, "config", "apply", "-f", spec, "--api", "http://127.0.0.1:9083").CombinedOutput(); err != nil {
		t.Fatalf("edgelb config apply on %s: %v\n%s", other, err, out)
	}
	everywhere("sloppy pickup off and the wrr scheduler on every host", func(i int) bool {
		return sloppy(i) == "0" && strings.Contains(ipvsadm(t, fmt.Sprintf("lb%d", i), "-Ln", "-t", vip+":9000"), " wrr")
	})
	t.Logf("FIGURE dataplane change (continuity off, wrr) through %s's API -> on all three hosts: %v", other, time.Since(start).Round(10*time.Millisecond))
	for i := 1; i <= 3; i++ {
		if n := len(table(t, fmt.Sprintf("lb%d", i), "-t", vip+":9000")); n != 4 {
			t.Errorf("lb%d's %s:9000 after the dataplane change: %d lines, want the service and three backends", i, vip, n)
		}
	}
	for _, e := range lbs {
		if log, _ := os.ReadFile(e.log); strings.Count(string(log), "starting edgelb") != 1 {
			t.Errorf("%s started %d times: a dataplane change must not need a restart", e.ns, strings.Count(string(log), "starting edgelb"))
		}
	}
	r = helper(t, "client", "http", "30", "http://"+vip+"/")
	if r.Errors != 0 || len(r.Counts) < 2 {
		t.Errorf("new connections after the dataplane change: %v (errors %d: %s)", r.Counts, r.Errors, r.LastErr)
	}
}
