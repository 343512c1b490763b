package lb

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"go4.org/netipx"
	corev1 "k8s.io/api/core/v1"

	"github.com/edgelb/edgelb/lb/config"
)

// Labels and defaults from Kubernetes that the model honours.
const (
	LabelExcludeFromLB    = "node.kubernetes.io/exclude-from-external-load-balancers"
	DefaultAffinityTimout = 10800 * time.Second
)

// Snapshot is everything the desired state is computed from. Objects are
// read, never modified.
type Snapshot struct {
	Services       []*corev1.Service
	EndpointSlices []*EndpointSlice
	Nodes          []*corev1.Node
	// Previous is the result of the previous Build, if any: a Service whose
	// source ranges cannot be read keeps the ones it had there.
	Previous *Desired
}

// Options are the parts of the config that shape the desired state.
type Options struct {
	Mode             config.Mode
	Method           Method
	DefaultScheduler string
	// Class and DefaultClass select the Services edgelb handles.
	Class        string
	DefaultClass bool
	Static       []config.StaticService
	// Pools are the address pools. Only the status addresses of Services
	// inside one are put in the desired state (static services' VIPs are
	// configured and taken as they are).
	Pools []config.Pool
	// HealthCheck is the default schedule, against which per-service
	// timeouts are checked.
	HealthCheck config.HealthCheck
	// BGP holds the VIPs announced over BGP: every host serves them and
	// the routers spread flows over the hosts, so they use the mh
	// scheduler, which every host computes alike, unless their Service
	// names a scheduler of its own.
	BGP *netipx.IPSet
	// BackendStates drain (weight 0) or disable (leave out) backends.
	BackendStates []config.BackendAdmin
}

// OptionsFromConfig extracts Options from a validated config.
func OptionsFromConfig(cfg *config.Config) Options {
	o := Options{
		Mode:             cfg.Dataplane.Mode,
		Method:           Method(cfg.Dataplane.Method),
		DefaultScheduler: cfg.Dataplane.Scheduler,
		Static:           cfg.Services,
		Pools:            cfg.Pools,
		HealthCheck:      cfg.HealthCheck,
		BGP:              cfg.BGPSet(),
		BackendStates:    cfg.BackendStates,
	}
	if k := cfg.Kubernetes; k != nil {
		o.Class, o.DefaultClass = k.LoadBalancerClass, k.DefaultClass
	}
	return o
}

// Handles reports whether a Service is edgelb's to implement: a
// LoadBalancer whose loadBalancerClass is ours, or that has none while edgelb
// is the default implementation.
func Handles(svc *corev1.Service, class string, defaultClass bool) bool {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return false
	}
	if c := svc.Spec.LoadBalancerClass; c != nil {
		return *c == class
	}
	return defaultClass
}

// Problem is something wrong that Build worked around.
type Problem struct {
	Source Source
	// Reason, when set, is a short CamelCase word for a Warning Event on
	// the Service (the leader records one); other problems are only logged.
	Reason  string
	Message string
}

// Build computes the desired virtual services from a snapshot. It is a pure
// function: the same snapshot and options give the same result, sorted by
// key, and nothing is modified.
func Build(snap Snapshot, opts Options) (*Desired, []Problem) {
	b := builder{opts: opts}
	b.indexPools(opts.Pools)
	b.indexNodes(snap.Nodes)
	b.indexSlices(snap.EndpointSlices)
	b.indexPrevious(snap.Previous)
	d := &Desired{}
	for i := range opts.Static {
		b.static(d, &opts.Static[i])
	}
	for _, svc := range snap.Services {
		if Handles(svc, opts.Class, opts.DefaultClass) {
			b.service(d, svc)
		}
	}
	// Sort by key; static services come first in d, then Services in input
	// order, so a stable sort keeps the earliest claimant of a key first.
	slices.SortStableFunc(d.Services, func(a, b VirtualService) int { return a.Key.Compare(b.Key) })
	out := d.Services[:0]
	for i, vs := range d.Services {
		if i > 0 && vs.Key == d.Services[i-1].Key {
			b.problems = append(b.problems, Problem{Source: vs.Source,
				Message: fmt.Sprintf("%s is already used by %s; ignored", vs.Key, d.Services[i-1].Source)})
			continue
		}
		out = append(out, vs)
	}
	d.Services = out
	applyBackendStates(d, opts.BackendStates)
	return d, b.problems
}

