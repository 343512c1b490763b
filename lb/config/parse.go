package config

import (
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"go4.org/netipx"
	"gopkg.in/yaml.v3"
)

// MaxFileSize bounds the config file; anything larger is refused unread.
const MaxFileSize = 4 << 20

// Load reads, parses and validates the config file at path.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &FieldError{File: path, Msg: fmt.Sprintf("cannot read: %v", err)}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, &FieldError{File: path, Msg: fmt.Sprintf("cannot read: %v", err)}
	}
	if len(data) > MaxFileSize {
		return nil, &FieldError{File: path, Msg: fmt.Sprintf("larger than %d bytes", MaxFileSize)}
	}
	return parse(path, data, filepath.Dir(path), os.ReadFile)
}

// Parse parses and validates config data; name is used in messages and
// relative paths are resolved against the working directory. Referenced
// files (the gossip key) are read from disk.
func Parse(name string, data []byte) (*Config, error) {
	return parse(name, data, ".", os.ReadFile)
}

type readFileFunc func(string) ([]byte, error)

func parse(name string, data []byte, dir string, readFile readFileFunc) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, &FieldError{File: name, Line: yamlErrLine(err), Msg: fmt.Sprintf("not valid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))}
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return nil, &FieldError{File: name, Msg: "the file is empty"}
	}
	return parseNode(name, &root, dir, readFile)
}

// parseNode validates a YAML document node (root) the way parse does.
func parseNode(name string, root *yaml.Node, dir string, readFile readFileFunc) (*Config, error) {
	d := &decoder{file: name}
	cfg := Default()
	cfg.Path = name
	p := &parser{d: d, cfg: &cfg, dir: dir, readFile: readFile}
	p.root(root.Content[0])
	if len(d.errs) > 0 {
		return nil, d.errs
	}
	return &cfg, nil
}

// yamlErrLine pulls the line number out of a yaml.v3 syntax error.
func yamlErrLine(err error) int {
	s := err.Error()
	i := strings.Index(s, "line ")
	if i < 0 {
		return 0
	}
	s = s[i+5:]
	j := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	if j > 0 {
		s = s[:j]
	}
	n, _ := strconv.Atoi(s)
	return n
}

type parser struct {
	d        *decoder
	cfg      *Config
	dir      string
	readFile readFileFunc

	keyFileNode *yaml.Node
	// heartbeatPort is cluster.heartbeat.port, when given.
	heartbeatPort *yaml.Node
	insecureSet   bool
	poolLines     [][]int // line of each pool range, by pool
	nodeName      *yaml.Node
	// The bgp section, and the `announce: bgp` keys with their paths.
	bgpNode         *yaml.Node
	bgpAnnounce     []*yaml.Node
	bgpAnnouncePath []string
	// needInterface are the static services whose method needs
	// node.interface.
	needInterface []serviceNeed
	checks        []checkNode
}

type checkNode struct {
	node  *yaml.Node
	path  string
	check *ServiceCheck
}

type serviceNeed struct {
	node   *yaml.Node
	path   string
	method Method
}

