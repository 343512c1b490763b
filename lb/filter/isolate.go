package filter

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/edgelb/edgelb/lb"
)

// One Service's ranges that the kernel refuses must cost that Service only
// (DESIGN: a failure costs the object that caused it). When the pass's
// transaction fails, the Filter finds out which Services it cannot program
// by halving the set of Services until each failing one stands alone, and
// closes those: their keys go into the closed set, which drops every packet
// to them whatever their allowed ranges hold. A closed set element is a
// VIP·protocol·port, far simpler than the ranges the kernel refused, so it
// is what the kernel takes when it takes anything. Only what concerns every
// Service is the host's: the table cannot be created or read, or a Service
// cannot even be closed (then the host must not forward it at all).

// group is the keys of one Service (src), or one key no desired Service
// has any more (src zero: its elements are being deleted).
type group struct {
	src  lb.Source
	name string
	keys map[lb.Key]bool
}

// groups returns the groups of the keys that c changes, in a stable order:
// a key restricted in want belongs to its Service's group, any other
// (its restriction ends) to a group of its own.
func groups(d *lb.Desired, want State, c Changes) []group {
	changed := map[lb.Key]bool{}
	for _, l := range [][]lb.Key{c.DelRestricted, c.AddRestricted, c.DelClosed, c.AddClosed} {
		for _, k := range l {
			changed[k] = true
		}
	}
	for _, l := range [][]Allowed{c.DelAllowed, c.AddAllowed} {
		for _, a := range l {
			changed[a.Key] = true
		}
	}
	bySrc := map[lb.Source]*group{}
	var out []*group
	for i := range d.Services {
		vs := &d.Services[i]
		if !changed[vs.Key] || !want.Restricted[vs.Key] {
			continue
		}
		delete(changed, vs.Key)
		src := vs.Source
		src.PortName = ""
		g := bySrc[src]
		if g == nil {
			g = &group{src: src, name: src.String(), keys: map[lb.Key]bool{}}
			bySrc[src] = g
			out = append(out, g)
		}
		g.keys[vs.Key] = true
	}
	for k := range changed {
		out = append(out, &group{name: k.String(), keys: map[lb.Key]bool{k: true}})
	}
	slices.SortFunc(out, func(a, b *group) int { return cmp.Compare(a.name, b.name) })
	gs := make([]group, len(out))
	for i, g := range out {
		gs[i] = *g
	}
	return gs
}

// isolate runs after the transaction of a whole pass failed: it
// programs every Service the kernel takes, closes the others and records
// them (Failed). It returns an error only for what is the host's.
func (f *Filter) isolate(d *lb.Desired, want State) error {
	if err := f.o.Kernel.Ensure(); err != nil {
		return fmt.Errorf("creating the filter table: %w", err)
	}
	if err := f.reread(); err != nil {
		return err
	}
	var failed []failure
	if err := f.bisect(groups(d, want, Diff(f.have, want)), want, &failed); err != nil {
		return err
	}
	// Close every port of the Services that failed: whatever part of
	// their ranges is in the table, nothing reaches them.
	bySrc := map[lb.Source]error{}
	var stale, names []string
	for _, fl := range failed {
		if fl.g.src == (lb.Source{}) {
			stale = append(stale, fmt.Sprintf("removing the filter of %s: %v", fl.g.name, fl.err))
			continue
		}
		bySrc[fl.g.src] = fl.err
		names = append(names, fl.g.name)
	}
	var closing []lb.Key
	for i := range d.Services {
		vs := &d.Services[i]
		src := vs.Source
		src.PortName = ""
		if _, ok := bySrc[src]; ok && want.Restricted[vs.Key] && !f.have.Closed[vs.Key] {
			closing = append(closing, vs.Key)
		}
	}
	slices.SortFunc(closing, lb.Key.Compare)
	closing = slices.Compact(closing)
	if len(closing) > 0 {
		c := Changes{AddClosed: closing}
		if err := f.o.Kernel.Apply(c); err != nil {
			f.known = false
			return fmt.Errorf("closing %s, whose source ranges the kernel refused: %w", strings.Join(names, ", "), err)
		}
		f.have = f.have.Apply(c)
	}
	f.present = true
	var staleErr error
	if len(stale) > 0 {
		staleErr = errors.New(strings.Join(stale, "; "))
	}
	f.setFailed(bySrc, staleErr)
	if len(failed) > 0 {
		// The next pass starts from what the kernel holds.
		f.known = false
	}
	return nil
}

// failure is a group the kernel refused, with its error.
type failure struct {
	g   group
	err error
}

// reread reads the table into have.
func (f *Filter) reread() error {
	have, present, err := f.o.Kernel.Read()
	if err != nil {
		f.known = false
		return fmt.Errorf("reading the filter table: %w", err)
	}
	f.have, f.present, f.known = have, present, true
	return nil
}

// bisect applies the changes of gs in one transaction; if the kernel
// refuses it, it reads the table again (a refused transaction may have
// been applied in part when it was too large for one message) and tries
// each half, down to single Services, whose errors it records in failed.
func (f *Filter) bisect(gs []group, want State, failed *[]failure) error {
	if len(gs) == 0 {
		return nil
	}
	keys := map[lb.Key]bool{}
	for _, g := range gs {
		for k := range g.keys {
			keys[k] = true
		}
	}
	c := Diff(f.have.Only(keys), want.Only(keys))
	if c.Empty() {
		return nil
	}
	err := f.o.Kernel.Apply(c)
	if err == nil {
		f.have = f.have.Apply(c)
		return nil
	}
	if err := f.reread(); err != nil {
		return err
	}
	if len(gs) == 1 {
		*failed = append(*failed, failure{gs[0], err})
		return nil
	}
	if err := f.bisect(gs[:len(gs)/2], want, failed); err != nil {
		return err
	}
	return f.bisect(gs[len(gs)/2:], want, failed)
}