// AdminName is how backend states name a virtual service's source:
// "namespace/name", or "_static/name".
func AdminName(src Source) string {
	if src.Static() {
		return config.StaticPrefix + "/" + src.Name
	}
	return src.Namespace + "/" + src.Name
}

// applyBackendStates drains (weight 0, connections kept) or disables
// (leaves out, and lists in Disabled) the backends an administrator named.
func applyBackendStates(d *Desired, states []config.BackendAdmin) {
	if len(states) == 0 {
		return
	}
	applyStates(d.Services, indexBackendStates(states))
}

// backendStates are the administrator's backend states by AdminName.
type backendStates map[string]map[netip.AddrPort]config.BackendState

func indexBackendStates(states []config.BackendAdmin) backendStates {
	byService := backendStates{}
	for _, s := range states {
		if byService[s.Service] == nil {
			byService[s.Service] = map[netip.AddrPort]config.BackendState{}
		}
		byService[s.Service][s.Backend] = s.State
	}
	return byService
}

func applyStates(vss []VirtualService, byService backendStates) {
	if len(byService) == 0 {
		return
	}
	for i := range vss {
		vs := &vss[i]
		st := byService[AdminName(vs.Source)]
		if st == nil {
			continue
		}
		out := make([]Backend, 0, len(vs.Backends))
		for _, be := range vs.Backends {
			switch st[be.Addr] {
			case config.BackendDisable:
				vs.Disabled = append(vs.Disabled, be.Addr)
				continue
			case config.BackendDrain:
				be.Weight = 0
			}
			out = append(out, be)
		}
		vs.Backends = out
	}
}

type nodeInfo struct {
	name   string
	node   Node
	v4, v6 netip.Addr
}

func (n *nodeInfo) addr(v6 bool) netip.Addr {
	if v6 {
		return n.v6
	}
	return n.v4
}

type builder struct {
	opts     Options
	pools    *netipx.IPSet
	nodes    []nodeInfo // eligible nodes, sorted by name
	slices   map[string][]*EndpointSlice
	previous map[Key]*VirtualService
	problems []Problem
}

func (b *builder) indexPools(pools []config.Pool) { b.pools = config.PoolSet(pools) }

// indexNodes keeps the nodes that may receive traffic: Ready and not
// excluded by label, with their first InternalIP of each family.
func (b *builder) indexNodes(nodes []*corev1.Node) {
	for _, n := range nodes {
		if _, excluded := n.Labels[LabelExcludeFromLB]; excluded || !nodeReady(n) {
			continue
		}
		info := nodeInfo{name: n.Name, node: NodeOf(n.Name)}
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP {
				continue
			}
			ip, err := netip.ParseAddr(a.Address)
			if err != nil {
				continue
			}
			ip = ip.Unmap()
			if ip.Is4() && !info.v4.IsValid() {
				info.v4 = ip
			} else if ip.Is6() && !info.v6.IsValid() {
				info.v6 = ip
			}
		}
		b.nodes = append(b.nodes, info)
	}
	slices.SortFunc(b.nodes, func(a, b nodeInfo) int { return strings.Compare(a.name, b.name) })
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (b *builder) indexSlices(all []*EndpointSlice) {
	b.slices = make(map[string][]*EndpointSlice, len(all))
	for _, s := range all {
		if s.Service == "" {
			continue
		}
		k := s.Namespace + "/" + s.Service
		b.slices[k] = append(b.slices[k], s)
	}
}

// scheduler is the scheduler of a virtual service on vip: the one its
// Service names (own), else mh for a bgp VIP, else the default.
func (b *builder) scheduler(own string, vip netip.Addr) string {
	switch {
	case own != "":
		return own
	case b.opts.BGP != nil && b.opts.BGP.Contains(vip):
		return ECMPScheduler
	}
	return b.opts.DefaultScheduler
}

// isBGP reports whether vip is announced over BGP.
func (b *builder) isBGP(vip netip.Addr) bool { return b.opts.BGP != nil && b.opts.BGP.Contains(vip) }

