package integration

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const tutorial = `apiVersion: apps/v1
kind: Deployment
metadata: {name: nginx, namespace: tutorial}
spec:
  replicas: 5
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      containers:
      - {name: nginx, image: nginx:1.27, ports: [{containerPort: 80}]}
---
apiVersion: v1
kind: Service
metadata:
  name: nginx
  namespace: tutorial
  labels: {app: nginx, app.kubernetes.io/managed-by: Helm}
  annotations: {meta.helm.sh/release-name: nginx}
spec:
  type: LoadBalancer
  selector: {app: nginx}
  ports: [{port: 8080, targetPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: internal, namespace: tutorial}
spec:
  selector: {app: nginx}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: nodeport, namespace: tutorial}
spec:
  type: NodePort
  selector: {app: nginx}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: headless, namespace: tutorial}
spec:
  clusterIP: None
  selector: {app: nginx}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: external, namespace: tutorial}
spec:
  type: ExternalName
  externalName: example.com
`

// The Service of a typical tutorial gets an IP from the pool, shown by
// kubectl as EXTERNAL-IP; the other kinds of Service are left alone.
func TestTutorialServiceGetsExternalIP(t *testing.T) {
	ctx := context.Background()
	createNamespace(t, "tutorial")
	start(t, "lb1", config(t, "lb1", "", "lease-tutorial",
		`  - {name: default, addresses: ["192.0.2.10-192.0.2.50", "2001:db8:1::/120"]}`))
	if out, err := env.KubectlStdin(ctx, tutorial, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = env.KubectlStdin(ctx, tutorial, "delete", "-f", "-", "--wait=false") })

	ips := waitIPs(t, "tutorial", "nginx", 1)
	ip := netip.MustParseAddr(ips[0])
	if ip.Compare(netip.MustParseAddr("192.0.2.10")) < 0 || ip.Compare(netip.MustParseAddr("192.0.2.50")) > 0 {
		t.Errorf("nginx got %s, outside the pool 192.0.2.10-192.0.2.50", ip)
	}
	out, err := env.Kubectl(ctx, "get", "svc", "-n", "tutorial", "nginx")
	if err != nil {
		t.Fatal(err, out)
	}
	t.Logf("kubectl get svc:\n%s", out)
	if !strings.Contains(out, "EXTERNAL-IP") || !strings.Contains(strings.Fields(strings.Split(out, "\n")[1])[3], ips[0]) {
		t.Errorf("kubectl does not show %s as EXTERNAL-IP:\n%s", ips[0], out)
	}
	svc := getService(t, "tutorial", "nginx")
	// edgelb's cache keeps only the spec fields and annotations it reads,
	// and no labels; its status write patches the addresses alone: the
	// server keeps the spec and metadata it had.
	if svc.Spec.Selector["app"] != "nginx" || svc.Spec.ClusterIP == "" || len(svc.Spec.ClusterIPs) == 0 || svc.Spec.InternalTrafficPolicy == nil {
		t.Errorf("the spec changed with edgelb's status write: %+v", svc.Spec)
	}
	if svc.Labels["app.kubernetes.io/managed-by"] != "Helm" || svc.Annotations["meta.helm.sh/release-name"] != "nginx" ||
		!strings.Contains(svc.Annotations["kubectl.kubernetes.io/last-applied-configuration"], `"Helm"`) {
		t.Errorf("the metadata changed with edgelb's status write: labels %v, annotations %v", svc.Labels, svc.Annotations)
	}
	if m := svc.Status.LoadBalancer.Ingress[0].IPMode; m == nil || *m != corev1.LoadBalancerIPModeVIP {
		t.Errorf("ipMode = %v, want VIP for an announce-only appliance", m)
	}
	waitEvent(t, "tutorial", "nginx", corev1.EventTypeNormal, "IPAllocated", ips[0])

	// Give edgelb time to have seen the other Services (it has: they were
	// applied together and the LoadBalancer one is done), then check them.
	for _, name := range []string{"internal", "nodeport", "headless", "external"} {
		s := getService(t, "tutorial", name)
		if len(s.Status.LoadBalancer.Ingress) != 0 {
			t.Errorf("%s (%s) was given %v", name, s.Spec.Type, s.Status.LoadBalancer.Ingress)
		}
		for _, mf := range s.ManagedFields {
			if strings.HasPrefix(mf.Manager, "edgelb") {
				t.Errorf("edgelb wrote to %s: %+v", name, mf)
			}
		}
	}
	out, _ = env.Kubectl(ctx, "get", "svc", "-n", "tutorial")
	t.Logf("kubectl get svc:\n%s", out)
}

