package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/api/apitest"
	"github.com/edgelb/edgelb/api/clustercfg"
	"github.com/edgelb/edgelb/cluster"
	"github.com/edgelb/edgelb/cluster/consensus"
	"github.com/edgelb/edgelb/lb/config"
)

const (
	aliceTok = "alice-token-0123456789"
	bobTok   = "bob-viewer-token-0123"
)

const hostFile = `node: {name: lb1}
cluster: {insecure: true}
pools:
  - {name: default, addresses: ["192.0.2.10-192.0.2.50"]}
services:
  - {name: dns, vip: 192.0.2.53, ports: [{port: 53, protocol: UDP}], backends: ["10.0.1.5:53"]}
`

// newConfigServer serves a cluster configuration seeded from hostFile, with
// the real validation and versions (no gossip).
func newConfigServer(t *testing.T) (*httptest.Server, *cluster.Docs) {
	t.Helper()
	return newConfigServerWith(t, nil, nil)
}

// newConfigServerWith is newConfigServer with the State (nil: the
// sample) and clustercfg.Config's Unreplicated given.
func newConfigServerWith(t *testing.T, state api.State, unreplicated error) (*httptest.Server, *cluster.Docs) {
	t.Helper()
	host := config.NewHost("config.yaml", []byte(hostFile), ".")
	docs, err := cluster.NewDocs(cluster.DocOptions{Name: "lb1", Validate: func(b []byte) error { _, err := host.Apply(b); return err }})
	if err != nil {
		t.Fatal(err)
	}
	spec, err := config.SpecFromFile("config.yaml", []byte(hostFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := docs.Seed(spec, "file"); err != nil {
		t.Fatal(err)
	}
	f := apitest.Sample()
	if state == nil {
		state = f
	}
	srv := httptest.NewServer(api.New(api.Options{State: state, Bus: f.Bus, Log: slog.New(slog.DiscardHandler),
		Tokens:      map[string][]string{"admin": {adminTok}, "viewer": {viewerTok}},
		NamedTokens: []api.Token{{Name: "alice", Role: "admin", Secret: aliceTok}, {Name: "bob", Role: "viewer", Secret: bobTok}},
		Config:      &clustercfg.Config{Versions: cluster.LocalDocs{Docs: docs}, Host: host, Unreplicated: unreplicated},
	}).Handler())
	t.Cleanup(srv.Close)
	return srv, docs
}

func doHeaders(t *testing.T, srv *httptest.Server, method, path, token, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	if method != "GET" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

const newSpec = `{"pools":[{"name":"default","addresses":["192.0.2.10-192.0.2.50"]}],"services":[{"name":"web","vip":"192.0.2.80","ports":[{"port":80}],"backends":["10.0.1.7:8080"]}]}`

func TestConfigGetPutHistoryRollbackAudit(t *testing.T) {
	srv, docs := newConfigServer(t)
	resp, body := doHeaders(t, srv, "GET", "/api/v1/config", viewerTok, "", nil)
	var doc api.ConfigDoc
	if err := json.Unmarshal([]byte(body), &doc); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET config: %d %s", resp.StatusCode, body)
	}
	if doc.Version != 1 || resp.Header.Get("ETag") != `"1"` || !strings.Contains(string(doc.Spec), `"pools":[{"addresses":["192.0.2.10-192.0.2.50"]`) {
		t.Errorf("GET config: ETag %s, %+v", resp.Header.Get("ETag"), doc)
	}

	// Without If-Match: 428. A viewer: 403. Stale: 409. Nothing changes.
	if resp, body := doHeaders(t, srv, "PUT", "/api/v1/config", aliceTok, newSpec, nil); resp.StatusCode != http.StatusPreconditionRequired {
		t.Errorf("PUT without If-Match: %d %s", resp.StatusCode, body)
	}
	if resp, body := doHeaders(t, srv, "PUT", "/api/v1/config", bobTok, newSpec, map[string]string{"If-Match": `"1"`}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("PUT with a viewer token: %d %s", resp.StatusCode, body)
	}
	if resp, body := doHeaders(t, srv, "PUT", "/api/v1/config", aliceTok, newSpec, map[string]string{"If-Match": `"7"`}); resp.StatusCode != http.StatusConflict {
		t.Errorf("PUT with a stale If-Match: %d %s", resp.StatusCode, body)
	}
	if docs.Version() != 1 {
		t.Fatalf("refused PUTs changed the version to %d", docs.Version())
	}

	// Dry run: the effect.
	resp, body = doHeaders(t, srv, "POST", "/api/v1/config/validate", aliceTok, newSpec, nil)
	var vr api.ValidateResult
	if err := json.Unmarshal([]byte(body), &vr); err != nil || !vr.Valid || vr.Effect == nil {
		t.Fatalf("validate: %d %s", resp.StatusCode, body)
	}
	if e := vr.Effect; strings.Join(e.ServicesAdded, ",") != "web" || strings.Join(e.ServicesRemoved, ",") != "dns" ||
		strings.Join(e.VIPsAdded, ",") != "192.0.2.80" || strings.Join(e.VIPsRemoved, ",") != "192.0.2.53" || len(e.PoolsChanged) != 0 {
		t.Errorf("effect = %+v", e)
	}
	if docs.Version() != 1 {
		t.Fatal("validate changed the version")
	}

	// The GET shape is accepted as a body too.
	put := `{"version":1,"spec":` + newSpec + `}`
	resp, body = doHeaders(t, srv, "PUT", "/api/v1/config", aliceTok, put, map[string]string{"If-Match": `"1"`})
	if resp.StatusCode != 200 || resp.Header.Get("ETag") != `"2"` {
		t.Fatalf("PUT: %d %s", resp.StatusCode, body)
	}
	json.Unmarshal([]byte(body), &doc)
	if doc.Version != 2 || doc.UpdatedBy != "alice" {
		t.Errorf("PUT answered %+v", doc)
	}

	// Rollback to 1 is version 3, equal to 1.
	resp, body = doHeaders(t, srv, "POST", "/api/v1/config/rollback/1", adminTok, "", map[string]string{"If-Match": `"2"`})
	if resp.StatusCode != 200 {
		t.Fatalf("rollback: %d %s", resp.StatusCode, body)
	}
	_, v1 := doHeaders(t, srv, "GET", "/api/v1/config/history/1", viewerTok, "", nil)
	_, v3 := doHeaders(t, srv, "GET", "/api/v1/config", viewerTok, "", nil)
	var d1, d3 api.ConfigDoc
	json.Unmarshal([]byte(v1), &d1)
	json.Unmarshal([]byte(v3), &d3)
	if d3.Version != 3 || string(d3.Spec) != string(d1.Spec) || d3.UpdatedBy != "admin#1" {
		t.Errorf("after the rollback: %+v, version 1: %+v", d3, d1)
	}
	_, hist := doHeaders(t, srv, "GET", "/api/v1/config/history", viewerTok, "", nil)
	var hs []api.ConfigVersion
	json.Unmarshal([]byte(hist), &hs)
	if len(hs) != 3 || !hs[2].Current || hs[1].UpdatedBy != "alice" {
		t.Errorf("history = %s", hist)
	}

	// The audit log records every write attempt with its result — the
	// refused ones too — and names the tokens, never their secret.
	_, audit := doHeaders(t, srv, "GET", "/api/v1/audit", bobTok, "", nil)
	var as []api.AuditEntry
	if err := json.Unmarshal([]byte(audit), &as); err != nil || len(as) != 5 {
		t.Fatalf("audit = %s", audit)
	}
	for i, want := range []api.AuditEntry{
		{Who: "alice", What: "PUT /api/v1/config", Result: 428},
		{Who: "bob", What: "PUT /api/v1/config", Result: 403},
		{Who: "alice", What: "config.put", Result: 409},
		{Who: "alice", What: "config.put", Result: 200, Version: 2},
		{Who: "admin#1", What: "config.rollback 1", Result: 200, Version: 3},
	} {
		got := as[i]
		if got.Who != want.Who || got.What != want.What || got.Result != want.Result || got.Version != want.Version || got.From == "" ||
			(got.Result >= 300) != (got.Error != "") {
			t.Errorf("audit[%d] = %+v, want %+v", i, got, want)
		}
	}
	if strings.Contains(audit, aliceTok) || strings.Contains(audit, adminTok) {
		t.Error("the audit log shows a token")
	}
}

func TestConfigPutInvalid(t *testing.T) {
	for _, tc := range []struct {
		name, spec, field, msg string
	}{
		{"bad range", `{"pools":[{"name":"a","addresses":["192.0.2.1-192.0.2.9"]},{"name":"b","addresses":["192.0.2.300"]}]}`,
			"spec.pools[1].addresses[0]", `"192.0.2.300" is not an address, CIDR or range`},
		{"overlap", `{"pools":[{"name":"a","addresses":["192.0.2.0/24"]},{"name":"b","addresses":["192.0.2.10-192.0.2.20"]}]}`,
			"spec.pools[1].addresses[0]", `192.0.2.10-192.0.2.20 overlaps 192.0.2.0-192.0.2.255 of pool "a"`},
		{"unknown key", `{"pools":[{"name":"a","adresses":["192.0.2.0/24"]}]}`,
			"spec.pools[0].adresses", "unknown key (known keys here: addresses, announce, autoAssign, bgp, name, namespaces)"},
		{"host-local key", `{"api":{"listen":"0.0.0.0:80"}}`, "spec.api", "unknown key"},
		{"not an object", `[1]`, "spec", "must be a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, docs := newConfigServer(t)
			resp, body := doHeaders(t, srv, "PUT", "/api/v1/config", aliceTok, tc.spec, map[string]string{"If-Match": `"1"`})
			if resp.StatusCode != http.StatusUnprocessableEntity {
				t.Fatalf("PUT: %d %s, want 422", resp.StatusCode, body)
			}
			var inv api.InvalidConfig
			if err := json.Unmarshal([]byte(body), &inv); err != nil {
				t.Fatal(err)
			}
			found := false
			for _, e := range inv.Errors {
				found = found || e.Field == tc.field && strings.Contains(e.Message, tc.msg)
			}
			if !found {
				t.Errorf("errors %s, want %s: %s", body, tc.field, tc.msg)
			}
			if docs.Version() != 1 {
				t.Errorf("an invalid PUT made version %d", docs.Version())
			}
			_, vbody := doHeaders(t, srv, "POST", "/api/v1/config/validate", aliceTok, tc.spec, nil)
			if !strings.Contains(vbody, `"valid":false`) || !strings.Contains(vbody, tc.field) {
				t.Errorf("validate: %s", vbody)
			}
		})
	}
}

// The writes keep the guards of every state-changing request.
func TestConfigWritesAreGuarded(t *testing.T) {
	srv, docs := newConfigServer(t)
	for _, tc := range []struct {
		name string
		hdr  map[string]string
		want int
	}{
		{"form content type", map[string]string{"If-Match": `"1"`, "Content-Type": "text/plain"}, http.StatusUnsupportedMediaType},
		{"cross-site", map[string]string{"If-Match": `"1"`, "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"other origin", map[string]string{"If-Match": `"1"`, "Origin": "https://evil.example"}, http.StatusForbidden},
	} {
		if resp, body := doHeaders(t, srv, "PUT", "/api/v1/config", aliceTok, newSpec, tc.hdr); resp.StatusCode != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, resp.StatusCode, body, tc.want)
		}
	}
	if docs.Version() != 1 {
		t.Error("a refused write changed the configuration")
	}
}

// With a file, the audit log outlives the server.
func TestAuditFileKeepsEntries(t *testing.T) {
	file := t.TempDir() + "/audit.log"
	f := apitest.Sample()
	opts := api.Options{State: f, Bus: f.Bus, Log: slog.New(slog.DiscardHandler), AuditFile: file,
		NamedTokens: []api.Token{{Name: "alice", Role: "admin", Secret: aliceTok}}}
	srv := httptest.NewServer(api.New(opts).Handler())
	if resp, body := doHeaders(t, srv, "POST", "/api/v1/members/lb1/drain", aliceTok, "", nil); resp.StatusCode != 202 {
		t.Fatalf("drain: %d %s", resp.StatusCode, body)
	}
	srv.Close()
	srv = httptest.NewServer(api.New(opts).Handler())
	defer srv.Close()
	_, audit := doHeaders(t, srv, "GET", "/api/v1/audit", aliceTok, "", nil)
	var as []api.AuditEntry
	if err := json.Unmarshal([]byte(audit), &as); err != nil || len(as) != 1 || as[0].Who != "alice" || as[0].What != "member.drain lb1" {
		t.Errorf("audit after a restart = %s", audit)
	}
}

// A backend's admin state is a new version of the configuration.
func TestBackendAdminState(t *testing.T) {
	srv, docs := newConfigServer(t)
	path := "/api/v1/services/_static/dns/backends/10.0.1.5:53/"
	if resp, body := doHeaders(t, srv, "POST", path+"drain", bobTok, "", nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("drain with a viewer token: %d %s", resp.StatusCode, body)
	}
	resp, body := doHeaders(t, srv, "POST", path+"drain", aliceTok, "", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, `"backendStates":[{"backend":"10.0.1.5:53","service":"_static/dns","state":"drain"}]`) {
		t.Fatalf("drain: %d %s", resp.StatusCode, body)
	}
	resp, body = doHeaders(t, srv, "POST", path+"disable", aliceTok, "", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, `"backendStates":[{"backend":"10.0.1.5:53","service":"_static/dns","state":"disable"}]`) {
		t.Fatalf("disable: %d %s", resp.StatusCode, body)
	}
	resp, body = doHeaders(t, srv, "POST", path+"enable", aliceTok, "", nil)
	if resp.StatusCode != 200 || strings.Contains(body, "backendStates") || docs.Version() != 4 {
		t.Fatalf("enable: %d %s (version %d)", resp.StatusCode, body, docs.Version())
	}
	if resp, body := doHeaders(t, srv, "POST", "/api/v1/services/_static/dns/backends/10.0.1.5/drain", aliceTok, "", nil); resp.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("a backend without a port: %d %s", resp.StatusCode, body)
	}
	if resp, _ := doHeaders(t, srv, "POST", path+"pause", aliceTok, "", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("an unknown action: %d", resp.StatusCode)
	}
	_, audit := doHeaders(t, srv, "GET", "/api/v1/audit", aliceTok, "", nil)
	if !strings.Contains(audit, `"what":"backend.drain _static/dns 10.0.1.5:53","version":2`) {
		t.Errorf("audit = %s", audit)
	}
	if docs.Version() != 4 {
		t.Errorf("refused requests made versions: %d", docs.Version())
	}
}

