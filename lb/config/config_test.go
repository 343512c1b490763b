package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go4.org/netipx"
)

// The example of DESIGN.md must stay valid.
const designExample = `node: {name: lb1, interface: eth0}
cluster:
  bindAddr: 10.0.0.11
  bindPort: 7946
  join: ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
  secretKeyFile: gossip.key   # or insecure: true to run without
kubernetes: {kubeconfig: /etc/edgelb/kubeconfig, loadBalancerClass: edgelb.io/lb, defaultClass: true}
pools:
  - {name: default, addresses: ["192.0.2.10-192.0.2.50", "2001:db8:1::/120"], autoAssign: true}
dataplane: {backend: ipvs, mode: nodeport, method: nat, scheduler: rr}
healthCheck: {interval: 2s, timeout: 1s, rise: 2, fall: 2}
api:
  listen: "127.0.0.1:9080"
  tokens: {admin: ["0123456789abcdef0123"], viewer: ["fedcba9876543210fedc"]}
services:
  - name: dns
    vip: 192.0.2.53
    ports: [{port: 53, protocol: UDP}]
    backends: ["10.0.1.5:53", "10.0.1.6:53"]
`

const testKey = "c2VjcmV0LWtleS0zMi1ieXRlcy1sb25nLS0tLS0tLS0=" // 32 bytes

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "gossip.key"), []byte(testKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDesignExampleIsValid(t *testing.T) {
	cfg, err := Load(writeConfig(t, designExample))
	if err != nil {
		t.Fatalf("the DESIGN.md example is refused:\n%v", err)
	}
	if cfg.Node.Name != "lb1" || cfg.Node.Interface != "eth0" {
		t.Errorf("node = %+v", cfg.Node)
	}
	if cfg.Cluster.BindAddr != netip.MustParseAddr("10.0.0.11") || len(cfg.Cluster.Join) != 3 || len(cfg.Cluster.SecretKey) != 32 {
		t.Errorf("cluster = %+v", cfg.Cluster)
	}
	if k := cfg.Kubernetes; k == nil || !k.DefaultClass || k.LoadBalancerClass != "edgelb.io/lb" || k.LeaseNamespace != "kube-system" {
		t.Errorf("kubernetes = %+v", k)
	}
	if len(cfg.Pools) != 1 || len(cfg.Pools[0].Ranges) != 2 || !cfg.Pools[0].AutoAssign {
		t.Fatalf("pools = %+v", cfg.Pools)
	}
	if r := cfg.Pools[0].Ranges[1]; r.From() != netip.MustParseAddr("2001:db8:1::") || r.To() != netip.MustParseAddr("2001:db8:1::ff") {
		t.Errorf("IPv6 range = %s", r)
	}
	if cfg.Dataplane != (Dataplane{BackendIPVS, ModeNodePort, MethodNAT, "rr", true, NATSourceVIP, 5 * time.Minute}) {
		t.Errorf("dataplane = %+v", cfg.Dataplane)
	}
	if cfg.HealthCheck != (HealthCheck{2 * time.Second, time.Second, 2, 2}) {
		t.Errorf("healthCheck = %+v", cfg.HealthCheck)
	}
	s := cfg.Services[0]
	if s.Name != "dns" || s.VIP != netip.MustParseAddr("192.0.2.53") || s.Ports[0] != (StaticPort{53, "UDP", 0}) || len(s.Backends) != 2 {
		t.Errorf("services = %+v", cfg.Services)
	}
}

// The Events' rate limit is its own, with defaults apart from the
// status writes'.
func TestKubernetesRateLimits(t *testing.T) {
	cfg, err := Parse("config.yaml", []byte("cluster: {insecure: true}\nkubernetes: {kubeconfig: k}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if k := cfg.Kubernetes; k.QPS != DefaultQPS || k.Burst != DefaultBurst || k.EventQPS != DefaultEventQPS || k.EventBurst != DefaultEventBurst {
		t.Errorf("defaults: %+v", k)
	}
	cfg, err = Parse("config.yaml", []byte("cluster: {insecure: true}\nkubernetes: {kubeconfig: k, qps: 40, burst: 80, eventQPS: 2.5, eventBurst: 5}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if k := cfg.Kubernetes; k.QPS != 40 || k.Burst != 80 || k.EventQPS != 2.5 || k.EventBurst != 5 {
		t.Errorf("set: %+v", k)
	}
}

// api.backendSeriesLimit defaults to 10,000 backends; 0 turns the
// per-backend series off; a negative number is refused.
func TestBackendSeriesLimit(t *testing.T) {
	for _, c := range []struct {
		yaml string
		want int
	}{{"", DefaultBackendSeriesLimit}, {"api: {backendSeriesLimit: 0}\n", 0}, {"api: {backendSeriesLimit: 250000}\n", 250000}} {
		cfg, err := Parse("config.yaml", []byte("cluster: {insecure: true}\n"+c.yaml))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.API.BackendSeriesLimit != c.want {
			t.Errorf("%q: limit %d, want %d", c.yaml, cfg.API.BackendSeriesLimit, c.want)
		}
	}
	if _, err := Parse("config.yaml", []byte("cluster: {insecure: true}\napi: {backendSeriesLimit: -1}\n")); err == nil || !strings.Contains(err.Error(), "api.backendSeriesLimit: -1 is out of range") {
		t.Errorf("a negative limit: %v", err)
	}
}

// node.memoryLimit is a size in Kubernetes' units; none by default; a bad
// size or one the collector could not live with is refused.
func TestMemoryLimit(t *testing.T) {
	for _, c := range []struct {
		yaml string
		want int64
	}{{"", 0}, {"node: {memoryLimit: 200Mi}\n", 200 << 20}, {"node: {memoryLimit: 1Gi}\n", 1 << 30}, {"node: {memoryLimit: 150M}\n", 150e6}} {
		cfg, err := Parse("config.yaml", []byte("cluster: {insecure: true}\n"+c.yaml))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Node.MemoryLimit != c.want {
			t.Errorf("%q: limit %d, want %d", c.yaml, cfg.Node.MemoryLimit, c.want)
		}
	}
	for yaml, want := range map[string]string{
		"node: {memoryLimit: lots}\n": `config.yaml:2: node.memoryLimit: "lots" is not a size like 200Mi or 1Gi`,
		"node: {memoryLimit: 16Mi}\n": `node.memoryLimit: 16Mi is below 32Mi`,
	} {
		if _, err := Parse("config.yaml", []byte("cluster: {insecure: true}\n"+yaml)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %s", yaml, err, want)
		}
	}
}

func TestPackagedConfigIsValid(t *testing.T) {
	path := filepath.Join("..", "..", "packaging", "config.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The packaged file names /etc/edgelb/gossip.key; point it at a test key.
	content := strings.ReplaceAll(string(data), "/etc/edgelb/gossip.key", "gossip.key")
	if _, err := Load(writeConfig(t, content)); err != nil {
		t.Fatalf("packaging/config.yaml is refused:\n%v", err)
	}
}

// The example files of docs/operations.md are accepted as written, and the
// complete one has every part it claims to show.
func TestOperationsExamplesAreValid(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(data), -1)
	complete := 0
	for i, m := range blocks {
		// The blocks are indented under their list item.
		var lines []string
		for _, l := range strings.Split(m[1], "\n") {
			lines = append(lines, strings.TrimPrefix(l, "   "))
		}
		content := strings.ReplaceAll(strings.Join(lines, "\n"), "/etc/edgelb/gossip.key", "gossip.key")
		cfg, err := Load(writeConfig(t, content))
		if err != nil {
			t.Errorf("docs/operations.md's yaml block %d is refused:\n%v\n%s", i+1, err, content)
			continue
		}
		if cfg.Kubernetes != nil && len(cfg.Pools) > 0 && cfg.API.TLS != nil && len(cfg.API.Tokens["admin"]) > 0 && len(cfg.API.Hosts) > 0 {
			complete++
		}
	}
	if len(blocks) == 0 || complete == 0 {
		t.Errorf("docs/operations.md has %d yaml blocks and no complete example (kubernetes, pools, api with hosts, tls and tokens)", len(blocks))
	}
}

// Each bad file is refused with a message naming the file, the line and
// the field.
func TestBadConfigs(t *testing.T) {
	base := "cluster: {insecure: true}\n"
	cases := []struct {
		name, yaml, want string
	}{
		{"unknown top-level key", base + "pool: []\n", `config.yaml:2: pool: unknown key`},
		{"unknown nested key", base + "dataplane: {backend: ipvs, moed: nat}\n", `config.yaml:2: dataplane.moed: unknown key`},
		{"bad CIDR", base + "pools:\n  - name: a\n    addresses: [\"192.0.2.0/33\"]\n", `config.yaml:4: pools[0].addresses[0]: "192.0.2.0/33" is not a CIDR`},
		{"host bits", base + "pools:\n  - {name: a, addresses: [192.0.2.1/24]}\n", `did you mean 192.0.2.0/24`},
		{"bad range", base + "pools:\n  - {name: a, addresses: [192.0.2.9-192.0.2.1]}\n", `ends before it starts`},
		{"IPv6 in an IPv4 range", base + "pools:\n  - {name: a, addresses: [\"192.0.2.1-2001:db8::1\"]}\n", `config.yaml:3: pools[0].addresses[0]: "192.0.2.1-2001:db8::1" mixes IPv4 and IPv6`},
		{"IPv6 backend for an IPv4 VIP", base + "services:\n  - name: s\n    vip: 192.0.2.1\n    ports: [{port: 80}]\n    backends: [\"[2001:db8::1]:80\"]\n", `config.yaml:6: services[0].backends[0]: [2001:db8::1]:80 is not of the VIP's address family`},
		{"overlapping pools", base + "pools:\n  - {name: a, addresses: [192.0.2.0/24]}\n  - {name: b, addresses: [192.0.2.100-192.0.2.110]}\n", `config.yaml:4: pools[1].addresses[0]: 192.0.2.100-192.0.2.110 overlaps 192.0.2.0-192.0.2.255 of pool "a"`},
		{"duplicate pool", base + "pools:\n  - {name: a, addresses: [192.0.2.1]}\n  - {name: a, addresses: [192.0.2.2]}\n", `pool "a" is defined twice`},
		{"missing key file", "cluster: {secretKeyFile: /nonexistent/gossip.key}\n", `config.yaml:1: cluster.secretKeyFile: cannot read the gossip key`},
		{"no key, not insecure", "node: {name: a}\n", `cluster.secretKeyFile: gossip must be encrypted`},
		{"bad duration", base + "healthCheck: {interval: 2 seconds}\n", `config.yaml:2: healthCheck.interval: "2 seconds" is not a duration`},
		{"bad enum", base + "dataplane: {method: snat}\n", `config.yaml:2: dataplane.method: "snat" is not one of nat, dr, tunnel`},
		{"nftables planned", base + "dataplane: {backend: nftables}\n", `nftables dataplane is planned but not available yet`},
		{"bad scheduler", base + "dataplane: {scheduler: fast}\n", `"fast" is not one of rr, wrr`},
		{"bad eventQPS", base + "kubernetes: {eventQPS: 0}\n", `config.yaml:2: kubernetes.eventQPS: "0" is not a positive number`},
		{"misspelled section", base + "cluster2: 1\n", `cluster2: unknown key`},
		{"bad port", "cluster: {insecure: true, bindPort: 70000}\n", `config.yaml:1: cluster.bindPort: 70000 is out of range`},
		{"not a bool", "cluster: {insecure: maybe}\n", `cluster.insecure: "maybe" is not true or false`},
		{"list instead of map", base + "dataplane: [ipvs]\n", `config.yaml:2: dataplane: must be a mapping`},
		{"short token", base + "api: {tokens: {admin: [short]}}\n", `api.tokens.admin[0]: tokens must be at least 16 characters`},
		{"unknown role", base + "api: {tokens: {root: [0123456789abcdef0]}}\n", `api.tokens.root: unknown key`},
		{"one token in two roles", base + "api: {tokens: {admin: [0123456789abcdef0], viewer: [{name: ci, token: 0123456789abcdef0}]}}\n", `api.tokens.viewer[0]: the same token as api.tokens.admin[0]: every token must be different`},
		{"bad listen", base + "api: {listen: localhost}\n", `api.listen: "localhost" is not host:port`},
		{"listen off loopback without tokens", base + "api: {listen: \"0.0.0.0:9080\"}\n", `config.yaml:2: api.listen: "0.0.0.0:9080" is reachable from other hosts: set api.tokens`},
		{"listen on all interfaces without tokens", base + "api:\n  listen: \":9080\"\n", `config.yaml:3: api.listen: ":9080" is reachable from other hosts`},
		{"static VIP in pool", base + "pools:\n  - {name: a, addresses: [192.0.2.0/24]}\nservices:\n  - {name: s, vip: 192.0.2.5, ports: [{port: 80}]}\n", `services[0].vip: 192.0.2.5 is inside pool "a"`},
		{"bad source range", base + "services:\n  - name: s\n    vip: 192.0.2.5\n    ports: [{port: 80}]\n    sourceRanges: [10.0.0.0/8, 10.0.0.300/8]\n", `config.yaml:6: services[0].sourceRanges[1]: "10.0.0.300/8" is not a CIDR`},
		{"source range not a list", base + "services:\n  - {name: s, vip: 192.0.2.5, ports: [{port: 80}], sourceRanges: 10.0.0.0/8}\n", `config.yaml:3: services[0].sourceRanges: must be a list`},
		{"source range without length", base + "services:\n  - {name: s, vip: 192.0.2.5, ports: [{port: 80}], sourceRanges: [10.0.0.1]}\n", `services[0].sourceRanges[0]: "10.0.0.1" is not a CIDR`},
		{"static without ports", base + "services:\n  - {name: s, vip: 192.0.2.5}\n", `services[0].ports: a static service needs at least one port`},
		{"bad YAML", "node: {name: [\n", `config.yaml:`},
		{"duplicate key", base + "node: {name: a}\nnode: {name: b}\n", `config.yaml:3: node: key given twice`},
		{"timeout not below interval", base + "healthCheck: {interval: 1s, timeout: 1s}\n", `healthCheck.timeout: 1s must be shorter than the interval`},
		{"static method", base + "services:\n  - name: s\n    vip: 192.0.2.5\n    ports: [{port: 80}]\n" + "    method: fullnat\n", `config.yaml:6: services[0].method: "fullnat" is not one of nat, dr, tunnel`},
		{"static dr without interface", base + "services:\n  - name: s\n    vip: 192.0.2.5\n    ports: [{port: 80}]\n" + "    method: dr\n", `services[0].method: method dr needs node.interface`},
		{"static check type", base + "services:\n  - name: s\n    vip: 192.0.2.5\n    ports: [{port: 80}]\n" + "    healthCheck: {type: icmp}\n", `config.yaml:6: services[0].healthCheck.type: "icmp" is not one of tcp, http, none`},
		{"static check path", base + "services:\n  - name: s\n    vip: 192.0.2.5\n    ports: [{port: 80}]\n" + "    healthCheck: {type: http, path: ready}\n", `config.yaml:6: services[0].healthCheck.path: "ready" must start with /`},
		{"static path without http", base + "services:\n  - name: s\n    vip: 192.0.2.5\n    ports: [{port: 80}]\n" + "    healthCheck: {path: /ready}\n", `services[0].healthCheck.path: only an http check has a path`},
		{"static check port", base + "services:\n  - name: s\n    vip: 192.0.2.5\n    ports: [{port: 80}]\n" + "    healthCheck: {port: 0}\n", `services[0].healthCheck.port: 0 is out of range`},
		{"static check rise", base + "services:\n  - name: s\n    vip: 192.0.2.5\n    ports: [{port: 80}]\n" + "    healthCheck: {rise: 0}\n", `services[0].healthCheck.rise: 0 is out of range`},
		{"static check timeout", base + "healthCheck: {interval: 2s, timeout: 1s}\n" + "services:\n  - name: s\n    vip: 192.0.2.5\n    ports: [{port: 80}]\n" + "    healthCheck: {timeout: 3s}\n", `services[0].healthCheck.timeout: 3s must be shorter than the interval 2s`},
		{"static check interval", base + "services:\n  - name: s\n    vip: 192.0.2.5\n    ports: [{port: 80}]\n" + "    healthCheck: {interval: 2h}\n", `services[0].healthCheck.interval: 2h0m0s is out of range`},
		{"static max connections", base + "services:\n  - name: s\n    vip: 192.0.2.5\n    ports: [{port: 80}]\n" + "    maxConnectionsPerBackend: -1\n", `config.yaml:6: services[0].maxConnectionsPerBackend: -1 is out of range`},
		{"data-path target", base + "node:\n  dataPath: {targets: [10.0.0.1, gateway]}\n", `config.yaml:3: node.dataPath.targets[1]: "gateway" is not a unicast IP address`},
		{"data-path multicast target", base + "node: {dataPath: {targets: [\"ff02::1\"]}}\n", `node.dataPath.targets[0]: "ff02::1" is not a unicast IP address`},
		{"data-path timeout", base + "node: {dataPath: {interval: 200ms, timeout: 300ms}}\n", `node.dataPath.timeout: 300ms must be shorter than the interval 200ms`},
		{"data-path fall", base + "node: {dataPath: {fall: 0}}\n", `node.dataPath.fall: 0 is out of range`},
		{"static mode is not a field", base + "services:\n  - name: s\n    vip: 192.0.2.5\n    ports: [{port: 80}]\n" + "    mode: direct\n", `services[0].mode: unknown key`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { refused(t, c.yaml, c.want) })
	}
}

// refused checks that the config content is refused with an error that
// contains want (file paths made relative).
func refused(t *testing.T, content, want string) {
	t.Helper()
	path := writeConfig(t, content)
	_, err := Load(path)
	if err == nil {
		t.Fatalf("accepted:\n%s", content)
	}
	msg := strings.ReplaceAll(err.Error(), filepath.Dir(path)+"/", "")
	if !strings.Contains(msg, want) {
		t.Errorf("error\n  %s\ndoes not contain\n  %s", msg, want)
	}
}

// Static services' source ranges are parsed into masked prefixes.
func TestStaticSourceRanges(t *testing.T) {
	cfg, err := Load(writeConfig(t, "cluster: {insecure: true}\nservices:\n  - name: s\n    vip: 192.0.2.5\n    ports: [{port: 80}]\n    sourceRanges: [10.0.0.1/8, \"2001:db8::1/32\", 198.51.100.7/32]\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("198.51.100.7/32")}
	if got := cfg.Services[0].SourceRanges; !slices.Equal(got, want) {
		t.Errorf("sourceRanges = %v, want %v", got, want)
	}
}

// Every problem is reported, not just the first.
func TestAllErrorsReported(t *testing.T) {
	_, err := Load(writeConfig(t, "cluster: {insecure: true}\ndataplane: {mode: fast, method: slow}\nfoo: 1\n"))
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 3 {
		t.Fatalf("want 3 errors, got %v", err)
	}
}

func TestParseRange(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.0/30":              "192.0.2.0-192.0.2.3",
		"192.0.2.7":                 "192.0.2.7-192.0.2.7",
		"192.0.2.1 - 192.0.2.9":     "192.0.2.1-192.0.2.9",
		"2001:db8::/126":            "2001:db8::-2001:db8::3",
		"2001:db8::1-2001:db8::1:0": "2001:db8::1-2001:db8::1:0",
	} {
		r, err := ParseRange(in)
		if err != nil || r.String() != want {
			t.Errorf("ParseRange(%q) = %s, %v; want %s", in, r, err, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(designExample))
	f.Add([]byte(bgpExample))
	f.Add([]byte("cluster: {insecure: true}\npools: [{name: a, addresses: [192.0.2.0/24, 2001:db8::/64]}]\n"))
	f.Add([]byte("services: [{name: s, vip: 192.0.2.1, ports: [{port: 1, protocol: SCTP}], backends: [10.0.0.1]}]"))
	f.Add([]byte("a: &x {b: *x}"))
	f.Add([]byte("- 1\n- 2"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := parse("fuzz.yaml", data, "/nonexistent", func(string) ([]byte, error) { return []byte(testKey), nil })
		if (cfg == nil) == (err == nil) {
			t.Fatalf("want exactly one of a config or an error, got %v and %v", cfg, err)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "fuzz.yaml") {
			t.Fatalf("error does not name the file: %v", err)
		}
	})
}

func TestManaged(t *testing.T) {
	c := &Config{
		Pools:    []Pool{{Name: "a", Ranges: []netipx.IPRange{netipx.MustParseIPRange("192.0.2.10-192.0.2.20")}}},
		Services: []StaticService{{Name: "web", VIP: netip.MustParseAddr("198.51.100.7")}},
	}
	m := c.Managed()
	for a, want := range map[string]bool{"192.0.2.10": true, "192.0.2.20": true, "192.0.2.21": false, "198.51.100.7": true, "198.51.100.8": false, "10.0.0.1": false} {
		if got := m.Contains(netip.MustParseAddr(a)); got != want {
			t.Errorf("Managed().Contains(%s) = %v, want %v", a, got, want)
		}
	}
	if PoolSet(c.Pools).Contains(netip.MustParseAddr("198.51.100.7")) {
		t.Error("a static VIP is in the pool set")
	}
}

func TestAPIExposure(t *testing.T) {
	base := "cluster: {insecure: true}\n"
	tok := "{admin: [0123456789abcdef0]}"
	for _, c := range []struct {
		api     string
		warning string // "" for none
	}{
		{"api: {listen: \"127.0.0.1:9080\"}", ""},
		{"api: {listen: \"[::1]:9080\"}", ""},
		{"api: {listen: \"localhost:9080\"}", ""},
		{"api: {listen: \"10.0.0.11:9080\", tokens: " + tok + "}", `api.listen "10.0.0.11:9080" is reachable from other hosts without api.tls`},
		{"api: {listen: \"10.0.0.11:9080\", tokens: " + tok + ", tls: {certFile: /c, keyFile: /k}}", ""},
	} {
		cfg, err := Load(writeConfig(t, base+c.api+"\n"))
		if err != nil {
			t.Fatalf("%s: %v", c.api, err)
		}
		w := strings.Join(cfg.Warnings(), "\n")
		if c.warning == "" && w != "" || !strings.Contains(w, c.warning) {
			t.Errorf("%s: warnings %q, want %q", c.api, w, c.warning)
		}
	}
}

// A static service's own method, health check and connection limit.
func TestStaticServiceChoices(t *testing.T) {
	cfg, err := Load(writeConfig(t, `node: {interface: eth0}
cluster: {insecure: true}
services:
  - name: api
    vip: 192.0.2.5
    ports: [{port: 443}]
    backends: ["10.0.1.5:8443"]
    method: dr
    healthCheck: {type: http, port: 8080, path: /ready, interval: 5s, timeout: 2s, rise: 3, fall: 1}
    maxConnectionsPerBackend: 200
`))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Services[0]
	want := ServiceCheck{Type: CheckHTTP, Port: 8080, Path: "/ready", Interval: 5 * time.Second, Timeout: 2 * time.Second, Rise: 3, Fall: 1}
	if s.Method != MethodDR || s.HealthCheck == nil || *s.HealthCheck != want || s.MaxConnectionsPerBackend != 200 {
		t.Errorf("service = %+v, check %+v", s, s.HealthCheck)
	}
}

// A VIP or a pool range that no LAN can use is refused, naming the
// field, the address and what it is, with a fix; unicast addresses next
// to the refused blocks stay valid.
func TestVIPsMustBeLANUnicast(t *testing.T) {
	base := "cluster: {insecure: true}\n"
	vip := func(a string) string {
		return base + "services:\n  - {name: s, vip: \"" + a + "\", ports: [{port: 80}]}\n"
	}
	pool := func(r string) string { return base + "pools:\n  - {name: p, addresses: [\"" + r + "\"]}\n" }
	for _, tc := range []struct {
		name, file, want string
	}{
		{"multicast VIP", vip("ff0e::1"), `config.yaml:3: services[0].vip: ff0e::1 is a multicast address: a VIP must be a unicast address hosts on the LAN can reach (like 192.0.2.10 or 2001:db8::10)`},
		{"IPv4 multicast VIP", vip("239.1.2.3"), `services[0].vip: 239.1.2.3 is a multicast address`},
		{"loopback VIP", vip("127.0.0.53"), `services[0].vip: 127.0.0.53 is a loopback address`},
		{"IPv6 loopback VIP", vip("::1"), `services[0].vip: ::1 is the loopback address`},
		{"link-local VIP", vip("169.254.1.1"), `services[0].vip: 169.254.1.1 is a link-local address`},
		{"IPv6 link-local VIP", vip("fe80::1"), `services[0].vip: fe80::1 is a link-local address`},
		{"unspecified VIP", vip("0.0.0.0"), `services[0].vip: 0.0.0.0 is an unspecified (this-network) address`},
		{"IPv6 unspecified VIP", vip("::"), `services[0].vip: :: is the unspecified address`},
		{"broadcast VIP", vip("255.255.255.255"), `services[0].vip: 255.255.255.255 is the broadcast address`},
		{"IPv4-mapped VIP", vip("::ffff:192.0.2.1"), `services[0].vip: ::ffff:192.0.2.1 is an IPv4-mapped IPv6 address`},
		{"pool over loopback", pool("126.255.255.250-127.0.0.5"), `config.yaml:3: pools[0].addresses[0]: "126.255.255.250-127.0.0.5" includes 127.0.0.0, a loopback address (127.0.0.0/8): a pool may hold only unicast addresses hosts on the LAN can reach; leave 127.0.0.0/8 out`},
		{"multicast pool", pool("224.0.0.0/24"), `pools[0].addresses[0]: "224.0.0.0/24" includes 224.0.0.0, a multicast address (224.0.0.0/4)`},
		{"link-local pool", pool("fe80::/64"), `pools[0].addresses[0]: "fe80::/64" includes fe80::, a link-local address (fe80::/10)`},
		{"IPv4-mapped pool", pool("::ffff:192.0.2.0/120"), `pools[0].addresses[0]: "::ffff:192.0.2.0/120" includes ::ffff:192.0.2.0, an IPv4-mapped IPv6 address (::ffff:0.0.0.0/96)`},
		{"pool over the broadcast address", pool("255.255.255.0/24"), `includes 255.255.255.255, the broadcast address`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeConfig(t, tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v\nwant it to contain %s", err, tc.want)
			}
		})
	}
	for _, ok := range []string{vip("126.255.255.255"), vip("128.0.0.1"), vip("2001:db8::10"), vip("223.255.255.254"),
		pool("169.253.0.0/16"), pool("192.0.2.10-192.0.2.50"), pool("2001:db8:1::/120")} {
		if _, err := Load(writeConfig(t, ok)); err != nil {
			t.Errorf("a usable address is refused: %v", err)
		}
	}
}

// Durations that would make the daemon misbehave are refused with their
// bounds and the reason.
func TestDurationBounds(t *testing.T) {
	base := "cluster: {insecure: true, bindAddr: 10.0.0.11}\n"
	for _, tc := range []struct {
		name, file, want string
	}{
		{"health check every 10ms", base + "healthCheck: {interval: 10ms, timeout: 5ms}\n", `config.yaml:2: healthCheck.interval: 10ms is out of range: use 100ms to 1h0m0s (every backend is probed this often)`},
		{"health check timeout 1ms", base + "healthCheck: {interval: 1s, timeout: 1ms}\n", `healthCheck.timeout: 1ms is out of range: use 10ms to 1h0m0s`},
		{"drain of 100ms", base + "dataplane: {drainTimeout: 100ms}\n", `config.yaml:2: dataplane.drainTimeout: 100ms is out of range: use 1s to 24h0m0s`},
		{"withdraw delay past the stop timeout", base + "bgp: {asn: 64512, withdrawDelay: 40s, peers: [{address: 10.0.0.1, asn: 64500}]}\n", `bgp.withdrawDelay: 40s is out of range: use 1ms to 20s`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeConfig(t, tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v\nwant it to contain %s", err, tc.want)
			}
		})
	}
	if _, err := Load(writeConfig(t, base+"healthCheck: {interval: 100ms, timeout: 50ms}\ndataplane: {drainTimeout: 1s}\nbgp: {asn: 64512, withdrawDelay: 20s, peers: [{address: 10.0.0.1, asn: 64500}]}\n")); err != nil {
		t.Errorf("the bounds themselves are refused: %v", err)
	}
}

func TestDataPath(t *testing.T) {
	cfg, err := Load(writeConfig(t, "cluster: {insecure: true}\nnode: {interface: eth1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := DataPath{Enabled: true, Interval: 150 * time.Millisecond, Timeout: 100 * time.Millisecond, Fall: 3, Rise: 5}
	if got := cfg.Node.DataPath; !slices.Equal(got.Targets, nil) || got.Enabled != want.Enabled || got.Interval != want.Interval || got.Timeout != want.Timeout || got.Fall != want.Fall || got.Rise != want.Rise {
		t.Errorf("defaults %+v, want %+v", got, want)
	}
	cfg, err = Load(writeConfig(t, "cluster: {insecure: true}\nnode:\n  interface: eth1\n  dataPath: {enabled: false, targets: [192.0.2.1, \"2001:db8::1\"], interval: 1s, timeout: 500ms, fall: 2, rise: 10}\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Node.DataPath
	if got.Enabled || len(got.Targets) != 2 || got.Targets[1] != netip.MustParseAddr("2001:db8::1") || got.Interval != time.Second || got.Timeout != 500*time.Millisecond || got.Fall != 2 || got.Rise != 10 {
		t.Errorf("parsed %+v", got)
	}
}