// A requested address is honoured; every kind of refusal becomes a Warning
// Event on that Service while the others keep their addresses.
func TestRequestsAndRejections(t *testing.T) {
	const ns, class = "requests", "edgelb.io/requests"
	createNamespace(t, ns)
	start(t, "lb1", config(t, "lb1", class, "lease-requests", `
  - {name: main, addresses: ["198.51.100.0/28", "2001:db8:2::/124"]}
  - {name: tiny, addresses: ["198.51.100.100"], autoAssign: false}
  - {name: other-team, addresses: ["198.51.100.200-198.51.100.210"], namespaces: [other]}`))

	wanted := lbService(ns, "wanted", class, 80)
	wanted.Annotations["edgelb.io/load-balancer-ips"] = "198.51.100.7"
	createService(t, wanted)
	if ips := waitIPs(t, ns, "wanted", 1); ips[0] != "198.51.100.7" {
		t.Fatalf("wanted got %v, asked for 198.51.100.7", ips)
	}

	legacy := lbService(ns, "legacy", class, 80)
	legacy.Spec.LoadBalancerIP = "198.51.100.9"
	createService(t, legacy)
	if ips := waitIPs(t, ns, "legacy", 1); ips[0] != "198.51.100.9" {
		t.Fatalf("legacy got %v, asked spec.loadBalancerIP 198.51.100.9", ips)
	}

	small := lbService(ns, "small", class, 80)
	small.Annotations["edgelb.io/pool"] = "tiny"
	createService(t, small)
	if ips := waitIPs(t, ns, "small", 1); ips[0] != "198.51.100.100" {
		t.Fatalf("small got %v from pool tiny", ips)
	}

	dual := lbService(ns, "dual", class, 80)
	prefer := corev1.IPFamilyPolicyPreferDualStack
	dual.Spec.IPFamilyPolicy = &prefer
	createService(t, dual)
	ips := waitIPs(t, ns, "dual", 2)
	if a, b := netip.MustParseAddr(ips[0]), netip.MustParseAddr(ips[1]); a.Is4() == b.Is4() {
		t.Errorf("dual-stack Service got %v, want one IPv4 and one IPv6", ips)
	}

	rejections := []struct {
		name, reason, msg string
		mutate            func(*corev1.Service)
	}{
		{"taken", "AddressInUse", "already used by requests/wanted", func(s *corev1.Service) {
			s.Annotations["edgelb.io/load-balancer-ips"] = "198.51.100.7"
		}},
		{"outside", "AddressNotInPool", "not in any address pool", func(s *corev1.Service) {
			s.Annotations["edgelb.io/load-balancer-ips"] = "203.0.113.5"
		}},
		{"exhausted", "PoolExhausted", "no free IPv4 address left in pool tiny", func(s *corev1.Service) {
			s.Annotations["edgelb.io/pool"] = "tiny"
		}},
		{"nopool", "NoSuchPool", `pool "nope" does not exist`, func(s *corev1.Service) {
			s.Annotations["edgelb.io/pool"] = "nope"
		}},
		{"forbidden", "PoolNotAllowed", "may not be used from namespace", func(s *corev1.Service) {
			s.Annotations["edgelb.io/pool"] = "other-team"
		}},
		{"bad-ip", "InvalidAnnotation", `"192.0.2.300" is not an IP address`, func(s *corev1.Service) {
			s.Annotations["edgelb.io/load-balancer-ips"] = "192.0.2.300"
		}},
		{"two-v4", "InvalidAnnotation", "at most one IPv4 and one IPv6", func(s *corev1.Service) {
			s.Annotations["edgelb.io/load-balancer-ips"] = "198.51.100.3,198.51.100.4"
		}},
		{"bad-scheduler", "InvalidAnnotation", "edgelb.io/scheduler \"fastest\": not one of", func(s *corev1.Service) {
			s.Annotations["edgelb.io/scheduler"] = "fastest"
		}},
		{"bad-share", "InvalidAnnotation", "edgelb.io/allow-shared-ip", func(s *corev1.Service) {
			s.Annotations["edgelb.io/allow-shared-ip"] = "no spaces allowed!"
		}},
		{"bad-pool", "InvalidAnnotation", "not a pool name", func(s *corev1.Service) {
			s.Annotations["edgelb.io/pool"] = "a,b"
		}},
	}
	for _, r := range rejections {
		svc := lbService(ns, r.name, class, 80)
		r.mutate(svc)
		createService(t, svc)
	}
	for _, r := range rejections {
		t.Run(r.name, func(t *testing.T) {
			waitEvent(t, ns, r.name, corev1.EventTypeWarning, r.reason, r.msg)
			if got := ingressIPs(getService(t, ns, r.name)); len(got) != 0 {
				t.Errorf("rejected Service has addresses %v", got)
			}
		})
	}
	// The rejections changed nothing for the Services that had addresses.
	for name, want := range map[string]string{"wanted": "198.51.100.7", "legacy": "198.51.100.9", "small": "198.51.100.100"} {
		if got := ingressIPs(getService(t, ns, name)); len(got) != 1 || got[0] != want {
			t.Errorf("%s has %v after the rejections, want [%s]", name, got, want)
		}
	}
}

