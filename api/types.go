package api

import (
	"context"
	"errors"
	"time"
)

// State is what the API reads and changes. The daemon implements it over
// the cluster, the dataplane and the Kubernetes controller; tests use a
// fake. Methods are called concurrently and must not block for long.
type State interface {
	Status() Status
	Members() []Member
	VIPs() []VIP
	Services() []Service
	// Drain and Undrain change the draining state of any live member.
	// They return ErrNotFound for a name that is not one, and
	// ErrNotReplicated when another member cannot be asked.
	Drain(ctx context.Context, member string) error
	Undrain(ctx context.Context, member string) error
	// Ready reports whether the informers have synced and the dataplane
	// has been programmed, with a reason when not.
	Ready() (bool, string)
}

// ServiceLookup is what a State may add to answer for one service
// without building every one (GET /api/v1/services/{namespace}/{name}):
// the same view as that service's in Services.
type ServiceLookup interface {
	Service(namespace, name string) (Service, bool)
}

// ServiceSummaries is what a State may add for the figures of a large
// table (/metrics, the status's counts): the view of Services without
// their ports' Backends (nil), which are counted instead (Port.Counted),
// so that a scrape of 10,000 Services does not build a view of their
// 100,000 backends when it leaves the per-backend series out anyway.
type ServiceSummaries interface {
	ServiceSummaries() []Service
}

// Errors State and ClusterConfig methods return.
var (
	ErrNotFound = errors.New("not found")
	// ErrNotReplicated: the change would not reach the other members —
	// with cluster.insecure they take nothing from each other — so it is
	// refused (409) and nothing changes. The error's text says why and
	// what to do instead.
	ErrNotReplicated = errors.New("the change would not reach the other members")
)

// Status is the summary of GET /api/v1/status.
type Status struct {
	Node    string `json:"node"`
	Version string `json:"version"`
	// Leader is true when this host holds the Kubernetes Lease and writes
	// Service status; LeaderName names the holder when known.
	Leader     bool   `json:"leader"`
	LeaderName string `json:"leaderName,omitempty"`
	Ready      bool   `json:"ready"`
	Draining   bool   `json:"draining"`
	Healthy    bool   `json:"healthy"`
	// Problem says why the host is unhealthy.
	Problem   string      `json:"problem,omitempty"`
	Dataplane string      `json:"dataplane"` // ipvs/nodeport/nat, none, ...
	Counts    Counts      `json:"counts"`
	Pools     []PoolUsage `json:"pools"`
	Started   time.Time   `json:"started"`
	// ConfigFileDiffers: the cluster-wide keys of this host's config file
	// (pools, services, ...) are not the running cluster configuration's,
	// so they are not used; `edgelb config diff -f FILE` shows how they
	// differ and `edgelb config apply -f FILE` makes them the next version.
	ConfigFileDiffers bool `json:"configFileDiffers,omitempty"`
	// ConfigUnapplied is the committed version of the cluster
	// configuration this host cannot apply over its own config file (0:
	// it runs the committed version): it owns no VIPs until a version it
	// can take is committed, and Problem says why.
	ConfigUnapplied uint64 `json:"configUnapplied,omitempty"`
	// Kubernetes is the state of edgelb's access to the API server; nil
	// without a kubernetes section.
	Kubernetes *KubernetesStatus `json:"kubernetes,omitempty"`
	// DataPath is the check of node.interface's data path; nil when it
	// is not checked (node.dataPath.enabled false, no node.interface).
	DataPath *DataPathStatus `json:"dataPath,omitempty"`
}

// DataPathStatus is the state of the check of node.interface's data path
// (docs/failover.md, "Data path").
type DataPathStatus struct {
	// OK: the targets answer (or there is none to probe).
	OK bool `json:"ok"`
	// GaveUp: the path fails and another member's works, so this host
	// owns no VIPs (Problem of the Status says so too). A failing path
	// with GaveUp false keeps the VIPs: no other member has a working one.
	GaveUp bool `json:"gaveUp,omitempty"`
	// Targets are the addresses probed ("" when none).
	Targets string `json:"targets,omitempty"`
	// Problem says why the path fails.
	Problem string `json:"problem,omitempty"`
}

