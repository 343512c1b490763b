package api_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/api/apitest"
)

// panicLog counts the panics the server's recovery logs: a recovered
// panic is still a bug the fuzzers must report.
type panicLog struct{ n atomic.Int32 }

func (p *panicLog) Enabled(context.Context, slog.Level) bool { return true }
func (p *panicLog) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "panic") {
		p.n.Add(1)
	}
	return nil
}
func (p *panicLog) WithAttrs([]slog.Attr) slog.Handler { return p }
func (p *panicLog) WithGroup(string) slog.Handler      { return p }

// fuzzServer is the API over the sample fake, with tokens.
func fuzzServer() (http.Handler, *apitest.Fake, *panicLog) {
	f := apitest.Sample()
	pl := &panicLog{}
	srv := api.New(api.Options{State: f, Bus: f.Bus, Log: slog.New(pl), Metrics: api.NewMetrics(f), Hosts: []string{"edgelb"},
		Tokens: map[string][]string{"admin": {adminTok}, "viewer": {viewerTok}}})
	return srv.Handler(), f, pl
}

// state is what a request may change: the members (draining) and the
// VIPs (their owners).
func state(f *apitest.Fake) any { return []any{f.Members(), f.VIPs(), f.Status(), f.Services()} }

// serve sends one request and checks the rules every response obeys: no
// panic, no 500, an error is a JSON {"error": ...}, and the state changes
// only with a 202 (an accepted drain or undrain).
func serve(t *testing.T, h http.Handler, f *apitest.Fake, pl *panicLog, req *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	// The event stream runs until its request ends: end it at once, after
	// the headers are checked and the backlog is sent.
	ctx, cancel := context.WithCancel(req.Context())
	cancel()
	req = req.WithContext(ctx)
	before := state(f)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if n := pl.n.Load(); n > 0 {
		t.Fatalf("%s %q: the handler panicked", req.Method, req.URL)
	}
	if rec.Code == http.StatusInternalServerError {
		t.Fatalf("%s %q: 500: %s", req.Method, req.URL, rec.Body)
	}
	if rec.Code >= 400 {
		var e api.Error
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
			t.Fatalf("%s %q: %d with a body that is no JSON error: %q", req.Method, req.URL, rec.Code, rec.Body)
		}
	}
	if rec.Code != http.StatusAccepted && !reflect.DeepEqual(before, state(f)) {
		t.Fatalf("%s %q answered %d but changed the state", req.Method, req.URL, rec.Code)
	}
	return rec
}

// FuzzRequest sends any method, path, Authorization and Last-Event-ID
// header and body to the API.
func FuzzRequest(f *testing.F) {
	for _, s := range []struct{ method, path, auth, lastID, body string }{
		{"GET", "/api/v1/status", "Bearer " + viewerTok, "", ""},
		{"GET", "/api/v1/services/demo/web", "Bearer " + viewerTok, "", ""},
		{"GET", "/api/v1/services/demo/../../status", "Bearer " + viewerTok, "", ""},
		{"GET", "/api/v1/events", "Bearer " + viewerTok, "3", ""},
		{"GET", "/api/v1/events", "Bearer " + viewerTok, "-1", ""},
		{"POST", "/api/v1/members/lb1/drain", "Bearer " + adminTok, "", ""},
		{"POST", "/api/v1/members/lb1/undrain", "Bearer " + adminTok, "", "{}"},
		{"POST", "/api/v1/members/lb1/drain", "Bearer " + viewerTok, "", ""},
		{"POST", "/api/v1/members/lb1/drain", "Bearer " + adminTok, "", `{"force":true}`},
		{"POST", "/api/v1/members/%2e%2e/drain", "Bearer " + adminTok, "", ""},
		{"DELETE", "/api/v1/members/lb1", "Basic YWRtaW46", "", ""},
		{"GET", "/metrics", "Bearer ", "", ""},
		{"GET", "/readyz?x=%zz", "bearer " + adminTok, "", ""},
	} {
		f.Add(s.method, s.path, s.auth, s.lastID, s.body)
	}
	f.Fuzz(func(t *testing.T, method, path, auth, lastID, body string) {
		req, err := http.NewRequest(method, "http://edgelb"+path, strings.NewReader(body))
		if err != nil || req.URL.Host != "edgelb" {
			return // not a request a client can send
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		h, fake, pl := fuzzServer()
		rec := serve(t, h, fake, pl, req)
		if rec.Code == http.StatusAccepted && auth != "Bearer "+adminTok {
			t.Fatalf("%s %q changed something without the admin token (Authorization %q)", method, path, auth)
		}
	})
}

// FuzzDrainBody sends any body with an admin drain: only none or an
// empty JSON object is accepted, and anything refused changes nothing.
func FuzzDrainBody(f *testing.F) {
	for _, b := range []string{"", "{}", " { } ", `{"force":true}`, "null", "[]", "{", `{"":0}`, "\x00"} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body string) {
		h, fake, pl := fuzzServer()
		req, _ := http.NewRequest("POST", "http://edgelb/api/v1/members/lb1/drain", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+adminTok)
		req.Header.Set("Content-Type", "application/json")
		rec := serve(t, h, fake, pl, req)
		if rec.Code == http.StatusAccepted {
			var v map[string]any
			if b := strings.TrimSpace(body); b != "" && (json.Unmarshal([]byte(body), &v) != nil || len(v) > 0) {
				t.Fatalf("drain accepted the body %q", body)
			}
		}
	})
}
