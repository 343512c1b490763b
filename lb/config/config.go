package config

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
	"unicode"

	"go4.org/netipx"
)

// Config is the validated configuration of one appliance host.
type Config struct {
	// Path is the file the configuration was read from, for messages.
	Path string

	Node        Node
	Cluster     Cluster
	Kubernetes  *Kubernetes // nil: no Kubernetes, static services only
	Pools       []Pool
	Dataplane   Dataplane
	HealthCheck HealthCheck
	API         API
	Services    []StaticService
	// BGP is nil without a bgp section: no VIP is announced over BGP.
	BGP *BGP
	// BackendStates are the backends drained or disabled by an
	// administrator (POST /api/v1/services/.../backends/...).
	BackendStates []BackendAdmin
}

// Node identifies this host.
type Node struct {
	// Name is this member's name in the cluster; defaults to the hostname.
	Name string
	// Interface is the network interface VIPs are added to and announced on.
	Interface string
	// DataPath checks the data path on Interface beyond its carrier
	// (vip/datapath, docs/failover.md).
	DataPath DataPath
	// MemoryLimit is the Go runtime's soft memory limit for `edgelb run`,
	// in bytes (runtime/debug.SetMemoryLimit, as GOMEMLIMIT); 0: none
	// set by the file (GOMEMLIMIT, if given, applies).
	MemoryLimit int64
}

// DataPath configures the data-path check of node.interface: every
// Interval, an ARP request or Neighbor Solicitation to each target; a
// round is good when one answers within Timeout. Fall bad rounds in a
// row make the host give its VIPs up (while a peer's path works), Rise
// good ones take it back.
type DataPath struct {
	// Enabled: check the path (default true).
	Enabled bool
	// Targets are the addresses probed; none: the gateways of
	// node.interface's routes.
	Targets  []netip.Addr
	Interval time.Duration
	Timeout  time.Duration
	Fall     int
	Rise     int
}

// Heartbeat configures the heartbeats between the members: sealed UDP
// datagrams every Interval; a member silent for Interval × Multiplier is
// counted down for VIP ownership at once.
type Heartbeat struct {
	// Enabled: send and expect heartbeats (default true; they need the
	// gossip key, and are off in an insecure cluster).
	Enabled    bool
	Interval   time.Duration
	Multiplier int
	// Port is the UDP port they are received on, on bindAddr; 0 means
	// bindPort + 1.
	Port uint16
}

// Cluster configures gossip membership.
type Cluster struct {
	BindAddr netip.Addr
	BindPort uint16
	// Join lists the peers (host or host:port) contacted at start-up. It is
	// also the configured cluster size used for the quorum, and names the
	// members of the configuration's consensus log when it is created
	// (cluster.Options.MemberAddrs).
	Join []string
	// SecretKeyFile holds the base64 gossip key written by `edgelb keygen`.
	SecretKeyFile string
	// SecretKey is the decoded content of SecretKeyFile.
	SecretKey []byte
	// Insecure allows gossip without encryption; it must be set explicitly.
	Insecure bool
	// Quorum is the number of members (this one included) that must be
	// visible for this host to own VIPs. 0 means a majority of the configured
	// cluster: len(Join ∪ {self})/2 + 1.
	Quorum int
	// Failure-detection timing, see docs/failover.md.
	ProbeInterval  time.Duration
	ProbeTimeout   time.Duration
	SuspicionMult  int
	GossipInterval time.Duration
	// Heartbeat is the fast failure detection between the members, next
	// to memberlist's (cluster.heartbeat, docs/failover.md).
	Heartbeat Heartbeat
	// HandoverTimeout bounds a planned handover (stop or drain): how long
	// a draining member keeps a VIP while waiting for its next owner to
	// confirm that it holds it.
	HandoverTimeout time.Duration
	// AnnounceRefresh, when not 0, repeats the gratuitous ARP / unsolicited
	// NA for every held VIP at this interval, after the takeover burst.
	AnnounceRefresh time.Duration
	// NeighbourRepair is how many neighbours (gateways, clients of IPVS
	// connections, neighbour-table entries) a takeover repairs at most
	// with unicast ARP replies / NAs and probes, for those that ignore
	// gratuitous ARP or refuse it inside their locktime; 0 turns the
	// repair off. Default 64.
	NeighbourRepair int
	// RestartHold bounds a graceful restart (systemctl restart, SIGUSR2):
	// VIPs are added with this valid lifetime and renewed while owned, so
	// the kernel drops them by itself if edgelb dies or does not come
	// back; the other members keep a restarting member's VIPs for it this
	// long; and a restarted process keeps the VIPs it adopted at most this
	// long before the ordinary rules apply. Whole seconds (the kernel
	// counts address lifetimes in seconds).
	RestartHold time.Duration
}