// KubernetesStatus is the state of edgelb's access to the API server. A
// problem does not make the host unhealthy: the dataplane keeps what it
// has.
type KubernetesStatus struct {
	// Problem says what is wrong (credentials refused, permissions
	// missing, the token about to expire), or is empty.
	Problem string `json:"problem,omitempty"`
	// TokenExpires is when the kubeconfig's token expires, when it says
	// (a service-account JWT's exp).
	TokenExpires *time.Time `json:"tokenExpires,omitempty"`
}

// Counts are totals over the cluster view of this host.
type Counts struct {
	Members int `json:"members"`
	// HealthyMembers counts the live members that are healthy and not
	// draining, and the live witnesses.
	HealthyMembers int `json:"healthyMembers"`
	VIPs           int `json:"vips"`
	OwnedVIPs      int `json:"ownedVIPs"`
	Services       int `json:"services"`
	// OtherClassServices are the Services of type LoadBalancer of
	// another loadBalancerClass (another controller's).
	OtherClassServices int `json:"otherClassServices"`
	Backends           int `json:"backends"`
	HealthyBackends    int `json:"healthyBackends"`
}

// PoolUsage is how full an address pool is.
type PoolUsage struct {
	Name string `json:"name"`
	Size uint64 `json:"size"`
	Used uint64 `json:"used"`
}

// Member is one appliance host of GET /api/v1/members.
type Member struct {
	Name     string `json:"name"`
	Address  string `json:"address"`
	Self     bool   `json:"self"`
	Alive    bool   `json:"alive"`
	Healthy  bool   `json:"healthy"`
	Draining bool   `json:"draining"`
	// Restarting: the member's process is restarting gracefully; its VIPs
	// stay with it (alive false while it is away, for at most
	// cluster.restartHold).
	Restarting bool `json:"restarting,omitempty"`
	// Silent: gossip still lists the member but its heartbeats stopped
	// (cluster.heartbeat): it is counted down and owns nothing (alive
	// false).
	Silent  bool     `json:"silent,omitempty"`
	Problem string   `json:"problem,omitempty"`
	VIPs    []string `json:"vips"`
	// ConfigVersion is the version of the cluster configuration the
	// member runs, as it gossips it (0: none yet, or an older edgelb).
	ConfigVersion uint64 `json:"configVersion"`
	// ConfigID names that version exactly, "number:hash" (the hash's
	// first 16 hex digits): two versions of one number differ in it. The
	// dashboard's sync badge compares it. Empty from an older edgelb.
	ConfigID string `json:"configId,omitempty"`
	// Unapplied is the committed version the member cannot apply over its
	// own config file (0: none): it owns no VIPs until a version it can
	// take is committed; its problem says why.
	Unapplied uint64 `json:"unapplied,omitempty"`
	// Refused are the l2 VIPs the member's kernel would not add, as it
	// gossips them: they go to other members, the member keeps the rest.
	Refused []string `json:"refused,omitempty"`
	// DataPathFailing: the member's data-path check (node.dataPath)
	// failed its last round or is failing; it owns VIPs only while no
	// other member's path works.
	DataPathFailing bool `json:"dataPathFailing,omitempty"`
	// Witness: the member is an `edgelb witness`, a voter that counts
	// towards the quorum and never owns a VIP (docs/failover.md, A pair
	// with a witness).
	Witness bool `json:"witness,omitempty"`
	// Configured: the member is in the configured cluster (the consensus
	// log's member set): it votes and may own VIPs. A configured member
	// that is not live is listed with its address as its name.
	Configured bool `json:"configured"`
}

// VIP is one virtual IP of GET /api/v1/vips.
type VIP struct {
	Address string `json:"address"`
	// Owner is the member that announces it; empty when nobody may (no
	// quorum, no healthy member).
	Owner    string   `json:"owner"`
	Local    bool     `json:"local"`
	Services []string `json:"services"` // "namespace/name" or "_static/name"
	// Announce is "l2" (one owner answers ARP/NDP) or "bgp" (no owner:
	// every serving host that holds it advertises it over BGP; Local says
	// this one does).
	Announce string `json:"announce"`
	// Refused: this host's kernel would not add the VIP. RefusedBy are
	// the members whose kernel would not (for a bgp VIP, only this host
	// is known); Problem says why here (or why BGP refused its route
	// here), or that nobody can own it.
	Refused   bool     `json:"refused,omitempty"`
	RefusedBy []string `json:"refusedBy,omitempty"`
	Problem   string   `json:"problem,omitempty"`
}

