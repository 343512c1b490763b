package lb

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unique"

	"github.com/edgelb/edgelb/lb/config"
)

// Protocol is a transport protocol of a virtual service.
type Protocol string

const (
	TCP  Protocol = "TCP"
	UDP  Protocol = "UDP"
	SCTP Protocol = "SCTP"
)

// Method is how the dataplane forwards to a backend.
type Method string

const (
	NAT    Method = "nat"
	DR     Method = "dr"
	Tunnel Method = "tunnel"
)

// Source says where a virtual service comes from: a Kubernetes Service
// (Namespace and Name) or a static service of the config (Namespace empty).
type Source struct {
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// PortName is the name of the Service port, if it has one.
	PortName string `json:"portName,omitempty"`
}

// Static reports whether the source is the config file.
func (s Source) Static() bool { return s.Namespace == "" }

func (s Source) String() string {
	if s.Static() {
		return "static/" + s.Name
	}
	return s.Namespace + "/" + s.Name
}

// Key identifies a virtual service: VIP, port and protocol.
type Key struct {
	VIP      netip.Addr
	Port     uint16
	Protocol Protocol
}

func (k Key) String() string {
	return fmt.Sprintf("%s/%s", netip.AddrPortFrom(k.VIP, k.Port), strings.ToLower(string(k.Protocol)))
}

// Compare orders keys by VIP, port, then protocol.
func (k Key) Compare(o Key) int {
	if c := k.VIP.Compare(o.VIP); c != 0 {
		return c
	}
	if k.Port != o.Port {
		if k.Port < o.Port {
			return -1
		}
		return 1
	}
	return strings.Compare(string(k.Protocol), string(o.Protocol))
}

// VirtualService is one VIP:port/protocol and the backends behind it.
type VirtualService struct {
	Key
	Source    Source
	Scheduler string
	// Persistence is the session-affinity timeout; 0 means none.
	Persistence time.Duration
	Method      Method
	// Backends are sorted by address and port.
	Backends []Backend
	// Check is how the backends are probed; MaxConns, when not 0, caps
	// each backend's connections (IPVS upper threshold).
	Check    HealthCheck
	MaxConns uint32
	// SourceRanges, when not nil, are the only clients that may reach
	// the service (spec.loadBalancerSourceRanges, static sourceRanges),
	// masked, sorted and without duplicates. A non-nil empty list lets
	// nobody in (fail closed). nil: everyone.
	SourceRanges []netip.Prefix
	// Disabled are the backends an administrator disabled (backendStates):
	// not in Backends, and taken out of the kernel at once instead of
	// drained. Sorted.
	Disabled []netip.AddrPort
	// BGP is the policy of the VIP's route when it is announced over BGP:
	// the pool's merged with the service's own; nil when it sets nothing
	// (8 bytes where the policy takes 56, in each of 10,000 virtual
	// services twice). The dataplane does not use it (Equal leaves it out).
	BGP *config.BGPPolicy
}

// Backend is one real server of a virtual service. 48 bytes: there are
// as many as endpoints (100,000 at 10,000 Services of 10).
type Backend struct {
	Addr netip.AddrPort
	// NodeName is the Kubernetes node the backend is on, if known.
	NodeName Node
	// Weight is the relative share of new connections. 0 drains the
	// backend: it keeps its open connections but gets no new ones.
	Weight int32
	// HealthCheckPort, when not 0, is probed over HTTP (GET /healthz) on the
	// backend's address instead of the backend itself: the node's
	// healthCheckNodePort for externalTrafficPolicy: Local.
	HealthCheckPort uint16
	// Terminating marks an endpoint that is still serving but going away.
	Terminating bool
}

// Node names a Kubernetes node, interned (package unique): 8 bytes where a
// string takes 16, one copy of each name however many endpoints and
// backends are on that node, and equal names compare equal. The zero Node
// is no node.
type Node struct{ h unique.Handle[string] }

// NodeOf is the Node of that name; "" is the zero Node.
func NodeOf(name string) Node {
	if name == "" {
		return Node{}
	}
	return Node{unique.Make(name)}
}

// String is the node's name, "" for the zero Node.
func (n Node) String() string {
	if n == (Node{}) {
		return ""
	}
	return n.h.Value()
}

func (b Backend) String() string {
	return fmt.Sprintf("%s w=%d", b.Addr, b.Weight)
}

// Equal reports whether two virtual services are the same, backends included.
func (v *VirtualService) Equal(o *VirtualService) bool {
	return v.Key == o.Key && v.Source == o.Source && v.Scheduler == o.Scheduler &&
		v.Persistence == o.Persistence && v.Method == o.Method && slices.Equal(v.Backends, o.Backends) &&
		v.Check == o.Check && v.MaxConns == o.MaxConns &&
		(v.SourceRanges == nil) == (o.SourceRanges == nil) && slices.Equal(v.SourceRanges, o.SourceRanges) &&
		slices.Equal(v.Disabled, o.Disabled)
}

func (v *VirtualService) String() string {
	return fmt.Sprintf("%s (%s, %s, %d backends)", v.Key, v.Source, v.Scheduler, len(v.Backends))
}

// Desired is the complete set of virtual services the dataplane must hold,
// sorted by Key, and the VIPs they use.
type Desired struct {
	Services []VirtualService
}

// BGPPolicy is the policy of vip's route: that of every virtual service
// on it, merged (Services sharing one VIP add up their communities; the
// highest local preference wins).
func (d *Desired) BGPPolicy(vip netip.Addr) config.BGPPolicy {
	var out config.BGPPolicy
	for i := range d.Services {
		vs := &d.Services[i]
		if vs.VIP != vip {
			continue
		}
		if vs.BGP == nil {
			continue
		}
		lp := out.LocalPref
		out = out.Merge(*vs.BGP)
		if lp != nil && (out.LocalPref == nil || *lp > *out.LocalPref) {
			out.LocalPref = lp
		}
	}
	return out
}

// VIPs returns the distinct VIPs of the desired services, sorted.
func (d *Desired) VIPs() []netip.Addr {
	var out []netip.Addr
	for i := range d.Services {
		out = append(out, d.Services[i].VIP)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}