// Bounds of cluster.restartHold: long enough for a process to restart and
// rejoin, short enough that a host whose edgelb died does not keep its
// VIPs for long.
const (
	MinRestartHold = 2 * time.Second
	MaxRestartHold = 10 * time.Minute
)

// MinCheckInterval is the shortest healthCheck.interval: every backend of
// every service is probed this often.
const MinCheckInterval = 100 * time.Millisecond

// MaxWithdrawDelay is the longest bgp.withdrawDelay: a stop hands the l2
// VIPs over, withdraws, then waits this long, all within the unit's
// TimeoutStopSec (30 s).
const MaxWithdrawDelay = 20 * time.Second

// Kubernetes configures the Service controller.
type Kubernetes struct {
	// Kubeconfig is the path of a kubeconfig file; empty means in-cluster.
	Kubeconfig string
	// LoadBalancerClass is the spec.loadBalancerClass edgelb implements.
	LoadBalancerClass string
	// DefaultClass makes edgelb handle Services that name no class.
	DefaultClass bool
	// LeaseNamespace and LeaseName name the Lease that elects the single
	// member allowed to allocate IPs and write Service status.
	LeaseNamespace string
	LeaseName      string
	// QPS and Burst limit requests to the API server (client-side; the
	// API server's own flow control answers 429, which client-go retries
	// after its Retry-After).
	QPS   float32
	Burst int
	// EventQPS and EventBurst limit the Events, written through a client
	// of their own so that they never delay status writes or the Lease.
	EventQPS   float32
	EventBurst int
}

// Pool is a set of addresses Services are given IPs from.
type Pool struct {
	Name string
	// Ranges holds the pool's addresses, each range of one family.
	Ranges []netipx.IPRange
	// AutoAssign lets Services that ask for no pool or address get an IP
	// from this pool.
	AutoAssign bool
	// Namespaces, when not empty, limits the pool to Services in them.
	Namespaces []string
	// Announce says how the pool's VIPs are announced (l2 when empty).
	Announce Announce
	// BGP, with announce: bgp, are the communities and local preference
	// of the pool's routes; nil: none.
	BGP *BGPPolicy
}

// Backend names a dataplane implementation.
type Backend string

const (
	BackendIPVS     Backend = "ipvs"
	BackendNftables Backend = "nftables"
	BackendNone     Backend = "none"
)

// Mode says where traffic is forwarded.
type Mode string

const (
	// ModeNodePort forwards to every eligible node at the Service's nodePort.
	ModeNodePort Mode = "nodeport"
	// ModeDirect forwards to the ready endpoints' pod IPs.
	ModeDirect Mode = "direct"
)

// Method is the IPVS forwarding method.
type Method string

const (
	MethodNAT    Method = "nat"
	MethodDR     Method = "dr"
	MethodTunnel Method = "tunnel"
)

// NATSource says which address nat connections leave with.
type NATSource string

// The NAT sources.
const (
	NATSourceVIP  NATSource = "vip"
	NATSourceHost NATSource = "host"
)

// NATSources are the values dataplane.natSource accepts.
var NATSources = []string{string(NATSourceVIP), string(NATSourceHost)}

// Schedulers are the IPVS schedulers edgelb accepts.
var Schedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh"}

// Dataplane configures forwarding.
type Dataplane struct {
	Backend   Backend
	Mode      Mode
	Method    Method
	Scheduler string
	// Continuity lets a host take over the established flows of another
	// (net.ipv4.vs.sloppy_tcp and sloppy_sctp): with the mh scheduler
	// they go on to the backend they had when a VIP moves or a router
	// rehashes.
	Continuity bool
	// NATSource is the source address of nat connections to l2 VIPs:
	// NATSourceVIP (the VIP itself, so a connection keeps its addresses
	// when its VIP moves) or NATSourceHost (the host's address on the way
	// to the backend). bgp VIPs always use the host's.
	NATSource NATSource
	// DrainTimeout is how long a removed or terminating backend is kept at
	// weight 0 for its open connections before it is deleted.
	DrainTimeout time.Duration
}

// HealthCheck configures backend probing.
type HealthCheck struct {
	Interval time.Duration
	Timeout  time.Duration
	Rise     int
	Fall     int
}

