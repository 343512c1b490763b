// Package filtertest provides an in-memory filter.Kernel for tests.
package filtertest

import (
	"context"
	"sync"

	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/filter"
)

// Fake is an in-memory filter table. Its fields may be read and modified by
// tests between calls; the methods are safe for concurrent use.
type Fake struct {
	mu sync.Mutex
	// Present says whether the table exists; State is what it holds.
	Present bool
	State   filter.State
	// Counters are the dropped packets per restricted key.
	Counters map[lb.Key]uint64
	// Calls counts the calls by method name ("Read", "Apply", "Delete").
	Calls map[string]int
	// Elements counts the set elements added and deleted by Apply.
	Elements int
	// Fail, when it returns an error for a method name, makes that call
	// fail without changing anything.
	Fail func(method string) error
	// Refuse, when it returns an error for the changes given to Apply,
	// makes that Apply fail without changing anything, as the kernel
	// refuses a transaction with an element it cannot take.
	Refuse func(c filter.Changes) error

	changed chan struct{}
}

var _ filter.Kernel = (*Fake)(nil)

// New returns a fake without a table.
func New() *Fake {
	return &Fake{State: empty(), Counters: map[lb.Key]uint64{}, Calls: map[string]int{}, changed: make(chan struct{}, 1)}
}

func empty() filter.State {
	return filter.State{Restricted: map[lb.Key]bool{}, Allowed: map[filter.Allowed]bool{}, Closed: map[lb.Key]bool{}}
}

func (f *Fake) call(method string) error {
	f.Calls[method]++
	if f.Fail != nil {
		return f.Fail(method)
	}
	return nil
}

// Read returns a copy of the table.
func (f *Fake) Read() (filter.State, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("Read"); err != nil {
		return empty(), false, err
	}
	return f.State.Apply(filter.Changes{}), f.Present, nil
}

// Apply applies c, creating the table if needed; it refuses, like the
// kernel, to delete an element that is not there or add one that is.
func (f *Fake) Apply(c filter.Changes) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("Apply"); err != nil {
		return err
	}
	if f.Refuse != nil {
		if err := f.Refuse(c); err != nil {
			return err
		}
	}
	for _, k := range c.DelClosed {
		if !f.State.Closed[k] {
			return errNotFound
		}
	}
	for _, k := range c.AddClosed {
		if f.State.Closed[k] {
			return errExists
		}
	}
	for _, k := range c.DelRestricted {
		if !f.State.Restricted[k] {
			return errNotFound
		}
	}
	for _, a := range c.DelAllowed {
		if !f.State.Allowed[a] {
			return errNotFound
		}
	}
	for _, k := range c.AddRestricted {
		if f.State.Restricted[k] {
			return errExists
		}
	}
	for _, a := range c.AddAllowed {
		if f.State.Allowed[a] {
			return errExists
		}
	}
	f.State = f.State.Apply(c)
	for _, k := range c.DelRestricted {
		delete(f.Counters, k)
	}
	f.Present = true
	f.Elements += c.Len()
	return nil
}

// Ensure creates the table if it is missing.
func (f *Fake) Ensure() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("Ensure"); err != nil {
		return err
	}
	f.Present = true
	return nil
}

// Snapshot returns a copy of the table and whether it exists, safe to
// call while a Filter runs.
func (f *Fake) Snapshot() (filter.State, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.State.Apply(filter.Changes{}), f.Present
}

// Changed returns the channel Foreign signals.
func (f *Fake) Changed(context.Context) (<-chan struct{}, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("Changed"); err != nil {
		return nil, err
	}
	return f.changed, nil
}

// Foreign plays another program changing the ruleset behind edgelb's
// back: it runs change (which may modify the fields) and signals the
// channel Changed returned.
func (f *Fake) Foreign(change func(f *Fake)) {
	f.mu.Lock()
	if change != nil {
		change(f)
	}
	f.mu.Unlock()
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

// Delete removes the table.
func (f *Fake) Delete() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("Delete"); err != nil {
		return err
	}
	f.Present, f.State, f.Counters = false, empty(), map[lb.Key]uint64{}
	return nil
}

// Dropped returns a copy of Counters for the restricted keys.
func (f *Fake) Dropped() (map[lb.Key]uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[lb.Key]uint64{}
	for k := range f.State.Restricted {
		out[k] = f.Counters[k]
	}
	return out, nil
}

type fakeError string

func (e fakeError) Error() string { return string(e) }

const (
	errNotFound fakeError = "no such element"
	errExists   fakeError = "element exists"
)
