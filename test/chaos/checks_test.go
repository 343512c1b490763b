package chaos

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/edgelb/edgelb/test/nslab"
)

// The suite's own checks must be able to fail: they are stepped here
// with made-up observations.

func svc(uid, name string, ips ...string) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{UID: types.UID(uid), Name: name}}
	for _, ip := range ips {
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	return s
}

func TestStatusWatchRules(t *testing.T) {
	type ev struct {
		typ watch.EventType
		svc *corev1.Service
	}
	for _, tc := range []struct {
		name                string
		events              []ev
		renumbered, doubled int
	}{
		{"an address reused after a deletion", []ev{
			{watch.Added, svc("a", "a")}, {watch.Modified, svc("a", "a", "10.0.0.1")},
			{watch.Deleted, svc("a", "a", "10.0.0.1")},
			{watch.Added, svc("b", "b")}, {watch.Modified, svc("b", "b", "10.0.0.1")},
		}, 0, 0},
		{"the same address on two live Services", []ev{
			{watch.Modified, svc("a", "a", "10.0.0.1")}, {watch.Modified, svc("b", "b", "10.0.0.1")},
		}, 0, 1},
		{"a Service renumbered", []ev{
			{watch.Modified, svc("a", "a", "10.0.0.1")}, {watch.Modified, svc("a", "a", "10.0.0.2")},
		}, 1, 0},
		{"a Service's address cleared", []ev{
			{watch.Modified, svc("a", "a", "10.0.0.1")}, {watch.Modified, svc("a", "a")},
		}, 1, 0},
		{"a renumbered Service frees its old address", []ev{
			{watch.Modified, svc("a", "a", "10.0.0.1")}, {watch.Modified, svc("a", "a", "10.0.0.2")},
			{watch.Modified, svc("b", "b", "10.0.0.1")},
		}, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newStatusWatch()
			for _, e := range tc.events {
				w.observe(e.typ, e.svc)
			}
			close(w.done)
			_, renumbered, doubled, _ := w.result()
			if len(renumbered) != tc.renumbered || len(doubled) != tc.doubled {
				t.Errorf("renumbered %v, doubled %v; want %d and %d", renumbered, doubled, tc.renumbered, tc.doubled)
			}
		})
	}
}

func TestARPTimes(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int, macs string) nslab.ProbeResult {
		return nslab.ProbeResult{Start: t0.Add(time.Duration(ms) * time.Millisecond), OK: macs != "", Host: macs}
	}
	res := []nslab.ProbeResult{at(0, "a"), at(10, ""), at(20, ""), at(30, "a,b"), at(40, "b"), at(50, "b")}
	none, double := arpTimes(res, t0, t0.Add(time.Second))
	if none != 20*time.Millisecond || double != 10*time.Millisecond {
		t.Errorf("none %s, double %s; want 20ms and 10ms", none, double)
	}
	none, double = arpTimes(res, t0.Add(25*time.Millisecond), t0.Add(time.Second))
	if none != 0 || double != 10*time.Millisecond {
		t.Errorf("from 25 ms: none %s, double %s; want 0 and 10ms", none, double)
	}
}