// API configures the REST API and dashboard.
type API struct {
	Listen string
	// Hosts are the names, besides IP addresses and localhost, that
	// requests may name in their Host header (DNS rebinding protection).
	Hosts []string
	TLS   *TLS
	// Tokens maps a role ("admin", "viewer") to its bearer tokens.
	Tokens map[string][]string
	// Named is every token with its name and role: the name given
	// ({name: ci, token: ...}) or, for a token listed alone, its role
	// and place ("admin#1"). The audit log records names, never tokens.
	Named []NamedToken
	// BackendSeriesLimit is how many backends this host may have for
	// /metrics to carry the per-backend series (edgelb_backend_*); above
	// it they are left out (default DefaultBackendSeriesLimit).
	BackendSeriesLimit int
}

// DefaultBackendSeriesLimit is api.backendSeriesLimit's default: 10,000
// backends are 60,000 series in /metrics.
const DefaultBackendSeriesLimit = 10000

// NamedToken is a bearer token with the name the audit log knows it by.
type NamedToken struct {
	Name, Role, Secret string
}

// Loopback reports whether the API listens on a loopback address only
// (localhost or 127.0.0.0/8, ::1), out of other hosts' reach.
func (a *API) Loopback() bool {
	host, _, err := net.SplitHostPort(a.Listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// Warnings are what a valid config costs that its author may not know:
// `edgelb check` prints them and `edgelb run` logs them.
func (c *Config) Warnings() []string {
	var out []string
	if !c.API.Loopback() && c.API.TLS == nil {
		out = append(out, fmt.Sprintf("api.listen %q is reachable from other hosts without api.tls: tokens and everything the API says cross the network in clear text", c.API.Listen))
	}
	return out
}

// TLS names the certificate and key the API is served with.
type TLS struct {
	CertFile string
	KeyFile  string
}

// StaticService is a service declared in the config file.
type StaticService struct {
	Name      string
	VIP       netip.Addr
	Ports     []StaticPort
	Backends  []netip.AddrPort
	Scheduler string // empty: dataplane.scheduler
	// Persistence keeps a client on one backend for this long after its
	// last connection (IPVS persistence, like sessionAffinity: ClientIP);
	// 0 means none.
	Persistence time.Duration
	// Announce says how the VIP is announced (l2 when empty).
	Announce Announce
	// BGP, with announce: bgp, are the communities and local preference
	// of the VIP's route, merged over its pool's (BGPPolicy.Merge); nil:
	// none.
	BGP *BGPPolicy
	// Method overrides dataplane.method for this service; "": the default.
	Method Method
	// HealthCheck, if set, is how the backends are probed.
	HealthCheck *ServiceCheck
	// MaxConnectionsPerBackend is the IPVS upper connection threshold of
	// each backend; 0 means no limit.
	MaxConnectionsPerBackend uint32
	// SourceRanges, when not empty, are the only clients that may reach
	// the service (like spec.loadBalancerSourceRanges), masked.
	SourceRanges []netip.Prefix
}

// StaticPort is one port of a static service.
type StaticPort struct {
	Port     uint16
	Protocol string // TCP, UDP or SCTP
	// TargetPort is the backends' port when they are listed without one;
	// 0 means the same as Port.
	TargetPort uint16
}

// Default returns the configuration every file is applied over.
func Default() Config {
	return Config{
		Node: Node{DataPath: DataPath{Enabled: true, Interval: 150 * time.Millisecond, Timeout: 100 * time.Millisecond, Fall: 3, Rise: 5}},
		Cluster: Cluster{
			BindPort: 7946,
			// 200 ms probes with a 100 ms timeout and a suspicion
			// multiplier of 2 detect a dead LAN peer in about 0.6 s
			// (measured, docs/failover.md) while tolerating a
			// 100 ms stall of a loaded host.
			ProbeInterval:  200 * time.Millisecond,
			ProbeTimeout:   100 * time.Millisecond,
			SuspicionMult:  2,
			GossipInterval: 100 * time.Millisecond,
			// Heartbeats every 50 ms, three missed: a crashed host is
			// counted down in 150 ms (docs/failover.md).
			Heartbeat:       Heartbeat{Enabled: true, Interval: 50 * time.Millisecond, Multiplier: 3},
			HandoverTimeout: 3 * time.Second,
			RestartHold:     10 * time.Second,
			NeighbourRepair: 64,
		},
		Dataplane: Dataplane{
			Backend:      BackendIPVS,
			Mode:         ModeNodePort,
			Method:       MethodNAT,
			Scheduler:    "mh",
			Continuity:   true,
			NATSource:    NATSourceVIP,
			DrainTimeout: 5 * time.Minute,
		},
		HealthCheck: HealthCheck{Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 2},
		API:         API{Listen: "127.0.0.1:9080", BackendSeriesLimit: DefaultBackendSeriesLimit},
	}
}

// Defaults of the client-side rate limits (kubernetes.qps, burst,
// eventQPS, eventBurst). What protects the API server is its own flow
// control (API Priority and Fairness: seats, queues, 429 with
// Retry-After, which client-go honours), and the leader holds at most 16
// of its seats (its workers); the client-side limit is a ceiling above
// that, high enough that 10,000 new Services are written in well under a
// minute. kube-controller-manager's default is 20/30 for each of its
// controllers' clients, and clients are moving to no client-side limit
// at all where the server has APF (kubernetes/kubernetes#111880).
const (
	DefaultQPS        = 300
	DefaultBurst      = 600
	DefaultEventQPS   = 20
	DefaultEventBurst = 50
)

func defaultKubernetes() Kubernetes {
	return Kubernetes{
		LoadBalancerClass: "edgelb.io/lb",
		LeaseNamespace:    "kube-system",
		LeaseName:         "edgelb-controller",
		QPS:               DefaultQPS,
		Burst:             DefaultBurst,
		EventQPS:          DefaultEventQPS,
		EventBurst:        DefaultEventBurst,
	}
}

// PoolSet is the set of addresses of the pools.
func PoolSet(pools []Pool) *netipx.IPSet {
	var b netipx.IPSetBuilder
	for _, p := range pools {
		for _, r := range p.Ranges {
			b.AddRange(r)
		}
	}
	s, _ := b.IPSet() // fails only on invalid ranges, which Load refuses
	return s
}

// Managed is the set of addresses edgelb manages on a host: those of its
// pools and its static services' VIPs. It announces, programs and cleans
// up nothing else; IPVS services on other addresses are never touched.
func (c *Config) Managed() *netipx.IPSet {
	var b netipx.IPSetBuilder
	b.AddSet(PoolSet(c.Pools))
	for _, s := range c.Services {
		b.Add(s.VIP)
	}
	s, _ := b.IPSet()
	return s
}

// CheckType is the kind of a health check.
type CheckType string

const (
	// CheckTCP connects to the backend.
	CheckTCP CheckType = "tcp"
	// CheckHTTP sends GET Path and expects a status from 200 to 399.
	CheckHTTP CheckType = "http"
	// CheckNone does not probe: the backend is always up.
	CheckNone CheckType = "none"
)

// DefaultCheckPath is the path of an http check that names none.
const DefaultCheckPath = "/healthz"

// Bounds of per-service health-check durations, and of
// maxConnectionsPerBackend.
const (
	MinCheckDuration = 10 * time.Millisecond
	MaxCheckDuration = time.Hour
	MaxConnsLimit    = 1 << 30
)

// The values the enumerated keys accept.
var (
	Modes      = []string{string(ModeNodePort), string(ModeDirect)}
	Methods    = []string{string(MethodNAT), string(MethodDR), string(MethodTunnel)}
	CheckTypes = []string{string(CheckTCP), string(CheckHTTP), string(CheckNone)}
)

// ServiceCheck is the health check of one service (a static service's
// healthCheck, a Service's health-check annotations). Zero fields take the
// values of the config's healthCheck; an empty Type means tcp for TCP
// ports and no check otherwise.
type ServiceCheck struct {
	Type CheckType
	// Port is probed instead of the backend's own port; 0: the backend's.
	Port uint16
	// Path is the path of an http check; "": DefaultCheckPath.
	Path              string
	Interval, Timeout time.Duration
	Rise, Fall        int
}

// CheckPath checks the path of an HTTP health check.
func CheckPath(s string) error {
	switch {
	case !strings.HasPrefix(s, "/"):
		return fmt.Errorf("must start with /")
	case len(s) > 1024:
		return fmt.Errorf("longer than 1024 characters")
	case strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == '#' }):
		return fmt.Errorf("must not contain spaces, control characters or #")
	}
	return nil
}

// BGPPolicyOf is the policy of the pool that holds a (the zero policy
// when none does or it sets none).
func BGPPolicyOf(pools []Pool, a netip.Addr) BGPPolicy {
	for _, p := range pools {
		for _, r := range p.Ranges {
			if r.Contains(a) {
				if p.BGP == nil {
					return BGPPolicy{}
				}
				return *p.BGP
			}
		}
	}
	return BGPPolicy{}
}
