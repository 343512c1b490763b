package api

import (
	"sync"
	"time"
)

// Bus fans events out to the live streams and keeps the most recent ones
// so that a reconnecting client (Last-Event-ID) misses nothing recent. It
// never blocks a publisher: a subscriber that falls behind loses events and
// is told so by a gap in the IDs.
type Bus struct {
	mu     sync.Mutex
	nextID uint64
	ring   []Event
	size   int
	subs   map[chan Event]struct{}
	now    func() time.Time
}

// NewBus returns a bus that remembers the last size events.
func NewBus(size int) *Bus {
	return &Bus{size: size, subs: map[chan Event]struct{}{}, now: time.Now, nextID: 1}
}

// Publish records an event and sends it to every subscriber.
func (b *Bus) Publish(typ, msg string, fields map[string]string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ev := Event{ID: b.nextID, Time: b.now().UTC(), Type: typ, Message: msg, Fields: fields}
	b.nextID++
	b.ring = append(b.ring, ev)
	if len(b.ring) > b.size {
		b.ring = b.ring[len(b.ring)-b.size:]
	}
	for c := range b.subs {
		select {
		case c <- ev:
		default: // slow subscriber: drop rather than block the daemon
		}
	}
}

// Subscribe returns the remembered events after lastID and a channel of new
// ones; cancel must be called when done.
func (b *Bus) Subscribe(lastID uint64) (backlog []Event, events <-chan Event, cancel func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ev := range b.ring {
		if ev.ID > lastID {
			backlog = append(backlog, ev)
		}
	}
	c := make(chan Event, 64)
	b.subs[c] = struct{}{}
	return backlog, c, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		delete(b.subs, c)
	}
}

// Recent returns the remembered events, oldest first.
func (b *Bus) Recent() []Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Event(nil), b.ring...)
}