// Services with the same sharing key and different ports share an address;
// colliding ports are refused.
func TestSharedIP(t *testing.T) {
	const ns, class = "shared", "edgelb.io/shared"
	createNamespace(t, ns)
	start(t, "lb1", config(t, "lb1", class, "lease-shared", `  - {name: main, addresses: ["198.51.100.64/28"]}`))
	mk := func(name string, port int32) *corev1.Service {
		s := lbService(ns, name, class, port)
		s.Annotations["edgelb.io/allow-shared-ip"] = "web"
		return s
	}
	createService(t, mk("http", 80))
	first := waitIPs(t, ns, "http", 1)
	createService(t, mk("https", 443))
	if second := waitIPs(t, ns, "https", 1); second[0] != first[0] {
		t.Errorf("https got %v, http has %v: they should share", second, first)
	}
	createService(t, lbService(ns, "alone", class, 80))
	if alone := waitIPs(t, ns, "alone", 1); alone[0] == first[0] {
		t.Errorf("a Service without the sharing key got the shared address %s", alone[0])
	}
	createService(t, mk("clash", 443))
	waitEvent(t, ns, "clash", corev1.EventTypeWarning, "PortsCollide", "443/TCP")
	if got := ingressIPs(getService(t, ns, "clash")); len(got) != 0 {
		t.Errorf("clash got %v despite colliding ports", got)
	}
}

