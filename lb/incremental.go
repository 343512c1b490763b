package lb

import (
	"fmt"
	"slices"
	"time"

	"go4.org/netipx"
	corev1 "k8s.io/api/core/v1"

	"github.com/edgelb/edgelb/lb/config"
)

// ServiceSource gives the current objects of one Service, by its key
// "namespace/name" (a lister, in the daemon). Objects are read, never
// modified.
type ServiceSource interface {
	// Service returns the Service, nil if there is none.
	Service(key string) *corev1.Service
	// EndpointSlices returns the Service's EndpointSlices.
	EndpointSlices(key string) []*EndpointSlice
}

// Incremental builds the desired state one Service at a time, the way
// kube-proxy's change trackers do: a change of one Service or of its
// EndpointSlices rebuilds that Service's virtual services only, and the
// result says which keys changed, so that the dataplane applies only
// those. Its result after any sequence of calls is Build's for the same
// objects, Services ordered by olderFirst (creation, namespace, name):
// the earliest claimant of a key keeps it. It is not safe for concurrent
// use (one loop owns it).
type Incremental struct {
	opts   Options
	states backendStates
	pools  *netipx.IPSet
	nodes  []nodeInfo

	statics []*part
	parts   map[string]*part
	// claims are the parts that claim each key, first the one that keeps it.
	claims map[Key][]*part
	// conflicts are the problems of the claimants that lost each key.
	conflicts map[Key][]Problem
	// pending are keys changed by SetOptions, for the next Update.
	pending map[Key]bool
	desired *Desired
}

// part is what one Service (or static service) contributes.
type part struct {
	static   int // 1 + index in Options.Static; 0 for a Service
	created  time.Time
	ns, name string
	// nodes: its virtual services forward to the nodes (nodeport mode).
	nodes    bool
	vss      []VirtualService // sorted by key, distinct
	problems []Problem
}

// before reports whether p claims a key ahead of o.
func (p *part) before(o *part) bool {
	switch {
	case p.static != 0 || o.static != 0:
		return p.static != 0 && (o.static == 0 || p.static < o.static)
	case !p.created.Equal(o.created):
		return p.created.Before(o.created)
	case p.ns != o.ns:
		return p.ns < o.ns
	}
	return p.name < o.name
}

func (p *part) find(k Key) *VirtualService {
	i, ok := slices.BinarySearchFunc(p.vss, k, func(v VirtualService, k Key) int { return v.Key.Compare(k) })
	if !ok {
		return nil
	}
	return &p.vss[i]
}

// Change is what an Incremental call produced.
type Change struct {
	// Desired is the new desired state; it shares the unchanged virtual
	// services' backends with the previous one (neither may be modified).
	Desired *Desired
	// Problems are every problem of the state, not only the new ones.
	Problems []Problem
	// Changed are the keys whose virtual service may differ from the
	// previous state (added, removed or changed), sorted.
	Changed []Key
}

// NewIncremental returns an empty builder; call SetOptions first.
func NewIncremental() *Incremental {
	return &Incremental{
		parts:     map[string]*part{},
		claims:    map[Key][]*part{},
		conflicts: map[Key][]Problem{},
		pending:   map[Key]bool{},
		desired:   &Desired{},
	}
}

// SetOptions takes new options: the static services are rebuilt at once;
// the caller must then Update every Service (UpdateAll), whose virtual
// services the options shape as well. Call it before the first SetNodes.
func (in *Incremental) SetOptions(opts Options) {
	in.opts = opts
	in.states = indexBackendStates(opts.BackendStates)
	in.pools = nil
	b := in.builder()
	in.pools = b.pools
	for _, p := range in.statics {
		in.unclaim(p)
	}
	in.statics = nil
	for i := range opts.Static {
		d := &Desired{}
		b.problems = nil
		b.static(d, &opts.Static[i])
		p := &part{static: i + 1, name: opts.Static[i].Name}
		in.fill(p, d.Services, b.problems)
		in.statics = append(in.statics, p)
		in.claim(p)
	}
}

// SetNodes takes the current Nodes. When the nodes that may receive
// traffic changed, it returns the keys of the Services whose virtual
// services forward to nodes (nodeport mode), which the caller must Update;
// nil otherwise.
func (in *Incremental) SetNodes(nodes []*corev1.Node) []string {
	var b builder
	b.indexNodes(nodes)
	if slices.Equal(b.nodes, in.nodes) {
		return nil
	}
	in.nodes = b.nodes
	keys := []string{}
	for k, p := range in.parts {
		if p.nodes {
			keys = append(keys, k)
		}
	}
	return keys
}

func (in *Incremental) builder() builder {
	b := builder{opts: in.opts, pools: in.pools, nodes: in.nodes}
	if b.pools == nil {
		b.indexPools(in.opts.Pools)
	}
	return b
}

// Update rebuilds the Services named by keys ("namespace/name") from src:
// those that are gone or not edgelb's lose their virtual services.
func (in *Incremental) Update(src ServiceSource, keys []string) Change {
	b := in.builder()
	for _, k := range keys {
		in.rebuild(&b, src, k)
	}
	return in.assemble()
}

