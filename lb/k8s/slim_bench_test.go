package k8s

import (
	"encoding/json"
	"fmt"
	"runtime"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/scheme"
)

// BenchmarkCachedService reports what one Service costs in the informer's
// cache: decoded from protobuf as the API server sends it (a LoadBalancer
// Service as kube-apiserver fills it in, with its address in the status),
// then through slim. bare: no labels or annotations; applied: as
// `kubectl apply` of a Helm chart leaves it (labels, Helm's annotations,
// kubectl's last-applied-configuration). Figures: bytes-per-Service of
// live heap.
func BenchmarkCachedService(b *testing.B) {
	for _, applied := range []bool{false, true} {
		name := "bare"
		if applied {
			name = "applied"
		}
		b.Run(name, func(b *testing.B) { benchCachedService(b, applied) })
	}
}

func benchCachedService(b *testing.B, applied bool) {
	const n = 10000
	codec := protobuf.NewSerializer(scheme.Scheme, scheme.Scheme)
	raw := make([][]byte, n)
	for i := range raw {
		svc := apiServerService("team-"+fmt.Sprint(i%20), fmt.Sprintf("svc-%05d", i), i)
		if applied {
			kubectlApplied(svc)
		}
		var buf bytesBuffer
		if err := codec.Encode(svc, &buf); err != nil {
			b.Fatal(err)
		}
		raw[i] = buf
	}
	for b.Loop() {
		kept := make([]any, n)
		before := heapAlloc()
		for i, r := range raw {
			o, _, err := codec.Decode(r, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			if kept[i], err = slim(o); err != nil {
				b.Fatal(err)
			}
		}
		after := heapAlloc()
		b.ReportMetric(float64(after-before)/n, "bytes-per-Service")
		runtime.KeepAlive(kept)
	}
}

// kubectlApplied gives svc the metadata a Helm release applied with
// kubectl leaves on it.
func kubectlApplied(svc *corev1.Service) {
	svc.Labels = map[string]string{
		"app.kubernetes.io/name": svc.Name, "app.kubernetes.io/instance": svc.Name,
		"app.kubernetes.io/managed-by": "Helm", "helm.sh/chart": "web-1.4.2",
	}
	spec, _ := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "Service",
		"metadata": map[string]any{"name": svc.Name, "namespace": svc.Namespace, "labels": svc.Labels},
		"spec":     map[string]any{"type": "LoadBalancer", "selector": svc.Spec.Selector, "ports": svc.Spec.Ports}})
	svc.Annotations = map[string]string{
		"meta.helm.sh/release-name": svc.Name, "meta.helm.sh/release-namespace": svc.Namespace,
		"kubectl.kubernetes.io/last-applied-configuration": string(spec),
	}
}

type bytesBuffer []byte

func (w *bytesBuffer) Write(p []byte) (int, error) { *w = append(*w, p...); return len(p), nil }

// heapAlloc is the bytes of live objects after a collection.
func heapAlloc() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// apiServerService is a LoadBalancer Service the way the API server
// returns it once created and addressed: defaults filled in, a cluster IP,
// a node port, its address in the status.
func apiServerService(ns, name string, i int) *corev1.Service {
	single, local := corev1.IPFamilyPolicySingleStack, corev1.ServiceInternalTrafficPolicyCluster
	alloc := true
	mode := corev1.LoadBalancerIPModeVIP
	return &corev1.Service{
		TypeMeta: metav1.TypeMeta{Kind: "Service", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: "0f8c3f5e-7b4c-4d0e-9a51-5b6c1f2e3d4a",
			ResourceVersion: fmt.Sprint(100000 + i), CreationTimestamp: metav1.NewTime(time.Unix(1_800_000_000, 0))},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": name},
			Ports: []corev1.ServicePort{{Name: "p80", Protocol: corev1.ProtocolTCP, Port: 80,
				TargetPort: intstr.FromInt32(8080), NodePort: int32(30000 + i%2000)}},
			ClusterIP: fmt.Sprintf("10.96.%d.%d", i/256, i%256), ClusterIPs: []string{fmt.Sprintf("10.96.%d.%d", i/256, i%256)},
			SessionAffinity: corev1.ServiceAffinityNone, ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyCluster,
			IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol}, IPFamilyPolicy: &single,
			AllocateLoadBalancerNodePorts: &alloc, InternalTrafficPolicy: &local,
		},
		Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{
			{IP: fmt.Sprintf("198.51.%d.%d", i/256, i%256), IPMode: &mode}}}},
	}
}
