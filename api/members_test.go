package api_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/api/apitest"
	"github.com/edgelb/edgelb/api/clustercfg"
	"github.com/edgelb/edgelb/cluster"
	"github.com/edgelb/edgelb/lb/config"
)

func newMembersServer(t *testing.T) (*httptest.Server, *apitest.Members, *apitest.Fake) {
	t.Helper()
	f := apitest.Sample()
	ms := &apitest.Members{Names: []string{"10.0.0.11:7946", "10.0.0.12:7946", "10.0.0.13:7946"},
		Cont: api.Contact{Quorum: true, Leader: "10.0.0.12:7946"}}
	srv := httptest.NewServer(api.New(api.Options{State: f, Bus: f.Bus, Log: slog.New(slog.DiscardHandler),
		NamedTokens: []api.Token{{Name: "alice", Role: "admin", Secret: aliceTok}, {Name: "bob", Role: "viewer", Secret: bobTok}},
		Members:     ms,
	}).Handler())
	t.Cleanup(srv.Close)
	return srv, ms, f
}

// Adding and removing a member: admin only, audited, the configured set
// in the answer and in GET /api/v1/members (a member added and not yet
// started is listed, configured and not alive).
func TestMembersAddRemove(t *testing.T) {
	srv, ms, _ := newMembersServer(t)
	if code, _ := do(t, srv, "POST", "/api/v1/members", bobTok, `{"address": "10.0.0.14:7946"}`); code != http.StatusForbidden {
		t.Errorf("add with a viewer token: %d, want 403", code)
	}
	code, body := do(t, srv, "POST", "/api/v1/members", aliceTok, `{"address": "10.0.0.14:7946"}`)
	var res api.MemberChange
	if code != http.StatusCreated || json.Unmarshal([]byte(body), &res) != nil || res.Member != "10.0.0.14:7946" || len(res.Members) != 4 {
		t.Fatalf("add: %d %s, want 201 naming the member and four members", code, body)
	}
	_, body = do(t, srv, "GET", "/api/v1/members", bobTok, "")
	var members []api.Member
	if err := json.Unmarshal([]byte(body), &members); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(members, func(m api.Member) bool { return m.Address == "10.0.0.14:7946" })
	if len(members) != 4 || i < 0 || !members[i].Configured || members[i].Alive || !members[0].Configured {
		t.Errorf("members after the add: %s, want the three live ones and 10.0.0.14:7946 configured, not alive", body)
	}
	code, body = do(t, srv, "DELETE", "/api/v1/members/10.0.0.13:7946?force=true", aliceTok, "")
	if code != http.StatusOK || !strings.Contains(body, `"member":"10.0.0.13:7946"`) || !ms.Forced {
		t.Errorf("remove with force: %d %s (forced %v), want 200 and force passed on", code, body, ms.Forced)
	}
	_, body = do(t, srv, "GET", "/api/v1/members", bobTok, "")
	if !strings.Contains(body, `"name":"lb3","address":"10.0.0.13:7946"`) || strings.Count(body, `"configured":true`) != 3 {
		t.Errorf("members after the removal: %s, want lb3 live and not configured, three configured", body)
	}
	_, body = do(t, srv, "GET", "/api/v1/audit", aliceTok, "")
	for _, want := range []string{`"what":"member.add 10.0.0.14:7946"`, `"what":"member.remove 10.0.0.13:7946"`} {
		if !strings.Contains(body, want) {
			t.Errorf("the audit log has no %s: %s", want, body)
		}
	}
}

