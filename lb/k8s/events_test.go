package k8s

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// A Service's Events come back newest first, whichever API wrote them,
// and only that Service's.
func TestServiceEvents(t *testing.T) {
	at := func(s int) metav1.Time { return metav1.NewTime(epoch.Add(time.Duration(s) * time.Second)) }
	ev := func(name, kind, obj string) *corev1.Event {
		return &corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: name},
			InvolvedObject: corev1.ObjectReference{Kind: kind, Namespace: "demo", Name: obj}}
	}
	allocated := ev("a", "Service", "web")
	allocated.Type, allocated.Reason, allocated.Message = "Normal", "IPAllocated", "Assigned IP 192.0.2.1"
	allocated.Source = corev1.EventSource{Component: "edgelb", Host: "lb1"}
	allocated.FirstTimestamp, allocated.LastTimestamp, allocated.Count = at(10), at(10), 1
	owner := ev("b", "Service", "web")
	owner.Type, owner.Reason, owner.Message = "Normal", "OwnerChanged", "192.0.2.1 is owned by lb2"
	owner.Source = corev1.EventSource{Component: "edgelb", Host: "lb1"}
	owner.FirstTimestamp, owner.LastTimestamp, owner.Count = at(20), at(40), 3
	// events.k8s.io/v1: event time and series instead of timestamps.
	series := ev("c", "Service", "web")
	series.Type, series.Reason, series.Message = "Warning", "Other", "from another controller"
	series.ReportingController, series.ReportingInstance = "other-controller", "x1"
	series.EventTime = metav1.NewMicroTime(epoch.Add(25 * time.Second))
	series.Series = &corev1.EventSeries{Count: 2, LastObservedTime: metav1.NewMicroTime(epoch.Add(30 * time.Second))}
	otherSvc := ev("d", "Service", "sticky")
	otherSvc.LastTimestamp = at(50)
	pod := ev("e", "Pod", "web")
	pod.LastTimestamp = at(60)

	fc := fake.NewClientset(allocated, owner, series, otherSvc, pod)
	c := newController(t, fc, testConfig(t, mainPool), "lb1")
	got, err := c.ServiceEvents(context.Background(), "demo", "web")
	if err != nil {
		t.Fatal(err)
	}
	want := []ServiceEvent{
		{Type: "Normal", Reason: "OwnerChanged", Message: "192.0.2.1 is owned by lb2", Count: 3, From: "edgelb/lb1", First: at(20).Time, Last: at(40).Time},
		{Type: "Warning", Reason: "Other", Message: "from another controller", Count: 2, From: "other-controller/x1", First: epoch.Add(25 * time.Second), Last: epoch.Add(30 * time.Second)},
		{Type: "Normal", Reason: "IPAllocated", Message: "Assigned IP 192.0.2.1", Count: 1, From: "edgelb/lb1", First: at(10).Time, Last: at(10).Time},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d events %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Type != w.Type || g.Reason != w.Reason || g.Message != w.Message || g.Count != w.Count || g.From != w.From || !g.First.Equal(w.First) || !g.Last.Equal(w.Last) {
			t.Errorf("event %d: %+v, want %+v", i, g, w)
		}
	}
}