func (p *parser) root(n *yaml.Node) {
	d, cfg := p.d, p.cfg
	d.mapping(n, "", map[string]func(*yaml.Node, string){
		"node": func(n *yaml.Node, path string) {
			d.mapping(n, path, map[string]func(*yaml.Node, string){
				"name":      func(n *yaml.Node, path string) { p.nodeName = n; d.str(n, path, &cfg.Node.Name) },
				"interface": func(n *yaml.Node, path string) { d.str(n, path, &cfg.Node.Interface) },
				"dataPath":  p.dataPath,
				"memoryLimit": func(n *yaml.Node, path string) {
					var v string
					d.str(n, path, &v)
					q, err := resource.ParseQuantity(v)
					switch {
					case err != nil:
						d.errorf(n, path, "%q is not a size like 200Mi or 1Gi", v)
					case q.Value() < 32<<20:
						d.errorf(n, path, "%s is below 32Mi: the garbage collector would run all the time", v)
					default:
						cfg.Node.MemoryLimit = q.Value()
					}
				},
			})
		},
		"cluster":       p.cluster,
		"kubernetes":    p.kubernetes,
		"pools":         p.pools,
		"dataplane":     p.dataplane,
		"healthCheck":   p.healthCheck,
		"api":           p.api,
		"services":      p.services,
		"bgp":           p.bgp,
		"backendStates": p.backendStates,
	})
	if resolve(n) != nil && resolve(n).Kind != yaml.MappingNode {
		return
	}
	if cfg.Node.Name == "" {
		if h, err := os.Hostname(); err == nil {
			cfg.Node.Name = h
		}
	} else if strings.ContainsAny(cfg.Node.Name, " \t/") {
		d.errorf(p.nodeName, "node.name", "%q must not contain spaces or slashes", cfg.Node.Name)
	}
	if !cfg.Cluster.Insecure && cfg.Cluster.SecretKeyFile == "" {
		d.errorf(n, "cluster.secretKeyFile", "gossip must be encrypted: set secretKeyFile (see `edgelb keygen`) or `insecure: true`")
	}
	if cfg.Cluster.Insecure && cfg.Cluster.SecretKeyFile != "" {
		d.errorf(p.keyFileNode, "cluster.insecure", "insecure: true and a secretKeyFile exclude each other")
	}
	if cfg.HealthCheck.Timeout >= cfg.HealthCheck.Interval {
		d.errorf(n, "healthCheck.timeout", "%s must be shorter than the interval %s", cfg.HealthCheck.Timeout, cfg.HealthCheck.Interval)
	}
	if dp := cfg.Node.DataPath; dp.Timeout >= dp.Interval {
		d.errorf(n, "node.dataPath.timeout", "%s must be shorter than the interval %s", dp.Timeout, dp.Interval)
	}
	if hb := cfg.Cluster.Heartbeat; hb.Enabled && p.heartbeatPort != nil && hb.Port == cfg.Cluster.BindPort {
		d.errorf(p.heartbeatPort, "cluster.heartbeat.port", "%d is the gossip port (bindPort): heartbeats need a UDP port of their own", hb.Port)
	}
	if hb := cfg.Cluster.Heartbeat; hb.Enabled && p.heartbeatPort == nil && cfg.Cluster.BindPort == 65535 {
		d.errorf(n, "cluster.heartbeat.port", "bindPort is 65535, so heartbeats have no default port (bindPort + 1): set one")
	}
	if cfg.Cluster.ProbeTimeout >= cfg.Cluster.ProbeInterval {
		d.errorf(n, "cluster.probeTimeout", "%s must be shorter than probeInterval %s", cfg.Cluster.ProbeTimeout, cfg.Cluster.ProbeInterval)
	}
	if cfg.Dataplane.Backend != BackendNone && cfg.Dataplane.Method != MethodNAT && cfg.Node.Interface == "" {
		d.errorf(n, "node.interface", "required for dataplane.method %s", cfg.Dataplane.Method)
	}
	for _, s := range p.needInterface {
		if cfg.Dataplane.Backend != BackendNone && cfg.Node.Interface == "" {
			d.errorf(s.node, s.path, "method %s needs node.interface", s.method)
		}
	}
	p.checkPoolOverlap()
	p.checkStaticVIPs()
	p.checkBGP()
	p.checkTimeouts()
}

