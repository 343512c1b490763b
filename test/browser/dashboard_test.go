package browser

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/test/testenv"
	"github.com/edgelb/edgelb/web/webtest"
)

const (
	adminToken  = "e2e-admin-token-0123456789"
	viewerToken = "e2e-viewer-token-0123456789"
	converge    = 20 * time.Second
)

// VIPs from TEST-NET-3, configured only on the test's veth interfaces.
var vips = []string{"203.0.113.71", "203.0.113.72"}

// member is one `edgelb run` process.
type member struct {
	name   string
	iface  string // node.interface: one end of a veth pair
	gossip int    // cluster.bindPort
	api    string // api.listen
	cmd    *exec.Cmd
	exit   chan error
	log    *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDashboardDrainE2E runs three edgelb members on 127.0.0.1 and drives
// the dashboard of the member that owns the first VIP: the page shows the
// members, the VIP owners and the services; an admin's drain through the
// page moves the VIP to another member, in the page without a reload and
// on the interfaces; another member is drained and undrained from the same
// page; a screenshot is written to test/artifacts.
func TestDashboardDrainE2E(t *testing.T) {
	webtest.Require(t, os.Geteuid() == 0, "needs root to create the members' interfaces")
	_, err := exec.LookPath("ip")
	webtest.Require(t, err == nil, "iproute2's ip is not installed (hack/test-deps.sh)")
	page := webtest.NewPage(t) // skips (or fails under CI) without Chromium
	bin := buildEdgelb(t)

	members, owner := startMembers(t, bin)
	vip := vips[0]
	var local *member
	for _, m := range members {
		if m.name == owner[vip] {
			local = m
		}
	}
	t.Logf("%s is owned by %s; driving %s's dashboard at http://%s/", vip, local.name, local.name, local.api)

	page.Do("sign in as admin on "+local.name,
		chromedp.Navigate("http://"+local.api+"/?refresh=1"),
		webtest.SignIn(adminToken),
		chromedp.Evaluate[chromedp.Void](`window.notReloaded = true`))
	page.Do("the dashboard shows the members, the VIP owners and the services",
		webtest.Poll(`['lb1','lb2','lb3'].every(n => document.querySelector('tr[data-member="'+n+'"] .state .badge.ok'))`, converge),
		webtest.Poll(`['lb1','lb2','lb3'].every(n => /^v[0-9]+ in sync$/.test(document.querySelector('tr[data-member="'+n+'"] .config')?.textContent))`, converge),
		webtest.OwnerIs(vips[0], owner[vips[0]], converge),
		webtest.OwnerIs(vips[1], owner[vips[1]], converge),
		webtest.ServiceShown(api.StaticNamespace, "web", converge),
		webtest.ServiceShown(api.StaticNamespace, "dns", converge),
		webtest.Poll(`document.querySelector('#stream').dataset.state === 'live'`, converge))
	page.Do("the BGP card shows the speaker and its peer, not established (nobody listens at 127.0.0.2)",
		webtest.Poll(`!document.querySelector('#bgp-card').hidden && document.querySelector('#bgp-summary').textContent.startsWith('AS 64512 · router ID 127.0.0.1')`, converge),
		webtest.Poll(`(s => s && s !== 'established')(document.querySelector('#bgp tr[data-peer="127.0.0.2"] .state .badge.bad')?.textContent)`, converge))

	page.Do("a drain of "+local.name+" through the page moves "+vip,
		webtest.ClickDrain(local.name, "drain"),
		webtest.MemberDraining(local.name, true, converge),
		webtest.Poll(fmt.Sprintf(`(o => o && o !== %q && o !== 'nobody')(document.querySelector('tr[data-vip=%q] .owner')?.textContent)`,
			local.name, vip), converge),
		webtest.Poll(`!!document.querySelector('#events li[data-type="ownership"]')`, converge),
		webtest.Poll(`window.notReloaded === true`, time.Second))
	next := page.Eval(fmt.Sprintf(`document.querySelector('tr[data-vip=%q] .owner').textContent`, vip))
	poll(t, converge, vip+" on "+next+"'s interface only", func() error {
		if h := holders(members, vip); len(h) != 1 || h[0] != next {
			return fmt.Errorf("%s is on %v, the page says %s", vip, h, next)
		}
		return nil
	})
	t.Logf("after the drain of %s, %s is on %s", local.name, vip, next)
	page.Screenshot("dashboard-e2e")

	page.Do("a viewer cannot undrain",
		chromedp.Click(chromedp.ID("signout")),
		webtest.SignIn(viewerToken),
		webtest.ClickDrain(local.name, "undrain"),
		webtest.BannerContains("needs an admin token", converge),
		webtest.MemberDraining(local.name, true, time.Second))
	page.Do("an admin undrains "+local.name,
		chromedp.Click(chromedp.ID("signout")),
		webtest.SignIn(adminToken),
		webtest.ClickDrain(local.name, "undrain"),
		webtest.MemberDraining(local.name, false, converge))

	// Another member, drained from this member's page: the request goes
	// to it over gossip, and it hands its VIPs over.
	var other *member
	for _, m := range members {
		if m != local && (other == nil || m.name == owner[vips[1]]) {
			other = m
		}
	}
	page.Do("a drain of "+other.name+" from "+local.name+"'s page",
		webtest.ClickDrain(other.name, "drain"),
		webtest.BannerContains(other.name+" is draining", converge),
		webtest.MemberDraining(other.name, true, converge))
	poll(t, converge, other.name+" holds no VIP", func() error {
		for _, v := range vips {
			if h := holders(members, v); len(h) != 1 || h[0] == other.name {
				return fmt.Errorf("%s is on %v", v, h)
			}
		}
		return nil
	})
	page.Do("an undrain of "+other.name+" from "+local.name+"'s page",
		webtest.ClickDrain(other.name, "undrain"),
		webtest.MemberDraining(other.name, false, converge))
	if errs := page.Errors(); len(errs) > 0 {
		t.Errorf("the page reported errors: %q", errs)
	}
}

// startMembers runs three edgelb members on 127.0.0.1 and waits until each
// sees the three, runs a committed cluster configuration, and every VIP is
// on the interface of its one owner; it
// returns them and the owners.
func startMembers(t *testing.T, bin string) ([]*member, map[string]string) {
	t.Helper()
	members := make([]*member, 3)
	ports := freePorts(t, 2*len(members))
	for i := range members {
		members[i] = &member{
			name:   fmt.Sprintf("lb%d", i+1),
			iface:  fmt.Sprintf("elbt-w%d-%d", os.Getpid()%100000, i+1),
			gossip: ports[2*i],
			api:    fmt.Sprintf("127.0.0.1:%d", ports[2*i+1]),
		}
		addInterface(t, members[i].iface)
	}
	// Every file first: each writeConfig rewrites the shared gossip key,
	// which a member already started could read half-written.
	dir := t.TempDir()
	paths := make([]string, len(members))
	for i, m := range members {
		paths[i] = writeConfig(t, dir, m, members)
	}
	for i, m := range members {
		m.start(t, bin, paths[i])
	}
	t.Cleanup(func() {
		for _, m := range members {
			m.stop(t)
		}
		if t.Failed() {
			for _, m := range members {
				t.Logf("--- log of %s:\n%s", m.name, m.log.String())
			}
		}
	})

	// Wait for the cluster: three live members and each VIP on one.
	owner := map[string]string{}
	poll(t, converge, "three members and an owner for every VIP through each member's API (api.listen)", func() error {
		for _, m := range members {
			if err := m.exited(); err != nil {
				t.Fatal(err)
			}
			var ms []api.Member
			if err := getJSON(m.api, "/api/v1/members", &ms); err != nil {
				return err
			}
			if n := alive(ms); n != len(members) {
				return fmt.Errorf("%s sees %d live members: %+v", m.name, n, ms)
			}
			// The consensus log seeds version 1 once a majority is up.
			var d api.ConfigDoc
			if err := getJSON(m.api, "/api/v1/config", &d); err != nil {
				return fmt.Errorf("%s runs no committed cluster configuration: %w", m.name, err)
			}
		}
		var vs []api.VIP
		if err := getJSON(members[0].api, "/api/v1/vips", &vs); err != nil {
			return err
		}
		for _, v := range vs {
			if v.Owner == "" {
				return fmt.Errorf("%s has no owner", v.Address)
			}
			owner[v.Address] = v.Owner
		}
		for _, v := range vips {
			if owner[v] == "" {
				return fmt.Errorf("no VIP %s in %+v", v, vs)
			}
			if h := holders(members, v); len(h) != 1 || h[0] != owner[v] {
				return fmt.Errorf("%s is on %v, its owner is %s", v, h, owner[v])
			}
		}
		return nil
	})
	return members, owner
}

func alive(ms []api.Member) int {
	n := 0
	for _, m := range ms {
		if m.Alive {
			n++
		}
	}
	return n
}

// buildEdgelb builds the daemon into the test's temporary directory.
func buildEdgelb(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "edgelb")
	out, err := exec.Command("go", "build", "-tags", testenv.BuildTags, "-o", bin, "github.com/edgelb/edgelb/cmd/edgelb").CombinedOutput()
	if err != nil {
		t.Fatalf("building edgelb: %v\n%s", err, out)
	}
	return bin
}