// insecureState is the sample State of a member of an insecure cluster:
// it drains itself, and refuses to ask another member, as the node does.
type insecureState struct{ *apitest.Fake }

func (s insecureState) Drain(ctx context.Context, name string) error {
	if name != s.Self {
		return fmt.Errorf("%w: asking %s: %w", api.ErrNotReplicated, name, cluster.ErrInsecure)
	}
	return s.Fake.Drain(ctx, name)
}

// With cluster.insecure on a cluster of several hosts, nothing the API
// would have to replicate is made: a configuration change, a backend
// admin state, a rollback and a drain of another member are refused with
// 409 and say why, and nothing changes; reads and a drain of this member
// still work.
func TestInsecureClusterRefusesChangesThatWouldNotReplicate(t *testing.T) {
	opts := cluster.Options{Name: "lb1", Insecure: true, BindAddr: netip.MustParseAddr("10.0.0.11"), BindPort: 7946,
		Join: []string{"10.0.0.11", "10.0.0.12", "10.0.0.13"}}
	unrepl := opts.Unreplicated()
	if unrepl == nil {
		t.Fatal("an insecure cluster of three hosts replicates, says cluster.Options")
	}
	f := apitest.Sample()
	srv, docs := newConfigServerWith(t, insecureState{f}, unrepl)
	wantRefused := func(what string, resp *http.Response, body string) {
		t.Helper()
		if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "cluster.insecure") {
			t.Errorf("%s: %d %s, want 409 saying cluster.insecure", what, resp.StatusCode, body)
		}
		// The configuration's refusal says what to do instead (the
		// node's drain refusal does too, tested there).
		if !strings.Contains(what, "drain of") && !strings.Contains(body, "secretKeyFile") {
			t.Errorf("%s: %s, want what to do instead", what, body)
		}
	}
	resp, body := doHeaders(t, srv, "PUT", "/api/v1/config", aliceTok, newSpec, map[string]string{"If-Match": `"1"`})
	wantRefused("PUT config", resp, body)
	resp, body = doHeaders(t, srv, "POST", "/api/v1/services/_static/dns/backends/10.0.1.5:53/drain", aliceTok, "", nil)
	wantRefused("a backend drain", resp, body)
	resp, body = doHeaders(t, srv, "POST", "/api/v1/config/rollback/1", aliceTok, "", nil)
	wantRefused("a rollback", resp, body)
	resp, body = doHeaders(t, srv, "POST", "/api/v1/members/lb2/drain", aliceTok, "", nil)
	wantRefused("a drain of another member", resp, body)
	if docs.Version() != 1 {
		t.Errorf("refused changes made version %d", docs.Version())
	}
	for _, m := range f.Members() {
		if m.Draining {
			t.Errorf("%s drains after a refused drain", m.Name)
		}
	}
	if resp, body := doHeaders(t, srv, "GET", "/api/v1/config", viewerTok, "", nil); resp.StatusCode != 200 {
		t.Errorf("GET config: %d %s", resp.StatusCode, body)
	}
	if resp, body := doHeaders(t, srv, "POST", "/api/v1/config/validate", aliceTok, newSpec, nil); resp.StatusCode != 200 {
		t.Errorf("validate: %d %s", resp.StatusCode, body)
	}
	if resp, body := doHeaders(t, srv, "POST", "/api/v1/members/lb1/drain", aliceTok, "", nil); resp.StatusCode != http.StatusAccepted {
		t.Errorf("a drain of this member: %d %s", resp.StatusCode, body)
	}
	// Each refusal is recorded as such; only the drain of this member
	// succeeded.
	_, audit := doHeaders(t, srv, "GET", "/api/v1/audit", aliceTok, "", nil)
	var as []api.AuditEntry
	json.Unmarshal([]byte(audit), &as)
	for _, e := range as {
		if ok := e.What == "member.drain lb1"; ok != (e.Result < 300) || (!ok && e.Result != http.StatusConflict) {
			t.Errorf("audit entry %+v", e)
		}
	}
	if len(as) != 5 {
		t.Errorf("audit = %s", audit)
	}
}

