package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// ClusterKeys are the top-level keys of the cluster configuration: what
// must be the same on every host. The rest of the file (node, cluster,
// kubernetes, api, and bgp.routerID) belongs to one host.
var ClusterKeys = []string{"backendStates", "bgp", "dataplane", "healthCheck", "pools", "services"}

// hostBGPKeys are the keys of the bgp section that belong to one host.
var hostBGPKeys = []string{"routerID"}

// SpecName is the file name errors in a cluster configuration carry.
const SpecName = "cluster configuration"

// IsClusterField reports whether an error's field path (pools[1].addresses[0],
// bgp.peers[0].asn) lies in the cluster configuration.
func IsClusterField(field string) bool {
	top, _, _ := strings.Cut(field, ".")
	top, _, _ = strings.Cut(top, "[")
	if !slices.Contains(ClusterKeys, top) {
		return false
	}
	for _, k := range hostBGPKeys {
		if field == "bgp."+k || strings.HasPrefix(field, "bgp."+k+".") {
			return false
		}
	}
	return true
}

// SpecFromFile returns the cluster-wide keys of config file data as a
// canonical spec: a JSON object with the same keys and shapes as the
// file (durations stay strings like "2s", addresses stay strings).
func SpecFromFile(name string, data []byte) (json.RawMessage, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &FieldError{File: name, Line: yamlErrLine(err), Msg: fmt.Sprintf("not valid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))}
	}
	spec := map[string]any{}
	for _, k := range ClusterKeys {
		v, ok := doc[k]
		if !ok || v == nil {
			continue
		}
		if k == "bgp" {
			if m, ok := v.(map[string]any); ok {
				c := map[string]any{}
				for mk, mv := range m {
					if !slices.Contains(hostBGPKeys, mk) {
						c[mk] = mv
					}
				}
				v = c
			}
		}
		spec[k] = v
	}
	out, err := json.Marshal(spec)
	if err != nil {
		return nil, &FieldError{File: name, Msg: fmt.Sprintf("the cluster-wide keys cannot be written as JSON: %v", err)}
	}
	return out, nil
}

// CanonicalSpec checks that raw is one JSON object and returns it in
// canonical form (keys sorted, no insignificant space), so that equal
// specs have equal bytes. A YAML document is accepted too.
func CanonicalSpec(raw []byte) (json.RawMessage, error) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		// Not JSON: YAML (a spec file written by hand, or a whole
		// config file, whose cluster-wide keys are taken).
		var m map[string]any
		if yerr := yaml.Unmarshal(raw, &m); yerr != nil || m == nil {
			return nil, &FieldError{File: SpecName, Field: "spec", Msg: fmt.Sprintf("not a JSON or YAML object: %v", err)}
		}
		v, err := json.Marshal(StripHostKeys(m))
		if err != nil {
			return nil, &FieldError{File: SpecName, Field: "spec", Msg: fmt.Sprintf("cannot be written as JSON: %v", err)}
		}
		return CanonicalSpec(v)
	}
	if dec.More() {
		return nil, &FieldError{File: SpecName, Field: "spec", Msg: "more than one JSON value"}
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, &FieldError{File: SpecName, Field: "spec", Msg: "must be a JSON object"}
	}
	return json.Marshal(v)
}

// HostKeys are the top-level keys that belong to one host.
var HostKeys = []string{"node", "cluster", "kubernetes", "api"}

// StripHostKeys turns a whole config file's top-level mapping into a
// spec: it drops the host-local keys (HostKeys, bgp.routerID) and keeps
// every other key, so that a misspelt key is still refused. A document
// in the shape of GET /api/v1/config (version, spec, ...) gives its spec.
func StripHostKeys(m map[string]any) map[string]any {
	if spec, ok := m["spec"].(map[string]any); ok {
		if _, ok := m["version"]; ok {
			return spec
		}
	}
	out := map[string]any{}
	for k, v := range m {
		if slices.Contains(HostKeys, k) {
			continue
		}
		if bgp, ok := v.(map[string]any); ok && k == "bgp" {
			c := map[string]any{}
			for bk, bv := range bgp {
				if !slices.Contains(hostBGPKeys, bk) {
					c[bk] = bv
				}
			}
			v = c
		}
		out[k] = v
	}
	return out
}

// Host is the host-local part of a config file. A cluster configuration
// is validated and applied over it: the result is the Config this host
// runs, checked by the same rules, with the same messages, as
// `edgelb check`.
type Host struct {
	name     string
	data     []byte
	dir      string
	readFile readFileFunc

	// cache keeps the last results of Apply by the spec's content: a
	// version is parsed and checked once per host, whether the API's
	// dry run, the replication's validator or the running copy asks
	// first.
	mu     sync.Mutex
	cache  map[[sha256.Size]byte]applied
	order  [][sha256.Size]byte // oldest first
	parses int                 // Apply's parses, for tests
}

type applied struct {
	cfg *Config
	err error
}