// StaticNamespace is the namespace static services have in the API.
// Kubernetes namespaces cannot contain "_", so it never collides.
const StaticNamespace = "_static"

// Service is one Kubernetes or static service of GET /api/v1/services.
type Service struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	Static    bool     `json:"static"`
	VIPs      []string `json:"vips"`
	Ports     []Port   `json:"ports"`
	// DisabledBackends are the backends an administrator disabled
	// (backendStates): they are in no port's table.
	DisabledBackends []string `json:"disabledBackends,omitempty"`
	// Problem says why a pending Service has no address.
	Problem string `json:"problem,omitempty"`
	// State is "served" (every port programmed on this host), "partial"
	// (some port has a problem here: see the ports) or "pending" (no
	// address).
	State string `json:"state"`
}

// ServiceEvent is one Kubernetes Event about a Service, as GET
// /api/v1/services/{namespace}/{name}/events lists them (newest first).
type ServiceEvent struct {
	Type    string `json:"type"` // Normal or Warning
	Reason  string `json:"reason"`
	Message string `json:"message"`
	Count   int32  `json:"count"`
	// From is the component that reported it and its host (edgelb/lb1).
	From      string    `json:"from,omitempty"`
	FirstTime time.Time `json:"firstTime"`
	LastTime  time.Time `json:"lastTime"`
}

// Port is one virtual service: VIP, port and protocol.
type Port struct {
	VIP                string `json:"vip"`
	Port               uint16 `json:"port"`
	Protocol           string `json:"protocol"`
	Name               string `json:"name,omitempty"`
	Scheduler          string `json:"scheduler"`
	PersistenceSeconds int    `json:"persistenceSeconds"`
	Method             string `json:"method"`
	// SourceRanges are the only clients allowed (loadBalancerSourceRanges);
	// absent: everyone; empty: nobody (a malformed list seen first).
	SourceRanges []string `json:"sourceRanges,omitempty"`
	// Problem says why this host does not forward the port as desired
	// (the kernel refused its virtual service, or its Service's source
	// ranges: then the port is closed, every packet dropped); the other
	// ports and Services are unaffected.
	Problem  string    `json:"problem,omitempty"`
	Stats    Stats     `json:"stats"`
	Backends []Backend `json:"backends"`
	// Counts of the backends, set in views built without them
	// (ServiceSummaries): how many, how many failing their check, how
	// many taking new connections (not down, weight above 0).
	BackendCount    int `json:"-"`
	BackendsDown    int `json:"-"`
	BackendsServing int `json:"-"`
}

// Counted returns the port's counts of backends: from Backends when the
// view lists them, else from the counts a summary carries.
func (p *Port) Counted() (n, down, serving int) {
	if p.Backends == nil {
		return p.BackendCount, p.BackendsDown, p.BackendsServing
	}
	for _, b := range p.Backends {
		n++
		if b.Health == "down" {
			down++
		} else if b.Weight > 0 {
			serving++
		}
	}
	return n, down, serving
}

// Backend is one real server.
type Backend struct {
	Address     string `json:"address"`
	Weight      int    `json:"weight"` // configured weight, before health
	Node        string `json:"node,omitempty"`
	Health      string `json:"health"` // up, down or unknown
	Terminating bool   `json:"terminating"`
	// AdminState is "drain" when an administrator drained the backend
	// (its weight is 0); "" otherwise.
	AdminState string `json:"adminState,omitempty"`
	Stats      Stats  `json:"stats"`
}

// Stats are IPVS counters since the virtual service or backend was created.
type Stats struct {
	Connections       uint64 `json:"connections"`
	ActiveConnections uint64 `json:"activeConnections"`
	PacketsIn         uint64 `json:"packetsIn"`
	PacketsOut        uint64 `json:"packetsOut"`
	BytesIn           uint64 `json:"bytesIn"`
	BytesOut          uint64 `json:"bytesOut"`
}

// Event is one entry of the live event stream (GET /api/v1/events).
type Event struct {
	ID   uint64    `json:"id"`
	Time time.Time `json:"time"`
	// Type is one of ownership, health, allocation, member, drain, error.
	Type    string            `json:"type"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields,omitempty"`
}

// Error is the body of every error response.
type Error struct {
	Error string `json:"error"`
}