// A backend an administrator drained stays drained through a PUT of a
// spec without backendStates (a file applied) and through a rollback to a
// version from before the drain, unless the request asks: a PUT that names
// backendStates (even []) sets them, a rollback with
// ?backendStates=restore takes the old version's.
func TestBackendStatesAreNotHistory(t *testing.T) {
	srv, docs := newConfigServer(t)
	drained := `"backendStates":[{"backend":"10.0.1.5:53","service":"_static/dns","state":"drain"}]`
	if resp, body := doHeaders(t, srv, "POST", "/api/v1/services/_static/dns/backends/10.0.1.5:53/drain", aliceTok, "", nil); resp.StatusCode != 200 {
		t.Fatalf("drain: %d %s", resp.StatusCode, body)
	}
	file := `{"pools":[{"name":"default","addresses":["192.0.2.10-192.0.2.49"]}],"services":[{"name":"dns","vip":"192.0.2.53","ports":[{"port":53,"protocol":"UDP"}],"backends":["10.0.1.5:53"]}]}`
	resp, body := doHeaders(t, srv, "PUT", "/api/v1/config", aliceTok, file, map[string]string{"If-Match": `"2"`})
	if resp.StatusCode != 200 || !strings.Contains(body, drained) {
		t.Fatalf("a PUT without backendStates: %d %s, want the backend still drained", resp.StatusCode, body)
	}
	// A dry run of a rollback to version 1 changes the pool back, not the drain.
	resp, body = doHeaders(t, srv, "POST", "/api/v1/config/rollback/1?dryRun=true", aliceTok, "", nil)
	if resp.StatusCode != 200 || strings.Contains(body, "backendStates") {
		t.Fatalf("rollback dry run: %d %s", resp.StatusCode, body)
	}
	resp, body = doHeaders(t, srv, "POST", "/api/v1/config/rollback/1", aliceTok, "", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, drained) || !strings.Contains(body, "192.0.2.10-192.0.2.50") {
		t.Fatalf("rollback to version 1: %d %s, want its pools and the backend still drained", resp.StatusCode, body)
	}
	resp, body = doHeaders(t, srv, "POST", "/api/v1/config/rollback/1?backendStates=restore", aliceTok, "", nil)
	if resp.StatusCode != 200 || strings.Contains(body, "backendStates") {
		t.Fatalf("rollback with backendStates=restore: %d %s, want version 1's (none)", resp.StatusCode, body)
	}
	if resp, body := doHeaders(t, srv, "POST", "/api/v1/config/rollback/2?backendStates=yes", aliceTok, "", nil); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("backendStates=yes: %d %s", resp.StatusCode, body)
	}
	// Naming them sets them: drained again, then cleared by [].
	doHeaders(t, srv, "POST", "/api/v1/services/_static/dns/backends/10.0.1.5:53/drain", aliceTok, "", nil)
	v := docs.Version()
	cleared := strings.Replace(file, `"services"`, `"backendStates":[],"services"`, 1)
	resp, body = doHeaders(t, srv, "PUT", "/api/v1/config", aliceTok, cleared, map[string]string{"If-Match": fmt.Sprintf(`"%d"`, v)})
	if resp.StatusCode != 200 || strings.Contains(body, `"state":"drain"`) {
		t.Fatalf("a PUT with backendStates []: %d %s", resp.StatusCode, body)
	}
}