// bgpPolicy is the policy of vip's route, its pool's merged with the
// service's own; none for a VIP not announced over BGP.
func (b *builder) bgpPolicy(vip netip.Addr, own config.BGPPolicy) *config.BGPPolicy {
	if !b.isBGP(vip) {
		return nil
	}
	p := config.BGPPolicyOf(b.opts.Pools, vip).Merge(own)
	if p.IsZero() {
		return nil
	}
	return &p
}

// ECMPScheduler is the scheduler of bgp VIPs (Options.BGP).
const ECMPScheduler = "mh"

func (b *builder) static(d *Desired, s *config.StaticService) {
	sched := b.scheduler(s.Scheduler, s.VIP)
	ch := StaticChoices(s, &b.opts)
	for _, p := range s.Ports {
		vs := VirtualService{
			Key:         Key{VIP: s.VIP, Port: p.Port, Protocol: Protocol(p.Protocol)},
			Source:      Source{Name: s.Name},
			Scheduler:   sched,
			Persistence: s.Persistence,
			Method:      ch.Method,
			Check:       ch.Check,
			MaxConns:    ch.MaxConns,
			BGP:         b.bgpPolicy(s.VIP, ch.BGP),
		}
		if len(s.SourceRanges) > 0 {
			vs.SourceRanges = NormalizeRanges(slices.Clone(s.SourceRanges))
		}
		target := p.TargetPort
		if target == 0 {
			target = p.Port
		}
		for _, be := range s.Backends {
			port := be.Port()
			if port == 0 {
				port = target
			}
			vs.Backends = append(vs.Backends, Backend{Addr: netip.AddrPortFrom(be.Addr(), port), Weight: 1})
		}
		sortBackends(vs.Backends)
		vs.Backends = slices.CompactFunc(vs.Backends, func(a, b Backend) bool { return a.Addr == b.Addr })
		d.Services = append(d.Services, vs)
	}
}

// VIPs returns the addresses written in a Service's status.
func VIPs(svc *corev1.Service) []netip.Addr {
	var out []netip.Addr
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if ip, err := netip.ParseAddr(in.IP); err == nil {
			out = append(out, ip.Unmap())
		}
	}
	return out
}

func (b *builder) service(d *Desired, svc *corev1.Service) {
	src := Source{Namespace: svc.Namespace, Name: svc.Name}
	vips := b.pooled(src, VIPs(svc))
	if len(vips) == 0 {
		return
	}
	var own string
	if s, ok := svc.Annotations[AnnotationScheduler]; ok {
		if v, err := ParseScheduler(s); err == nil {
			own = v
		} else {
			b.problems = append(b.problems, Problem{Source: src, Message: err.Error() + "; using " + b.scheduler("", vips[0])})
		}
	}
	var persist time.Duration
	if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		persist = DefaultAffinityTimout
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			persist = time.Duration(*c.ClientIP.TimeoutSeconds) * time.Second
		}
	}
	ch := b.choices(src, svc)
	if !ch.BGP.IsZero() && !slices.ContainsFunc(vips, b.isBGP) {
		b.problems = append(b.problems, Problem{Source: src, Reason: ReasonInvalidAnnotation,
			Message: fmt.Sprintf("the edgelb.io/bgp-* annotations have no effect: %s is not announced over BGP (its pool has no announce: bgp)", vips[0])})
	}
	slices := b.slices[svc.Namespace+"/"+svc.Name]
	local := svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
	ranges := b.sourceRanges(svc, src)
	for _, vip := range vips {
		v6 := vip.Is6()
		for _, p := range svc.Spec.Ports {
			src.PortName = p.Name
			vs := VirtualService{
				Key:         Key{VIP: vip, Port: uint16(p.Port), Protocol: Protocol(p.Protocol)},
				Source:      src,
				Scheduler:   b.scheduler(own, vip),
				Persistence: persist,
				Method:      ch.Method,
				Check:       ch.Check,
				MaxConns:    ch.MaxConns,
				BGP:         b.bgpPolicy(vip, ch.BGP),
			}
			if vs.Protocol == "" {
				vs.Protocol = TCP
			}
			vs.SourceRanges = ranges(vs.Key)
			if ch.Mode == config.ModeDirect {
				vs.Backends = endpointBackends(slices, &p, v6)
			} else {
				vs.Backends = b.nodePortBackends(svc, slices, &p, v6, local)
			}
			d.Services = append(d.Services, vs)
		}
	}
}