// hostCacheSize is how many specs a Host keeps the result of: the
// running version, the one being proposed, and a few dry runs.
const hostCacheSize = 16

// NewHost keeps config file data (named name, its relative paths resolved
// against dir) to apply cluster configurations over.
func NewHost(name string, data []byte, dir string) *Host {
	return &Host{name: name, data: data, dir: dir, readFile: os.ReadFile}
}

// Apply validates spec over the host-local keys and returns the resulting
// Config. Its errors are Errors whose fields in the spec are prefixed with
// "spec." (spec.pools[1].addresses[0]); errors in host-local keys that the
// spec causes (node.interface for a method that needs it) keep their path.
//
// The result is cached by spec's content and shared: the Config must not
// be modified.
func (h *Host) Apply(spec json.RawMessage) (*Config, error) {
	key := sha256.Sum256(spec)
	h.mu.Lock()
	defer h.mu.Unlock()
	if r, ok := h.cache[key]; ok {
		return r.cfg, r.err
	}
	cfg, err := h.apply(spec)
	h.parses++
	if h.cache == nil {
		h.cache = map[[sha256.Size]byte]applied{}
	}
	if len(h.order) == hostCacheSize {
		delete(h.cache, h.order[0])
		h.order = h.order[1:]
	}
	h.cache[key] = applied{cfg, err}
	h.order = append(h.order, key)
	return cfg, err
}

// Parses is how many times Apply parsed a spec (not answered from its
// cache).
func (h *Host) Parses() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.parses
}

func (h *Host) apply(spec json.RawMessage) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(h.data, &root); err != nil {
		return nil, &FieldError{File: h.name, Line: yamlErrLine(err), Msg: fmt.Sprintf("not valid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))}
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		root = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}}
	}
	local := resolve(root.Content[0])
	if local.Kind != yaml.MappingNode {
		return nil, &FieldError{File: h.name, Msg: "must be a mapping"}
	}
	canon, err := CanonicalSpec(spec)
	if err != nil {
		return nil, Errors{err.(*FieldError)}
	}
	var sdoc yaml.Node
	if err := yaml.Unmarshal(canon, &sdoc); err != nil || len(sdoc.Content) == 0 || sdoc.Content[0].Kind != yaml.MappingNode {
		return nil, Errors{{File: SpecName, Field: "spec", Msg: "must be a JSON object"}}
	}
	snode := sdoc.Content[0]

	var errs Errors
	merged := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	var localBGP *yaml.Node
	for i := 0; i+1 < len(local.Content); i += 2 {
		k := resolve(local.Content[i])
		if k != nil && k.Kind == yaml.ScalarNode && slices.Contains(ClusterKeys, k.Value) {
			if k.Value == "bgp" {
				localBGP = resolve(local.Content[i+1])
			}
			continue
		}
		merged.Content = append(merged.Content, local.Content[i], local.Content[i+1])
	}
	for i := 0; i+1 < len(snode.Content); i += 2 {
		k, v := snode.Content[i], snode.Content[i+1]
		if !slices.Contains(ClusterKeys, k.Value) {
			errs = append(errs, &FieldError{File: SpecName, Field: "spec." + k.Value,
				Msg: fmt.Sprintf("unknown key (known keys here: %s)", strings.Join(ClusterKeys, ", "))})
			continue
		}
		if k.Value == "bgp" && v.Kind == yaml.MappingNode {
			bgp := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			for j := 0; j+1 < len(v.Content); j += 2 {
				if slices.Contains(hostBGPKeys, v.Content[j].Value) {
					errs = append(errs, &FieldError{File: SpecName, Field: "spec.bgp." + v.Content[j].Value,
						Msg: "belongs to one host: set it in that host's config file"})
					continue
				}
				bgp.Content = append(bgp.Content, v.Content[j], v.Content[j+1])
			}
			if localBGP != nil && localBGP.Kind == yaml.MappingNode {
				for j := 0; j+1 < len(localBGP.Content); j += 2 {
					if kk := resolve(localBGP.Content[j]); kk != nil && slices.Contains(hostBGPKeys, kk.Value) {
						bgp.Content = append(bgp.Content, localBGP.Content[j], localBGP.Content[j+1])
					}
				}
			}
			v = bgp
		}
		merged.Content = append(merged.Content, k, v)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	cfg, err := parseNode(h.name, &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{merged}}, h.dir, h.readFile)
	if err != nil {
		return nil, specErrors(err)
	}
	return cfg, nil
}

// specErrors moves the errors in cluster-wide keys under spec.
func specErrors(err error) error {
	var in Errors
	switch e := err.(type) {
	case Errors:
		in = e
	case *FieldError:
		in = Errors{e}
	default:
		return err
	}
	out := make(Errors, len(in))
	for i, e := range in {
		c := *e
		if IsClusterField(c.Field) {
			c.File, c.Line, c.Field = SpecName, 0, "spec."+c.Field
		}
		out[i] = &c
	}
	return out
}
