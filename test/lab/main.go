// Command lab is `make lab`: the whole product running on this host, for a
// first look. It starts the test kube-apiserver and etcd on loopback and
// boots the test VM (hack/vm/run.sh; this host's kernel may lack IPVS). In
// the VM, three appliance hosts lb1..lb3 run edgelb with the IPVS
// dataplane, gossiping with a fresh key, in front of three simulated
// cluster nodes node1..node3 that answer on the demo Services' NodePorts
// (test/lab/labvm, test/labnet). The Nodes, the demo Services and their
// EndpointSlices are created here with kubectl. QEMU forwards loopback
// ports of this host into the VM, where they are forwarded on to lb1's
// dashboard and to the VIPs. An FRR router in front of the appliances
// peers with them over eBGP: the web-bgp Service's VIP is advertised by
// every host and reached through the router's ECMP route, and the lab's
// control endpoint (labvm) shows that route and kills a host. It prints the
// dashboard URL, the admin token, `kubectl get svc`, curl commands that
// reach the VIPs, the router's route and how to kill a host, and runs until
// Ctrl-C (SIGINT or SIGTERM), which stops the VM and the API server and
// removes every file it made.
//
// EDGELB_LAB_DASHBOARD_PORT (9080), EDGELB_LAB_WEB_PORT (18080; the
// sticky Service gets the next port) and EDGELB_LAB_BGP_PORT (18090; the
// control endpoint gets the next port) choose the loopback ports.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgelb/edgelb/test/labnet"
	"github.com/edgelb/edgelb/test/testenv"
)

// The demo: a 5-replica web Deployment (no kubelet runs it: its
// EndpointSlice is written by hand, 2+2+1 pods on the three nodes), its
// LoadBalancer Service, a sticky one and a UDP one, with NodePorts pinned to
// what the simulated nodes serve. web and sticky ask for fixed VIPs (from a
// pool that is not auto-assigned, so no other Service can take them first)
// so the in-VM forwarders know where to go; dns gets one from the pool.
// web-bgp's VIP is announced over BGP and forwarded with dr (the node
// answers the client directly and has the VIP on lo; dr keeps the port, so
// the Service port is its nodePort): a connection survives the loss of the
// host it went through (docs/forwarding.md), which nat over bgp does not.
const demo = `apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: demo}
spec:
  replicas: 5
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx:1.27, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: demo
  annotations: {edgelb.io/load-balancer-ips: "` + webVIP + `"}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{name: http, port: 8080, targetPort: 80, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata:
  name: sticky
  namespace: demo
  annotations: {edgelb.io/load-balancer-ips: "` + stickyVIP + `"}
spec:
  type: LoadBalancer
  selector: {app: web}
  sessionAffinity: ClientIP
  ports: [{name: http, port: 80, targetPort: 80, nodePort: 30081}]
---
apiVersion: v1
kind: Service
metadata:
  name: web-bgp
  namespace: demo
  annotations: {edgelb.io/load-balancer-ips: "` + bgpVIP + `", edgelb.io/method: dr}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{name: http, port: 30082, targetPort: 80, nodePort: 30082}]
---
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: demo}
spec:
  type: LoadBalancer
  selector: {app: dns}
  ports: [{name: dns, port: 53, protocol: UDP, nodePort: 30053}]
` + webEndpoints + `
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: dns-1, namespace: demo, labels: {kubernetes.io/service-name: dns}}
addressType: IPv4
ports: [{name: dns, port: 53, protocol: UDP}]
endpoints:
  - {addresses: [10.244.1.4], nodeName: node1, conditions: {ready: true}}
  - {addresses: [10.244.2.4], nodeName: node2, conditions: {ready: true}}
  - {addresses: [10.244.3.4], nodeName: node3, conditions: {ready: true}}
`