func (p *parser) cluster(n *yaml.Node, path string) {
	d, c := p.d, &p.cfg.Cluster
	d.mapping(n, path, map[string]func(*yaml.Node, string){
		"bindAddr": func(n *yaml.Node, path string) {
			var s string
			d.str(n, path, &s)
			if s == "" {
				return
			}
			a, err := netip.ParseAddr(s)
			if err != nil {
				d.errorf(n, path, "%q is not an IP address", s)
				return
			}
			c.BindAddr = a
		},
		"bindPort": func(n *yaml.Node, path string) { d.port(n, path, &c.BindPort) },
		"join": func(n *yaml.Node, path string) {
			d.strs(n, path, &c.Join)
			for i, j := range c.Join {
				if err := checkHostPort(j); err != nil {
					d.errorf(resolve(n).Content[i], index(path, i), "%q: %v", j, err)
				}
			}
		},
		"secretKeyFile": func(n *yaml.Node, path string) {
			p.keyFileNode = n
			d.str(n, path, &c.SecretKeyFile)
			if c.SecretKeyFile == "" {
				return
			}
			file := c.SecretKeyFile
			if !filepath.IsAbs(file) {
				file = filepath.Join(p.dir, file)
			}
			raw, err := p.readFile(file)
			if err != nil {
				d.errorf(n, path, "cannot read the gossip key: %v", err)
				return
			}
			key, err := DecodeKey(raw)
			if err != nil {
				d.errorf(n, path, "%s: %v", file, err)
				return
			}
			c.SecretKey = key
		},
		"insecure":        func(n *yaml.Node, path string) { d.boolean(n, path, &c.Insecure) },
		"quorum":          func(n *yaml.Node, path string) { d.intField(n, path, 0, 1024, &c.Quorum) },
		"probeInterval":   func(n *yaml.Node, path string) { d.duration(n, path, &c.ProbeInterval) },
		"probeTimeout":    func(n *yaml.Node, path string) { d.duration(n, path, &c.ProbeTimeout) },
		"suspicionMult":   func(n *yaml.Node, path string) { d.intField(n, path, 1, 100, &c.SuspicionMult) },
		"gossipInterval":  func(n *yaml.Node, path string) { d.duration(n, path, &c.GossipInterval) },
		"heartbeat":       p.heartbeat,
		"handoverTimeout": func(n *yaml.Node, path string) { d.duration(n, path, &c.HandoverTimeout) },
		"announceRefresh": func(n *yaml.Node, path string) {
			d.duration(n, path, &c.AnnounceRefresh)
			if c.AnnounceRefresh != 0 && c.AnnounceRefresh < 100*time.Millisecond {
				d.errorf(n, path, "%s is too short: use at least 100ms, or leave it out to send no refresh", c.AnnounceRefresh)
			}
		},
		"neighbourRepair": func(n *yaml.Node, path string) { d.intField(n, path, 0, 1024, &c.NeighbourRepair) },
		"restartHold": func(n *yaml.Node, path string) {
			var v time.Duration
			d.duration(n, path, &v)
			switch {
			case v == 0:
				return // already reported
			case v < MinRestartHold || v > MaxRestartHold:
				d.errorf(n, path, "%s is out of range: use %s to %s", v, MinRestartHold, MaxRestartHold)
			case v%time.Second != 0:
				d.errorf(n, path, "%s is not a whole number of seconds (the kernel counts address lifetimes in seconds)", v)
			default:
				c.RestartHold = v
			}
		},
	})
}

func (p *parser) heartbeat(n *yaml.Node, path string) {
	d, h := p.d, &p.cfg.Cluster.Heartbeat
	d.mapping(n, path, map[string]func(*yaml.Node, string){
		"enabled": func(n *yaml.Node, path string) { d.boolean(n, path, &h.Enabled) },
		"interval": func(n *yaml.Node, path string) {
			d.durationIn(n, path, 10*time.Millisecond, 10*time.Second, "each member sends every other one a heartbeat this often", &h.Interval)
		},
		"multiplier": func(n *yaml.Node, path string) { d.intField(n, path, 2, 255, &h.Multiplier) },
		"port": func(n *yaml.Node, path string) {
			d.port(n, path, &h.Port)
			p.heartbeatPort = n
		},
	})
}

// checkHostPort accepts host, host:port, IP and [IPv6]:port.
func checkHostPort(s string) error {
	if s == "" {
		return fmt.Errorf("empty peer address")
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		host, port = s, ""
	}
	if port != "" {
		if v, err := strconv.Atoi(port); err != nil || v < 1 || v > 65535 {
			return fmt.Errorf("bad port %q", port)
		}
	}
	if host == "" || strings.ContainsAny(host, " /[]") {
		return fmt.Errorf("not a host or host:port")
	}
	return nil
}

// DecodeKey decodes a gossip key file: base64 of 16, 24 or 32 bytes.
func DecodeKey(raw []byte) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		return nil, fmt.Errorf("the gossip key is not base64 (create one with `edgelb keygen`)")
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	}
	return nil, fmt.Errorf("the gossip key has %d bytes, want 16, 24 or 32", len(key))
}

func (p *parser) kubernetes(n *yaml.Node, path string) {
	d := p.d
	k := defaultKubernetes()
	p.cfg.Kubernetes = &k
	d.mapping(n, path, map[string]func(*yaml.Node, string){
		"kubeconfig":        func(n *yaml.Node, path string) { d.str(n, path, &k.Kubeconfig) },
		"loadBalancerClass": func(n *yaml.Node, path string) { d.str(n, path, &k.LoadBalancerClass) },
		"defaultClass":      func(n *yaml.Node, path string) { d.boolean(n, path, &k.DefaultClass) },
		"leaseNamespace":    func(n *yaml.Node, path string) { d.str(n, path, &k.LeaseNamespace) },
		"leaseName":         func(n *yaml.Node, path string) { d.str(n, path, &k.LeaseName) },
		"qps":               func(n *yaml.Node, path string) { d.float(n, path, &k.QPS) },
		"burst":             func(n *yaml.Node, path string) { d.intField(n, path, 1, 100000, &k.Burst) },
		"eventQPS":          func(n *yaml.Node, path string) { d.float(n, path, &k.EventQPS) },
		"eventBurst":        func(n *yaml.Node, path string) { d.intField(n, path, 1, 100000, &k.EventBurst) },
	})
	if k.LoadBalancerClass == "" {
		d.errorf(n, join(path, "loadBalancerClass"), "must not be empty")
	}
	if k.LeaseNamespace == "" || k.LeaseName == "" {
		d.errorf(n, join(path, "leaseName"), "leaseNamespace and leaseName must not be empty")
	}
}

