package k8s

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// labelled is a Service with what the cache leaves out (slim): labels,
// another tool's annotation, an owner.
func labelled(rv string) *corev1.Service {
	svc := lbService("ns", "web", 0)
	svc.ResourceVersion = rv
	svc.Labels = map[string]string{"app": "web"}
	svc.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": `{"kind":"Service"}`, "edgelb.io/pool": "main"}
	svc.Finalizers = []string{"example.com/keep"}
	return svc
}

// A status write is a JSON merge patch of the status subresource with the
// addresses and the resource version edgelb read, nothing else: what the
// cache left out of the Service stays as it is.
func TestStatusWriteIsAPatch(t *testing.T) {
	fc := fake.NewClientset(labelled("7"))
	c := newController(t, fc, testConfig(t, mainPool), "lb1")
	want := []corev1.LoadBalancerIngress{{IP: "192.0.2.1"}}
	if err := c.setIngress(context.Background(), slimmed(t, labelled("7")), want); err != nil {
		t.Fatal(err)
	}
	var patches int
	for _, a := range fc.Actions() {
		switch a := a.(type) {
		case k8stesting.PatchAction:
			patches++
			if a.GetSubresource() != "status" || a.GetPatchType() != types.MergePatchType {
				t.Errorf("patch of %q as %s, want a merge patch of status", a.GetSubresource(), a.GetPatchType())
			}
			var body map[string]any
			if err := json.Unmarshal(a.GetPatch(), &body); err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(body); got != "map[metadata:map[resourceVersion:7] status:map[loadBalancer:map[ingress:[map[ip:192.0.2.1]]]]]" {
				t.Errorf("patch %s: want the resource version and the addresses only", got)
			}
		case k8stesting.UpdateAction:
			t.Errorf("an update of %s: the patch suffices", a.GetSubresource())
		}
	}
	if patches != 1 {
		t.Errorf("%d patches, want 1", patches)
	}
	got, err := fc.CoreV1().Services("ns").Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Status.LoadBalancer.Ingress) != 1 || got.Labels["app"] != "web" || len(got.Annotations) != 2 || len(got.Finalizers) != 1 {
		t.Errorf("after the write: status %v, labels %v, annotations %v, finalizers %v; want the address and the rest kept",
			got.Status.LoadBalancer.Ingress, got.Labels, got.Annotations, got.Finalizers)
	}
}

// An identity that may not patch services/status (RBAC applied before
// it granted patch) still gets its status written: the Service is read
// whole and updated, on the resource version edgelb read; a Service that
// changed since is a conflict, retried once the cache has the change.
func TestStatusWriteFallsBackToUpdate(t *testing.T) {
	for _, tc := range []struct {
		name, cachedRV string
		conflict       bool
	}{
		{name: "same version", cachedRV: "7"},
		{name: "changed since", cachedRV: "6", conflict: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fc := fake.NewClientset(labelled("7"), lbService("ns", "other", 0))
			fc.PrependReactor("patch", "services", func(a k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewForbidden(corev1.Resource("services/status"), a.(k8stesting.PatchAction).GetName(), fmt.Errorf("RBAC: patch not allowed"))
			})
			c := newController(t, fc, testConfig(t, mainPool), "lb1")
			err := c.setIngress(context.Background(), slimmed(t, labelled(tc.cachedRV)), []corev1.LoadBalancerIngress{{IP: "192.0.2.1"}})
			got, gerr := fc.CoreV1().Services("ns").Get(context.Background(), "web", metav1.GetOptions{})
			if gerr != nil {
				t.Fatal(gerr)
			}
			if tc.conflict {
				if !apierrors.IsConflict(err) || len(got.Status.LoadBalancer.Ingress) != 0 {
					t.Errorf("err %v, status %v; want a conflict and no write", err, got.Status.LoadBalancer.Ingress)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Status.LoadBalancer.Ingress) != 1 || got.Labels["app"] != "web" || len(got.Annotations) != 2 || len(got.Finalizers) != 1 {
				t.Errorf("after the write: status %v, labels %v, annotations %v, finalizers %v; want the address and the rest kept",
					got.Status.LoadBalancer.Ingress, got.Labels, got.Annotations, got.Finalizers)
			}
			if o, _ := fc.CoreV1().Services("ns").Get(context.Background(), "other", metav1.GetOptions{}); len(o.Status.LoadBalancer.Ingress) != 0 {
				t.Errorf("another Service of the namespace was written: %v", o.Status.LoadBalancer.Ingress)
			}
		})
	}
}