const webEndpoints = `---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: demo, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 80, protocol: TCP}]
endpoints:
  - {addresses: [10.244.1.2], nodeName: node1, conditions: {ready: true}}
  - {addresses: [10.244.1.3], nodeName: node1, conditions: {ready: true}}
  - {addresses: [10.244.2.2], nodeName: node2, conditions: {ready: true}}
  - {addresses: [10.244.2.3], nodeName: node2, conditions: {ready: true}}
  - {addresses: [10.244.3.2], nodeName: node3, conditions: {ready: true}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: sticky-1, namespace: demo, labels: {kubernetes.io/service-name: sticky}}
addressType: IPv4
ports: [{name: http, port: 80, protocol: TCP}]
endpoints:
  - {addresses: [10.244.1.2], nodeName: node1, conditions: {ready: true}}
  - {addresses: [10.244.1.3], nodeName: node1, conditions: {ready: true}}
  - {addresses: [10.244.2.2], nodeName: node2, conditions: {ready: true}}
  - {addresses: [10.244.2.3], nodeName: node2, conditions: {ready: true}}
  - {addresses: [10.244.3.2], nodeName: node3, conditions: {ready: true}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-bgp-1, namespace: demo, labels: {kubernetes.io/service-name: web-bgp}}
addressType: IPv4
ports: [{name: http, port: 80, protocol: TCP}]
endpoints:
  - {addresses: [10.244.1.2], nodeName: node1, conditions: {ready: true}}
  - {addresses: [10.244.2.2], nodeName: node2, conditions: {ready: true}}
  - {addresses: [10.244.3.2], nodeName: node3, conditions: {ready: true}}`

const (
	webVIP    = "10.0.0.100"
	stickyVIP = "10.0.0.101"
	// bgpVIP is web-bgp's, from the bgp pool (labvm routes its prefix
	// through the router); bgpSvcPort is its Service port and nodePort.
	bgpVIP     = "10.0.5.1"
	bgpSvcPort = 30082
	// readyTimeout bounds how long the lab may take to come up (TCG is slow).
	readyTimeout = 5 * time.Minute
)

