package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/api/apitest"
)

const (
	adminTok  = "admin-token-0123456789"
	viewerTok = "viewer-token-0123456789"
)

func newServer(t *testing.T, tokens bool) (*httptest.Server, *apitest.Fake) {
	t.Helper()
	f := apitest.Sample()
	opts := api.Options{State: f, Bus: f.Bus, Log: slog.New(slog.DiscardHandler),
		Metrics:   api.NewMetrics(f),
		Dashboard: fstest.MapFS{"index.html": {Data: []byte("<html>edgelb</html>")}}}
	if tokens {
		opts.Tokens = map[string][]string{"admin": {adminTok}, "viewer": {viewerTok}}
	}
	srv := httptest.NewServer(api.New(opts).Handler())
	t.Cleanup(srv.Close)
	return srv, f
}

func do(t *testing.T, srv *httptest.Server, method, path, token, body string) (int, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, srv.URL+path, r)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if method != "GET" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestReadPaths(t *testing.T) {
	srv, _ := newServer(t, true)
	cases := []struct {
		path string
		into any
		ok   func(any) bool
	}{
		{"/api/v1/status", &api.Status{}, func(v any) bool { s := v.(*api.Status); return s.Node == "lb1" && s.Counts.Members == 3 }},
		{"/api/v1/members", &[]api.Member{}, func(v any) bool { m := *v.(*[]api.Member); return len(m) == 3 && m[0].Self }},
		{"/api/v1/vips", &[]api.VIP{}, func(v any) bool { m := *v.(*[]api.VIP); return len(m) == 2 && m[0].Owner == "lb1" }},
		{"/api/v1/services", &[]api.Service{}, func(v any) bool { m := *v.(*[]api.Service); return len(m) == 2 && len(m[0].Ports[0].Backends) == 2 }},
		{"/api/v1/services/demo/web", &api.Service{}, func(v any) bool { return v.(*api.Service).Ports[0].Port == 8080 }},
		{"/api/v1/services/_static/dns", &api.Service{}, func(v any) bool { return v.(*api.Service).Static }},
		{"/api/v1/openapi.json", &map[string]any{}, func(v any) bool { return (*v.(*map[string]any))["openapi"] == "3.0.3" }},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			for _, tok := range []string{viewerTok, adminTok} {
				code, body := do(t, srv, "GET", c.path, tok, "")
				if code != 200 {
					t.Fatalf("%d %s", code, body)
				}
				if err := json.Unmarshal([]byte(body), c.into); err != nil || !c.ok(c.into) {
					t.Fatalf("unexpected body (%v): %s", err, body)
				}
			}
			if code, body := do(t, srv, "GET", c.path, "", ""); code != 401 || !strings.Contains(body, `"error"`) {
				t.Errorf("without a token: %d %s", code, body)
			}
			if code, _ := do(t, srv, "GET", c.path, "wrong-token-000000000", ""); code != 401 {
				t.Errorf("with a wrong token: %d", code)
			}
		})
	}
}

