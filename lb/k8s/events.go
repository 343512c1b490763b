package k8s

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
)

// MaxServiceEvents is how many Events ServiceEvents returns at most, the
// most recent ones.
const MaxServiceEvents = 50

// ServiceEvent is one Kubernetes Event about a Service: edgelb's own
// (IPAllocated, OwnerChanged, PoolNotAllowed, ...) and any other
// component's.
type ServiceEvent struct {
	Type    string // Normal or Warning
	Reason  string
	Message string
	Count   int32
	// From is the component that reported it, with its host when it
	// says (edgelb/lb1).
	From        string
	First, Last time.Time
}

// ServiceEvents reads the Events about Service namespace/name from the
// API server (not from a cache: Events are not watched), the most recent
// first and at most MaxServiceEvents. It needs `list` on events
// (packaging/rbac.yaml).
func (c *Controller) ServiceEvents(ctx context.Context, namespace, name string) ([]ServiceEvent, error) {
	sel := fields.Set{"involvedObject.kind": "Service", "involvedObject.name": name}
	list, err := c.client.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{FieldSelector: sel.AsSelector().String()})
	if err != nil {
		return nil, fmt.Errorf("reading the Events of Service %s/%s: %w", namespace, name, err)
	}
	var out []ServiceEvent
	for i := range list.Items {
		e := &list.Items[i]
		if e.InvolvedObject.Kind != "Service" || e.InvolvedObject.Name != name {
			continue // a server that ignored the selector
		}
		out = append(out, serviceEvent(e))
	}
	slices.SortStableFunc(out, func(a, b ServiceEvent) int { return b.Last.Compare(a.Last) })
	return out[:min(len(out), MaxServiceEvents)], nil
}

// serviceEvent reads e whichever API wrote it: core/v1 recorders set the
// timestamps and count, events.k8s.io/v1 ones the event time and series.
func serviceEvent(e *corev1.Event) ServiceEvent {
	se := ServiceEvent{Type: e.Type, Reason: e.Reason, Message: e.Message, Count: max(e.Count, 1),
		First: e.FirstTimestamp.Time, Last: e.LastTimestamp.Time}
	se.From = cmp.Or(e.Source.Component, e.ReportingController)
	if host := cmp.Or(e.Source.Host, e.ReportingInstance); host != "" && host != se.From {
		se.From += "/" + host
	}
	if se.First.IsZero() {
		se.First = cmp.Or(e.EventTime.Time, e.CreationTimestamp.Time)
	}
	if se.Last.IsZero() {
		se.Last = se.First
		if e.Series != nil {
			se.Last, se.Count = e.Series.LastObservedTime.Time, max(e.Series.Count, 1)
		}
	}
	return se
}
