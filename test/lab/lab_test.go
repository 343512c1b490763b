package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgelb/edgelb/test/prereq"
	"github.com/edgelb/edgelb/test/testenv"
)

// output collects a process's lines and lets a test wait for one.
type output struct {
	mu    sync.Mutex
	lines []string
	more  chan struct{} // closed and replaced on every line
	eof   bool
}

func newOutput(r io.Reader, t *testing.T) *output {
	o := &output{more: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if testing.Verbose() {
				fmt.Println("lab| " + sc.Text())
			}
			o.mu.Lock()
			o.lines = append(o.lines, sc.Text())
			close(o.more)
			o.more = make(chan struct{})
			o.mu.Unlock()
		}
		o.mu.Lock()
		o.eof = true
		close(o.more)
		o.mu.Unlock()
	}()
	return o
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return strings.Join(o.lines, "\n")
}

// waitLine waits for a line containing s and returns the output so far.
func (o *output) waitLine(s string, timeout time.Duration) (string, error) {
	deadline := time.After(timeout)
	for {
		o.mu.Lock()
		for _, l := range o.lines {
			if strings.Contains(l, s) {
				all := strings.Join(o.lines, "\n")
				o.mu.Unlock()
				return all, nil
			}
		}
		more, eof := o.more, o.eof
		o.mu.Unlock()
		if eof {
			return "", errors.New("the lab exited")
		}
		select {
		case <-more:
		case <-deadline:
			return "", fmt.Errorf("no %q after %s", s, timeout)
		}
	}
}

func match(t *testing.T, text, re string) string {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("the lab's instructions lack %s:\n%s", re, text)
	}
	return m[1]
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func freePort(t *testing.T, pair bool) int {
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !pair || portFree(p+1) {
			return p
		}
	}
	t.Fatal("no free loopback port")
	return 0
}

func netns() map[string]bool {
	m := map[string]bool{}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		m[e.Name()] = true
	}
	return m
}