// edgelbConfig is lbN's config inside the VM.
const edgelbConfig = `# lb%[1]d of the edgelb lab (written by test/lab)
node: {name: lb%[1]d, interface: eth0}
cluster:
  bindAddr: 10.0.0.1%[1]d
  join: ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
  secretKeyFile: /job/gossip.key
  # memberlist's LAN timers: the VM is emulated (TCG) on a shared host, too
  # slow for edgelb's 200ms/100ms defaults without false suspicions.
  probeInterval: 1s
  probeTimeout: 500ms
  suspicionMult: 4
  # Heartbeats slowed down likewise (edgelb's default is 50ms x 3).
  heartbeat: {interval: 250ms, multiplier: 4}
kubernetes: {kubeconfig: /job/edgelb.kubeconfig, defaultClass: true}
pools:
  # web and sticky ask for addresses of "fixed" by annotation; the others
  # get one from "demo". A request can take a not auto-assigned address.
  - {name: demo, addresses: ["10.0.0.110-10.0.0.119"], autoAssign: true}
  - {name: fixed, addresses: ["10.0.0.100-10.0.0.109"], autoAssign: false}
  # web-bgp's: every healthy host advertises it to the router.
  - {name: bgp, addresses: ["10.0.5.0/28"], autoAssign: false, announce: bgp}
dataplane: {backend: ipvs, mode: nodeport, method: nat, scheduler: rr}
healthCheck: {interval: 1s, timeout: 500ms, rise: 2, fall: 2}
bgp:
  asn: %[4]d
  routerID: 10.0.0.1%[1]d   # this host's own (bgp.routerID is host-local)
  withdrawDelay: 1s
  peers:
    - {address: %[3]s, asn: %[5]d}   # the lab's FRR router
api:
  listen: "0.0.0.0:9080"
  tokens: {admin: ["%[2]s"]}
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "lab:", err)
		os.Exit(1)
	}
}

type ports struct{ dashboard, web, sticky, bgp, control int }

func lookupPorts() (ports, error) {
	p := ports{dashboard: 9080, web: 18080, bgp: 18090}
	for _, e := range []struct {
		name string
		v    *int
	}{{"EDGELB_LAB_DASHBOARD_PORT", &p.dashboard}, {"EDGELB_LAB_WEB_PORT", &p.web}, {"EDGELB_LAB_BGP_PORT", &p.bgp}} {
		if s := os.Getenv(e.name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 || n > 65534 {
				return p, fmt.Errorf("%s=%q is not a port", e.name, s)
			}
			*e.v = n
		}
	}
	p.sticky, p.control = p.web+1, p.bgp+1
	for _, n := range []int{p.dashboard, p.web, p.sticky, p.bgp, p.control} {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", n))
		if err != nil {
			return p, fmt.Errorf("127.0.0.1:%d is in use (choose other ports with EDGELB_LAB_DASHBOARD_PORT, EDGELB_LAB_WEB_PORT and EDGELB_LAB_BGP_PORT): %w", n, err)
		}
		l.Close()
	}
	return p, nil
}

func run(ctx context.Context) error {
	start := time.Now()
	p, err := lookupPorts()
	if err != nil {
		return err
	}
	kubectlPath, err := testenv.KubectlPath()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "edgelb-lab-")
	if err != nil {
		return err
	}
	defer func() {
		os.RemoveAll(dir)
		fmt.Println("lab: stopped; removed", dir)
	}()
	root := testenv.RepoRoot()

	fmt.Println("lab: building edgelb and the in-VM helper...")
	for _, b := range []struct{ out, pkg string }{{"edgelb", "./cmd/edgelb"}, {"labvm", "./test/lab/labvm"}} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-tags", testenv.BuildTags, "-o", filepath.Join(dir, b.out), b.pkg)
		cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("building %s: %v\n%s", b.pkg, err, out)
		}
	}
	token, err := randomHex(24)
	if err != nil {
		return err
	}
	key, err := exec.CommandContext(ctx, filepath.Join(dir, "edgelb"), "keygen").Output()
	if err != nil {
		return fmt.Errorf("edgelb keygen: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "gossip.key"), key, 0o600); err != nil {
		return err
	}
	for i := 1; i <= 3; i++ {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("lb%d.yaml", i)), fmt.Appendf(nil, edgelbConfig, i, token, labnet.RouterAddr, labnet.ClusterASN, labnet.RouterASN), 0o600); err != nil {
			return err
		}
	}

	fmt.Println("lab: starting etcd and kube-apiserver on loopback...")
	env, err := testenv.Start(ctx, dir)
	if err != nil {
		return err
	}
	defer env.Stop()
	if err := applyDemo(ctx, env); err != nil {
		return err
	}
	// The VM reaches this host's loopback at 10.0.2.2.
	kc, err := os.ReadFile(env.EdgelbKubeconfig)
	if err != nil {
		return err
	}
	vmKubeconfig := filepath.Join(dir, "vm-edgelb.kubeconfig")
	if err := os.WriteFile(vmKubeconfig, []byte(strings.ReplaceAll(string(kc), "https://127.0.0.1:", "https://10.0.2.2:")), 0o600); err != nil {
		return err
	}

	fmt.Println("lab: booting the VM (QEMU) with lb1..lb3 and node1..node3; its console goes to", filepath.Join(dir, "vm.log"))
	vm, err := startVM(dir, root, p, vmKubeconfig)
	if err != nil {
		return err
	}
	defer vm.stop()

	if err := waitReady(ctx, env, p, vm); err != nil {
		return err
	}
	svc, _ := env.Kubectl(ctx, "get", "svc", "-n", "demo")
	// The router's route, as it was when the lab became ready; vtysh in
	// the emulated VM can take many seconds when the VM is busy (two CI
	// runs saw four 3-second attempts fail): waited for up to 30 s, and
	// asked again twice at most.
	route, err := getBodyWith(ctx, routeClient, fmt.Sprintf("http://127.0.0.1:%d/route", p.control))
	for try := 0; try < 2 && (err != nil || len(nextHops(route)) == 0); try++ {
		route, err = getBodyWith(ctx, routeClient, fmt.Sprintf("http://127.0.0.1:%d/route", p.control))
	}
	kubectl := kubectlPath + " --kubeconfig " + env.AdminKubeconfig
	fmt.Printf(`
edgelb lab is ready (%s): three edgelb appliance hosts (lb1..lb3, IPVS, gossip
with a fresh key) in front of three simulated cluster nodes, inside a QEMU VM,
driven by a real kube-apiserver on this host; an FRR router (%[12]s) in front
of the hosts peers with each of them over eBGP.