func TestOpenPathsAndErrors(t *testing.T) {
	srv, f := newServer(t, true)
	if code, body := do(t, srv, "GET", "/healthz", "", ""); code != 200 || !strings.Contains(body, "ok") {
		t.Errorf("/healthz: %d %s", code, body)
	}
	if code, body := do(t, srv, "GET", "/", "", ""); code != 200 || !strings.Contains(body, "edgelb") {
		t.Errorf("dashboard: %d %s", code, body)
	}
	for _, c := range []struct {
		method, path, tok, body string
		code                    int
		msg                     string
	}{
		{"GET", "/api/v1/services/demo/nope", viewerTok, "", 404, "no service demo/nope"},
		{"GET", "/api/v1/nothing", viewerTok, "", 404, "no such path"},
		{"DELETE", "/api/v1/services", adminTok, "", 405, "DELETE is not allowed"},
		{"POST", "/api/v1/members/lb9/drain", adminTok, "", 404, `no member "lb9"`},
		{"POST", "/api/v1/members/lb1/drain", adminTok, `{"force": true}`, 400, "takes no request body"},
		{"POST", "/api/v1/members/lb1/drain", adminTok, "not json", 400, "takes no request body"},
		{"POST", "/api/v1/members/lb1/drain", adminTok, strings.Repeat("x", api.MaxBodyBytes+1), 413, "larger than"},
		{"POST", "/api/v1/members/lb1/drain", viewerTok, "", 403, "needs an admin token"},
		{"POST", "/api/v1/members/lb1/drain", "", "", 401, "bearer token is required"},
	} {
		code, body := do(t, srv, c.method, c.path, c.tok, c.body)
		var e api.Error
		if code != c.code || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, c.msg) {
			t.Errorf("%s %s: %d %s, want %d with %q", c.method, c.path, code, body, c.code, c.msg)
		}
	}
	f.NotReady = "informers not synced"
	if code, body := do(t, srv, "GET", "/readyz", viewerTok, ""); code != 503 || !strings.Contains(body, "informers") {
		t.Errorf("/readyz not ready: %d %s", code, body)
	}
	f.NotReady = ""
	if code, _ := do(t, srv, "GET", "/readyz", viewerTok, ""); code != 200 {
		t.Errorf("/readyz ready: %d", code)
	}
}

// A lost or refusing API server shows on /readyz but leaves the host
// ready: the dataplane keeps serving what it has, and a probe that took
// the host out for it would stop traffic that still flows.
func TestReadyzShowsKubernetesProblemAndStaysReady(t *testing.T) {
	srv, f := newServer(t, true)
	expires := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	f.St.Kubernetes = &api.KubernetesStatus{Problem: "the API server refuses the kubeconfig's credentials (401)", TokenExpires: &expires}
	code, body := do(t, srv, "GET", "/readyz", viewerTok, "")
	var r api.Readiness
	if err := json.Unmarshal([]byte(body), &r); err != nil || code != 200 || r.Status != "ready" {
		t.Fatalf("/readyz with a Kubernetes problem: %d %s %v, want 200 ready", code, body, err)
	}
	if r.Kubernetes == nil || !strings.Contains(r.Kubernetes.Problem, "401") || r.Kubernetes.TokenExpires == nil || !r.Kubernetes.TokenExpires.Equal(expires) {
		t.Errorf("/readyz does not show the Kubernetes connection: %s", body)
	}
	f.NotReady = "the Kubernetes informers have not synced yet"
	code, body = do(t, srv, "GET", "/readyz", viewerTok, "")
	if err := json.Unmarshal([]byte(body), &r); err != nil || code != 503 || r.Status != "not ready" || r.Kubernetes == nil || !strings.Contains(r.Reason, "informers") {
		t.Errorf("/readyz not ready: %d %s, want 503 with the reason and the Kubernetes connection", code, body)
	}
}

func TestDrainAsAdmin(t *testing.T) {
	srv, f := newServer(t, true)
	code, body := do(t, srv, "POST", "/api/v1/members/lb1/drain", adminTok, "")
	if code != 202 || !strings.Contains(body, `"draining":true`) {
		t.Fatalf("%d %s", code, body)
	}
	if m := f.Members()[0]; !m.Draining {
		t.Error("lb1 not draining")
	}
	if code, _ := do(t, srv, "POST", "/api/v1/members/lb1/undrain", adminTok, "{}"); code != 202 || f.Members()[0].Draining {
		t.Errorf("undrain: %d", code)
	}
}

func TestNoTokensConfiguredIsOpen(t *testing.T) {
	srv, _ := newServer(t, false)
	if code, _ := do(t, srv, "GET", "/api/v1/status", "", ""); code != 200 {
		t.Errorf("status without tokens configured: %d", code)
	}
}

