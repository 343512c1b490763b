// Package apitest provides an in-memory api.State for tests of the API
// and the dashboard.
package apitest

import (
	"context"
	"slices"
	"sync"

	"github.com/edgelb/edgelb/api"
)

// Fake is an api.State whose content tests set directly. Drain and
// Undrain move the drained member's VIPs to the first other healthy member
// and publish a drain and an ownership event, like the real cluster.
type Fake struct {
	mu       sync.Mutex
	Self     string
	Bus      *api.Bus
	St       api.Status
	Mems     []api.Member
	Vips     []api.VIP
	Svcs     []api.Service
	NotReady string
	// FullViews counts the calls of Services (the view with every
	// backend), not those of ServiceSummaries.
	FullViews int
}

var (
	_ api.State            = (*Fake)(nil)
	_ api.ServiceLookup    = (*Fake)(nil)
	_ api.ServiceSummaries = (*Fake)(nil)
)

func (f *Fake) Status() api.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.St
}

// SetStatus changes the status with edit.
func (f *Fake) SetStatus(edit func(st *api.Status)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	edit(&f.St)
}

// SetMember changes the member named name with edit.
func (f *Fake) SetMember(name string, edit func(m *api.Member)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.Mems {
		if f.Mems[i].Name == name {
			edit(&f.Mems[i])
		}
	}
}

func (f *Fake) Members() []api.Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.Mems)
}

func (f *Fake) VIPs() []api.VIP {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.Vips)
}

func (f *Fake) Services() []api.Service {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.FullViews++
	return slices.Clone(f.Svcs)
}

// ServiceSummaries is Services with each port's backends counted, not
// listed.
func (f *Fake) ServiceSummaries() []api.Service {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Clone(f.Svcs)
	for i := range out {
		out[i].Ports = slices.Clone(out[i].Ports)
		for j := range out[i].Ports {
			p := &out[i].Ports[j]
			p.BackendCount, p.BackendsDown, p.BackendsServing = p.Counted()
			p.Backends = nil
		}
	}
	return out
}

// Service is the service of Services with that namespace and name.
func (f *Fake) Service(namespace, name string) (api.Service, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.Svcs {
		if s.Namespace == namespace && s.Name == name {
			return s, true
		}
	}
	return api.Service{}, false
}

func (f *Fake) Ready() (bool, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.NotReady == "", f.NotReady
}

func (f *Fake) Drain(_ context.Context, name string) error   { return f.setDraining(name, true) }
func (f *Fake) Undrain(_ context.Context, name string) error { return f.setDraining(name, false) }

func (f *Fake) setDraining(name string, on bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := slices.IndexFunc(f.Mems, func(m api.Member) bool { return m.Name == name })
	if i < 0 {
		return api.ErrNotFound
	}
	f.Mems[i].Draining = on
	if f.Bus != nil {
		f.Bus.Publish("drain", name+" draining: "+map[bool]string{true: "on", false: "off"}[on], map[string]string{"member": name})
	}
	if !on {
		return nil
	}
	// Hand the member's VIPs to the next healthy member.
	for j := range f.Mems {
		m := &f.Mems[j]
		if m.Name == name || !m.Healthy || m.Draining {
			continue
		}
		for k := range f.Vips {
			if f.Vips[k].Owner == name {
				f.Vips[k].Owner, f.Vips[k].Local = m.Name, false
				m.VIPs = append(m.VIPs, f.Vips[k].Address)
				if f.Bus != nil {
					f.Bus.Publish("ownership", f.Vips[k].Address+" moved to "+m.Name, map[string]string{"vip": f.Vips[k].Address, "owner": m.Name})
				}
			}
		}
		f.Mems[i].VIPs = nil
		break
	}
	return nil
}

// Sample returns a Fake with three members, two VIPs and two services.
func Sample() *Fake {
	return &Fake{
		Self: "lb1",
		Bus:  api.NewBus(100),
		St: api.Status{Node: "lb1", Version: "test", Leader: true, Ready: true, Healthy: true, Dataplane: "ipvs/nodeport/nat",
			Counts: api.Counts{Members: 3, HealthyMembers: 3, VIPs: 2, OwnedVIPs: 1, Services: 2, Backends: 3, HealthyBackends: 2},
			Pools:  []api.PoolUsage{{Name: "default", Size: 41, Used: 1}}},
		Mems: []api.Member{
			{Name: "lb1", Address: "10.0.0.11:7946", Self: true, Alive: true, Healthy: true, VIPs: []string{"192.0.2.10"}, ConfigVersion: 3, ConfigID: "3:3f9a0c1b2d4e5f60"},
			{Name: "lb2", Address: "10.0.0.12:7946", Alive: true, Healthy: true, VIPs: []string{"192.0.2.53"}, ConfigVersion: 3, ConfigID: "3:3f9a0c1b2d4e5f60"},
			{Name: "lb3", Address: "10.0.0.13:7946", Alive: true, Healthy: true, VIPs: []string{}, ConfigVersion: 2, ConfigID: "2:0b1c2d3e4f506172"},
		},
		Vips: []api.VIP{
			{Address: "192.0.2.10", Owner: "lb1", Local: true, Services: []string{"demo/web"}, Announce: "l2"},
			{Address: "192.0.2.53", Owner: "lb2", Services: []string{"_static/dns"}, Announce: "l2"},
		},
		Svcs: []api.Service{
			{Namespace: "demo", Name: "web", State: "served", VIPs: []string{"192.0.2.10"}, Ports: []api.Port{{
				VIP: "192.0.2.10", Port: 8080, Protocol: "TCP", Scheduler: "rr", Method: "nat",
				Stats: api.Stats{Connections: 120, PacketsIn: 1000, PacketsOut: 900, BytesIn: 64000, BytesOut: 512000},
				Backends: []api.Backend{
					{Address: "10.0.1.1:31000", Weight: 1, Node: "n1", Health: "up", Stats: api.Stats{Connections: 60}},
					{Address: "10.0.1.2:31000", Weight: 1, Node: "n2", Health: "down", Stats: api.Stats{Connections: 60}},
				},
			}}},
			{Namespace: api.StaticNamespace, Name: "dns", Static: true, State: "served", VIPs: []string{"192.0.2.53"}, Ports: []api.Port{{
				VIP: "192.0.2.53", Port: 53, Protocol: "UDP", Scheduler: "rr", Method: "nat",
				Backends: []api.Backend{{Address: "10.0.2.5:53", Weight: 1, Health: "unknown"}},
			}}},
		},
	}
}
