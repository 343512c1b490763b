package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/api/apitest"
	"github.com/edgelb/edgelb/api/clustercfg"
	"github.com/edgelb/edgelb/cluster"
	"github.com/edgelb/edgelb/lb/config"
)

const (
	md5One = "md5-one-0xC0FFEE"
	md5Two = "md5-two-0xBEEF"
)

// bgpHostFile has a BGP peer with a TCP MD5 password and one without.
const bgpHostFile = `node: {name: lb1}
cluster: {insecure: true}
bgp:
  asn: 64512
  routerID: 10.0.0.11
  peers:
    - {address: 10.0.0.1, asn: 64500, password: ` + md5One + `}
    - {address: 10.0.0.2, asn: 64500}
pools:
  - {name: default, addresses: ["192.0.2.10-192.0.2.50"]}
`

// syncBuffer is a log sink the server's goroutines may write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newSecretServer serves a cluster configuration seeded from bgpHostFile,
// with the real validation and versions, and logs at debug into the
// buffer it returns.
func newSecretServer(t *testing.T, tokens bool) (*httptest.Server, *cluster.Docs, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	host := config.NewHost("config.yaml", []byte(bgpHostFile), ".")
	docs, err := cluster.NewDocs(cluster.DocOptions{Name: "lb1", Log: log, Validate: func(b []byte) error { _, err := host.Apply(b); return err }})
	if err != nil {
		t.Fatal(err)
	}
	spec, err := config.SpecFromFile("config.yaml", []byte(bgpHostFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := docs.Seed(spec, "file"); err != nil {
		t.Fatal(err)
	}
	f := apitest.Sample()
	opts := api.Options{State: f, Bus: f.Bus, Log: log, Config: &clustercfg.Config{Versions: cluster.LocalDocs{Docs: docs}, Host: host}}
	if tokens {
		opts.NamedTokens = []api.Token{{Name: "alice", Role: "admin", Secret: aliceTok}, {Name: "bob", Role: "viewer", Secret: bobTok}}
	}
	srv := httptest.NewServer(api.New(opts).Handler())
	t.Cleanup(srv.Close)
	return srv, docs, logs
}

func getDoc(t *testing.T, srv *httptest.Server, path, token string) api.ConfigDoc {
	t.Helper()
	resp, body := doHeaders(t, srv, "GET", path, token, "", nil)
	var doc api.ConfigDoc
	if err := json.Unmarshal([]byte(body), &doc); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	return doc
}

// peerPasswords are the passwords of a spec's BGP peers, by address.
func peerPasswords(t *testing.T, spec json.RawMessage) map[string]any {
	t.Helper()
	var s struct {
		BGP struct {
			Peers []map[string]any `json:"peers"`
		} `json:"bgp"`
	}
	if err := json.Unmarshal(spec, &s); err != nil {
		t.Fatal(err)
	}
	out := map[string]any{}
	for _, p := range s.BGP.Peers {
		out[p["address"].(string)] = p["password"]
	}
	return out
}

// Every token reads the configuration and its history with the password
// replaced; only an admin who asks for them gets the secrets, and that is
// in the audit log; a viewer who asks is refused.
func TestConfigSecretsAreHidden(t *testing.T) {
	srv, _, logs := newSecretServer(t, true)
	for _, tok := range []string{bobTok, aliceTok} {
		for _, path := range []string{"/api/v1/config", "/api/v1/config/history/1", "/api/v1/config?secrets=false"} {
			doc := getDoc(t, srv, path, tok)
			if got := peerPasswords(t, doc.Spec); got["10.0.0.1"] != "(secret)" || got["10.0.0.2"] != nil {
				t.Errorf("GET %s: passwords %v, want (secret) and none", path, got)
			}
			if strings.Contains(string(doc.Spec), md5One) {
				t.Errorf("GET %s shows the password: %s", path, doc.Spec)
			}
		}
	}
	for _, path := range []string{"/api/v1/config?secrets=true", "/api/v1/config/history/1?secrets=1"} {
		resp, body := doHeaders(t, srv, "GET", path, bobTok, "", nil)
		var e api.Error
		if resp.StatusCode != http.StatusForbidden || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, "needs an admin token") {
			t.Errorf("GET %s as a viewer: %d %s, want 403 saying it needs an admin token", path, resp.StatusCode, body)
		}
		if strings.Contains(body, md5One) {
			t.Errorf("GET %s as a viewer shows the password", path)
		}
		if got := peerPasswords(t, getDoc(t, srv, path, aliceTok).Spec); got["10.0.0.1"] != md5One {
			t.Errorf("GET %s as an admin: passwords %v, want the real one", path, got)
		}
	}
	if resp, body := doHeaders(t, srv, "GET", "/api/v1/config?secrets=maybe", aliceTok, "", nil); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "want true or false") {
		t.Errorf("secrets=maybe: %d %s", resp.StatusCode, body)
	}

	_, audit := doHeaders(t, srv, "GET", "/api/v1/audit", bobTok, "", nil)
	var as []api.AuditEntry
	if err := json.Unmarshal([]byte(audit), &as); err != nil || len(as) != 2 ||
		as[0].Who != "alice" || as[0].What != "config.secrets.read" || as[1].What != "config.secrets.read 1" {
		t.Errorf("audit = %s, want alice's two reads of the secrets", audit)
	}
	if strings.Contains(logs.String(), md5One) {
		t.Errorf("the log shows the password:\n%s", logs)
	}
}