// addInterface creates a veth pair, name and name+"p", both up, removed
// when the test ends. A dummy interface would do, but not every kernel has
// the dummy driver (this one has not); veth is always there.
func addInterface(t *testing.T, name string) {
	t.Helper()
	run(t, "ip", "link", "add", name, "type", "veth", "peer", "name", name+"p")
	t.Cleanup(func() { exec.Command("ip", "link", "del", name).Run() })
	run(t, "ip", "link", "set", name+"p", "up")
	run(t, "ip", "link", "set", name, "up")
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// holders returns the members whose interface has vip.
func holders(members []*member, vip string) []string {
	var out []string
	for _, m := range members {
		b, err := exec.Command("ip", "-o", "-4", "addr", "show", "dev", m.iface).Output()
		if err == nil && strings.Contains(string(b), " "+vip+"/") {
			out = append(out, m.name)
		}
	}
	return out
}

// freePorts returns n distinct ports free for TCP and UDP on 127.0.0.1
// (memberlist uses both on its bind port).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, l)
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		u.Close()
		ports = append(ports, port)
	}
	return ports
}

func writeConfig(t *testing.T, dir string, m *member, all []*member) string {
	t.Helper()
	var join []string
	for _, o := range all {
		join = append(join, fmt.Sprintf("%q", fmt.Sprintf("127.0.0.1:%d", o.gossip)))
	}
	cfg := fmt.Sprintf(`node: {name: %s, interface: %s}
cluster:
  bindAddr: 127.0.0.1
  bindPort: %d
  join: [%s]
  # Encrypted: with insecure: true the members would share only
  # ownership, and the dashboard could not drain another one.
  secretKeyFile: gossip.key
dataplane: {backend: none}
bgp:
  asn: 64512
  peers: [{address: 127.0.0.2, asn: 64500}]   # nobody listens there (loopback)
api:
  listen: %q
  tokens: {admin: [%q], viewer: [%q]}
services:
  - name: web
    vip: %s
    ports: [{port: 80}, {port: 443}]
    backends: ["127.0.0.1:8080", "127.0.0.1:8443"]
  - name: dns
    vip: %s
    ports: [{port: 53, protocol: UDP}]
    backends: ["127.0.0.1:5353"]
`, m.name, m.iface, m.gossip, strings.Join(join, ", "), m.api, adminToken, viewerToken, vips[0], vips[1])
	path := filepath.Join(dir, m.name+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "gossip.key"), []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (m *member) start(t *testing.T, bin, config string) {
	t.Helper()
	m.log = &syncBuffer{}
	m.cmd = exec.Command(bin, "run", "--config", config)
	// Its own state directory: never a cluster configuration persisted by
	// another run in the host's /var/lib/edgelb.
	state := filepath.Join(filepath.Dir(config), m.name+"-state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	m.cmd.Env = append(os.Environ(), "STATE_DIRECTORY="+state)
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", m.name, err)
	}
	m.exit = make(chan error, 1)
	go func() { m.exit <- m.cmd.Wait() }()
}

// exited returns an error if the member is no longer running.
func (m *member) exited() error {
	select {
	case err := <-m.exit:
		m.exit <- err // for stop
		return fmt.Errorf("%s exited: %v\n%s", m.name, err, m.log.String())
	default:
		return nil
	}
}

// stop sends SIGTERM, then SIGKILL if the member has not exited in 10 s.
func (m *member) stop(t *testing.T) {
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-m.exit:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Errorf("%s: %v", m.name, err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("%s did not stop within 10 s of SIGTERM", m.name)
		m.cmd.Process.Kill()
		<-m.exit
	}
	m.cmd = nil
}

func getJSON(addr, path string, v any) error { return getJSONAs(viewerToken, addr, path, v) }

// getJSONAs reads path from a member's API with token.
func getJSONAs(token, addr, path string, v any) error {
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	c := http.Client{Timeout: 2 * time.Second}
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s%s: %s", addr, path, res.Status)
	}
	return json.NewDecoder(res.Body).Decode(v)
}

// poll calls check until it returns nil or timeout passes.
func poll(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
