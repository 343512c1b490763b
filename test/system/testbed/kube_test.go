//go:build sysvm

package testbed

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/edgelb/edgelb/test/testenv"
)

// The cluster's control plane stands beside the hosts: etcd and the real
// kube-apiserver (hack/kube/build.sh) run in the VM itself, which joins
// the LAN with this address on the bridge, and the hosts reach the API
// server there, as appliance hosts reach a cluster's API server.
const apiAddr = "10.0.0.1"

// The address pool of the hosts' config, on the LAN so that the client
// reaches its addresses by ARP.
var (
	poolFirst = netip.MustParseAddr("10.0.0.200")
	poolLast  = netip.MustParseAddr("10.0.0.209")
)

// kubeBlock is the Kubernetes part of every host's config: the kubeconfig
// of operations.md and one pool.
const kubeBlock = `kubernetes:
  kubeconfig: /etc/edgelb/kubeconfig
  loadBalancerClass: edgelb.io/lb
  defaultClass: true
pools:
  - name: default
    addresses: ["10.0.0.200-10.0.0.209"]
`

// webService is what the operator applies: a Service of type LoadBalancer
// with no class, whose port 80 is the NodePort 30080 every node serves.
const webService = `apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
spec:
  type: LoadBalancer
  selector: {app: web}
  ports:
    - {name: http, port: 80, targetPort: 8080, nodePort: 30080, protocol: TCP}
`

// controlPlane is the API server being started, and when it was ready.
type controlPlane struct {
	done  chan struct{}
	env   *testenv.Env
	err   error
	took  time.Duration
	start time.Time
}

// startControlPlane starts etcd and the API server in the background,
// while the hosts boot (under emulation it takes minutes). The binaries
// come in /job/k8s and are moved to a tmpfs: the image has room for the
// hosts' installs, not for them as well.
func startControlPlane(t *testing.T) *controlPlane {
	t.Helper()
	sh(t, fmt.Sprintf(`ip addr add %s/24 dev br0
mkdir -p /srv/k8s
mount -t tmpfs -o size=1g,mode=0700 k8s /srv/k8s
mv /job/k8s /srv/k8s/bin
mkdir /srv/k8s/run`, apiAddr))
	os.Setenv("EDGELB_TEST_BIN", "/srv/k8s/bin")
	cp := &controlPlane{done: make(chan struct{}), start: time.Now()}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(cp.done)
		cp.env, cp.err = testenv.StartWith(ctx, "/srv/k8s/run", testenv.Options{
			Address: apiAddr, ReadyTimeout: 15 * time.Minute, APIServerOnly: true})
		cp.took = time.Since(cp.start)
	}()
	t.Cleanup(func() {
		cancel()
		<-cp.done
		if cp.env != nil {
			cp.env.Stop()
		}
	})
	return cp
}

// wait returns the running control plane.
func (cp *controlPlane) wait(t testing.TB) *testenv.Env {
	t.Helper()
	<-cp.done
	if cp.err != nil {
		t.Fatalf("starting etcd and kube-apiserver at %s: %v", apiAddr, cp.err)
	}
	return cp.env
}

// docBlock returns the shell block of docs/operations.md (/job/operations.md)
// that contains what.
func docBlock(t testing.TB, what string) string {
	t.Helper()
	b, err := os.ReadFile("/job/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(b), -1) {
		if strings.Contains(m[1], what) {
			// The block is indented under its list item.
			var lines []string
			for _, l := range strings.Split(m[1], "\n") {
				lines = append(lines, strings.TrimSpace(l))
			}
			return strings.Join(lines, "\n")
		}
	}
	t.Fatalf("docs/operations.md has no sh block with %q", what)
	return ""
}

// kubectlEnv is the shell preamble of the operator's kubectl on lb1: the
// binary test/system brought (/job/bin) and the admin's kubeconfig.
const kubectlEnv = "export PATH=/root/job/bin:$PATH KUBECONFIG=/root/.kube/config\n"

