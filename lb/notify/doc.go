// Package notify is the one way edgelb's parts tell each other "something
// changed, look again": a coalescing broadcaster.
//
// An owner of state (the desired-state store, the cluster's ownership,
// the replicated configuration, the health checker) holds a Broadcaster
// and calls Notify after each change. Each consumer loop calls Subscribe
// once and gets a channel of its own with a buffer of one; Notify fills
// every empty buffer without blocking, so a busy consumer sees one signal
// for any number of changes and then reads the newest state itself
// (level-triggered, like kube-proxy's sync runner: the signal carries no
// data, only "dirty").
//
// A new subscription starts signalled, whatever the owner holds, so that a
// consumer's loop needs no special first pass:
//
//	changed := owner.Subscribe()
//	for {
//		select {
//		case <-ctx.Done():
//			return
//		case <-changed:
//		}
//		s := owner.Load() // may still be empty: the first wake is unconditional
//		...
//	}
//
// A consumer must therefore cope with waking when nothing has changed, and
// with the owner having no state yet on that first wake.
//
// The package starts no goroutine; a subscription is a channel and a slot
// in a slice, which Unsubscribe frees. It imports nothing from edgelb.
package notify
