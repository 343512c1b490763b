//go:build vm

package e2e

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgelb/edgelb/test/prereq"
)

// The Services of TestKubernetesChoices, of their own class, on a
// nodeport/nat appliance: a direct-mode Service without node ports, with an
// HTTP health check on /ready and a connection limit, and a dr one at a
// fixed address (dr keeps the port: the Service port is its nodePort).
const choicesObjects = `
apiVersion: v1
kind: Service
metadata:
  name: direct-web
  namespace: default
  annotations:
    edgelb.io/mode: direct
    edgelb.io/health-check-type: http
    edgelb.io/health-check-path: /ready
    edgelb.io/health-check-interval: 1s
    edgelb.io/health-check-timeout: 800ms
    edgelb.io/health-check-rise: "1"
    edgelb.io/health-check-fall: "2"
    edgelb.io/max-connections-per-backend: "100"
spec:
  type: LoadBalancer
  loadBalancerClass: edgelb.io/choices
  allocateLoadBalancerNodePorts: false
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata:
  name: dr-web
  namespace: default
  annotations: {edgelb.io/method: dr, edgelb.io/load-balancer-ips: 10.0.0.135}
spec:
  type: LoadBalancer
  loadBalancerClass: edgelb.io/choices
  ports: [{name: http, port: 30081, targetPort: 8080, nodePort: 30081}]
`

// choicesSlice is the EndpointSlice of one of those Services: a pod on
// each node (10.244.N.2, the node's server).
func choicesSlice(svc string) string {
	return fmt.Sprintf(`apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: %s-1, namespace: default, labels: {kubernetes.io/service-name: %s}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
  - {addresses: [10.244.1.2], nodeName: node1, conditions: {ready: true}}
  - {addresses: [10.244.2.2], nodeName: node2, conditions: {ready: true}}
  - {addresses: [10.244.3.2], nodeName: node3, conditions: {ready: true}}
`, svc, svc)
}

// setReady makes node i's /ready answer code.
func setReady(t *testing.T, i, code int) {
	t.Helper()
	r := helper(t, "client", "http", "1", fmt.Sprintf("http://10.0.0.2%d:8080/ready/set?code=%d", i, code))
	if r.Errors != 0 || r.Counts[fmt.Sprintf("node%d", i)] != 1 {
		t.Fatalf("setting node%d's /ready to %d: %+v", i, code, r)
	}
}

