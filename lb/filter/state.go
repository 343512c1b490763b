package filter

import (
	"net/netip"
	"slices"

	"go4.org/netipx"

	"github.com/edgelb/edgelb/lb"
)

// Allowed is one element of an allowed set: clients in Range may reach the
// virtual service Key.
type Allowed struct {
	Key   lb.Key
	Range netip.Prefix
}

// State is what the filter table holds: the restricted virtual services and
// who may reach them. A restricted key without Allowed entries drops
// everything, and so does a Closed one, whatever its Allowed entries: a
// virtual service whose ranges the kernel refused is closed (fails
// closed) instead of left half-programmed.
type State struct {
	Restricted map[lb.Key]bool
	Allowed    map[Allowed]bool
	Closed     map[lb.Key]bool
}

// Empty reports whether nothing is restricted: the table is not needed.
func (s State) Empty() bool { return len(s.Restricted) == 0 }

// Want computes the state the table must hold for the desired services.
// Ranges of the other family than the VIP's are left out; overlapping ranges
// are merged into the fewest prefixes (nftables refuses overlapping
// intervals in one set), so the same client set always gives the same
// elements.
func Want(d *lb.Desired) State {
	s := State{Restricted: map[lb.Key]bool{}, Allowed: map[Allowed]bool{}, Closed: map[lb.Key]bool{}}
	if d == nil {
		return s
	}
	for i := range d.Services {
		vs := &d.Services[i]
		if vs.SourceRanges == nil {
			continue
		}
		s.Restricted[vs.Key] = true
		var b netipx.IPSetBuilder
		for _, p := range vs.SourceRanges {
			if p.Addr().Is4() == vs.VIP.Is4() {
				b.AddPrefix(p.Masked())
			}
		}
		set, _ := b.IPSet()
		for _, p := range set.Prefixes() {
			s.Allowed[Allowed{Key: vs.Key, Range: p}] = true
		}
	}
	return s
}

// Changes are the set elements to delete and add to go from one State to
// another, each list sorted.
type Changes struct {
	DelAllowed    []Allowed
	DelRestricted []lb.Key
	AddRestricted []lb.Key
	AddAllowed    []Allowed
	AddClosed     []lb.Key
	DelClosed     []lb.Key
}

// Empty reports whether there is nothing to do.
func (c Changes) Empty() bool { return c.Len() == 0 }

// Len is the number of set elements the changes add and delete.
func (c Changes) Len() int {
	return len(c.DelAllowed) + len(c.DelRestricted) + len(c.AddRestricted) + len(c.AddAllowed) + len(c.AddClosed) + len(c.DelClosed)
}

// Diff returns the changes that turn have into want.
func Diff(have, want State) Changes {
	var c Changes
	c.DelRestricted, c.AddRestricted = setDiff(have.Restricted, want.Restricted)
	c.DelAllowed, c.AddAllowed = setDiff(have.Allowed, want.Allowed)
	c.DelClosed, c.AddClosed = setDiff(have.Closed, want.Closed)
	for _, l := range [][]lb.Key{c.DelRestricted, c.AddRestricted, c.DelClosed, c.AddClosed} {
		slices.SortFunc(l, lb.Key.Compare)
	}
	slices.SortFunc(c.DelAllowed, compareAllowed)
	slices.SortFunc(c.AddAllowed, compareAllowed)
	return c
}

// Only returns the part of s about the keys in keys.
func (s State) Only(keys map[lb.Key]bool) State {
	out := State{Restricted: map[lb.Key]bool{}, Allowed: map[Allowed]bool{}, Closed: map[lb.Key]bool{}}
	for k := range s.Restricted {
		if keys[k] {
			out.Restricted[k] = true
		}
	}
	for k := range s.Closed {
		if keys[k] {
			out.Closed[k] = true
		}
	}
	for a := range s.Allowed {
		if keys[a.Key] {
			out.Allowed[a] = true
		}
	}
	return out
}

// Apply returns s with c applied (a new State; s is not modified).
func (s State) Apply(c Changes) State {
	out := State{Restricted: clone(s.Restricted), Allowed: clone(s.Allowed), Closed: clone(s.Closed)}
	for _, k := range c.DelClosed {
		delete(out.Closed, k)
	}
	for _, k := range c.AddClosed {
		out.Closed[k] = true
	}
	for _, k := range c.DelRestricted {
		delete(out.Restricted, k)
	}
	for _, a := range c.DelAllowed {
		delete(out.Allowed, a)
	}
	for _, k := range c.AddRestricted {
		out.Restricted[k] = true
	}
	for _, a := range c.AddAllowed {
		out.Allowed[a] = true
	}
	return out
}

func setDiff[K comparable](have, want map[K]bool) (del, add []K) {
	for k := range have {
		if !want[k] {
			del = append(del, k)
		}
	}
	for k := range want {
		if !have[k] {
			add = append(add, k)
		}
	}
	return del, add
}

func clone[K comparable](m map[K]bool) map[K]bool {
	out := make(map[K]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

func compareAllowed(a, b Allowed) int {
	if c := a.Key.Compare(b.Key); c != 0 {
		return c
	}
	if c := a.Range.Addr().Compare(b.Range.Addr()); c != 0 {
		return c
	}
	return a.Range.Bits() - b.Range.Bits()
}