// A restart keeps every address; deleting a Service, or turning it into a
// ClusterIP Service, frees its address for the next one.
func TestRestartKeepsIPsAndReleaseFrees(t *testing.T) {
	const ns, class = "restart", "edgelb.io/restart"
	createNamespace(t, ns)
	cfg := config(t, "lb1", class, "lease-restart", `  - {name: main, addresses: ["198.51.100.128/28"]}`)
	p := start(t, "lb1", cfg)
	want := map[string]string{}
	for i := 0; i < 10; i++ {
		createService(t, lbService(ns, fmt.Sprintf("s%d", i), class, 80))
	}
	for i := 0; i < 10; i++ {
		name := fmt.Sprintf("s%d", i)
		want[name] = waitIPs(t, ns, name, 1)[0]
	}
	p.stop(t)

	// While edgelb is down, s3 is deleted and s4 becomes a ClusterIP.
	ctx := context.Background()
	if err := env.Admin.CoreV1().Services(ns).Delete(ctx, "s3", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// A new Service created while edgelb is down must not take an address
	// another Service already has, whichever the restarted edgelb sees first.
	createService(t, lbService(ns, "newcomer", class, 80))
	start(t, "lb1", cfg)
	got := waitIPs(t, ns, "newcomer", 1)[0]
	if got != want["s3"] {
		t.Errorf("newcomer got %s; the lowest free address was s3's %s", got, want["s3"])
	}
	delete(want, "s3")
	for name, ip := range want {
		if got := ingressIPs(getService(t, ns, name)); len(got) != 1 || got[0] != ip {
			t.Errorf("%s had %s before the restart, has %v after", name, ip, got)
		}
	}

	s4 := getService(t, ns, "s4")
	s4.Spec.Type = corev1.ServiceTypeClusterIP
	s4.Spec.Ports[0].NodePort = 0
	if _, err := env.Admin.CoreV1().Services(ns).Update(ctx, s4, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "s4's address is withdrawn", func() error {
		if got := ingressIPs(getService(t, ns, "s4")); len(got) != 0 {
			return fmt.Errorf("status still has %v", got)
		}
		return nil
	})
	createService(t, lbService(ns, "next", class, 80))
	if got := waitIPs(t, ns, "next", 1)[0]; got != want["s4"] {
		t.Errorf("next got %s, want s4's freed %s", got, want["s4"])
	}
}

// Two edgelb processes against one API server, 50 Services created at
// once: no address is handed out twice and only the Lease holder writes.
func TestTwoControllersFiftyServices(t *testing.T) {
	const ns, class, lease = "pair", "edgelb.io/pair", "lease-pair"
	createNamespace(t, ns)
	pools := `  - {name: main, addresses: ["10.200.0.0/24"]}`
	start(t, "lbA", config(t, "lbA", class, lease, pools))
	start(t, "lbB", config(t, "lbB", class, lease, pools))

	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			svc := lbService(ns, fmt.Sprintf("svc%02d", i), class, 80)
			if _, err := env.Admin.CoreV1().Services(ns).Create(context.Background(), svc, metav1.CreateOptions{}); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var list *corev1.ServiceList
	eventually(t, 30*time.Second, "all 50 Services have an address", func() error {
		var err error
		list, err = env.Admin.CoreV1().Services(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		n := 0
		for _, s := range list.Items {
			if len(s.Status.LoadBalancer.Ingress) > 0 {
				n++
			}
		}
		if n != 50 {
			return fmt.Errorf("%d of 50", n)
		}
		return nil
	})
	l, err := env.Admin.CoordinationV1().Leases("kube-system").Get(context.Background(), lease, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	holder := *l.Spec.HolderIdentity
	owners := map[string]string{}
	for _, s := range list.Items {
		for _, ip := range ingressIPs(&s) {
			if other, dup := owners[ip]; dup {
				t.Errorf("%s given to both %s and %s", ip, other, s.Name)
			}
			owners[ip] = s.Name
		}
		for _, mf := range s.ManagedFields {
			if mf.Subresource == "status" && mf.Manager != "edgelb/"+holder {
				t.Errorf("%s's status written by %q; the Lease holder is %s", s.Name, mf.Manager, holder)
			}
		}
	}
	t.Logf("Lease holder %s assigned %d distinct addresses", holder, len(owners))
}
