package notify

import "sync"

// Broadcaster signals any number of subscribers, coalescing: each
// subscriber's channel holds at most one pending signal. The zero value is
// ready to use; a Broadcaster must not be copied after first use. Its
// methods are safe for concurrent use and never block on a subscriber, so
// an owner may call Notify while holding its own lock.
type Broadcaster struct {
	mu   sync.Mutex
	subs []chan struct{}
}

// Subscribe returns a new channel that receives a value after each Notify,
// coalesced: however many Notify calls happen while the subscriber is
// busy, it receives one value. The channel starts signalled, so the
// subscriber's first receive returns at once; it is never closed.
func (b *Broadcaster) Subscribe() <-chan struct{} {
	c := make(chan struct{}, 1)
	c <- struct{}{}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.subs = append(b.subs, c)
	return c
}

// Unsubscribe stops signalling c, a channel Subscribe returned; a signal
// already pending stays in it. Unknown channels are ignored. A consumer
// whose loop ends calls it when the Broadcaster outlives the loop.
func (b *Broadcaster) Unsubscribe(c <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, s := range b.subs {
		if s == c {
			// Clear the slot moved out of the backing array, so that
			// the channel is not kept alive by it.
			last := len(b.subs) - 1
			b.subs[i] = b.subs[last]
			b.subs[last] = nil
			b.subs = b.subs[:last]
			return
		}
	}
}

// Notify signals every subscriber whose channel holds no signal yet. It
// never blocks.
func (b *Broadcaster) Notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.subs {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}