// connectKubernetes does on the hosts what operations.md's "Join a
// cluster" step 2 tells an operator: apply the package's rbac.yaml, make
// the ServiceAccount's kubeconfig with the documented commands, as written
// there, and copy it to every host. lb1 is the operator's machine: it has
// kubectl and the admin's credentials.
func connectKubernetes(t *testing.T, cp *controlPlane) {
	t.Helper()
	env := cp.wait(t)
	figure(t, "apiserver", "etcd and kube-apiserver ready in the VM %v after their start (beside the hosts' boot and install)", cp.took.Round(time.Second))
	op := hosts[0]
	admin, err := os.ReadFile(env.AdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := env.CACert()
	if err != nil {
		t.Fatal(err)
	}
	op.run(t, "mkdir", "-p", "/root/.kube")
	op.writeFile(t, "/root/.kube/config", string(admin), 0o600)
	op.writeFile(t, "/root/ca.crt", string(ca), 0o644)
	out := op.sh(t, kubectlEnv+"kubectl apply -f /usr/share/edgelb/rbac.yaml")
	t.Logf("kubectl apply -f /usr/share/edgelb/rbac.yaml:\n%s", out)
	block := docBlock(t, "create token edgelb")
	server := strings.TrimPrefix(env.URL, "https://")
	if !strings.Contains(block, "<apiserver>:6443") {
		t.Fatalf("operations.md's kubeconfig block no longer names <apiserver>:6443:\n%s", block)
	}
	op.sh(t, kubectlEnv+"cd /root\n"+strings.ReplaceAll(block, "<apiserver>:6443", server))
	if ls := op.run(t, "stat", "-c", "%a %U:%G", "/etc/edgelb/kubeconfig"); strings.TrimSpace(ls) != "640 root:edgelb" {
		t.Errorf("/etc/edgelb/kubeconfig is %s, want 640 root:edgelb", ls)
	}
	// The kubeconfig alone, without the admin's, reaches the API server
	// with the CA (no insecure-skip-tls-verify) as edgelb's identity.
	who := op.run(t, "/root/job/bin/kubectl", "--kubeconfig=/etc/edgelb/kubeconfig", "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
	if strings.TrimSpace(who) != "system:serviceaccount:kube-system:edgelb" {
		t.Errorf("the kubeconfig of operations.md authenticates as %q, want edgelb's ServiceAccount", who)
	}
	kc := op.run(t, "cat", "/etc/edgelb/kubeconfig")
	for _, h := range hosts[1:] {
		h.writeFile(t, "/etc/edgelb/kubeconfig", kc, 0o640)
		h.run(t, "chgrp", "edgelb", "/etc/edgelb/kubeconfig")
	}
}

// createNodes registers the three backends as the cluster's nodes, as
// their kubelets would: a Node with its InternalIP and Ready. They serve
// the NodePort 30080 (test/labnet.Serve).
func createNodes(t testing.TB, env *testenv.Env) {
	t.Helper()
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node%d", i)}}
		created, err := env.Admin.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		created.Status = corev1.NodeStatus{
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("10.0.0.2%d", i)}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		}
		if _, err := env.Admin.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// externalIP is the EXTERNAL-IP column of `kubectl get svc NAME`.
func externalIP(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		return ""
	}
	head, row := strings.Fields(lines[0]), strings.Fields(lines[1])
	for i, c := range head {
		if c == "EXTERNAL-IP" && i < len(row) {
			return row[i]
		}
	}
	return ""
}

// loadBalancerStep is the step the operator takes last: a Service of
// type LoadBalancer created with kubectl gets its EXTERNAL-IP from the
// pool, exactly one host holds it, and a client's requests through it
// reach every node's NodePort.
func loadBalancerStep(t *testing.T, cp *controlPlane) netip.Addr {
	journalsOnFailure(t)
	start := time.Now()
	env := cp.wait(t)
	createNodes(t, env)
	op := hosts[0]
	op.run(t, "bash", "-ec", kubectlEnv+"kubectl apply -f - <<'EOF'\n"+webService+"EOF")
	created := time.Now()
	var ip netip.Addr
	var shown string
	waitFor(t, 3*time.Minute, "kubectl get svc web to show an EXTERNAL-IP", func() (bool, string) {
		out, err := op.tryRun("bash", "-ec", kubectlEnv+"kubectl get svc web")
		a, perr := netip.ParseAddr(externalIP(out))
		if err != nil || perr != nil {
			return false, out
		}
		ip, shown = a, out
		return true, ""
	})
	assigned := time.Since(created)
	t.Logf("kubectl get svc web:\n%s", shown)
	if ip.Less(poolFirst) || poolLast.Less(ip) {
		t.Fatalf("EXTERNAL-IP %s is not in the pool %s-%s", ip, poolFirst, poolLast)
	}
	var holder host
	waitFor(t, 2*time.Minute, "exactly one host to hold "+ip.String()+" and every host's IPVS to forward it to the three nodes", func() (bool, string) {
		var held []string
		for _, h := range hosts {
			if h.holdsVIP(t, ip.String()) {
				held = append(held, h.name)
				holder = h
			}
			tab, _ := h.tryRun("ipvsadm", "-Ln", "-t", ip.String()+":80")
			for i := 1; i <= 3; i++ {
				if rs := fmt.Sprintf("10.0.0.2%d:30080", i); !strings.Contains(tab, rs) {
					return false, h.name + " lacks " + rs + ":\n" + tab
				}
			}
		}
		return len(held) == 1, fmt.Sprint("held by ", held)
	})
	r := probeEvery(t, "http://"+ip.String()+"/")
	figure(t, "loadbalancer", "kubectl apply of a LoadBalancer Service: EXTERNAL-IP %s after %v, held by %s; %d answers from %d nodes, %d failed; the step took %v", ip, assigned.Round(100*time.Millisecond), holder.name, r.OK, len(r.Answers), r.Failed, time.Since(start).Round(time.Second))
	if r.Failed != 0 || len(r.Answers) != 3 {
		t.Fatalf("through the EXTERNAL-IP %s: %+v, want answers from node1..3 and no failure", ip, r)
	}
	// What an operator sees on the host: the Service at its address.
	if st := holder.run(t, "edgelb", "status"); !strings.Contains(st, ip.String()) || !strings.Contains(st, "default/web") {
		t.Errorf("edgelb status on %s does not show default/web at %s:\n%s", holder.name, ip, st)
	}
	return ip
}