func TestEventStream(t *testing.T) {
	srv, f := newServer(t, true)
	f.Bus.Publish("health", "backend 10.0.1.2:31000 down", nil) // backlog
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+viewerTok)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	next := func() api.Event {
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var ev api.Event
				if err := json.Unmarshal([]byte(data), &ev); err != nil {
					t.Fatal(err)
				}
				return ev
			}
		}
		t.Fatalf("stream ended: %v", sc.Err())
		return api.Event{}
	}
	if ev := next(); ev.Type != "health" || ev.ID != 1 {
		t.Errorf("backlog event = %+v", ev)
	}
	go func() {
		req, _ := http.NewRequest("POST", srv.URL+"/api/v1/members/lb1/drain", nil)
		req.Header.Set("Authorization", "Bearer "+adminTok)
		req.Header.Set("Content-Type", "application/json")
		if resp, err := srv.Client().Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	if ev := next(); ev.Type != "drain" {
		t.Errorf("live event = %+v", ev)
	}
	if ev := next(); ev.Type != "ownership" || ev.Fields["owner"] != "lb2" {
		t.Errorf("ownership event = %+v", ev)
	}
	// Reconnecting with Last-Event-ID replays only what came after.
	req2, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/v1/events", nil)
	req2.Header.Set("Authorization", "Bearer "+viewerTok)
	req2.Header.Set("Last-Event-ID", "2")
	resp2, err := srv.Client().Do(req2)
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	sc = bufio.NewScanner(resp2.Body)
	if ev := next(); ev.ID != 3 {
		t.Errorf("replay after 2 started at %+v", ev)
	}
}