func (p *parser) pools(n *yaml.Node, path string) {
	d := p.d
	names := map[string]bool{}
	d.list(n, path, func(i int, item *yaml.Node, path string) {
		pool := Pool{AutoAssign: true}
		var lines []int
		badRanges := false // said once per bad range, not again as "no range"
		d.mapping(item, path, map[string]func(*yaml.Node, string){
			"name": func(n *yaml.Node, path string) { d.str(n, path, &pool.Name) },
			"addresses": func(n *yaml.Node, path string) {
				d.list(n, path, func(_ int, a *yaml.Node, path string) {
					var s string
					d.str(a, path, &s)
					r, err := ParseRange(s)
					if err == nil {
						err = lanUnicast(r, s)
					}
					if err != nil {
						d.errorf(a, path, "%v", err)
						badRanges = true
						return
					}
					pool.Ranges = append(pool.Ranges, r)
					lines = append(lines, a.Line)
				})
			},
			"autoAssign": func(n *yaml.Node, path string) { d.boolean(n, path, &pool.AutoAssign) },
			"namespaces": func(n *yaml.Node, path string) { d.strs(n, path, &pool.Namespaces) },
			"announce":   func(n *yaml.Node, path string) { p.announce(n, path, &pool.Announce) },
			"bgp":        func(n *yaml.Node, path string) { pool.BGP = p.bgpPolicy(n, path) },
		})
		p.checkBGPPolicy(item, path, pool.BGP, pool.Announce)
		if pool.Name == "" {
			d.errorf(item, join(path, "name"), "every pool needs a name")
		} else if names[pool.Name] {
			d.errorf(item, join(path, "name"), "pool %q is defined twice", pool.Name)
		}
		names[pool.Name] = true
		if len(pool.Ranges) == 0 && !badRanges && resolve(item) != nil && resolve(item).Kind == yaml.MappingNode {
			d.errorf(item, join(path, "addresses"), "a pool needs at least one address range")
		}
		p.cfg.Pools = append(p.cfg.Pools, pool)
		p.poolLines = append(p.poolLines, lines)
	})
}

// ParseRange parses a CIDR ("192.0.2.0/24"), a range ("192.0.2.10-192.0.2.50")
// or a single address into an IPRange of one family.
func ParseRange(s string) (netipx.IPRange, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return netipx.IPRange{}, fmt.Errorf("empty address range")
	case strings.Contains(s, "/"):
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return netipx.IPRange{}, fmt.Errorf("%q is not a CIDR like 192.0.2.0/24", s)
		}
		if pfx.Addr().Zone() != "" {
			return netipx.IPRange{}, fmt.Errorf("%q: zones are not allowed", s)
		}
		if pfx.Masked() != pfx {
			return netipx.IPRange{}, fmt.Errorf("%q has host bits set; did you mean %s?", s, pfx.Masked())
		}
		return netipx.RangeOfPrefix(pfx), nil
	case strings.Contains(s, "-"):
		from, to, _ := strings.Cut(s, "-")
		a, err1 := netip.ParseAddr(strings.TrimSpace(from))
		b, err2 := netip.ParseAddr(strings.TrimSpace(to))
		if err1 != nil || err2 != nil {
			return netipx.IPRange{}, fmt.Errorf("%q is not a range like 192.0.2.10-192.0.2.50", s)
		}
		if a.Zone() != "" || b.Zone() != "" || a.Is4In6() || b.Is4In6() {
			return netipx.IPRange{}, fmt.Errorf("%q: zones and IPv4-mapped addresses are not allowed", s)
		}
		if a.Is4() != b.Is4() {
			return netipx.IPRange{}, fmt.Errorf("%q mixes IPv4 and IPv6", s)
		}
		if b.Less(a) {
			return netipx.IPRange{}, fmt.Errorf("%q ends before it starts", s)
		}
		return netipx.IPRangeFrom(a, b), nil
	default:
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" || a.Is4In6() {
			return netipx.IPRange{}, fmt.Errorf("%q is not an address, CIDR or range", s)
		}
		return netipx.IPRangeFrom(a, a), nil
	}
}

