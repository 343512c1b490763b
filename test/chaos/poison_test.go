package chaos

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/test/nslab"
)

// poison is one kind of bad object: the Service's annotations and
// whether edgelb must leave it without an address.
type poison struct {
	kind        string
	annotations map[string]string
	// reason is the Warning Event's reason the Service must get.
	reason string
	// noAddress: the Service must get no address.
	noAddress bool
}

// A stream of bad objects — Services with impossible annotations, source
// ranges, requested addresses taken or outside every pool, and cluster
// configurations with unusable VIPs and pools through the appliance's API —
// while the client sends requests through the good Services' VIPs every
// 10 ms: no request to a good VIP may fail, no good VIP may move, no
// Service may be renumbered or given an address twice, every bad Service
// gets its Warning Event (and no address where none can work), every bad
// configuration is refused, and every host stays healthy.
func TestPoison(t *testing.T) {
	const scenario = "poison"
	rounds := count(20, 3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k := newKubeLab(t, 3)
	good, vips := k.addressedServices(ctx, t, "good", 3)
	want := owners(t, k.Lab, vips...)
	statuses := k.watchStatuses(ctx, t)
	ps := startProbes(t, k.Lab, vips...)
	watch := k.WatchVIPs(50*time.Millisecond, vips...)
	marks := logMarks(k.Lab)

	poisons := []poison{
		{kind: "multicast-ip", annotations: map[string]string{lb.AnnotationIPs: "224.0.0.9"}, reason: "InvalidAnnotation", noAddress: true},
		{kind: "no-pool", annotations: map[string]string{lb.AnnotationPool: "nonexistent"}, reason: "NoSuchPool", noAddress: true},
		{kind: "scheduler", annotations: map[string]string{lb.AnnotationScheduler: "fastest"}, reason: "InvalidAnnotation"},
		{kind: "ranges", annotations: map[string]string{lb.AnnotationSourceRanges: "::ffff:10.0.0.0/104"}, reason: "InvalidSourceRanges"},
		{kind: "taken-ip", annotations: map[string]string{lb.AnnotationIPs: vips[0].String()}, reason: "AddressInUse", noAddress: true},
		{kind: "outside-pools", annotations: map[string]string{lb.AnnotationIPs: "10.99.0.5"}, reason: "AddressNotInPool", noAddress: true},
	}
	badSpecs := map[string]string{
		"multicast static VIP": `services: [{name: bad, vip: 239.1.1.1, ports: [{port: 8080}]}]`,
		"loopback static VIP":  `services: [{name: bad, vip: 127.0.0.9, ports: [{port: 8080}]}]`,
		"multicast pool":       `pools: [{name: bad, addresses: ["224.0.0.0/28"]}]`,
		"link-local pool":      `pools: [{name: bad, addresses: ["169.254.0.10-169.254.0.20"]}]`,
		"overlapping pool":     `pools: [{name: chaos, addresses: ["10.99.0.128-10.99.0.250"]}, {name: bad, addresses: ["10.99.0.200/29"]}]`,
	}
	svcs := k.env.Admin.CoreV1().Services(namespace)
	created, refused := 0, 0
	var names []string
	for round := range rounds {
		for _, p := range poisons {
			name := fmt.Sprintf("bad-%s-%d", p.kind, round)
			c := class
			svc := &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Annotations: p.annotations},
				Spec: corev1.ServiceSpec{
					Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: &c, Selector: map[string]string{"app": name},
					Ports: []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
				},
			}
			if _, err := svcs.Create(ctx, svc, metav1.CreateOptions{}); err != nil {
				t.Fatalf("creating %s: %v", name, err)
			}
			created++
			names = append(names, name)
		}
		// Through a different host's API each round.
		h := k.Hosts[round%len(k.Hosts)]
		for what, spec := range badSpecs {
			path := filepath.Join(k.Dir, "bad.yaml")
			nslab.WriteFile(t, path, spec+"\n")
			out, err := h.Edgelb("config", "apply", "-f", path, "--api", "http://127.0.0.1:9080")
			if err == nil {
				t.Errorf("%s applied through %s: %s", what, h.Name, out)
				continue
			}
			refused++
			if round == 0 {
				t.Logf("%s refused: %s", what, strings.TrimSpace(out))
			}
		}
	}

	// Every bad Service gets its Warning Event; those that cannot work
	// get no address.
	missing := map[string]string{}
	if !nslab.Poll(60*time.Second, func() bool {
		clear(missing)
		evs, err := k.env.Admin.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{FieldSelector: "type=Warning"})
		if err != nil {
			return false
		}
		for round := range rounds {
			for _, p := range poisons {
				name := fmt.Sprintf("bad-%s-%d", p.kind, round)
				if !slices.ContainsFunc(evs.Items, func(e corev1.Event) bool {
					return e.InvolvedObject.Name == name && e.Reason == p.reason
				}) {
					missing[name] = p.reason
				}
			}
		}
		return len(missing) == 0
	}) {
		t.Errorf("bad Services without their Warning Event: %v", missing)
	}
	addrs := k.addresses(t)
	for round := range rounds {
		for _, p := range poisons {
			name := fmt.Sprintf("bad-%s-%d", p.kind, round)
			if p.noAddress && len(addrs[name]) > 0 {
				t.Errorf("%s got %v", name, addrs[name])
			}
		}
	}
	for _, name := range names {
		if err := svcs.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("deleting %s: %v", name, err)
		}
	}
	time.Sleep(2 * time.Second) // traffic goes on while the deletions are processed

	samples := watch()
	sent, failed := stopProbes(t, ps)
	moved := append(moves(samples, want), vipsAdded(k.Lab, marks, vips...)...)
	cancel()
	_, renumbered, doubled, werr := statuses.result()
	if werr != nil {
		t.Error(werr)
	}
	var unhealthy []string
	for _, h := range k.Hosts {
		out, err := h.Edgelb("status", "--api", "http://127.0.0.1:9080")
		if err != nil || !strings.Contains(out, "healthy") || strings.Contains(out, "problem:") {
			unhealthy = append(unhealthy, fmt.Sprintf("%s: %v\n%s", h.Name, err, out))
		}
	}
	figure(t, scenario, "bad Services created", created)
	figure(t, scenario, "bad configurations refused", fmt.Sprintf("%d of %d", refused, rounds*len(badSpecs)))
	figure(t, scenario, "failed requests to good VIPs", fmt.Sprintf("%d of %d", failed, sent))
	figure(t, scenario, "good VIP moves", len(moved))
	figure(t, scenario, "renumbered Services", len(renumbered))
	if failed > 0 {
		t.Errorf("%d of %d requests to the good VIPs failed", failed, sent)
	}
	if len(moved) > 0 {
		t.Errorf("good VIPs moved: %v", moved)
	}
	if len(renumbered) > 0 || len(doubled) > 0 {
		t.Errorf("renumbered %v, doubled %v", renumbered, doubled)
	}
	if after := k.addresses(t); !sameAddresses(good, after) {
		t.Errorf("the good Services' addresses changed: %v -> %v", good, after)
	}
	if len(unhealthy) > 0 {
		t.Errorf("hosts not healthy after the poison:\n%s", strings.Join(unhealthy, "\n"))
	}
}

// sameAddresses reports whether every Service of before has the same
// addresses in after.
func sameAddresses(before, after map[string][]netip.Addr) bool {
	for name, ips := range before {
		if !slices.Equal(after[name], ips) {
			return false
		}
	}
	return true
}