// TestKubernetesChoices checks the per-Service annotations against a real
// API server and real IPVS: edgelb.io/mode: direct on a nodeport
// appliance, edgelb.io/method: dr with its ipMode, an HTTP health check
// on a path taking a backend out and back, the connection limit, and the
// Warning when no backend is left.
func TestKubernetesChoices(t *testing.T) {
	if os.Getenv("EDGELB_ADMIN_KUBECONFIG") == "" {
		prereq.Missing(t, "needs the host's kube-apiserver (run by test/vm TestVMKubernetes)")
	}
	kubeTopology(t)
	// The nodes accept the dr VIP without answering ARP for it.
	sh(t, `
for i in 1 2 3; do
	ip netns exec node$i sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
	ip -n node$i addr replace 10.0.0.135/32 dev lo
done
`)
	kubectl(t, choicesObjects+"---\n"+choicesSlice("direct-web"), "apply", "-f", "-")
	// TestKubernetes uses the node port 30081 too.
	t.Cleanup(func() { kubectl(t, "", "delete", "svc", "direct-web", "dr-web") })
	lb1 := startKubeEdgelb(t, "loadBalancerClass: edgelb.io/choices, defaultClass: false",
		`{name: choices, addresses: ["10.0.0.130-10.0.0.139"], autoAssign: true}`, "drainTimeout: 5m")
	defer func() {
		if t.Failed() {
			lb1.dumpLog(t)
		}
	}()
	vip := externalIPs(t, "direct-web", "dr-web")
	web := vip["direct-web"] + ":80"
	pods := []string{"10.244.1.2:8080", "10.244.2.2:8080", "10.244.3.2:8080"}

	t.Run("mode direct on a nodeport appliance forwards to the pods", func(t *testing.T) {
		waitFor(t, "the pods as real servers of "+web, 30*time.Second, func() bool {
			tb := table(t, "lb1", "-t", web)
			for _, p := range pods {
				if !hasLine(tb, "-> "+p+" Masq 1") {
					return false
				}
			}
			return true
		})
		t.Logf("ipvsadm:\n%s", ipvsadm(t, "lb1", "-Ln", "-t", web))
		r := helper(t, "client", "http", "30", "http://"+web+"/")
		t.Logf("answers per node: %v", r.Counts)
		if r.Errors != 0 || !slices.Equal(nodes(r), []string{"node1", "node2", "node3"}) {
			t.Errorf("answered by %v, %d errors (%s)", r.Counts, r.Errors, r.LastErr)
		}
		if m := kubectl(t, "", "get", "svc", "direct-web", "-o", "jsonpath={.status.loadBalancer.ingress[0].ipMode}"); m != "Proxy" {
			t.Errorf("ipMode of a nat Service: %q, want Proxy", m)
		}
	})

	t.Run("max-connections-per-backend is the upper threshold", func(t *testing.T) {
		tb := table(t, "lb1", "--thresholds", "-t", web)
		for _, p := range pods {
			if !hasLine(tb, "-> "+p+" 100 0") {
				t.Errorf("no upper threshold 100 on %s:\n%s", p, ipvsadm(t, "lb1", "-Ln", "--thresholds", "-t", web))
			}
		}
	})

	t.Run("an HTTP check on a path: 500 takes the backend out, 200 puts it back", func(t *testing.T) {
		setReady(t, 2, 500)
		took := waitFor(t, "10.244.2.2 at weight 0", 20*time.Second, func() bool {
			return hasLine(table(t, "lb1", "-t", web), "-> 10.244.2.2:8080 Masq 0")
		})
		t.Logf("node2's pod left %s after /ready answered 500", took.Round(10*time.Millisecond))
		r := helper(t, "client", "http", "20", "http://"+web+"/")
		t.Logf("answers per node: %v", r.Counts)
		if r.Errors != 0 || r.Counts["node2"] != 0 || len(r.Counts) != 2 {
			t.Errorf("with node2's /ready at 500: %v, %d errors (%s)", r.Counts, r.Errors, r.LastErr)
		}
		setReady(t, 2, 200)
		took = waitFor(t, "10.244.2.2 back at weight 1", 20*time.Second, func() bool {
			return hasLine(table(t, "lb1", "-t", web), "-> 10.244.2.2:8080 Masq 1")
		})
		t.Logf("node2's pod came back %s after /ready answered 200", took.Round(10*time.Millisecond))
		r = helper(t, "client", "http", "30", "http://"+web+"/")
		if r.Errors != 0 || !slices.Equal(nodes(r), []string{"node1", "node2", "node3"}) {
			t.Errorf("after node2 came back: %v, %d errors (%s)", r.Counts, r.Errors, r.LastErr)
		}
	})

	t.Run("no healthy backend left: a Warning Event", func(t *testing.T) {
		// How many times it was recorded so far: none, unless the
		// backends all failed their checks after one had passed.
		recorded := func() (n int, msgs string) {
			out := kubectl(t, "", "get", "events", "--field-selector", "involvedObject.name=direct-web,reason=NoHealthyBackends",
				"-o", `jsonpath={range .items[*]}{.count} {.message}{"\n"}{end}`)
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				var c int
				if _, err := fmt.Sscan(l, &c); err == nil {
					n += c
				}
			}
			return n, out
		}
		before, msgs := recorded()
		if before != 0 {
			t.Logf("NoHealthyBackends recorded %d times before all backends failed (a loaded VM's probes timing out):\n%s", before, msgs)
		}
		for i := 1; i <= 3; i++ {
			setReady(t, i, 500)
		}
		defer func() {
			for i := 1; i <= 3; i++ {
				setReady(t, i, 200)
			}
		}()
		waitFor(t, "a new NoHealthyBackends Event", 30*time.Second, func() bool {
			n, msgs := recorded()
			return n > before && strings.Contains(msgs, "no healthy backend left: all 3 backends fail their health checks (seen from lb1)")
		})
		t.Logf("kubectl describe svc direct-web:\n%s", kubectl(t, "", "describe", "svc", "direct-web"))
	})

	t.Run("method dr: ipMode VIP, direct server return", func(t *testing.T) {
		dr := vip["dr-web"]
		if dr != "10.0.0.135" {
			t.Fatalf("dr-web has %s, want the requested 10.0.0.135", dr)
		}
		waitFor(t, "the nodes as dr real servers", 30*time.Second, func() bool {
			tb := table(t, "lb1", "-t", dr+":30081")
			for i := 1; i <= 3; i++ {
				if !hasLine(tb, fmt.Sprintf("-> 10.0.0.2%d:30081 Route 1", i)) {
					return false
				}
			}
			return true
		})
		if m := kubectl(t, "", "get", "svc", "dr-web", "-o", "jsonpath={.status.loadBalancer.ingress[0].ipMode}"); m != "VIP" {
			t.Errorf("ipMode of a dr Service: %q, want VIP", m)
		}
		r := helper(t, "client", "http", "30", "http://"+dr+":30081/")
		t.Logf("answers per node: %v, source addresses seen: %v", r.Counts, r.Remotes)
		if r.Errors != 0 || !slices.Equal(nodes(r), []string{"node1", "node2", "node3"}) {
			t.Errorf("answered by %v, %d errors (%s)", r.Counts, r.Errors, r.LastErr)
		}
		// Direct server return keeps the client's address: no source NAT.
		if len(r.Remotes) != 1 || r.Remotes["10.0.0.2"] == 0 {
			t.Errorf("the nodes saw sources %v, want the client's own 10.0.0.2", r.Remotes)
		}
	})
}
