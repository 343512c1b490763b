// Package integration runs the real edgelb binary against a real
// kube-apiserver and etcd (test/testenv) and observes the results through
// the API, as a user would with kubectl.
package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/edgelb/edgelb/test/prereq"
	"github.com/edgelb/edgelb/test/testenv"
)

var (
	env    *testenv.Env
	edgelb string // path of the binary under test
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if _, err := testenv.BinDir(); err != nil {
		return prereq.MissingMain("integration tests need the test API server: %v", err)
	}
	dir, err := os.MkdirTemp("", "edgelb-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if edgelb, err = testenv.BuildEdgelb(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	env, err = testenv.Start(ctx, dir)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the test API server:", err)
		return 1
	}
	defer env.Stop()
	return m.Run()
}

// proc is a running `edgelb run`.
type proc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// freePort returns a free loopback TCP/UDP port for gossip.
func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// config returns an edgelb config for the test API server. class "" makes
// edgelb the default implementation; pools is YAML for the pools key. The
// api section comes last, so tests may append keys to it.
func config(t testing.TB, name, class, lease, pools string) string {
	kube := fmt.Sprintf("{kubeconfig: %s, loadBalancerClass: %s, defaultClass: %t, leaseName: %s, leaseNamespace: kube-system}",
		env.EdgelbKubeconfig, orDefault(class, "edgelb.io/lb"), class == "", lease)
	return fmt.Sprintf(`node: {name: %s}
cluster: {insecure: true, bindAddr: 127.0.0.1, bindPort: %d}
kubernetes: %s
pools:
%s
dataplane: {backend: none}
api:
  listen: "127.0.0.1:%d"
`, name, freePort(t), kube, pools, freePort(t))
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// start runs edgelb with the given config until the test ends.
func start(t testing.TB, name, cfg string) *proc {
	t.Helper()
	return startIn(t, t.TempDir(), name, cfg)
}

// startIn runs edgelb with the given config, written to dir/name.yaml,
// and dir as its state directory, until the test ends. A second run in
// the same dir is the host restarted over its edited file, with the
// cluster configuration it persisted; its log goes after the first's.
func startIn(t testing.TB, dir, name, cfg string) *proc {
	t.Helper()
	path := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &proc{log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(edgelb, "run", "--config", path, "--log-level", "debug")
	// Its own state directory: never a cluster configuration persisted by
	// another run in the host's /var/lib/edgelb.
	p.cmd.Env = append(os.Environ(), "STATE_DIRECTORY="+dir)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); logf.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			lines := strings.Split(string(b), "\n")
			if len(lines) > 60 {
				lines = lines[len(lines)-60:]
			}
			t.Logf("--- last lines of %s's log:\n%s", name, strings.Join(lines, "\n"))
		}
	})
	return p
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(t testing.TB) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("edgelb did not stop within 20s of SIGTERM")
	}
}

// eventually polls cond until it returns nil or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func createNamespace(t testing.TB, name string) {
	t.Helper()
	_, err := env.Admin.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// lbService returns a LoadBalancer Service with one TCP port per entry.
func lbService(ns, name, class string, ports ...int32) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{}},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": name},
		},
	}
	if class != "" {
		svc.Spec.LoadBalancerClass = &class
	}
	for _, p := range ports {
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{
			Name: fmt.Sprintf("p%d", p), Port: p, TargetPort: intstr.FromInt32(p), Protocol: corev1.ProtocolTCP,
		})
	}
	return svc
}

func createService(t testing.TB, svc *corev1.Service) {
	t.Helper()
	if _, err := env.Admin.CoreV1().Services(svc.Namespace).Create(context.Background(), svc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating Service %s/%s: %v", svc.Namespace, svc.Name, err)
	}
}

func getService(t testing.TB, ns, name string) *corev1.Service {
	t.Helper()
	svc, err := env.Admin.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func ingressIPs(svc *corev1.Service) []string {
	var out []string
	for _, in := range svc.Status.LoadBalancer.Ingress {
		out = append(out, in.IP)
	}
	return out
}

// waitIPs waits until the Service's status has n addresses and returns them.
func waitIPs(t testing.TB, ns, name string, n int) []string {
	t.Helper()
	var ips []string
	eventually(t, 20*time.Second, fmt.Sprintf("%s/%s gets %d address(es)", ns, name, n), func() error {
		ips = ingressIPs(getService(t, ns, name))
		if len(ips) != n {
			return fmt.Errorf("status has %v", ips)
		}
		return nil
	})
	return ips
}

// waitEvent waits for an Event of the given type and reason on a Service
// whose message contains substr, and returns its message.
func waitEvent(t testing.TB, ns, name, typ, reason, substr string) string {
	t.Helper()
	var msg string
	eventually(t, 20*time.Second, fmt.Sprintf("%s event %s on %s/%s", typ, reason, ns, name), func() error {
		evs, err := env.Admin.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{
			FieldSelector: "involvedObject.kind=Service,involvedObject.name=" + name,
		})
		if err != nil {
			return err
		}
		var seen []string
		for _, e := range evs.Items {
			if e.Type == typ && e.Reason == reason && strings.Contains(e.Message, substr) {
				msg = e.Message
				return nil
			}
			seen = append(seen, e.Type+"/"+e.Reason+": "+e.Message)
		}
		return fmt.Errorf("events so far: %v", seen)
	})
	return msg
}

func node(name, ip string, ready bool) *corev1.Node {
	status := corev1.ConditionTrue
	if !ready {
		status = corev1.ConditionFalse
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: corev1.NodeStatus{
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status}},
		},
	}
}

func createNode(t testing.TB, n *corev1.Node) {
	t.Helper()
	ctx := context.Background()
	created, err := env.Admin.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Status = n.Status
	if _, err := env.Admin.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Admin.CoreV1().Nodes().Delete(ctx, n.Name, metav1.DeleteOptions{}) })
}

func endpointSlice(ns, svc string, port int32, nodes map[string][]string) *discoveryv1.EndpointSlice {
	pname := fmt.Sprintf("p%d", port)
	proto := corev1.ProtocolTCP
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: svc + "-abc",
			Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &pname, Port: &port, Protocol: &proto}},
	}
	ready := true
	for n, ips := range nodes {
		for _, ip := range ips {
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
				Addresses: []string{ip}, NodeName: &n, Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			})
		}
	}
	return es
}
