package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/cluster"
	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/config"
	"github.com/edgelb/edgelb/lb/health"
	"github.com/edgelb/edgelb/lb/ipam"
	"github.com/edgelb/edgelb/lb/ipvs"
	"github.com/edgelb/edgelb/lb/k8s"
)

// state implements api.State over the daemon's parts. Any part may be
// absent (nil): no Kubernetes, dataplane backend none.
type state struct {
	node    *Node
	started time.Time
}

var (
	_ api.State         = (*state)(nil)
	_ api.ServiceLookup = (*state)(nil)
)

func (s *state) Status() api.Status {
	st := api.Status{
		Node:      s.node.cfg.Node.Name,
		Version:   s.node.opts.Version,
		Draining:  s.node.members.Draining(),
		Problem:   s.node.members.Problem(),
		Dataplane: string(s.node.cfg.Dataplane.Backend),
		Started:   s.started,
		Pools:     []api.PoolUsage{},
	}
	st.Healthy = st.Problem == ""
	st.DataPath = dataPathStatus(s.node.dataPath)
	st.ConfigFileDiffers = s.node.live.FileDiffers()
	st.ConfigUnapplied, _ = s.node.live.Unapplied()
	if !s.node.members.HasQuorum() {
		st.Healthy = false
		st.Problem = strings.TrimPrefix(st.Problem+"; no quorum: owning no VIPs", "; ")
	}
	running, _ := s.node.live.Config()
	if s.node.cfg.Dataplane.Backend == config.BackendIPVS {
		// The defaults of the running version.
		st.Dataplane += "/" + string(running.Dataplane.Mode) + "/" + string(running.Dataplane.Method)
	}
	st.Ready, _ = s.Ready()
	if s.node.ctrl != nil {
		k := &api.KubernetesStatus{Problem: s.node.ctrl.AccessProblem()}
		if exp := s.node.tokenExp.Load(); exp != nil {
			k.TokenExpires = exp
			if left := exp.Sub(s.node.opts.Now()); left < TokenWarning && k.Problem == "" {
				k.Problem = fmt.Sprintf("the kubeconfig's token expires %s (in %s): make a new one as docs/operations.md shows", exp.Format(time.RFC3339), left.Round(time.Hour))
			}
		}
		st.Kubernetes = k
		st.Leader = s.node.ctrl.Leader()
		if st.Leader {
			st.LeaderName = s.node.cfg.Node.Name
		}
	}
	var usage []ipam.PoolUsage
	if s.node.ctrl != nil {
		usage = s.node.ctrl.PoolUsage()
	} else {
		// Without Kubernetes nothing takes an address from a pool:
		// the running version's pools, none of them used.
		usage = ipam.UsageOf(running.Pools, nil)
	}
	for _, p := range usage {
		st.Pools = append(st.Pools, api.PoolUsage{Name: p.Name, Size: p.Size, Used: p.Used})
	}
	mem := s.Members()
	vips := s.VIPs()
	// Counts only: no need to read the IPVS counters from the kernel, nor
	// to build a view of every backend.
	svcs := s.services(false, false, nil)
	st.Counts = api.Counts{Members: len(mem), VIPs: len(vips), Services: len(svcs)}
	if s.node.ctrl != nil {
		st.Counts.OtherClassServices = s.node.ctrl.OtherClass()
	}
	for _, m := range mem {
		// A live witness does all it has to: count towards the quorum.
		if m.Alive && (m.Healthy || m.Witness) && !m.Draining {
			st.Counts.HealthyMembers++
		}
	}
	for _, v := range vips {
		if v.Local {
			st.Counts.OwnedVIPs++
		}
	}
	for _, svc := range svcs {
		for i := range svc.Ports {
			n, _, serving := svc.Ports[i].Counted()
			st.Counts.Backends += n
			st.Counts.HealthyBackends += serving
		}
	}
	return st
}