Dashboard:   http://127.0.0.1:%[2]d/
Admin token: %[3]s
  (paste it into the dashboard, or: curl -H "Authorization: Bearer %[3]s" http://127.0.0.1:%[2]d/api/v1/status)

$ %[4]s get svc -n demo
%[5]s
Reach the web Service's VIP %[6]s:8080 from this host (each answer names the node that served it):
  curl http://127.0.0.1:%[7]d/
The sticky Service (sessionAffinity: ClientIP, VIP %[8]s:80) always answers from one node:
  curl http://127.0.0.1:%[9]d/

The web-bgp Service (VIP %[13]s:%[14]d, announce: bgp, method dr) is advertised by
all three hosts; the router spreads new connections over them (ECMP, hashed on
the L4 ports), and each node answers the client directly:
  curl http://127.0.0.1:%[15]d/   # web-bgp, through the router
The router's route to it (vtysh -c 'show ip route %[13]s'):
%[16]s
Kill a host and watch connections continue. In one terminal, new connections:
  while sleep 0.2; do curl -sS -m 2 http://127.0.0.1:%[15]d/; done
Then, through the lab's control endpoint (Control: http://127.0.0.1:%[17]d/):
  curl -X POST 'http://127.0.0.1:%[17]d/kill?host=lb2'   # SIGKILL lb2's edgelb, cut its link
  curl http://127.0.0.1:%[17]d/route                     # two next hops left
  curl http://127.0.0.1:%[17]d/hosts                     # connections each host took
Connections established through lb2 continue on lb1 and lb3 (dr, mh, sloppy
TCP: docs/forwarding.md); lb2 stays dead until the lab is restarted.

Try: %[4]s get events -n demo
     %[4]s delete svc sticky -n demo   (and watch the dashboard)
Logs: %[10]s (VM console and the three edgelb logs)
Lab files: %[11]s

Press Ctrl-C to stop and remove everything.
`, time.Since(start).Round(time.Second), p.dashboard, token, kubectl, svc,
		webVIP, p.web, stickyVIP, p.sticky, filepath.Join(dir, "vm.log"), dir,
		labnet.RouterAddr, bgpVIP, bgpSvcPort, p.bgp, strings.TrimRight(route, "\n"), p.control)

	select {
	case <-ctx.Done():
		fmt.Println("\nlab: stopping...")
	case <-vm.done:
		return fmt.Errorf("the VM stopped (%v); its console:\n%s", vm.err, tail(filepath.Join(dir, "vm.log"), 40))
	}
	return nil
}

func applyDemo(ctx context.Context, env *testenv.Env) error {
	for i := 1; i <= 3; i++ {
		node := fmt.Sprintf("node%d", i)
		if out, err := env.KubectlStdin(ctx, "apiVersion: v1\nkind: Node\nmetadata: {name: "+node+"}\n", "apply", "-f", "-"); err != nil {
			return fmt.Errorf("creating Node %s: %v\n%s", node, err, out)
		}
		if out, err := env.Kubectl(ctx, "patch", "node", node, "--subresource=status", "--type=merge", "-p",
			fmt.Sprintf(`{"status":{"addresses":[{"type":"InternalIP","address":"10.0.0.2%d"}],"conditions":[{"type":"Ready","status":"True","reason":"Lab"}]}}`, i)); err != nil {
			return fmt.Errorf("setting Node %s Ready: %v\n%s", node, err, out)
		}
	}
	if out, err := env.KubectlStdin(ctx, demo, "apply", "-f", "-"); err != nil {
		return fmt.Errorf("applying the demo Services: %v\n%s", err, out)
	}
	return nil
}

type vmProc struct {
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	err  error
}

// startVM boots the VM in its own process group, so that stop can end
// QEMU and everything run.sh started, whatever signal reached the lab.
func startVM(dir, root string, p ports, kubeconfig string) (*vmProc, error) {
	job := filepath.Join(dir, "vm-job.sh")
	script := fmt.Sprintf("exec /job/labvm up -bgp %[3]s:%[4]d -control :18091 :9080=10.0.0.11:9080 :18080=%[1]s:8080 :18081=%[2]s:80 :18090=%[3]s:%[4]d\n",
		webVIP, stickyVIP, bgpVIP, bgpSvcPort)
	if err := os.WriteFile(job, []byte(script), 0o644); err != nil {
		return nil, err
	}
	args := []string{"-t", "86400", "-m", "1536", "-c", "2",
		"-p", fmt.Sprintf("tcp:127.0.0.1:%d-:9080", p.dashboard),
		"-p", fmt.Sprintf("tcp:127.0.0.1:%d-:18080", p.web),
		"-p", fmt.Sprintf("tcp:127.0.0.1:%d-:18081", p.sticky),
		"-p", fmt.Sprintf("tcp:127.0.0.1:%d-:18090", p.bgp),
		"-p", fmt.Sprintf("tcp:127.0.0.1:%d-:18091", p.control),
		"-f", filepath.Join(dir, "edgelb"), "-f", filepath.Join(dir, "labvm"),
		"-f", filepath.Join(dir, "gossip.key"), "-f", kubeconfig + ":/job/edgelb.kubeconfig"}
	for i := 1; i <= 3; i++ {
		args = append(args, "-f", filepath.Join(dir, fmt.Sprintf("lb%d.yaml", i)))
	}
	logf, err := os.Create(filepath.Join(dir, "vm.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(root, "hack/vm/run.sh"), append(args, job)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// run.sh's scratch files go with the lab's; the VM stops if the lab dies.
	cmd.Env = append(os.Environ(), "TMPDIR="+dir, fmt.Sprintf("EDGELB_VM_PARENT=%d", os.Getpid()))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting hack/vm/run.sh: %w", err)
	}
	v := &vmProc{cmd: cmd, log: logf, done: make(chan struct{})}
	go func() {
		v.err = cmd.Wait()
		close(v.done)
	}()
	return v, nil
}

// stop ends the VM's process group: SIGTERM (run.sh removes its files),
// then SIGKILL if it lingers.
func (v *vmProc) stop() {
	defer v.log.Close()
	pgid := v.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-v.done:
	case <-time.After(15 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-v.done
	}
	// Anything left in the group (QEMU outliving run.sh) goes too.
	syscall.Kill(-pgid, syscall.SIGKILL)
}

var client = &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// getBody GETs url on a new connection and returns the body of a 200.
func getBody(ctx context.Context, url string) (string, error) {
	return getBodyWith(ctx, client, url)
}

// routeClient waits for the control endpoint's /route, which runs vtysh
// in the emulated VM.
var routeClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func getBodyWith(ctx context.Context, client *http.Client, url string) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(b), nil
}

var nextHopRE = regexp.MustCompile(`(?m)^\s*\*?\s*(\d+\.\d+\.\d+\.\d+), via `)

// nextHops are the next hops in the output of vtysh's `show ip route
// ADDRESS`, in order.
func nextHops(route string) []string {
	var hops []string
	for _, m := range nextHopRE.FindAllStringSubmatch(route, -1) {
		hops = append(hops, m[1])
	}
	return hops
}

// waitReady polls until the dashboard answers through the forwarded port,
// every demo Service has an EXTERNAL-IP, the web VIP answers, the router
// has a next hop to the bgp VIP through each host and the bgp VIP answers.
func waitReady(ctx context.Context, env *testenv.Env, p ports, vm *vmProc) error {
	get := func(url string) (string, error) { return getBody(ctx, url) }
	// A VIP's forwarded port answers when a node does.
	answers := func(port int) func() error {
		return func() error {
			body, err := get(fmt.Sprintf("http://127.0.0.1:%d/", port))
			if err == nil && !strings.HasPrefix(body, "node") {
				err = fmt.Errorf("unexpected answer %q", body)
			}
			return err
		}
	}
	steps := []struct {
		what string
		ok   func() error
	}{
		{"the dashboard", func() error {
			_, err := get(fmt.Sprintf("http://127.0.0.1:%d/healthz", p.dashboard))
			return err
		}},
		{"EXTERNAL-IPs", func() error {
			out, err := env.Kubectl(ctx, "get", "svc", "-n", "demo", "-o", "jsonpath={.items[*].status.loadBalancer.ingress[*].ip}")
			if err != nil {
				return errors.New(out)
			}
			if n := len(strings.Fields(out)); n < 4 {
				return fmt.Errorf("%d of 4 Services have one", n)
			}
			return nil
		}},
		{"the web VIP", answers(p.web)},
		{"the router's three next hops to the bgp VIP", func() error {
			route, err := get(fmt.Sprintf("http://127.0.0.1:%d/route", p.control))
			if err == nil && len(nextHops(route)) != 3 {
				err = fmt.Errorf("the router's route: %q", route)
			}
			return err
		}},
		{"the bgp VIP", answers(p.bgp)},
	}
	deadline := time.Now().Add(readyTimeout)
	for _, s := range steps {
		fmt.Printf("lab: waiting for %s...\n", s.what)
		for {
			err := s.ok()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				svc, _ := env.Kubectl(ctx, "get", "svc,events", "-n", "demo")
				return fmt.Errorf("%s not ready after %s: %v\n%s\nthe VM's console (%s):\n%s", s.what, readyTimeout, err, svc, vm.log.Name(), tail(vm.log.Name(), 40))
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-vm.done:
				return fmt.Errorf("the VM stopped (%v) before %s was ready; its console:\n%s", vm.err, s.what, tail(vm.log.Name(), 40))
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