func (p *parser) checkPoolOverlap() {
	type owned struct {
		r    netipx.IPRange
		pool string
	}
	var seen []owned
	for i, pool := range p.cfg.Pools {
		for j, r := range pool.Ranges {
			for _, o := range seen {
				if r.Overlaps(o.r) {
					p.d.errs = append(p.d.errs, &FieldError{File: p.d.file, Line: p.poolLines[i][j],
						Field: fmt.Sprintf("pools[%d].addresses[%d]", i, j),
						Msg:   fmt.Sprintf("%s overlaps %s of pool %q", r, o.r, o.pool)})
				}
			}
			seen = append(seen, owned{r, pool.Name})
		}
	}
}

var (
	backends = []string{string(BackendIPVS), string(BackendNftables), string(BackendNone)}
)

func (p *parser) dataplane(n *yaml.Node, path string) {
	d, dp := p.d, &p.cfg.Dataplane
	d.mapping(n, path, map[string]func(*yaml.Node, string){
		"backend": func(n *yaml.Node, path string) {
			s := string(dp.Backend)
			d.enum(n, path, backends, &s)
			if Backend(s) == BackendNftables {
				d.errorf(n, path, "the nftables dataplane is planned but not available yet; use ipvs, or none for announce-only")
			}
			dp.Backend = Backend(s)
		},
		"mode": func(n *yaml.Node, path string) {
			s := string(dp.Mode)
			d.enum(n, path, Modes, &s)
			dp.Mode = Mode(s)
		},
		"method": func(n *yaml.Node, path string) {
			s := string(dp.Method)
			d.enum(n, path, Methods, &s)
			dp.Method = Method(s)
		},
		"scheduler":  func(n *yaml.Node, path string) { d.enum(n, path, Schedulers, &dp.Scheduler) },
		"continuity": func(n *yaml.Node, path string) { d.boolean(n, path, &dp.Continuity) },
		"natSource": func(n *yaml.Node, path string) {
			s := string(dp.NATSource)
			d.enum(n, path, NATSources, &s)
			dp.NATSource = NATSource(s)
		},
		"drainTimeout": func(n *yaml.Node, path string) {
			d.durationIn(n, path, time.Second, 24*time.Hour, "how long a leaving backend keeps its connections", &dp.DrainTimeout)
		},
	})
}

func (p *parser) dataPath(n *yaml.Node, path string) {
	d, dp := p.d, &p.cfg.Node.DataPath
	d.mapping(n, path, map[string]func(*yaml.Node, string){
		"enabled": func(n *yaml.Node, path string) { d.boolean(n, path, &dp.Enabled) },
		"targets": func(n *yaml.Node, path string) {
			var ss []string
			d.strs(n, path, &ss)
			dp.Targets = nil
			for i, s := range ss {
				a, err := netip.ParseAddr(s)
				if err != nil || a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() || a.Zone() != "" {
					d.errorf(resolve(n).Content[i], index(path, i), "%q is not a unicast IP address (without a zone)", s)
					continue
				}
				dp.Targets = append(dp.Targets, a.Unmap())
			}
		},
		"interval": func(n *yaml.Node, path string) {
			d.durationIn(n, path, 50*time.Millisecond, time.Minute, "the targets are probed this often", &dp.Interval)
		},
		"timeout": func(n *yaml.Node, path string) {
			d.durationIn(n, path, 10*time.Millisecond, time.Minute, "how long a target may take to answer; it must also be shorter than the interval", &dp.Timeout)
		},
		"fall": func(n *yaml.Node, path string) { d.intField(n, path, 1, 100, &dp.Fall) },
		"rise": func(n *yaml.Node, path string) { d.intField(n, path, 1, 100, &dp.Rise) },
	})
}