func (s *state) Members() []api.Member {
	owners := s.node.members.Owners()
	byOwner := map[string][]string{}
	for vip, owner := range owners {
		byOwner[owner] = append(byOwner[owner], vip.String())
	}
	var out []api.Member
	for _, m := range s.node.members.Members() {
		vips := byOwner[m.Name]
		slices.Sort(vips)
		am := api.Member{Name: m.Name, Address: m.Addr.String(), Self: m.Name == s.node.cfg.Node.Name,
			Alive: !m.Absent && !m.Silent, Silent: m.Silent, Healthy: m.Healthy, Draining: m.Draining, Restarting: m.Restarting, VIPs: vips,
			ConfigVersion: m.ConfigVersion, ConfigID: m.ConfigID, Unapplied: m.Unapplied, DataPathFailing: m.DataPathFailing,
			Witness: m.Witness}
		if am.VIPs == nil {
			am.VIPs = []string{}
		}
		for _, v := range m.Refused {
			am.Refused = append(am.Refused, v.String())
		}
		if am.Self {
			am.Problem = s.node.members.Problem()
			if r := s.node.live.raft; r != nil && !slices.Contains(r.Members(), r.Name()) {
				why := "not a configured member (being added, or removed): it owns no VIP; add it with edgelb members add, or stop it"
				am.Problem = strings.TrimPrefix(am.Problem+"; "+why, "; ")
			}
		}
		out = append(out, am)
	}
	return out
}

func (s *state) VIPs() []api.VIP {
	d := s.node.store.Load()
	if d == nil {
		return nil
	}
	owners := s.node.members.Owners()
	services := map[netip.Addr][]string{}
	for i := range d.Services {
		vs := &d.Services[i]
		services[vs.VIP] = append(services[vs.VIP], sourceName(vs.Source))
	}
	// Who refuses what: the members' gossip for l2 VIPs, this host's VIP
	// manager for the reason (and for bgp VIPs, which are not gossiped).
	refusedBy := map[netip.Addr][]string{}
	for _, m := range s.node.members.Members() {
		for _, v := range m.Refused {
			refusedBy[v] = append(refusedBy[v], m.Name)
		}
	}
	here := map[netip.Addr]string{}
	if s.node.vips != nil {
		for _, r := range s.node.vips.Refused() {
			here[r.VIP] = r.Err
		}
	}
	routes := s.node.announcer.Refused()
	self := s.node.cfg.Node.Name
	hasQuorum := s.node.members.HasQuorum()
	var out []api.VIP
	bgpSet := s.node.live.BGPSet()
	for _, v := range d.VIPs() {
		names := slices.Compact(services[v])
		owner := owners[v]
		vip := api.VIP{Address: v.String(), Owner: owner, Local: owner == self, Services: names, Announce: string(config.AnnounceL2),
			RefusedBy: refusedBy[v]}
		if bgpSet.Contains(v) {
			_, refused := here[v]
			vip.Announce, vip.Local = string(config.AnnounceBGP), s.node.members.MayServe() && !refused
			if refused {
				vip.RefusedBy = []string{self}
			}
		}
		switch {
		case here[v] != "":
			vip.Refused, vip.Problem = true, "refused here: "+here[v]
		case routes[netip.PrefixFrom(v, v.BitLen())] != "":
			vip.Local, vip.Problem = false, "BGP refused its route here (retried): "+routes[netip.PrefixFrom(v, v.BitLen())]
		case owner == "" && hasQuorum && len(vip.RefusedBy) > 0 && vip.Announce == string(config.AnnounceL2):
			vip.Problem = "every member that could own it refuses it"
		}
		out = append(out, vip)
	}
	return out
}

func sourceName(src lb.Source) string {
	if src.Static() {
		return api.StaticNamespace + "/" + src.Name
	}
	return src.Namespace + "/" + src.Name
}

// Services lists the services with their ports, then the Services of
// type LoadBalancer that have no address, with why.
func (s *state) Services() []api.Service { return s.servicesOf(nil, true) }

// ServiceSummaries is Services without the backends' views, counted
// instead (api.ServiceSummaries).
func (s *state) ServiceSummaries() []api.Service { return s.servicesOf(nil, false) }

// Service is one service of Services, built alone: GET
// /api/v1/services/{namespace}/{name} does not build every Service's
// view to answer for one.
func (s *state) Service(namespace, name string) (api.Service, bool) {
	out := s.servicesOf(&serviceName{namespace, name}, true)
	if len(out) == 0 {
		return api.Service{}, false
	}
	return out[0], true
}

// serviceName is a service's namespace and name as the API shows them.
type serviceName struct{ namespace, name string }