// quorumless is versions whose every write finds no majority, as a host
// cut off from the others does.
type quorumless struct{ cluster.LocalDocs }

func (quorumless) Propose(ctx context.Context, body []byte, by string, ifVersion uint64) (cluster.Doc, error) {
	return cluster.Doc{}, &consensus.NoQuorumError{Unreachable: []string{"10.0.0.12:7946", "10.0.0.13:7946"}, Err: context.DeadlineExceeded}
}

// A write where no majority is reachable is refused with 503 and
// Retry-After, naming the members that could not be reached; nothing
// changes.
func TestConfigWriteWithoutQuorum(t *testing.T) {
	host := config.NewHost("config.yaml", []byte(hostFile), ".")
	docs, err := cluster.NewDocs(cluster.DocOptions{Name: "lb1"})
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := config.SpecFromFile("config.yaml", []byte(hostFile))
	if _, err := docs.Seed(spec, "file"); err != nil {
		t.Fatal(err)
	}
	f := apitest.Sample()
	srv := httptest.NewServer(api.New(api.Options{State: f, Bus: f.Bus, Log: slog.New(slog.DiscardHandler),
		NamedTokens: []api.Token{{Name: "alice", Role: "admin", Secret: aliceTok}},
		Config:      &clustercfg.Config{Versions: quorumless{cluster.LocalDocs{Docs: docs}}, Host: host},
	}).Handler())
	t.Cleanup(srv.Close)
	for _, w := range []struct{ method, path, body string }{
		{"PUT", "/api/v1/config", newSpec},
		{"POST", "/api/v1/services/_static/dns/backends/10.0.1.5:53/drain", ""},
	} {
		resp, body := doHeaders(t, srv, w.method, w.path, aliceTok, w.body, map[string]string{"If-Match": `"1"`})
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
			!strings.Contains(body, "10.0.0.12:7946") || !strings.Contains(body, "not changed") {
			t.Errorf("%s %s without a majority: %d Retry-After %q %s, want 503 with Retry-After naming 10.0.0.12:7946",
				w.method, w.path, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
	if docs.Version() != 1 {
		t.Errorf("a refused write changed the version to %d", docs.Version())
	}
}

// A version another member's config file does not fit is refused with
// 422 before it is made, each error naming that member and the field;
// the dry run says the same, and a version every member fits is taken.
func TestConfigPutRefusedForAnotherMembersFile(t *testing.T) {
	const file = "node: {name: lb1, interface: eth0}\ncluster: {insecure: true, bindAddr: 10.0.0.1}\n"
	host := config.NewHost("config.yaml", []byte(file), ".")
	docs, err := cluster.NewDocs(cluster.DocOptions{Name: "lb1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := docs.Seed([]byte(`{"dataplane":{"method":"nat"}}`), "file"); err != nil {
		t.Fatal(err)
	}
	members := func() []clustercfg.MemberFacts {
		return []clustercfg.MemberFacts{
			{Name: "lb3", Facts: config.Facts{Interface: "eth0", BindAddr: "10.0.0.3"}},
			{Name: "lb2", Facts: config.Facts{BindAddr: "10.0.0.2"}},
		}
	}
	f := apitest.Sample()
	srv := httptest.NewServer(api.New(api.Options{State: f, Bus: f.Bus, Log: slog.New(slog.DiscardHandler),
		Tokens: map[string][]string{"admin": {adminTok}},
		Config: &clustercfg.Config{Versions: cluster.LocalDocs{Docs: docs}, Host: host, Members: members},
	}).Handler())
	t.Cleanup(srv.Close)

	const dr = `{"dataplane":{"method":"dr"}}`
	resp, body := doHeaders(t, srv, "PUT", "/api/v1/config", adminTok, dr, map[string]string{"If-Match": `"1"`})
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("PUT: %d %s, want 422", resp.StatusCode, body)
	}
	var inv api.InvalidConfig
	if err := json.Unmarshal([]byte(body), &inv); err != nil {
		t.Fatal(err)
	}
	if len(inv.Errors) != 1 || inv.Errors[0].Member != "lb2" || inv.Errors[0].Field != "node.interface" || !strings.Contains(inv.Errors[0].Message, "lb2") {
		t.Fatalf("errors %s: want one naming lb2 and node.interface", body)
	}
	if docs.Version() != 1 {
		t.Fatalf("a refused PUT made version %d", docs.Version())
	}
	_, vbody := doHeaders(t, srv, "POST", "/api/v1/config/validate", adminTok, dr, nil)
	if !strings.Contains(vbody, `"valid":false`) || !strings.Contains(vbody, `"member":"lb2"`) {
		t.Errorf("validate: %s", vbody)
	}
	// A bgp peer at lb3's own address: lb3's file refuses it.
	peer := `{"dataplane":{"method":"nat"},"bgp":{"asn":64512,"peers":[{"address":"10.0.0.3","asn":64500}]}}`
	_, body = doHeaders(t, srv, "PUT", "/api/v1/config", adminTok, peer, map[string]string{"If-Match": `"1"`})
	if !strings.Contains(body, `"member":"lb3"`) || !strings.Contains(body, "spec.bgp.peers[0].address") {
		t.Errorf("a peer at lb3's address: %s, want an error naming lb3 and the peer", body)
	}
	ok := `{"dataplane":{"method":"nat"},"healthCheck":{"interval":"3s"}}`
	if resp, body := doHeaders(t, srv, "PUT", "/api/v1/config", adminTok, ok, map[string]string{"If-Match": `"1"`}); resp.StatusCode != http.StatusOK {
		t.Fatalf("a version every member fits: %d %s", resp.StatusCode, body)
	}
}