func (p *parser) healthCheck(n *yaml.Node, path string) {
	d, h := p.d, &p.cfg.HealthCheck
	d.mapping(n, path, map[string]func(*yaml.Node, string){
		"interval": func(n *yaml.Node, path string) {
			d.durationIn(n, path, MinCheckInterval, time.Hour, "every backend is probed this often", &h.Interval)
		},
		"timeout": func(n *yaml.Node, path string) {
			d.durationIn(n, path, 10*time.Millisecond, time.Hour, "how long one probe may take; it must also be shorter than the interval", &h.Timeout)
		},
		"rise": func(n *yaml.Node, path string) { d.intField(n, path, 1, 100, &h.Rise) },
		"fall": func(n *yaml.Node, path string) { d.intField(n, path, 1, 100, &h.Fall) },
	})
}

func (p *parser) api(n *yaml.Node, path string) {
	d, a := p.d, &p.cfg.API
	var listen *yaml.Node
	defer func() {
		if listen != nil && !a.Loopback() && len(a.Tokens["admin"])+len(a.Tokens["viewer"]) == 0 {
			d.errorf(listen, path+".listen", "%q is reachable from other hosts: set api.tokens, or anyone who reaches it can drain members and read the whole state", a.Listen)
		}
	}()
	d.mapping(n, path, map[string]func(*yaml.Node, string){
		"listen": func(n *yaml.Node, path string) {
			listen = n
			d.str(n, path, &a.Listen)
			if _, port, err := net.SplitHostPort(a.Listen); err != nil || port == "" {
				d.errorf(n, path, "%q is not host:port", a.Listen)
			}
		},
		"backendSeriesLimit": func(n *yaml.Node, path string) {
			d.intField(n, path, 0, 10_000_000, &a.BackendSeriesLimit)
		},
		"hosts": func(n *yaml.Node, path string) {
			d.list(n, path, func(_ int, h *yaml.Node, path string) {
				var name string
				d.str(h, path, &name)
				if name == "" || strings.ContainsAny(name, ":/ ") {
					d.errorf(h, path, "%q is not a host name like lb.example.net (no port, no scheme)", name)
					return
				}
				a.Hosts = append(a.Hosts, name)
			})
		},
		"tls": func(n *yaml.Node, path string) {
			t := &TLS{}
			d.mapping(n, path, map[string]func(*yaml.Node, string){
				"certFile": func(n *yaml.Node, path string) { d.str(n, path, &t.CertFile) },
				"keyFile":  func(n *yaml.Node, path string) { d.str(n, path, &t.KeyFile) },
			})
			if t.CertFile == "" || t.KeyFile == "" {
				d.errorf(n, path, "tls needs both certFile and keyFile")
				return
			}
			a.TLS = t
		},
		"tokens": func(n *yaml.Node, path string) {
			a.Tokens = map[string][]string{}
			names := map[string]string{}
			secrets := map[string]string{} // secret -> where it was first given
			role := func(role string) func(*yaml.Node, string) {
				return func(n *yaml.Node, path string) {
					var toks []string
					// Each token is its secret ("admin#1" by name), or
					// {name: ..., token: ...}.
					d.list(n, path, func(i int, item *yaml.Node, p string) {
						t := NamedToken{Name: fmt.Sprintf("%s#%d", role, i+1), Role: role}
						if it := resolve(item); it != nil && it.Kind == yaml.MappingNode {
							var nameNode *yaml.Node
							d.mapping(item, p, map[string]func(*yaml.Node, string){
								"name":  func(n *yaml.Node, path string) { nameNode = n; d.str(n, path, &t.Name) },
								"token": func(n *yaml.Node, path string) { d.str(n, path, &t.Secret) },
							})
							switch {
							case nameNode == nil || t.Name == "":
								d.errorf(item, join(p, "name"), "a named token needs a name")
							case strings.ContainsFunc(t.Name, func(r rune) bool { return r <= ' ' || r == '#' }):
								d.errorf(nameNode, join(p, "name"), "%q must not contain spaces, control characters or #", t.Name)
							case names[t.Name] != "":
								d.errorf(nameNode, join(p, "name"), "%q is already the name of %s", t.Name, names[t.Name])
							}
							names[t.Name] = p
						} else {
							d.str(item, p, &t.Secret)
						}
						if len(t.Secret) < 16 {
							d.errorf(item, p, "tokens must be at least 16 characters")
						} else if first := secrets[t.Secret]; first != "" {
							d.errorf(item, p, "the same token as %s: every token must be different (one token in two roles would get whichever role matched it)", first)
						} else {
							secrets[t.Secret] = p
						}
						toks = append(toks, t.Secret)
						a.Named = append(a.Named, t)
					})
					a.Tokens[role] = toks
				}
			}
			d.mapping(n, path, map[string]func(*yaml.Node, string){"admin": role("admin"), "viewer": role("viewer")})
		},
	})
}