// pooled returns the status addresses inside a pool; each other one is a
// problem. edgelb only assigns from its pools, so an address elsewhere was
// written by someone else (another load balancer, a hand-made patch) and
// announcing it could take over any address of the LAN.
func (b *builder) pooled(src Source, vips []netip.Addr) []netip.Addr {
	return slices.DeleteFunc(vips, func(ip netip.Addr) bool {
		if b.pools.Contains(ip) {
			return false
		}
		b.problems = append(b.problems, Problem{Source: src, Reason: "AddressNotInPool",
			Message: fmt.Sprintf("%s in the status is in no address pool: not announced", ip)})
		return true
	})
}

// nodePortBackends lists eligible nodes at the port's nodePort. With
// externalTrafficPolicy: Local only nodes with ready local endpoints are
// kept, weighted by how many they have, and their healthCheckNodePort is
// probed as well.
func (b *builder) nodePortBackends(svc *corev1.Service, sl []*EndpointSlice, p *corev1.ServicePort, v6, local bool) []Backend {
	if p.NodePort == 0 {
		return nil
	}
	var perNode map[Node]int32
	if local {
		perNode = readyPerNode(sl, v6)
	}
	var out []Backend
	for i := range b.nodes {
		n := &b.nodes[i]
		ip := n.addr(v6)
		if !ip.IsValid() {
			continue
		}
		be := Backend{Addr: netip.AddrPortFrom(ip, uint16(p.NodePort)), Weight: 1, NodeName: n.node}
		if local {
			be.Weight = perNode[n.node]
			if be.Weight == 0 {
				continue
			}
			be.HealthCheckPort = uint16(svc.Spec.HealthCheckNodePort)
		}
		out = append(out, be)
	}
	sortBackends(out)
	return out
}

func family(s *EndpointSlice, v6 bool) bool {
	if v6 {
		return s.Family == 6
	}
	return s.Family == 4
}

func readyPerNode(sl []*EndpointSlice, v6 bool) map[Node]int32 {
	seen := map[netip.Addr]bool{}
	out := map[Node]int32{}
	for _, s := range sl {
		if !family(s, v6) {
			continue
		}
		for i := range s.Endpoints {
			e := &s.Endpoints[i]
			if !e.Ready || e.Node == (Node{}) || seen[e.Addr] {
				continue
			}
			seen[e.Addr] = true
			out[e.Node]++
		}
	}
	return out
}

// endpointBackends lists the Service's endpoints at the port's resolved
// target port: ready ones at weight 1, serving-but-terminating ones at
// weight 0 so that they drain.
func endpointBackends(sl []*EndpointSlice, p *corev1.ServicePort, v6 bool) []Backend {
	n := 0
	for _, s := range sl {
		n += len(s.Endpoints)
	}
	// Sized once: they stay in the desired state as long as the Service
	// does not change.
	var out []Backend
	if n > 0 {
		out = make([]Backend, 0, n)
	}
	proto := p.Protocol
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	for _, s := range sl {
		if !family(s, v6) {
			continue
		}
		port := s.port(p.Name, proto)
		if port == 0 {
			continue
		}
		for i := range s.Endpoints {
			e := &s.Endpoints[i]
			be := Backend{Addr: netip.AddrPortFrom(e.Addr, port), Weight: 1, NodeName: e.Node}
			switch {
			case e.Ready:
			case e.Draining:
				be.Weight, be.Terminating = 0, true
			default:
				continue
			}
			out = append(out, be)
		}
	}
	sortBackends(out)
	// An address in two slices (during a slice update) counts once; the
	// ready copy wins because it sorts first.
	return slices.CompactFunc(out, func(a, b Backend) bool { return a.Addr == b.Addr })
}

// sortBackends orders by address, then ready before terminating.
func sortBackends(bs []Backend) {
	slices.SortFunc(bs, func(a, b Backend) int {
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		if a.Terminating != b.Terminating {
			if a.Terminating {
				return 1
			}
			return -1
		}
		return 0
	})
}
