package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/test/nslab"
	"github.com/edgelb/edgelb/test/testenv"
)

// After a failover, `kubectl describe svc` shows who owns the Service's
// VIP now: the status writer records a Normal OwnerChanged Event. Three
// edgelb hosts in network namespaces run against a real kube-apiserver;
// the VIP's owner is killed (it may be the status writer too: then the
// next leader reports the change).
func TestOwnerChangeEvent(t *testing.T) {
	const ns, class = "events", "edgelb.io/events"
	l := nslab.New(t, 3)
	env := l.StartKube(ns, class, "events")
	for _, h := range l.Hosts {
		h.Start()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	vip := createLBService(ctx, t, env, ns, "web", class)
	old := l.SettledOwner(vip, 2*time.Second)
	lease, _ := env.Admin.CoordinationV1().Leases("kube-system").Get(ctx, "events", metav1.GetOptions{})
	leader := ""
	if lease != nil && lease.Spec.HolderIdentity != nil {
		leader = *lease.Spec.HolderIdentity
	}
	t.Logf("%s is owned by %s; the status writer is %s", vip, old.Name, leader)
	old.Kill()
	var next *nslab.Host
	if !nslab.Poll(converge, func() bool {
		hs := l.Holders(vip)
		if len(hs) == 1 && hs[0] != old {
			next = hs[0]
		}
		return next != nil
	}) {
		t.Fatalf("%s did not move off %s: on %v", vip, old.Name, nslab.Names(l.Holders(vip)))
	}
	t.Logf("%s moved to %s", vip, next.Name)
	// The Event names the new owner, and the old one (a moment without an
	// owner, while the members confirm their view, may come between: then
	// two Events, at most one per 30 s).
	var events string
	var err error
	if !nslab.Poll(2*time.Minute, func() bool {
		events, err = env.Kubectl(ctx, "get", "events", "-n", ns, "--field-selector", "involvedObject.name=web,reason=OwnerChanged",
			"-o", "custom-columns=TYPE:.type,MESSAGE:.message")
		return err == nil && strings.Contains(events, fmt.Sprintf("to %s", next.Name)) &&
			strings.Contains(events, fmt.Sprintf("%s moved from %s", vip, old.Name))
	}) {
		t.Fatalf("no OwnerChanged Event from %s to %s:\n%s %v", old.Name, next.Name, events, err)
	}
	describe, err := env.Kubectl(ctx, "describe", "svc", "-n", ns, "web")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl describe svc web:\n%s", describe)
	if !strings.Contains(describe, "OwnerChanged") || !strings.Contains(describe, "moved from "+old.Name) {
		t.Errorf("kubectl describe svc does not show the owner change")
	}
	if strings.Contains(events, "Warning") {
		t.Errorf("an owner change is not a Warning:\n%s", events)
	}
}

// createLBService creates a LoadBalancer Service of class with port 8080
// and returns the address edgelb writes into its status.
func createLBService(ctx context.Context, t *testing.T, env *testenv.Env, ns, name, class string) netip.Addr {
	t.Helper()
	_, err := env.Admin.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: &class,
			Ports: []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var vip netip.Addr
	if !nslab.Poll(time.Minute, func() bool {
		svc, err := env.Admin.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || len(lb.VIPs(svc)) == 0 {
			return false
		}
		vip = lb.VIPs(svc)[0]
		return true
	}) {
		t.Fatalf("Service %s got no address", name)
	}
	return vip
}