var protocols = []string{"TCP", "UDP", "SCTP"}

func (p *parser) services(n *yaml.Node, path string) {
	d := p.d
	names := map[string]bool{}
	d.list(n, path, func(i int, item *yaml.Node, path string) {
		var s StaticService
		var vipNode *yaml.Node
		d.mapping(item, path, map[string]func(*yaml.Node, string){
			"name": func(n *yaml.Node, path string) { d.str(n, path, &s.Name) },
			"vip": func(n *yaml.Node, path string) {
				vipNode = n
				var v string
				d.str(n, path, &v)
				a, err := netip.ParseAddr(v)
				if err != nil || a.Zone() != "" {
					d.errorf(n, path, "%q is not an IP address", v)
					return
				}
				if err := lanUnicast(netipx.IPRangeFrom(a, a), v); err != nil {
					d.errorf(n, path, "%v", err)
					return
				}
				s.VIP = a
			},
			"scheduler":   func(n *yaml.Node, path string) { d.enum(n, path, Schedulers, &s.Scheduler) },
			"persistence": func(n *yaml.Node, path string) { d.duration(n, path, &s.Persistence) },
			"announce":    func(n *yaml.Node, path string) { p.announce(n, path, &s.Announce) },
			"bgp":         func(n *yaml.Node, path string) { s.BGP = p.bgpPolicy(n, path) },
			"method": func(n *yaml.Node, path string) {
				v := string(s.Method)
				d.enum(n, path, Methods, &v)
				s.Method = Method(v)
			},
			"healthCheck": func(n *yaml.Node, path string) { s.HealthCheck = p.serviceCheck(n, path) },
			"maxConnectionsPerBackend": func(n *yaml.Node, path string) {
				var v int64
				if d.integer(n, path, 0, MaxConnsLimit, &v) {
					s.MaxConnectionsPerBackend = uint32(v)
				}
			},
			"sourceRanges": func(n *yaml.Node, path string) {
				d.list(n, path, func(_ int, rn *yaml.Node, path string) {
					var v string
					d.str(rn, path, &v)
					pr, err := netip.ParsePrefix(v)
					if err != nil || pr.Addr().Zone() != "" || pr.Addr().Is4In6() {
						d.errorf(rn, path, "%q is not a CIDR (like 10.0.0.0/8 or 2001:db8::/32)", v)
						return
					}
					s.SourceRanges = append(s.SourceRanges, pr.Masked())
				})
			},
			"ports": func(n *yaml.Node, path string) {
				d.list(n, path, func(_ int, pn *yaml.Node, path string) {
					sp := StaticPort{Protocol: "TCP"}
					d.mapping(pn, path, map[string]func(*yaml.Node, string){
						"port":       func(n *yaml.Node, path string) { d.port(n, path, &sp.Port) },
						"targetPort": func(n *yaml.Node, path string) { d.port(n, path, &sp.TargetPort) },
						"protocol":   func(n *yaml.Node, path string) { d.enum(n, path, protocols, &sp.Protocol) },
					})
					if sp.Port == 0 {
						d.errorf(pn, join(path, "port"), "a port number is required")
						return
					}
					for _, o := range s.Ports {
						if o.Port == sp.Port && o.Protocol == sp.Protocol {
							d.errorf(pn, path, "%d/%s is listed twice", sp.Port, sp.Protocol)
						}
					}
					s.Ports = append(s.Ports, sp)
				})
			},
			"backends": func(n *yaml.Node, path string) {
				d.list(n, path, func(_ int, bn *yaml.Node, path string) {
					var v string
					d.str(bn, path, &v)
					ap, err := parseBackend(v)
					if err != nil {
						d.errorf(bn, path, "%v", err)
						return
					}
					if s.VIP.IsValid() && ap.Addr().Is4() != s.VIP.Is4() {
						d.errorf(bn, path, "%s is not of the VIP's address family (%s)", v, s.VIP)
						return
					}
					s.Backends = append(s.Backends, ap)
				})
			},
		})
		if s.Name == "" {
			d.errorf(item, join(path, "name"), "every service needs a name")
		} else if names[s.Name] {
			d.errorf(item, join(path, "name"), "service %q is defined twice", s.Name)
		}
		names[s.Name] = true
		if !s.VIP.IsValid() && vipNode == nil {
			d.errorf(item, join(path, "vip"), "a static service needs a vip")
		}
		if len(s.Ports) == 0 {
			d.errorf(item, join(path, "ports"), "a static service needs at least one port")
		}
		if s.Method != "" && s.Method != MethodNAT {
			p.needInterface = append(p.needInterface, serviceNeed{item, join(path, "method"), s.Method})
		}
		p.checkBGPPolicy(item, path, s.BGP, s.Announce)
		p.cfg.Services = append(p.cfg.Services, s)
	})
}

