package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func designHost(t *testing.T) (*Host, *Config, json.RawMessage) {
	t.Helper()
	path := writeConfig(t, designExample)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := SpecFromFile(path, data)
	if err != nil {
		t.Fatal(err)
	}
	return NewHost(path, data, filepath.Dir(path)), cfg, spec
}

func TestSpecFromFileRoundTrips(t *testing.T) {
	h, want, spec := designHost(t)
	var keys map[string]any
	if err := json.Unmarshal(spec, &keys); err != nil {
		t.Fatal(err)
	}
	for k := range keys {
		if !IsClusterField(k) {
			t.Errorf("spec has host-local key %q", k)
		}
	}
	if _, ok := keys["pools"]; !ok {
		t.Errorf("spec has no pools: %s", spec)
	}
	got, err := h.Apply(spec)
	if err != nil {
		t.Fatalf("the file's own spec is refused: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Apply(spec of the file) =\n%+v\nwant the file's config\n%+v", got, want)
	}
}

func TestSpecErrorsMatchCheck(t *testing.T) {
	h, _, _ := designHost(t)
	for _, tc := range []struct {
		name, spec, field, msg string
	}{
		{"bad range", `{"pools":[{"name":"a","addresses":["192.0.2.1-192.0.2.9"]},{"name":"b","addresses":["nonsense"]}]}`,
			"spec.pools[1].addresses[0]", "is not an address"},
		{"overlap", `{"pools":[{"name":"a","addresses":["192.0.2.0/24"]},{"name":"b","addresses":["192.0.2.10-192.0.2.20"]}]}`,
			"spec.pools[1].addresses[0]", `overlaps 192.0.2.0-192.0.2.255 of pool "a"`},
		{"unknown key in a pool", `{"pools":[{"name":"a","adresses":["192.0.2.0/24"]}]}`,
			"spec.pools[0].adresses", "unknown key (known keys here:"},
		{"unknown top-level key", `{"node":{"name":"x"}}`, "spec.node", "unknown key (known keys here: backendStates, bgp, dataplane"},
		{"host-local bgp key", `{"bgp":{"asn":65000,"routerID":"10.0.0.1"}}`, "spec.bgp.routerID", "belongs to one host"},
		{"bad duration", `{"healthCheck":{"interval":"soon"}}`, "spec.healthCheck.interval", `"soon" is not a duration`},
		{"not an object", `[1,2]`, "spec", "must be a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.Apply(json.RawMessage(tc.spec))
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("Apply = %v, want Errors", err)
			}
			for _, e := range es {
				if e.Field == tc.field && strings.Contains(e.Msg, tc.msg) {
					return
				}
			}
			t.Errorf("Apply errors = %v, want %s: ...%s...", err, tc.field, tc.msg)
		})
	}
}

// The messages are edgelb check's: the same spec written in a file gives
// the same message for the same field without the spec. prefix.
func TestSpecMessagesAreCheckMessages(t *testing.T) {
	h, _, _ := designHost(t)
	bad := strings.Replace(designExample, `"192.0.2.10-192.0.2.50"`, `"192.0.2.50-192.0.2.10"`, 1)
	_, fileErr := Load(writeConfig(t, bad))
	spec, err := SpecFromFile("x", []byte(bad))
	if err != nil {
		t.Fatal(err)
	}
	_, specErr := h.Apply(spec)
	fe, se := fileErr.(Errors), specErr.(Errors)
	if len(fe) != 1 || len(se) != 1 {
		t.Fatalf("file errors %v, spec errors %v: want one each", fileErr, specErr)
	}
	if se[0].Field != "spec."+fe[0].Field || se[0].Msg != fe[0].Msg {
		t.Errorf("spec error %q: %q, file error %q: %q", se[0].Field, se[0].Msg, fe[0].Field, fe[0].Msg)
	}
}