// servicesOf is Services, only the one named when one is not nil, with
// the backends' views or only their counts.
func (s *state) servicesOf(one *serviceName, backends bool) []api.Service {
	var keep func(namespace, name string) bool
	if one != nil {
		keep = func(ns, n string) bool { return ns == one.namespace && n == one.name }
	}
	out := s.services(true, backends, keep)
	for i := range out {
		out[i].State = "served"
		for _, p := range out[i].Ports {
			if p.Problem != "" {
				out[i].State = "partial"
			}
		}
	}
	if s.node.ctrl != nil {
		var pending []k8s.Pending
		if one != nil {
			if p, ok := s.node.ctrl.PendingService(one.namespace, one.name); ok {
				pending = append(pending, p)
			}
		} else {
			pending = s.node.ctrl.Pending()
		}
		for _, p := range pending {
			out = append(out, api.Service{Namespace: p.Namespace, Name: p.Name, VIPs: []string{}, Ports: []api.Port{},
				Problem: p.Why, State: "pending"})
		}
	}
	return out
}

// apiNamespace is the namespace the API shows a service in.
func apiNamespace(src lb.Source) string {
	if src.Static() {
		return api.StaticNamespace
	}
	return src.Namespace
}

// services lists the services with backend health, and with the kernel's
// IPVS counters when withStats (one read of the whole table); each
// backend's view when backends, else only their counts (api.Port.Counted);
// only those keep accepts when keep is not nil.
func (s *state) services(withStats, backends bool, keep func(namespace, name string) bool) []api.Service {
	d := s.node.store.Load()
	if d == nil {
		return nil
	}
	kept := func(vs *lb.VirtualService) bool {
		return keep == nil || keep(apiNamespace(vs.Source), vs.Source.Name)
	}
	var wanted map[lb.Key]bool // the keys of the virtual services kept, when not all
	if keep != nil {
		wanted = map[lb.Key]bool{}
		for i := range d.Services {
			if kept(&d.Services[i]) {
				wanted[d.Services[i].Key] = true
			}
		}
		if len(wanted) == 0 {
			return nil
		}
	}
	var stats map[lb.Key]*ipvs.ServiceStats
	var results map[health.Target]health.Result
	var refused map[lb.Key]string
	if s.node.dp != nil {
		refused = s.node.dp.IPVS.Failures()
		if withStats {
			if all, err := s.node.dp.IPVS.Stats(); err == nil {
				stats = map[lb.Key]*ipvs.ServiceStats{}
				for i := range all {
					if wanted == nil || wanted[all[i].Key] {
						stats[all[i].Key] = &all[i]
					}
				}
			}
		}
		results = map[health.Target]health.Result{}
		for _, r := range s.node.dp.Health.Results() {
			results[r.Target] = r
		}
	}
	admin := map[string]map[netip.AddrPort]config.BackendState{}
	{
		cfg, _ := s.node.live.Config()
		for _, b := range cfg.BackendStates {
			if admin[b.Service] == nil {
				admin[b.Service] = map[netip.AddrPort]config.BackendState{}
			}
			admin[b.Service][b.Backend] = b.State
		}
	}
	var failed map[lb.Source]error
	if s.node.filter != nil {
		failed = s.node.filter.Failed()
	}
	// Sized once for the most there can be (a virtual service each): at
	// 10,000 Services a scrape builds every summary.
	most := len(d.Services)
	if wanted != nil {
		most = len(wanted)
	}
	index := make(map[string]int, most)
	out := make([]api.Service, 0, most)
	for i := range d.Services {
		vs := &d.Services[i]
		if wanted != nil && !wanted[vs.Key] {
			continue
		}
		id := sourceName(vs.Source)
		j, ok := index[id]
		if !ok {
			out = append(out, api.Service{Namespace: apiNamespace(vs.Source), Name: vs.Source.Name, Static: vs.Source.Static()})
			j = len(out) - 1
			index[id] = j
			for be, st := range admin[lb.AdminName(vs.Source)] {
				if st == config.BackendDisable {
					out[j].DisabledBackends = append(out[j].DisabledBackends, be.String())
				}
			}
			slices.Sort(out[j].DisabledBackends)
		}
		svc := &out[j]
		if !slices.Contains(svc.VIPs, vs.VIP.String()) {
			svc.VIPs = append(svc.VIPs, vs.VIP.String())
		}
		p := api.Port{VIP: vs.VIP.String(), Port: vs.Port, Protocol: string(vs.Protocol), Name: vs.Source.PortName,
			Scheduler: vs.Scheduler, PersistenceSeconds: int(vs.Persistence / time.Second), Method: string(vs.Method)}
		if backends {
			p.Backends = []api.Backend{}
		}
		if vs.SourceRanges != nil {
			p.SourceRanges = []string{}
			for _, r := range vs.SourceRanges {
				p.SourceRanges = append(p.SourceRanges, r.String())
			}
		}
		var problems []string
		if why := refused[vs.Key]; why != "" {
			problems = append(problems, "the kernel refused its virtual service (retried every second): "+why)
		}
		if err := failed[lb.Source{Namespace: vs.Source.Namespace, Name: vs.Source.Name}]; err != nil && vs.SourceRanges != nil {
			problems = append(problems, fmt.Sprintf("the kernel refused its Service's source ranges, so it is closed, every packet dropped (retried every 5 s): %v", err))
		}
		p.Problem = strings.Join(problems, "; ")
		st := stats[vs.Key]
		if st != nil {
			p.Stats = apiStats(st.Stats, 0)
		}
		for _, b := range vs.Backends {
			state := "unknown"
			if t, probed := health.TargetOf(vs, b); probed && results != nil {
				if r, ok := results[t]; ok && !r.LastCheck.IsZero() {
					state = "down"
					if r.Up {
						state = "up"
					}
				}
			}
			var bstats api.Stats
			if st != nil {
				for _, bs := range st.Backends {
					if bs.Addr == b.Addr {
						bstats = apiStats(bs.Stats, bs.ActiveConns)
						p.Stats.ActiveConnections += uint64(bs.ActiveConns)
					}
				}
			}
			p.BackendCount++
			if state == "down" {
				p.BackendsDown++
			} else if b.Weight > 0 {
				p.BackendsServing++
			}
			if !backends {
				continue
			}
			ab := api.Backend{Address: b.Addr.String(), Weight: int(b.Weight), Node: b.NodeName.String(), Terminating: b.Terminating,
				Health: state, Stats: bstats}
			if admin[lb.AdminName(vs.Source)][b.Addr] == config.BackendDrain {
				ab.AdminState = string(config.BackendDrain)
			}
			p.Backends = append(p.Backends, ab)
		}
		svc.Ports = append(svc.Ports, p)
	}
	if len(out) == 0 {
		return nil // as before the sizing: no Services is null in JSON
	}
	return out
}