// serviceCheck decodes a static service's healthCheck.
func (p *parser) serviceCheck(n *yaml.Node, path string) *ServiceCheck {
	d := p.d
	c := &ServiceCheck{}
	dur := func(dst *time.Duration) func(*yaml.Node, string) {
		return func(n *yaml.Node, path string) {
			d.duration(n, path, dst)
			if *dst != 0 && (*dst < MinCheckDuration || *dst > MaxCheckDuration) {
				d.errorf(n, path, "%s is out of range: use %s to %s", *dst, MinCheckDuration, MaxCheckDuration)
			}
		}
	}
	var pathNode *yaml.Node
	d.mapping(n, path, map[string]func(*yaml.Node, string){
		"type": func(n *yaml.Node, path string) {
			v := string(c.Type)
			d.enum(n, path, CheckTypes, &v)
			c.Type = CheckType(v)
		},
		"port": func(n *yaml.Node, path string) { d.port(n, path, &c.Port) },
		"path": func(n *yaml.Node, path string) {
			pathNode = n
			d.str(n, path, &c.Path)
			if err := CheckPath(c.Path); err != nil {
				d.errorf(n, path, "%q %v", c.Path, err)
			}
		},
		"interval": dur(&c.Interval),
		"timeout":  dur(&c.Timeout),
		"rise":     func(n *yaml.Node, path string) { d.intField(n, path, 1, 100, &c.Rise) },
		"fall":     func(n *yaml.Node, path string) { d.intField(n, path, 1, 100, &c.Fall) },
	})
	if pathNode != nil && c.Type != CheckHTTP {
		d.errorf(pathNode, join(path, "path"), "only an http check has a path: set type: http")
	}
	p.checks = append(p.checks, checkNode{n, path, c})
	return c
}

// checkTimeouts checks each service's check timeout against its interval,
// once healthCheck (the defaults) is known.
func (p *parser) checkTimeouts() {
	for _, cn := range p.checks {
		c := cn.check
		interval, timeout := c.Interval, c.Timeout
		if interval == 0 {
			interval = p.cfg.HealthCheck.Interval
		}
		if timeout == 0 {
			timeout = p.cfg.HealthCheck.Timeout
		}
		if (c.Interval != 0 || c.Timeout != 0) && timeout >= interval {
			p.d.errorf(cn.node, join(cn.path, "timeout"), "%s must be shorter than the interval %s", timeout, interval)
		}
	}
}

// parseBackend parses "10.0.1.5:53", "[2001:db8::5]:53" or a bare address
// (port 0: the service port's targetPort is used).
func parseBackend(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 || ap.Addr().Zone() != "" {
			return netip.AddrPort{}, fmt.Errorf("%q: port must be 1-65535 and no zone", s)
		}
		return ap, nil
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return netip.AddrPortFrom(a, 0), nil
	}
	return netip.AddrPort{}, fmt.Errorf("%q is not an address or address:port", s)
}

func (p *parser) checkStaticVIPs() {
	used := map[string]string{}
	for i, s := range p.cfg.Services {
		for _, port := range s.Ports {
			k := netip.AddrPortFrom(s.VIP, port.Port).String() + "/" + port.Protocol
			if other, ok := used[k]; ok && s.VIP.IsValid() {
				p.d.errs = append(p.d.errs, &FieldError{File: p.d.file, Field: fmt.Sprintf("services[%d]", i),
					Msg: fmt.Sprintf("%s is already used by service %q", k, other)})
			}
			used[k] = s.Name
		}
		for pi, pool := range p.cfg.Pools {
			for _, r := range pool.Ranges {
				if s.VIP.IsValid() && r.Contains(s.VIP) {
					p.d.errs = append(p.d.errs, &FieldError{File: p.d.file, Field: fmt.Sprintf("services[%d].vip", i),
						Msg: fmt.Sprintf("%s is inside pool %q (pools[%d]); a static VIP must not be handed out to Services", s.VIP, pool.Name, pi)})
				}
			}
		}
	}
}