func TestCanonicalSpec(t *testing.T) {
	a, err := CanonicalSpec([]byte(`{ "pools": [], "dataplane": {"scheduler":"rr"} }`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := CanonicalSpec([]byte("dataplane: {scheduler: rr}\npools: []\nnode: {name: x}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) || string(a) != `{"dataplane":{"scheduler":"rr"},"pools":[]}` {
		t.Errorf("canonical forms %s and %s", a, b)
	}
}

func TestNamedTokens(t *testing.T) {
	base := "node: {name: lb1}\ncluster: {insecure: true}\napi:\n  tokens:\n"
	cfg, err := Parse("t.yaml", []byte(base+`    admin: ["0123456789abcdef0123", {name: ci, token: "ci-token-0123456789"}]
    viewer: [{name: grafana, token: "grafana-0123456789ab"}]
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []NamedToken{{"admin#1", "admin", "0123456789abcdef0123"}, {"ci", "admin", "ci-token-0123456789"}, {"grafana", "viewer", "grafana-0123456789ab"}}
	if !reflect.DeepEqual(cfg.API.Named, want) {
		t.Errorf("named tokens %+v", cfg.API.Named)
	}
	if got := cfg.API.Tokens["admin"]; len(got) != 2 || got[1] != "ci-token-0123456789" {
		t.Errorf("admin tokens %v", got)
	}
	for _, tc := range []struct{ tokens, field, msg string }{
		{`admin: [{name: ci, token: "ci-token-0123456789"}, {name: ci, token: "ci-token-9876543210"}]`, "api.tokens.admin[1].name", `"ci" is already the name of api.tokens.admin[0]`},
		{`admin: [{token: "ci-token-0123456789"}]`, "api.tokens.admin[0].name", "needs a name"},
		{`admin: [{name: "a b", token: "ci-token-0123456789"}]`, "api.tokens.admin[0].name", "must not contain spaces"},
		{`admin: [{name: ci, token: short}]`, "api.tokens.admin[0]", "at least 16 characters"},
		{`admin: [{name: ci, secret: "ci-token-0123456789"}]`, "api.tokens.admin[0].secret", "unknown key"},
	} {
		_, err := Parse("t.yaml", []byte(base+"    "+tc.tokens+"\n"))
		var es Errors
		if !errors.As(err, &es) || !slices.ContainsFunc(es, func(e *FieldError) bool { return e.Field == tc.field && strings.Contains(e.Msg, tc.msg) }) {
			t.Errorf("%s: %v, want %s: %s", tc.tokens, err, tc.field, tc.msg)
		}
	}
}

func TestBackendStates(t *testing.T) {
	h, _, _ := designHost(t)
	cfg, err := h.Apply(json.RawMessage(`{"backendStates":[{"service":"_static/dns","backend":"10.0.1.5:53","state":"drain"},{"service":"demo/web","backend":"[2001:db8::7]:8080","state":"disable"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.BackendStates) != 2 || cfg.BackendStates[0].State != BackendDrain || cfg.BackendStates[1].Backend.String() != "[2001:db8::7]:8080" {
		t.Errorf("backend states %+v", cfg.BackendStates)
	}
	for _, tc := range []struct{ spec, field, msg string }{
		{`[{"service":"dns","backend":"10.0.1.5:53","state":"drain"}]`, "spec.backendStates[0].service", "is not namespace/name"},
		{`[{"service":"_static/dns","backend":"10.0.1.5","state":"drain"}]`, "spec.backendStates[0].backend", "is not an address:port"},
		{`[{"service":"_static/dns","backend":"10.0.1.5:53","state":"off"}]`, "spec.backendStates[0].state", `"off" is not one of drain, disable`},
		{`[{"service":"_static/dns","backend":"10.0.1.5:53"}]`, "spec.backendStates[0].state", "required"},
		{`[{"service":"_static/dns","backend":"10.0.1.5:53","state":"drain"},{"service":"_static/dns","backend":"10.0.1.5:53","state":"disable"}]`, "spec.backendStates[1]", "already given"},
	} {
		_, err := h.Apply(json.RawMessage(`{"backendStates":` + tc.spec + `}`))
		var es Errors
		if !errors.As(err, &es) || !slices.ContainsFunc(es, func(e *FieldError) bool { return e.Field == tc.field && strings.Contains(e.Msg, tc.msg) }) {
			t.Errorf("%s: %v, want %s: %s", tc.spec, err, tc.field, tc.msg)
		}
	}
}

// BenchmarkSpecAtScale: the cluster configuration of 1,000 static
// services (two ports, three backends and two source ranges each) and ten
// pools: its size as replicated (canonical JSON) and the time to check a
// version of it (canonical form and the validation of `edgelb check`),
// which every member does for each version it takes.
func BenchmarkSpecAtScale(b *testing.B) {
	var y strings.Builder
	y.WriteString("pools:\n")
	for p := range 10 {
		fmt.Fprintf(&y, "  - {name: pool%d, addresses: [\"10.%d.0.0/16\"]}\n", p, 100+p)
	}
	y.WriteString("services:\n")
	for i := range 1000 {
		fmt.Fprintf(&y, "  - {name: svc%d, vip: 192.0.%d.%d, ports: [{port: 80, targetPort: 30080}, {port: 443, targetPort: 30443}], backends: [10.0.%d.1, 10.0.%d.2, 10.0.%d.3], sourceRanges: [10.0.0.0/8, 192.168.0.0/16]}\n",
			i, 2+i/250, 1+i%250, i%250, i%250, i%250)
	}
	host := fmt.Sprintf("node: {name: lb1, interface: eth0}\ncluster: {bindAddr: 10.0.0.11, insecure: true}\n")
	dir := b.TempDir()
	path := filepath.Join(dir, "config.yaml")
	data := []byte(host + y.String())
	if err := os.WriteFile(path, data, 0o600); err != nil {
		b.Fatal(err)
	}
	spec, err := SpecFromFile(path, data)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		// A new Host each time: its cache would answer a second Apply.
		h := NewHost(path, data, dir)
		canon, err := CanonicalSpec(spec)
		if err != nil {
			b.Fatal(err)
		}
		cfg, err := h.Apply(canon)
		if err != nil {
			b.Fatal(err)
		}
		if len(cfg.Services) != 1000 {
			b.Fatalf("%d services", len(cfg.Services))
		}
	}
	b.ReportMetric(float64(len(spec)), "spec-bytes")
}

// A spec is parsed once per Host: the same content, valid or not, is
// answered from the cache with the same result.
func TestApplyIsCachedByContent(t *testing.T) {
	h, _, spec := designHost(t)
	a, err := h.Apply(spec)
	if err != nil {
		t.Fatal(err)
	}
	b, err := h.Apply(slices.Clone(spec))
	if err != nil || a != b {
		t.Fatalf("second Apply: %p %v, want the first result %p", b, err, a)
	}
	bad := json.RawMessage(`{"pools":[{"name":"x","addresses":["nonsense"]}]}`)
	_, err1 := h.Apply(bad)
	_, err2 := h.Apply(bad)
	if err1 == nil || err2 == nil || err1.Error() != err2.Error() {
		t.Fatalf("a bad spec: %v, then %v", err1, err2)
	}
	if n := h.Parses(); n != 2 {
		t.Errorf("%d parses for two specs asked twice each, want 2", n)
	}
	for i := range hostCacheSize + 1 {
		h.Apply(json.RawMessage(fmt.Sprintf(`{"services":[],"pools":[{"name":"p%d","addresses":["192.0.2.%d/32"]}]}`, i, i+1)))
	}
	if len(h.cache) > hostCacheSize {
		t.Errorf("the cache holds %d results, more than %d", len(h.cache), hostCacheSize)
	}
}
