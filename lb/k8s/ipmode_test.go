package k8s

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/config"
)

// status.loadBalancer.ingress[].ipMode follows each Service's effective
// method: Proxy for nat, VIP for dr and tunnel; a bad edgelb.io/method
// keeps the default's.
func TestIPModeFollowsTheServiceMethod(t *testing.T) {
	cfg, err := config.Parse("test.yaml", []byte(`node: {name: lb1}
cluster: {insecure: true, bindAddr: 127.0.0.1}
kubernetes: {kubeconfig: /nonexistent, defaultClass: true}
pools:
`+mainPool+`
dataplane: {backend: ipvs, method: nat}
`))
	if err != nil {
		t.Fatal(err)
	}
	annotated := func(name string, age int, method string) *corev1.Service {
		s := lbService("ns", name, age)
		if method != "" {
			s.Annotations = map[string]string{lb.AnnotationMethod: method}
		}
		return s
	}
	fc := fake.NewClientset()
	create(t, fc, annotated("default", 0, ""), annotated("dr", 1, "dr"), annotated("tunnel", 2, "tunnel"), annotated("bad", 3, "fullnat"))
	c := newController(t, fc, cfg, "lb1")
	startInformers(t, c)
	defer runTerm(c)()
	waitAddressed(t, fc, "ns/default", "ns/dr", "ns/tunnel", "ns/bad")
	ipMode := func(name string) corev1.LoadBalancerIPMode {
		svc, err := fc.CoreV1().Services("ns").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil || len(svc.Status.LoadBalancer.Ingress) == 0 || svc.Status.LoadBalancer.Ingress[0].IPMode == nil {
			return ""
		}
		return *svc.Status.LoadBalancer.Ingress[0].IPMode
	}
	for name, want := range map[string]corev1.LoadBalancerIPMode{
		"default": corev1.LoadBalancerIPModeProxy, "dr": corev1.LoadBalancerIPModeVIP,
		"tunnel": corev1.LoadBalancerIPModeVIP, "bad": corev1.LoadBalancerIPModeProxy,
	} {
		if got := ipMode(name); got != want {
			t.Errorf("%s: ipMode %q, want %q", name, got, want)
		}
	}
	// Changing the annotation changes the status.
	svc, err := fc.CoreV1().Services("ns").Get(context.Background(), "default", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc.Annotations = map[string]string{lb.AnnotationMethod: "dr"}
	if _, err := fc.CoreV1().Services("ns").Update(context.Background(), svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ipMode VIP after edgelb.io/method: dr", func() error {
		if got := ipMode("default"); got != corev1.LoadBalancerIPModeVIP {
			return fmt.Errorf("ipMode %q", got)
		}
		return nil
	})
}