func TestMetricsParse(t *testing.T) {
	srv, _ := newServer(t, true)
	if code, _ := do(t, srv, "GET", "/metrics", "", ""); code != 401 {
		t.Errorf("/metrics without a token: %d", code)
	}
	code, body := do(t, srv, "GET", "/metrics", viewerTok, "")
	if code != 200 {
		t.Fatalf("%d", code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("metrics do not parse: %v", err)
	}
	for _, name := range []string{
		"edgelb_service_connections_total", "edgelb_service_bytes_total", "edgelb_service_packets_total",
		"edgelb_backend_connections_total", "edgelb_backend_up", "edgelb_backend_weight", "edgelb_backend_active_connections",
		"edgelb_vip_owned", "edgelb_cluster_members", "edgelb_pool_addresses", "edgelb_pool_addresses_used",
		"edgelb_leader", "edgelb_ready", "edgelb_healthy",
	} {
		if fams[name] == nil {
			t.Errorf("missing %s", name)
		}
	}
	up := fams["edgelb_backend_up"].GetMetric()
	if len(up) != 2 { // the UDP backend's health is unknown: no sample
		t.Errorf("edgelb_backend_up has %d samples, want 2", len(up))
	}
}

// A request that changes state from a page of another site is refused,
// and so is one without a JSON content type (a plain form or text POST,
// which a browser sends cross-site without asking): nothing changes.
func TestCrossOriginWritesRefused(t *testing.T) {
	for _, tokens := range []bool{true, false} {
		srv, f := newServer(t, tokens)
		tok := ""
		if tokens {
			tok = adminTok
		}
		host := strings.TrimPrefix(srv.URL, "http://")
		for _, c := range []struct {
			name    string
			headers map[string]string
			code    int
			msg     string
		}{
			{"other origin", map[string]string{"Content-Type": "application/json", "Origin": "http://evil.example"}, 403, `is not this API`},
			{"null origin", map[string]string{"Content-Type": "application/json", "Origin": "null"}, 403, "cross-origin request refused"},
			{"cross-site fetch", map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, 403, "cross-origin request refused"},
			{"form post", map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://" + host}, 415, "needs Content-Type: application/json"},
			{"text post", map[string]string{"Content-Type": "text/plain"}, 415, "needs Content-Type: application/json"},
			{"no content type", nil, 415, "needs Content-Type: application/json"},
		} {
			req, _ := http.NewRequest("POST", srv.URL+"/api/v1/members/lb1/drain", nil)
			if tok != "" {
				req.Header.Set("Authorization", "Bearer "+tok)
			}
			for k, v := range c.headers {
				req.Header.Set(k, v)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.code || !strings.Contains(string(b), c.msg) {
				t.Errorf("tokens %v, %s: %d %s, want %d with %q", tokens, c.name, resp.StatusCode, b, c.code, c.msg)
			}
			if f.Members()[0].Draining {
				t.Fatalf("tokens %v, %s: the member was drained", tokens, c.name)
			}
		}
		// The dashboard's own request: same origin, JSON.
		req, _ := http.NewRequest("POST", srv.URL+"/api/v1/members/lb1/drain", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", "http://"+host)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 202 || !f.Members()[0].Draining {
			t.Errorf("tokens %v: same-origin JSON drain: %d, draining %v", tokens, resp.StatusCode, f.Members()[0].Draining)
		}
	}
}

// DNS rebinding: a page whose name resolves to the API sends its own
// name as Host and Origin, which agree. The token-less loopback API
// refuses it, changes nothing, and still serves requests by address, to
// localhost and to the names of api.hosts.
func TestRebindingRefused(t *testing.T) {
	f := apitest.Sample()
	srv := httptest.NewServer(api.New(api.Options{State: f, Bus: f.Bus, Log: slog.New(slog.DiscardHandler),
		Hosts: []string{"lb.example.net"}}).Handler())
	defer srv.Close()
	send := func(method, host, path string) (int, string) {
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		req.Host = host
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", "http://"+host)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, host := range []string{"rebind.attacker.example:9080", "rebind.attacker.example", "LB.example.net.evil:9080"} {
		code, body := send("POST", host, "/api/v1/members/lb1/drain")
		if code != http.StatusMisdirectedRequest || !strings.Contains(body, "add it to api.hosts") {
			t.Errorf("drain with Host %s: %d %s, want 421 naming api.hosts", host, code, body)
		}
		if code, _ := send("GET", host, "/api/v1/status"); code != http.StatusMisdirectedRequest {
			t.Errorf("status with Host %s: %d, want 421", host, code)
		}
	}
	if f.Members()[0].Draining {
		t.Fatal("a rebinding request drained a member")
	}
	for _, host := range []string{"127.0.0.1:9080", "[::1]:9080", "localhost:9080", "LB.example.net", "lb.example.net.:9080"} {
		if code, body := send("GET", host, "/api/v1/status"); code != http.StatusOK {
			t.Errorf("status with Host %s: %d %s, want 200", host, code, body)
		}
	}
	if code, _ := send("POST", "localhost:9080", "/api/v1/members/lb1/drain"); code != http.StatusAccepted || !f.Members()[0].Draining {
		t.Errorf("a same-origin drain on localhost: %d", code)
	}
}

// A request by a name the API does not serve is still answered when it
// carries a valid token (a rebinding page cannot know one: a Prometheus
// scrape by name), and /healthz always is; without a token it is not.
func TestUnknownHostWithAToken(t *testing.T) {
	f := apitest.Sample()
	srv := httptest.NewServer(api.New(api.Options{State: f, Bus: f.Bus, Log: slog.New(slog.DiscardHandler),
		Tokens: map[string][]string{"viewer": {viewerTok}}}).Handler())
	defer srv.Close()
	get := func(path, token string) int {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Host = "lb1.example.net:9080"
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		path, token string
		want        int
	}{
		{"/api/v1/status", viewerTok, http.StatusOK},
		{"/api/v1/status", "", http.StatusMisdirectedRequest},
		{"/api/v1/status", "not-a-token-0123456789", http.StatusMisdirectedRequest},
		{"/", "", http.StatusMisdirectedRequest},
		{"/healthz", "", http.StatusOK},
	} {
		if got := get(tc.path, tc.token); got != tc.want {
			t.Errorf("GET %s by name, token %q: %d, want %d", tc.path, tc.token, got, tc.want)
		}
	}
}