// An API without tokens serves every request as an admin's: the secrets
// too, when asked for.
func TestConfigSecretsWithoutTokens(t *testing.T) {
	srv, _, _ := newSecretServer(t, false)
	if got := peerPasswords(t, getDoc(t, srv, "/api/v1/config", "").Spec); got["10.0.0.1"] != "(secret)" {
		t.Errorf("GET config: passwords %v, want (secret)", got)
	}
	if got := peerPasswords(t, getDoc(t, srv, "/api/v1/config?secrets=true", "").Spec); got["10.0.0.1"] != md5One {
		t.Errorf("GET config?secrets=true: passwords %v, want the real one", got)
	}
}

// What GET shows, edited and written back, keeps the stored password; a
// new password replaces it; diffs (the dry run, the history) say which
// secret changed and never its value; a placeholder with nothing stored
// is refused with its field; a rollback restores the version's password.
func TestConfigSecretsRoundTrip(t *testing.T) {
	srv, docs, logs := newSecretServer(t, true)
	hdr := func(v uint64) map[string]string { return map[string]string{"If-Match": fmt.Sprintf(`"%d"`, v)} }

	// GET, add a service, PUT the whole document back.
	cur := getDoc(t, srv, "/api/v1/config", aliceTok)
	var spec map[string]any
	json.Unmarshal(cur.Spec, &spec)
	spec["services"] = []any{map[string]any{"name": "web", "vip": "192.0.2.80", "ports": []any{map[string]any{"port": 80}}, "backends": []any{"10.0.1.7:8080"}}}
	edited, _ := json.Marshal(map[string]any{"version": cur.Version, "spec": spec})

	resp, body := doHeaders(t, srv, "POST", "/api/v1/config/validate", aliceTok, string(edited), nil)
	var vr api.ValidateResult
	if err := json.Unmarshal([]byte(body), &vr); err != nil || !vr.Valid || len(vr.Effect.SecretsChanged) != 0 || strings.Join(vr.Effect.ServicesAdded, ",") != "web" {
		t.Errorf("validate of the edited document: %d %s, want valid, web added, no secret changed", resp.StatusCode, body)
	}
	resp, body = doHeaders(t, srv, "PUT", "/api/v1/config", aliceTok, string(edited), hdr(1))
	if resp.StatusCode != 200 || strings.Contains(body, md5One) || !strings.Contains(body, `"password":"(secret)"`) {
		t.Fatalf("PUT of the edited document: %d %s, want 200 with the password hidden", resp.StatusCode, body)
	}
	if d, _ := docs.Current(); d.Version != 2 || !strings.Contains(string(d.Body), `"password":"`+md5One+`"`) {
		t.Fatalf("version %d stores %s, want the password kept", d.Version, d.Body)
	}

	// A new password replaces the stored one; the dry run and the history
	// name the secret, not its values.
	next := strings.Replace(string(edited), `"password":"(secret)"`, `"password":"`+md5Two+`"`, 1)
	resp, body = doHeaders(t, srv, "POST", "/api/v1/config/validate", aliceTok, next, nil)
	vr = api.ValidateResult{}
	if err := json.Unmarshal([]byte(body), &vr); err != nil || !vr.Valid || strings.Join(vr.Effect.SecretsChanged, ",") != "bgp.peers[10.0.0.1].password" ||
		strings.Join(vr.Effect.Other, ",") != "bgp" {
		t.Errorf("validate of a new password: %d %s, want bgp.peers[10.0.0.1].password changed", resp.StatusCode, body)
	}
	if strings.Contains(body, md5One) || strings.Contains(body, md5Two) {
		t.Errorf("validate shows a password: %s", body)
	}
	if resp, body := doHeaders(t, srv, "PUT", "/api/v1/config", aliceTok, next, hdr(2)); resp.StatusCode != 200 || strings.Contains(body, md5Two) {
		t.Fatalf("PUT of a new password: %d %s", resp.StatusCode, body)
	}
	if got := peerPasswords(t, getDoc(t, srv, "/api/v1/config?secrets=true", aliceTok).Spec); got["10.0.0.1"] != md5Two {
		t.Errorf("after a new password: %v", got)
	}
	_, hist := doHeaders(t, srv, "GET", "/api/v1/config/history", bobTok, "", nil)
	var hs []api.ConfigVersion
	if err := json.Unmarshal([]byte(hist), &hs); err != nil || len(hs) != 3 || len(hs[0].SecretsChanged) != 0 || len(hs[1].SecretsChanged) != 0 ||
		strings.Join(hs[2].SecretsChanged, ",") != "bgp.peers[10.0.0.1].password" {
		t.Errorf("history = %s, want only version 3 to change the password", hist)
	}
	// The specs of versions 2 and 3 differ only by the password: as a
	// viewer sees them, they are equal.
	if v2, v3 := getDoc(t, srv, "/api/v1/config/history/2", bobTok), getDoc(t, srv, "/api/v1/config/history/3", bobTok); string(v2.Spec) != string(v3.Spec) {
		t.Errorf("versions 2 and 3 as a viewer sees them:\n%s\n%s", v2.Spec, v3.Spec)
	}

	// A placeholder where nothing is stored: a new peer, or one whose
	// address changed.
	for _, peers := range []string{
		`[{"address":"10.0.0.1","asn":64500,"password":"(secret)"},{"address":"10.0.0.9","asn":64500,"password":"(secret)"}]`,
		`[{"address":"10.0.0.1","asn":64500,"password":"(secret)"},{"address":"10.0.0.2","asn":64500,"password":"(secret)"}]`,
	} {
		bad := `{"bgp":{"asn":64512,"peers":` + peers + `},"pools":[{"name":"default","addresses":["192.0.2.10-192.0.2.50"]}]}`
		resp, body := doHeaders(t, srv, "PUT", "/api/v1/config", aliceTok, bad, hdr(3))
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, `"field":"spec.bgp.peers[1].password"`) ||
			!strings.Contains(body, "none is stored for a peer with this address: give the password itself") {
			t.Errorf("PUT of a placeholder without a stored password: %d %s", resp.StatusCode, body)
		}
	}
	if docs.Version() != 3 {
		t.Fatalf("refused PUTs made version %d", docs.Version())
	}

	// A rollback's dry run names the password it would restore; a
	// rollback restores it.
	resp, body = doHeaders(t, srv, "POST", "/api/v1/config/rollback/1?dryRun=true", aliceTok, "", nil)
	vr = api.ValidateResult{}
	if err := json.Unmarshal([]byte(body), &vr); err != nil || !vr.Valid || strings.Join(vr.Effect.SecretsChanged, ",") != "bgp.peers[10.0.0.1].password" ||
		strings.Join(vr.Effect.ServicesRemoved, ",") != "web" || strings.Contains(body, md5One) || strings.Contains(body, md5Two) {
		t.Errorf("rollback dry run: %d %s, want web removed and the password named", resp.StatusCode, body)
	}
	if docs.Version() != 3 {
		t.Fatalf("a rollback's dry run made version %d", docs.Version())
	}
	if resp, _ := doHeaders(t, srv, "POST", "/api/v1/config/rollback/1?dryRun=true", bobTok, "", nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("rollback dry run as a viewer: %d, want 403", resp.StatusCode)
	}
	if resp, body := doHeaders(t, srv, "POST", "/api/v1/config/rollback/1", aliceTok, "", hdr(3)); resp.StatusCode != 200 || strings.Contains(body, md5One) {
		t.Fatalf("rollback: %d %s", resp.StatusCode, body)
	}
	if d, _ := docs.Current(); d.Version != 4 || !strings.Contains(string(d.Body), `"password":"`+md5One+`"`) {
		t.Errorf("after the rollback version %d stores %s, want version 1's password", d.Version, d.Body)
	}

	_, audit := doHeaders(t, srv, "GET", "/api/v1/audit", bobTok, "", nil)
	for _, secret := range []string{md5One, md5Two} {
		if strings.Contains(audit, secret) {
			t.Errorf("the audit log shows a password: %s", audit)
		}
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log shows a password:\n%s", logs)
		}
	}
}
