package k8s

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
)

// Outcomes of an Event, as Options.CountEvent is told of them. What was
// recorded but neither written nor failed was dropped by client-go's
// bounded queue (1,000 Events per broadcaster) or merged into an earlier
// Event by its correlator.
const (
	EventRecorded = "recorded"
	EventWritten  = "written"
	EventFailed   = "failed"
)

// eventClient is the clientset Events are written with.
func (c *Controller) eventClient() Client {
	if c.opts.EventClient != nil {
		return c.opts.EventClient
	}
	return c.client
}

// newRecorder starts a client-go broadcaster writing to the event client
// and returns its recorder. The recorder never blocks: client-go queues at
// most 1,000 Events and drops the rest. Shut the broadcaster down when done.
func (c *Controller) newRecorder() (record.EventBroadcaster, record.EventRecorder) {
	b := record.NewBroadcaster()
	b.StartRecordingToSink(countingSink{
		EventSink: &typedcorev1.EventSinkImpl{Interface: c.eventClient().CoreV1().Events("")},
		count:     c.countEvent,
	})
	r := b.NewRecorder(eventScheme, corev1.EventSource{Component: "edgelb", Host: c.opts.Identity})
	return b, countingRecorder{EventRecorder: r, count: c.countEvent}
}

func (c *Controller) countEvent(outcome string) {
	if c.opts.CountEvent != nil {
		c.opts.CountEvent(outcome)
	}
}

// countingSink counts the Events written and those that failed.
type countingSink struct {
	record.EventSink
	count func(string)
}

func (s countingSink) done(e *corev1.Event, err error) (*corev1.Event, error) {
	if err != nil {
		s.count(EventFailed)
	} else {
		s.count(EventWritten)
	}
	return e, err
}

func (s countingSink) Create(e *corev1.Event) (*corev1.Event, error) {
	return s.done(s.EventSink.Create(e))
}

func (s countingSink) Update(e *corev1.Event) (*corev1.Event, error) {
	return s.done(s.EventSink.Update(e))
}

func (s countingSink) Patch(e *corev1.Event, data []byte) (*corev1.Event, error) {
	return s.done(s.EventSink.Patch(e, data))
}

// countingRecorder counts the Events recorded.
type countingRecorder struct {
	record.EventRecorder
	count func(string)
}

func (r countingRecorder) Event(o runtime.Object, typ, reason, msg string) {
	r.count(EventRecorded)
	r.EventRecorder.Event(o, typ, reason, msg)
}

func (r countingRecorder) Eventf(o runtime.Object, typ, reason, format string, args ...any) {
	r.count(EventRecorded)
	r.EventRecorder.Eventf(o, typ, reason, format, args...)
}

func (r countingRecorder) AnnotatedEventf(o runtime.Object, ann map[string]string, typ, reason, format string, args ...any) {
	r.count(EventRecorded)
	r.EventRecorder.AnnotatedEventf(o, ann, typ, reason, format, args...)
}