// TestMakeLab runs `make lab` as a new user would: it waits for the printed
// instructions, follows them (dashboard, token, EXTERNAL-IPs, the curl
// commands, the router's route, killing a host through the control
// endpoint: testBGP), presses Ctrl-C and checks that nothing is left behind.
func TestMakeLab(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		prereq.Missing(t, "the lab's VM needs linux/amd64")
	}
	prereq.NotShort(t, "the lab (a VM)")
	if _, err := exec.LookPath("make"); err != nil {
		prereq.Missing(t, "make is not on PATH")
	}
	if _, err := testenv.BinDir(); err != nil {
		prereq.Missing(t, "%v", err)
	}
	root := testenv.RepoRoot()
	if out, err := exec.Command(filepath.Join(root, "hack/vm/build.sh")).CombinedOutput(); err != nil {
		prereq.Missing(t, "cannot prepare the test VM (hack/vm/build.sh): %v\n%s", err, out)
	}

	// The default ports unless something else holds them.
	env := os.Environ()
	if !portFree(9080) {
		env = append(env, fmt.Sprintf("EDGELB_LAB_DASHBOARD_PORT=%d", freePort(t, false)))
	}
	if !portFree(18080) || !portFree(18081) {
		env = append(env, fmt.Sprintf("EDGELB_LAB_WEB_PORT=%d", freePort(t, true)))
	}
	if !portFree(18090) || !portFree(18091) {
		env = append(env, fmt.Sprintf("EDGELB_LAB_BGP_PORT=%d", freePort(t, true)))
	}
	nsBefore := netns()

	start := time.Now()
	cmd := exec.Command("make", "--no-print-directory", "lab")
	cmd.Dir, cmd.Env = root, env
	// Its own process group, like a shell job: Ctrl-C goes to the group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out := newOutput(pr, t)
	exited := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		pw.Close()
		exited <- err
	}()
	pgid := cmd.Process.Pid
	stopped := false
	defer func() {
		if !stopped {
			syscall.Kill(-pgid, syscall.SIGINT)
			select {
			case <-exited:
			case <-time.After(60 * time.Second):
				syscall.Kill(-pgid, syscall.SIGKILL)
			}
		}
		if t.Failed() {
			t.Logf("make lab printed:\n%s", out)
		}
	}()

	text, err := out.waitLine("Press Ctrl-C", 10*time.Minute)
	if err != nil {
		t.Fatalf("make lab did not get ready: %v", err)
	}
	t.Logf("the lab was ready %s after `make lab`", time.Since(start).Round(time.Second))
	dashboard := match(t, text, `Dashboard:\s+(http://127\.0\.0\.1:\d+/)`)
	token := match(t, text, `Admin token:\s+(\S+)`)
	curlURL := match(t, text, `(?m)^\s+curl (http://127\.0\.0\.1:\d+/)$`)
	// The lab prints the kubectl it built (hack/kube/build.sh) with its path.
	kubectl := match(t, text, `(/\S+/kubectl) --kubeconfig \S+ get svc`)
	kubeconfig := match(t, text, `kubectl --kubeconfig (\S+) get svc`)
	labDir := match(t, text, `Lab files:\s+(\S+)`)
	bgpURL := match(t, text, `(?m)^\s+curl (http://127\.0\.0\.1:\d+/)\s+# web-bgp`)
	control := match(t, text, `Control: (http://127\.0\.0\.1:\d+/)`)
	// 30 s: the control endpoint's /route runs vtysh in the emulated VM,
	// which a busy VM made take over 5 s in CI.
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(url, token string) (int, string, error) {
		req, _ := http.NewRequest("GET", url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}

	t.Run("the dashboard answers with the printed token", func(t *testing.T) {
		code, body, err := get(dashboard, "")
		if err != nil || code != 200 || !strings.Contains(strings.ToLower(body), "<html") {
			t.Errorf("GET %s: %d %v %.200q", dashboard, code, err, body)
		}
		if code, _, err := get(dashboard+"api/v1/status", ""); err != nil || code != 401 {
			t.Errorf("GET api/v1/status without a token: %d %v, want 401", code, err)
		}
		code, body, err = get(dashboard+"api/v1/status", token)
		if err != nil || code != 200 {
			t.Errorf("GET api/v1/status with the admin token: %d %v %.300q", code, err, body)
		}
		t.Logf("api/v1/status: %.300s", body)
	})

	t.Run("the demo Services have EXTERNAL-IPs", func(t *testing.T) {
		b, err := exec.Command(kubectl, "--kubeconfig", kubeconfig, "get", "svc", "-n", "demo", "-o",
			`jsonpath={range .items[*]}{.metadata.name}={.status.loadBalancer.ingress[0].ip}{"\n"}{end}`).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl: %v\n%s", err, b)
		}
		got := map[string]string{}
		for _, l := range strings.Fields(string(b)) {
			name, ip, _ := strings.Cut(l, "=")
			got[name] = ip
		}
		for _, s := range []string{"web", "sticky", "dns", "web-bgp"} {
			if net.ParseIP(got[s]) == nil {
				t.Errorf("Service demo/%s has no EXTERNAL-IP: %v", s, got)
			}
		}
		if got["web-bgp"] != bgpVIP {
			t.Errorf("Service demo/web-bgp has EXTERNAL-IP %q, want %s", got["web-bgp"], bgpVIP)
		}
	})

	t.Run("the printed route has a next hop through each host", func(t *testing.T) {
		if hops := nextHops(text); !slices.Equal(hops, []string{"10.0.0.11", "10.0.0.12", "10.0.0.13"}) {
			t.Errorf("next hops in the printed route: %v, want lb1..lb3", hops)
		}
	})

	// requests sends n GETs to url, each on a new connection, and counts
	// the answers by node. A request may be retried once: the emulated VM
	// is slow and shared, and a rare false gossip suspicion moves an l2
	// VIP or withdraws a host's routes.
	requests := func(t *testing.T, url string, n int) map[string]int {
		t.Helper()
		nodes, retries := map[string]int{}, 0
		for range n {
			code, body, err := get(url, "")
			if err != nil || code != 200 || !strings.HasPrefix(body, "node") {
				t.Logf("GET %s: %d %v %q; retrying once", url, code, err, body)
				retries++
				time.Sleep(2 * time.Second)
				if code, body, err = get(url, ""); err != nil || code != 200 || !strings.HasPrefix(body, "node") {
					t.Fatalf("GET %s: %d %v %q", url, code, err, body)
				}
			}
			nodes[strings.Fields(body)[0]]++
		}
		t.Logf("answers per node: %v (%d retried)", nodes, retries)
		if retries > n/4 {
			t.Errorf("%d of %d requests needed a retry", retries, n)
		}
		return nodes
	}

	t.Run("the printed curl reaches the VIP and several nodes", func(t *testing.T) {
		if nodes := requests(t, curlURL, 9); len(nodes) < 2 {
			t.Errorf("all answers from one node: %v", nodes)
		}
	})

	t.Run("the bgp VIP is reached through ECMP and survives the loss of a host", func(t *testing.T) {
		testBGP(t, get, requests, bgpURL, control)
	})

	// Ctrl-C.
	stopAt := time.Now()
	syscall.Kill(-pgid, syscall.SIGINT)
	select {
	case <-exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("make lab did not exit within 60s of Ctrl-C")
	}
	stopped = true
	t.Logf("make lab stopped %s after Ctrl-C", time.Since(stopAt).Round(100*time.Millisecond))
	if _, err := out.waitLine("lab: stopped; removed", time.Second); err != nil {
		t.Errorf("the lab did not say it stopped cleanly")
	}
	if err := syscall.Kill(-pgid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("processes of the lab's process group are left (kill -0: %v)", err)
	}
	if _, err := os.Stat(labDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the lab's directory %s is left (%v)", labDir, err)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), labDir) {
			t.Errorf("a process of the lab is left: %s %q", p, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	for ns := range netns() {
		if !nsBefore[ns] && regexp.MustCompile(`^(lb|node)\d$|^client$|^router$`).MatchString(ns) {
			t.Errorf("network namespace %s appeared on the host", ns)
		}
	}
	for _, u := range []string{dashboard, curlURL, bgpURL, control} {
		host := strings.TrimSuffix(strings.TrimPrefix(u, "http://"), "/")
		if c, err := net.DialTimeout("tcp", host, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after Ctrl-C", host)
		}
	}
}