// Each refusal has its own status and says why; every one is audited.
func TestMembersRefused(t *testing.T) {
	srv, ms, _ := newMembersServer(t)
	for _, tc := range []struct {
		name, method, path, body string
		err                      error
		code                     int
		want                     string
	}{
		{"no body", "POST", "/api/v1/members", `{}`, nil, 400, "address"},
		{"bad force", "DELETE", "/api/v1/members/10.0.0.13:7946?force=maybe", "", nil, 400, "force"},
		{"bad address", "POST", "/api/v1/members", `{"address": "lb4"}`, fmt.Errorf("%w: %q is not ip:port", api.ErrInvalidMember, "lb4"), 400, "lb4"},
		{"exists", "POST", "/api/v1/members", `{"address": "10.0.0.12:7946"}`, fmt.Errorf("%w: 10.0.0.12:7946", api.ErrMemberExists), 409, "10.0.0.12:7946"},
		{"unknown", "DELETE", "/api/v1/members/10.0.0.99:7946", "", fmt.Errorf("%w: no configured member 10.0.0.99:7946", api.ErrNotFound), 404, "10.0.0.99:7946"},
		{"last", "DELETE", "/api/v1/members/10.0.0.11:7946", "", &api.RefusedError{Reason: "the last member"}, 409, "last member"},
		{"no majority after", "DELETE", "/api/v1/members/10.0.0.11:7946", "", &api.RefusedError{Reason: "would leave 1 of 2 reachable", Forceable: true}, 409, "force=true"},
		{"no quorum", "POST", "/api/v1/members", `{"address": "10.0.0.14:7946"}`, fmt.Errorf("%w: unreachable: 10.0.0.12:7946", api.ErrNoQuorum), 503, "10.0.0.12:7946"},
		{"unconfirmed", "DELETE", "/api/v1/members/10.0.0.13:7946", "", fmt.Errorf("%w: deadline", api.ErrUnconfirmed), 503, "not acknowledged"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms.Err = tc.err
			resp, body := doHeaders(t, srv, tc.method, tc.path, aliceTok, tc.body, nil)
			if resp.StatusCode != tc.code || !strings.Contains(body, tc.want) {
				t.Errorf("%d %s, want %d mentioning %q", resp.StatusCode, body, tc.code, tc.want)
			}
			if tc.code == 503 && resp.Header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
			_, audit := do(t, srv, "GET", "/api/v1/audit", aliceTok, "")
			var entries []api.AuditEntry
			_ = json.Unmarshal([]byte(audit), &entries)
			if len(entries) == 0 || entries[len(entries)-1].Result != tc.code || !strings.HasPrefix(entries[len(entries)-1].What, "member.") {
				t.Errorf("the refusal is not audited last: %s", audit)
			}
		})
	}
	if got := ms.Configured(); len(got) != 3 {
		t.Errorf("refused changes changed the members: %v", got)
	}
}

// GET /api/v1/config says whether this host is in contact with a
// majority, and whom it cannot reach.
func TestConfigSaysContact(t *testing.T) {
	srv, _ := newConfigServer(t)
	_, body := do(t, srv, "GET", "/api/v1/config", viewerTok, "")
	if strings.Contains(body, `"contact"`) {
		t.Errorf("a host without a consensus log reports a contact: %s", body)
	}

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
	ms := &apitest.Members{Names: []string{"10.0.0.11:7946", "10.0.0.12:7946", "10.0.0.13:7946"},
		Cont: api.Contact{Quorum: false, Unreachable: []string{"10.0.0.12:7946", "10.0.0.13:7946"}}}
	srv = httptest.NewServer(api.New(api.Options{State: f, Bus: f.Bus, Log: slog.New(slog.DiscardHandler),
		Config: &clustercfg.Config{Versions: cluster.LocalDocs{Docs: docs}, Host: host}, Members: ms}).Handler())
	t.Cleanup(srv.Close)
	_, body = do(t, srv, "GET", "/api/v1/config", "", "")
	var doc api.ConfigDoc
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Version != 1 || doc.Contact == nil || doc.Contact.Quorum || len(doc.Contact.Unreachable) != 2 {
		t.Errorf("GET /api/v1/config cut off from the others: %s, want version 1 and a contact without quorum naming two members", body)
	}
}