func apiStats(s ipvs.Stats, active int) api.Stats {
	return api.Stats{Connections: s.Connections, ActiveConnections: uint64(active),
		PacketsIn: s.PacketsIn, PacketsOut: s.PacketsOut, BytesIn: s.BytesIn, BytesOut: s.BytesOut}
}

// Drain and Undrain act on any live member: this one at once, another
// through a message over the encrypted gossip transport — never with
// cluster.insecure, where no member takes such a message.
func (s *state) Drain(_ context.Context, name string) error { return s.askDrain(name, true) }

func (s *state) Undrain(_ context.Context, name string) error { return s.askDrain(name, false) }

func (s *state) askDrain(name string, on bool) error {
	err := s.node.members.AskDrain(name, on)
	switch {
	case errors.Is(err, cluster.ErrNoMember):
		return fmt.Errorf("%w: %v", api.ErrNotFound, err)
	case errors.Is(err, cluster.ErrInsecure):
		return drainRefused(name, err)
	}
	return err
}

// drainRefused is the API's answer to a drain or undrain of another
// member of an insecure cluster, err being AskDrain's.
func drainRefused(name string, err error) error {
	return fmt.Errorf("%w: %w; drain or undrain %s through its own API (`edgelb` on that host), "+
		"or set cluster.secretKeyFile (see `edgelb keygen`) on every host to manage the members from any of them",
		api.ErrNotReplicated, err, name)
}

func (s *state) Ready() (bool, string) {
	if s.node.ctrl != nil && !s.node.ctrl.Ready() {
		return false, "the Kubernetes informers have not synced yet"
	}
	if s.node.store.Load() == nil {
		return false, "no desired state yet"
	}
	if s.node.dp != nil {
		if err := s.node.dp.IPVS.Healthy(); err != nil {
			return false, fmt.Sprintf("the dataplane is not programmed: %v", err)
		}
	}
	if s.node.filter != nil {
		if err := s.node.filter.LastError(); err != nil {
			return false, fmt.Sprintf("the source-range filter is not programmed: %v", err)
		}
	}
	return true, ""
}
