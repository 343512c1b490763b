//go:build vm

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgelb/edgelb/test/labnet"
	"github.com/edgelb/edgelb/test/prereq"
)

// kubectl runs the host's kubectl (copied into the VM) as the admin against
// the test kube-apiserver on the host (10.0.2.2).
func kubectl(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command("/job/kubectl", append([]string{"--kubeconfig", os.Getenv("EDGELB_ADMIN_KUBECONFIG")}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func setNodeReady(t *testing.T, node string, ready bool) {
	t.Helper()
	st := "True"
	if !ready {
		st = "False"
	}
	kubectl(t, "", "patch", "node", node, "--subresource=status", "--type=merge", "-p",
		fmt.Sprintf(`{"status":{"conditions":[{"type":"Ready","status":"%s","reason":"Test","lastHeartbeatTime":null}]}}`, st))
}

// kubeTopology builds the lab network (once per VM), routes the
// appliances to the host's API server, and registers the three nodes,
// Ready.
func kubeTopology(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/run/netns/node1"); err != nil {
		topology(t)
	}
	// The appliance namespaces reach the API server through the VM's own
	// user-mode network: br0 routes and masquerades for them.
	if !strings.Contains(sh(t, "ip -br addr show dev br0"), "10.0.0.1/24") {
		sh(t, labnet.Uplink)
	}
	for i := 1; i <= 3; i++ {
		kubectl(t, fmt.Sprintf(`apiVersion: v1
kind: Node
metadata: {name: node%d}
`, i), "apply", "-f", "-")
		kubectl(t, "", "patch", "node", fmt.Sprintf("node%d", i), "--subresource=status", "--type=merge", "-p",
			fmt.Sprintf(`{"status":{"addresses":[{"type":"InternalIP","address":"10.0.0.2%d"}],"conditions":[{"type":"Ready","status":"True","reason":"Test"}]}}`, i))
	}
}

// startKubeEdgelb runs edgelb in lb1 against the host's API server, with
// class (the kubernetes keys after kubeconfig), one pool, and a nodeport/nat
// dataplane with more keys.
func startKubeEdgelb(t *testing.T, class, pool, dataplane string) *edgelb {
	t.Helper()
	return startEdgelb(t, "lb1", fmt.Sprintf(`node: {name: lb1, interface: eth0, %s}
cluster: {bindAddr: 127.0.0.1, insecure: true}
kubernetes: {kubeconfig: %s, %s}
pools: [%s]
dataplane: {backend: ipvs, mode: nodeport, method: nat, scheduler: rr, %s}
healthCheck: {interval: %s, timeout: 800ms, rise: 2, fall: 2}
api: {listen: "127.0.0.1:9080"}
`, dataPath, os.Getenv("EDGELB_KUBECONFIG"), class, pool, dataplane, healthInterval))
}

// externalIPs waits until each named Service has an EXTERNAL-IP and returns
// them by name.
func externalIPs(t *testing.T, names ...string) map[string]string {
	t.Helper()
	vip := map[string]string{}
	waitFor(t, "EXTERNAL-IPs of "+strings.Join(names, ", "), 60*time.Second, func() bool {
		for _, s := range names {
			ip := strings.TrimSpace(kubectl(t, "", "get", "svc", s, "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"))
			if ip == "" {
				return false
			}
			vip[s] = ip
		}
		return true
	})
	t.Logf("kubectl get svc:\n%s", kubectl(t, "", append([]string{"get", "svc", "-o", "wide"}, names...)...))
	return vip
}

const k8sObjects = `
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: LoadBalancer
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: sticky, namespace: default}
spec:
  type: LoadBalancer
  sessionAffinity: ClientIP
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30081}]
---
apiVersion: v1
kind: Service
metadata: {name: local, namespace: default, annotations: {edgelb.io/scheduler: wrr}}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  healthCheckNodePort: 32000
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30082}]
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: default}
spec:
  type: LoadBalancer
  ports: [{name: echo, port: 9000, targetPort: 9000, nodePort: 30090}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: local-1, namespace: default, labels: {kubernetes.io/service-name: local}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
  - {addresses: [10.244.1.2], nodeName: node1, conditions: {ready: true}}
  - {addresses: [10.244.1.3], nodeName: node1, conditions: {ready: true}}
  - {addresses: [10.244.3.2], nodeName: node3, conditions: {ready: true}}
`

// TestKubernetes drives the dataplane from a real kube-apiserver running on
// the host: the Services are created with kubectl, edgelb gives them IPs
// from its pool, and the traffic is checked from the client namespace.
func TestKubernetes(t *testing.T) {
	if os.Getenv("EDGELB_ADMIN_KUBECONFIG") == "" {
		prereq.Missing(t, "needs the host's kube-apiserver (run by test/vm TestVMKubernetes)")
	}
	kubeTopology(t)
	kubectl(t, k8sObjects, "apply", "-f", "-")
	sh(t, "ip -n node1 addr add 10.244.1.3/24 dev pods")

	lb1 := startKubeEdgelb(t, "defaultClass: true", `{name: default, addresses: ["10.0.0.100-10.0.0.109"], autoAssign: true}`, "drainTimeout: 30s")
	defer func() {
		if t.Failed() {
			lb1.dumpLog(t)
		}
	}()
	vip := externalIPs(t, "web", "sticky", "local", "echo")
	waitFor(t, "the dataplane to program "+vip["web"], 30*time.Second, func() bool {
		return hasLine(table(t, "lb1", "-t", vip["web"]+":80"), "-> 10.0.0.23:30080 Masq 1") &&
			strings.Contains(sh(t, "ip -n lb1 -br addr show dev eth0"), vip["web"])
	})
	t.Logf("ipvsadm -Ln:\n%s", ipvsadm(t, "lb1", "-Ln"))

	t.Run("a LoadBalancer Service is answered by all nodes", func(t *testing.T) {
		r := helper(t, "client", "http", "30", "http://"+vip["web"]+"/")
		t.Logf("answers per node: %v", r.Counts)
		if r.Errors != 0 || !slices.Equal(nodes(r), []string{"node1", "node2", "node3"}) {
			t.Errorf("answered by %v, %d errors (%s)", r.Counts, r.Errors, r.LastErr)
		}
	})

	t.Run("sessionAffinity ClientIP keeps the client on one node", func(t *testing.T) {
		if !hasLine(table(t, "lb1", "-t", vip["sticky"]+":80"), fmt.Sprintf("TCP %s:80 rr persistent 10800", vip["sticky"])) {
			t.Errorf("no persistence in:\n%s", ipvsadm(t, "lb1", "-Ln", "-t", vip["sticky"]+":80"))
		}
		r := helper(t, "client", "http", "12", "http://"+vip["sticky"]+"/")
		t.Logf("answers per node: %v", r.Counts)
		if r.Errors != 0 || len(r.Counts) != 1 {
			t.Errorf("answered by %v, want one node", r.Counts)
		}
	})

	t.Run("externalTrafficPolicy Local weights nodes by local endpoints", func(t *testing.T) {
		tb := table(t, "lb1", "-t", vip["local"]+":80")
		for _, want := range []string{"-> 10.0.0.21:30082 Masq 2", "-> 10.0.0.23:30082 Masq 1"} {
			if !hasLine(tb, want) {
				t.Errorf("lacks %q:\n%s", want, strings.Join(tb, "\n"))
			}
		}
		if slices.ContainsFunc(tb, func(l string) bool { return strings.Contains(l, "10.0.0.22") }) {
			t.Errorf("node2 has no local endpoint but is a backend:\n%s", strings.Join(tb, "\n"))
		}
		r := helper(t, "client", "http", "30", "http://"+vip["local"]+"/")
		t.Logf("answers per node: %v", r.Counts)
		if r.Errors != 0 || r.Counts["node1"] != 20 || r.Counts["node3"] != 10 {
			t.Errorf("answers %v (%d errors), want node1:20 node3:10", r.Counts, r.Errors)
		}
	})

	t.Run("a NotReady node leaves the rotation and comes back", func(t *testing.T) {
		setNodeReady(t, "node2", false)
		took := waitFor(t, "node2 to leave "+vip["web"], 20*time.Second, func() bool {
			return !slices.ContainsFunc(table(t, "lb1", "-t", vip["web"]+":80"), func(l string) bool { return strings.Contains(l, "10.0.0.22:30080 Masq 1") })
		})
		t.Logf("node2 left the rotation %s after it was marked NotReady", took.Round(10*time.Millisecond))
		r := helper(t, "client", "http", "12", "http://"+vip["web"]+"/")
		if r.Errors != 0 || r.Counts["node2"] != 0 {
			t.Errorf("with node2 NotReady: %v, %d errors", r.Counts, r.Errors)
		}
		setNodeReady(t, "node2", true)
		took = waitFor(t, "node2 to return", 20*time.Second, func() bool {
			return hasLine(table(t, "lb1", "-t", vip["web"]+":80"), "-> 10.0.0.22:30080 Masq 1")
		})
		t.Logf("node2 came back %s after it was marked Ready", took.Round(10*time.Millisecond))
		r = helper(t, "client", "http", "12", "http://"+vip["web"]+"/")
		if r.Errors != 0 || r.Counts["node2"] == 0 {
			t.Errorf("after node2 returned: %v, %d errors", r.Counts, r.Errors)
		}
	})

	t.Run("a node that leaves is drained: open connections kept, deleted when none is left or at the drain timeout", func(t *testing.T) {
		echo := vip["echo"] + ":9000"
		waitFor(t, "the echo service", 20*time.Second, func() bool {
			return hasLine(table(t, "lb1", "-t", echo), "-> 10.0.0.23:30090 Masq 1")
		})
		hold, rd := holdConnection(t, echo, 6)
		// Which node carries it: the real server with an active connection.
		var node, rs string
		for _, l := range strings.Split(ipvsadm(t, "lb1", "-Ln", "-t", echo), "\n") {
			if f := strings.Fields(l); len(f) >= 5 && f[0] == "->" && f[4] == "1" {
				rs = f[1]
				node = "node" + strings.TrimSuffix(strings.TrimPrefix(rs, "10.0.0.2"), ":30090")
			}
		}
		if node == "" {
			t.Fatalf("no real server with an active connection:\n%s", ipvsadm(t, "lb1", "-Ln", "-t", echo))
		}
		setNodeReady(t, node, false)
		defer setNodeReady(t, node, true)
		waitFor(t, rs+" to drain (weight 0, kept)", 20*time.Second, func() bool {
			return hasLine(table(t, "lb1", "-t", echo), "-> "+rs+" Masq 0")
		})
		t.Logf("%s (%s) is drained while its connection is open:\n%s", node, rs, ipvsadm(t, "lb1", "-Ln", "-t", echo))
		rest, _ := rd.ReadString('\n')
		if err := hold.Wait(); err != nil || !strings.HasPrefix(rest, "held") {
			t.Errorf("the drained backend's connection broke: %q %v", rest, err)
		}
		// The closed connection stays in IPVS as inactive (TIME_WAIT, 2 min)
		// and the backend is kept for it: deleted at drainTimeout (30 s).
		took := waitFor(t, rs+" to be deleted at the drain timeout", 45*time.Second, func() bool {
			return !slices.ContainsFunc(table(t, "lb1", "-t", echo), func(l string) bool { return strings.Contains(l, rs) })
		})
		t.Logf("%s was deleted %s after its last connection closed", rs, took.Round(10*time.Millisecond))
	})

	t.Run("deleting the Service removes its virtual service", func(t *testing.T) {
		kubectl(t, "", "delete", "svc", "sticky")
		waitFor(t, "the sticky virtual service to go", 20*time.Second, func() bool {
			return !strings.Contains(ipvsadm(t, "lb1", "-Ln"), vip["sticky"]+":80")
		})
	})

	t.Run("loadBalancerSourceRanges", func(t *testing.T) { sourceRangesK8s(t, lb1, vip) })
}

// sourceRangesK8s: a Service's loadBalancerSourceRanges keep out the
// clients they exclude; a change (kubectl patch) takes effect at once
// without breaking an allowed client's connection; a malformed list is a
// Warning Event and the Service keeps its previous ranges while its
// neighbours are unaffected. Runs after the sticky Service freed nodePort
// 30081.
func sourceRangesK8s(t *testing.T, lb1 *edgelb, vip map[string]string) {
	clientAliases(t)
	sh(t, "ip netns exec lb1 nft '"+foreignTable+"'")
	kubectl(t, `apiVersion: v1
kind: Service
metadata: {name: ranged, namespace: default}
spec:
  type: LoadBalancer
  loadBalancerSourceRanges: [10.0.0.2/32]
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30081}]
`, "apply", "-f", "-")
	var ip string
	waitFor(t, "an EXTERNAL-IP for ranged and its virtual service", 30*time.Second, func() bool {
		ip = strings.TrimSpace(kubectl(t, "", "get", "svc", "ranged", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"))
		return ip != "" && hasLine(table(t, "lb1", "-t", ip+":80"), "-> 10.0.0.23:30081 Masq 1") &&
			hasElem(t, "lb1", elem(ip, 80, "10.0.0.2"))
	})
	url := "http://" + ip + "/"
	wantReached(t, url, "10.0.0.2")
	wantBlocked(t, url, "10.0.0.3")
	wantReached(t, "http://"+vip["web"]+"/", "10.0.0.3") // no ranges

	t.Run("a change takes effect at once and keeps allowed connections", func(t *testing.T) {
		echo := vip["echo"] + ":9000"
		// The two adjacent /32s are merged into one element.
		both := elem(vip["echo"], 9000, "10.0.0.2/31")
		kubectl(t, "", "patch", "svc", "echo", "--type=merge", "-p", `{"spec":{"loadBalancerSourceRanges":["10.0.0.2/32","10.0.0.3/32"]}}`)
		waitFor(t, "both clients allowed to echo", 20*time.Second, func() bool { return hasElem(t, "lb1", both) })
		kept, keptRd := holdConnectionFrom(t, echo, 10, "10.0.0.2")
		cut, _ := holdConnectionFrom(t, echo, 10, "10.0.0.3")
		start := time.Now()
		kubectl(t, "", "patch", "svc", "echo", "--type=merge", "-p", `{"spec":{"loadBalancerSourceRanges":["10.0.0.2/32"]}}`)
		patched := time.Now()
		only2 := elem(vip["echo"], 9000, "10.0.0.2")
		waitFor(t, "10.0.0.3 to be removed from echo's ranges", 20*time.Second, func() bool { return hasElem(t, "lb1", only2) })
		// When the filter applied it, from edgelb's log (polling nft under
		// emulation is too slow to time it).
		applied := lastLogTime(t, lb1, "source ranges updated")
		t.Logf("FIGURE loadBalancerSourceRanges change: kubectl patch ran %s; edgelb's filter applied it %s after kubectl started (%s after it returned)",
			patched.Sub(start).Round(10*time.Millisecond), applied.Sub(start).Round(10*time.Millisecond), applied.Sub(patched).Round(10*time.Millisecond))
		rest, _ := keptRd.ReadString('\n')
		if err := kept.Wait(); err != nil || !strings.HasPrefix(rest, "held") {
			t.Errorf("the allowed client's connection broke across the change: %q %v", rest, err)
		}
		if err := cut.Wait(); err == nil {
			t.Error("the removed client's open connection kept working")
		}
	})

	t.Run("a malformed list is a Warning Event and keeps the previous ranges", func(t *testing.T) {
		// The API server still accepts leading zeros (with a warning);
		// edgelb refuses them, as Kubernetes will.
		kubectl(t, "", "patch", "svc", "ranged", "--type=merge", "-p",
			`{"metadata":{"annotations":{"service.beta.kubernetes.io/load-balancer-source-ranges":"10.0.0.3/32,010.0.0.4/32"}},"spec":{"loadBalancerSourceRanges":null}}`)
		waitFor(t, "a Warning Event InvalidSourceRanges on ranged", 30*time.Second, func() bool {
			return strings.Contains(kubectl(t, "", "get", "events", "--field-selector", "involvedObject.name=ranged,type=Warning", "-o", "jsonpath={.items[*].reason}"), "InvalidSourceRanges")
		})
		t.Logf("kubectl get events:\n%s", kubectl(t, "", "get", "events", "--field-selector", "involvedObject.name=ranged"))
		wantReached(t, url, "10.0.0.2") // the previous ranges, not the new list
		wantBlocked(t, url, "10.0.0.3")
		wantReached(t, "http://"+vip["web"]+"/", "10.0.0.3") // the neighbour is unaffected
		if n := dropped(t, "lb1", "default", "ranged"); n < 2 {
			t.Errorf("edgelb_source_range_dropped_packets_total of default/ranged = %v, want at least 2", n)
		}
		if !strings.Contains(nftListRuleset(t, "lb1"), "table inet foreign") {
			t.Error("the foreign table is gone")
		}
	})
}