// UpdateAll rebuilds every Service from src: keys are all the Services
// there are, and Services not among them lose their virtual services.
func (in *Incremental) UpdateAll(src ServiceSource, keys []string) Change {
	b := in.builder()
	listed := make(map[string]bool, len(keys))
	for _, k := range keys {
		listed[k] = true
		in.rebuild(&b, src, k)
	}
	for k, p := range in.parts {
		if !listed[k] {
			in.unclaim(p)
			delete(in.parts, k)
		}
	}
	return in.assemble()
}

func (in *Incremental) rebuild(b *builder, src ServiceSource, key string) {
	old := in.parts[key]
	if old != nil {
		in.unclaim(old)
		delete(in.parts, key)
	}
	svc := src.Service(key)
	if svc == nil || !Handles(svc, in.opts.Class, in.opts.DefaultClass) {
		return
	}
	b.slices = map[string][]*EndpointSlice{key: src.EndpointSlices(key)}
	b.previous = nil
	if old != nil {
		b.previous = make(map[Key]*VirtualService, len(old.vss))
		for i := range old.vss {
			b.previous[old.vss[i].Key] = &old.vss[i]
		}
	}
	b.problems = nil
	d := &Desired{}
	b.service(d, svc)
	ch, _ := ChoicesOf(svc, &in.opts)
	p := &part{created: svc.CreationTimestamp.Time, ns: svc.Namespace, name: svc.Name, nodes: ch.Mode == config.ModeNodePort}
	in.fill(p, d.Services, b.problems)
	in.parts[key] = p
	in.claim(p)
}

// fill sets p's virtual services, sorted and distinct (the first of a key
// stays), with the backend states applied, and its problems.
func (in *Incremental) fill(p *part, vss []VirtualService, problems []Problem) {
	slices.SortStableFunc(vss, func(a, b VirtualService) int { return a.Key.Compare(b.Key) })
	out := vss[:0]
	for i, vs := range vss {
		if i > 0 && vs.Key == vss[i-1].Key {
			problems = append(problems, Problem{Source: vs.Source,
				Message: fmt.Sprintf("%s is already used by %s; ignored", vs.Key, vss[i-1].Source)})
			continue
		}
		out = append(out, vs)
	}
	applyStates(out, in.states)
	p.vss, p.problems = slices.Clip(out), problems
}

func (in *Incremental) claim(p *part) {
	for i := range p.vss {
		k := p.vss[i].Key
		cl := in.claims[k]
		at := len(cl)
		for j, o := range cl {
			if p.before(o) {
				at = j
				break
			}
		}
		in.claims[k] = slices.Insert(cl, at, p)
		in.pending[k] = true
	}
}

func (in *Incremental) unclaim(p *part) {
	for i := range p.vss {
		k := p.vss[i].Key
		in.claims[k] = slices.DeleteFunc(in.claims[k], func(o *part) bool { return o == p })
		if len(in.claims[k]) == 0 {
			delete(in.claims, k)
		}
		in.pending[k] = true
	}
}

// assemble makes the new desired state: the previous one with the pending
// keys replaced by their claimants' virtual services.
func (in *Incremental) assemble() Change {
	changed := make([]Key, 0, len(in.pending))
	for k := range in.pending {
		changed = append(changed, k)
	}
	clear(in.pending)
	slices.SortFunc(changed, Key.Compare)
	var fresh []VirtualService
	for _, k := range changed {
		delete(in.conflicts, k)
		cl := in.claims[k]
		if len(cl) == 0 {
			continue
		}
		win := cl[0].find(k)
		fresh = append(fresh, *win)
		for _, l := range cl[1:] {
			in.conflicts[k] = append(in.conflicts[k], Problem{Source: l.find(k).Source,
				Message: fmt.Sprintf("%s is already used by %s; ignored", k, win.Source)})
		}
	}
	// Merge the previous state, less the changed keys, with the fresh
	// services: both are sorted by key.
	prev := in.desired.Services
	out := make([]VirtualService, 0, len(prev)+len(fresh))
	i, j, c := 0, 0, 0
	for i < len(prev) || j < len(fresh) {
		if i < len(prev) {
			for c < len(changed) && changed[c].Compare(prev[i].Key) < 0 {
				c++
			}
			if c < len(changed) && changed[c] == prev[i].Key {
				i++
				continue
			}
		}
		if j == len(fresh) || (i < len(prev) && prev[i].Key.Compare(fresh[j].Key) < 0) {
			out = append(out, prev[i])
			i++
		} else {
			out = append(out, fresh[j])
			j++
		}
	}
	in.desired = &Desired{Services: out}
	return Change{Desired: in.desired, Problems: in.problems(), Changed: changed}
}

// problems lists every problem: the static services', then the Services'
// in olderFirst order, then the lost claims.
func (in *Incremental) problems() []Problem {
	var out []Problem
	for _, p := range in.statics {
		out = append(out, p.problems...)
	}
	var ps []*part
	for _, p := range in.parts {
		if len(p.problems) > 0 {
			ps = append(ps, p)
		}
	}
	slices.SortFunc(ps, func(a, b *part) int {
		switch {
		case a.before(b):
			return -1
		case b.before(a):
			return 1
		}
		return 0
	})
	for _, p := range ps {
		out = append(out, p.problems...)
	}
	for _, c := range in.conflicts {
		out = append(out, c...)
	}
	return out
}
