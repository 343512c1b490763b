package web_test

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/api/apitest"
	"github.com/edgelb/edgelb/web"
	"github.com/edgelb/edgelb/web/webtest"
)

const (
	adminToken  = "admin-secret"
	viewerToken = "viewer-secret"
)

// serve starts the API with the dashboard over fake state; wrap, when
// given, wraps its handler.
func serve(t *testing.T, tokens map[string][]string, wrap ...func(http.Handler) http.Handler) (*httptest.Server, *apitest.Fake) {
	t.Helper()
	fake := apitest.Sample()
	srv := api.New(api.Options{
		Tokens:    tokens,
		State:     &webtest.Traffic{State: fake, Start: time.Now()},
		Bus:       fake.Bus,
		Dashboard: web.Files(),
		Log:       slog.New(slog.DiscardHandler),
	})
	h := srv.Handler()
	for _, w := range wrap {
		h = w(h)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(func() {
		ts.CloseClientConnections() // the page's event stream never ends by itself
		ts.Close()
	})
	return ts, fake
}

// TestFiles checks that the page and every file it loads are served, with
// a JavaScript content type for the modules, and without a token.
func TestFiles(t *testing.T) {
	ts, _ := serve(t, map[string][]string{api.RoleAdmin: {adminToken}})
	get := func(path string) (string, string) {
		t.Helper()
		res, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", path, res.Status)
		}
		return string(b), res.Header.Get("Content-Type")
	}
	index, ctype := get("/")
	if !strings.HasPrefix(ctype, "text/html") {
		t.Errorf("GET /: Content-Type %q", ctype)
	}
	// Every local reference: src/href in the page, imports in the modules.
	refs := regexp.MustCompile(`(?:src|href)="(/ui/[^"]+)"`).FindAllStringSubmatch(index, -1)
	if len(refs) < 2 {
		t.Fatalf("the page references %d files under /ui/", len(refs))
	}
	seen := map[string]bool{}
	var names []string
	for _, r := range refs {
		names = append(names, r[1])
	}
	imports := regexp.MustCompile(`from '\./([a-z]+\.js)'`)
	for len(names) > 0 {
		path := names[0]
		names = names[1:]
		if seen[path] {
			continue
		}
		seen[path] = true
		body, ctype := get(path)
		if strings.HasSuffix(path, ".js") {
			if !strings.HasPrefix(ctype, "text/javascript") {
				t.Errorf("GET %s: Content-Type %q, want text/javascript", path, ctype)
			}
			for _, m := range imports.FindAllStringSubmatch(body, -1) {
				names = append(names, "/ui/"+m[1])
			}
		}
	}
	// Nothing is loaded from elsewhere, and every file is used.
	files, _ := fs.Glob(web.Files(), "*")
	for _, f := range files {
		if f != "index.html" && !seen["/ui/"+f] {
			t.Errorf("%s is embedded but not loaded by the page", f)
		}
	}
	for path := range seen {
		if !slices.Contains(files, strings.TrimPrefix(path, "/ui/")) {
			t.Errorf("%s is loaded but not embedded", path)
		}
	}
	if regexp.MustCompile(`(?i)(src|href)="(https?:)?//`).MatchString(index) {
		t.Error("the page loads something from another host")
	}
}

// TestDashboard drives the dashboard in Chromium against fake state: it
// shows the members, the VIP owners and the services; an admin's drain
// moves the VIP in the page without a reload; another host's member can be
// drained from this page too; a viewer's drain is refused and disables the
// buttons; a wrong token is refused at sign-in.
func TestDashboard(t *testing.T) {
	ts, fake := serve(t, map[string][]string{api.RoleAdmin: {adminToken}, api.RoleViewer: {viewerToken}})
	p := webtest.NewPage(t)
	const wait = 15 * time.Second

	p.Do("sign in as admin",
		chromedp.Navigate(ts.URL+"/?refresh=1"),
		webtest.SignIn(adminToken),
		chromedp.Evaluate[chromedp.Void](`window.notReloaded = true`))
	p.Do("the overview shows the members, VIP owners and services",
		webtest.Poll(`['lb1','lb2','lb3'].every(n => document.querySelector('tr[data-member="'+n+'"]'))`, wait),
		webtest.OwnerIs("192.0.2.10", "lb1", wait),
		webtest.OwnerIs("192.0.2.53", "lb2", wait),
		webtest.ServiceShown("demo", "web", wait),
		webtest.ServiceShown(api.StaticNamespace, "dns", wait),
		webtest.Poll(`document.querySelector('tr[data-service="demo/web"] .external-ip').textContent === '192.0.2.10'`, wait),
		webtest.Poll(`document.querySelector('tr[data-service="demo/web"]').textContent.includes('10.0.1.2:31000')`, wait),
		webtest.Poll(`document.querySelector('#stream').dataset.state === 'live'`, wait),
		webtest.Poll(`document.querySelector('[data-pool="default"]')?.textContent.includes('1 of 41 used')`, wait),
		webtest.Poll(`document.querySelector('tr[data-member="lb1"] .config').textContent === 'v3 in sync'`, wait),
		webtest.Poll(`document.querySelector('tr[data-member="lb3"] .config .badge.warn')?.textContent === 'behind'`, wait))

	// The sync badge compares exact versions: lb2 with another version 3
	// (another hash) is not in sync; lb3 says which version it cannot
	// apply.
	fake.SetMember("lb2", func(m *api.Member) { m.ConfigID = "3:ffffffffffffffff" })
	fake.SetMember("lb3", func(m *api.Member) { m.Unapplied = 3 })
	fake.SetStatus(func(st *api.Status) { st.ConfigUnapplied = 4 })
	p.Do("a member with another version of the same number differs; one that cannot apply says so",
		webtest.Poll(`document.querySelector('tr[data-member="lb2"] .config .badge.bad')?.textContent === 'differs'`, wait),
		webtest.Poll(`document.querySelector('tr[data-member="lb3"] .config .badge.bad')?.textContent === 'cannot apply v3'`, wait),
		webtest.Poll(`document.querySelector('tr[data-member="lb1"] .config').textContent === 'v3 in sync'`, wait),
		webtest.Poll(`[...document.querySelectorAll('#summary .card')].some(c => c.textContent.includes('cannot apply v4'))`, wait))
	fake.SetStatus(func(st *api.Status) { st.ConfigUnapplied = 0 })
	fake.SetMember("lb2", func(m *api.Member) { m.ConfigID = "3:3f9a0c1b2d4e5f60" })
	fake.SetMember("lb3", func(m *api.Member) { m.Unapplied = 0 })

	p.Do("an admin drains lb1 and the page shows 192.0.2.10 on lb2",
		webtest.ClickDrain("lb1", "drain"),
		webtest.OwnerIs("192.0.2.10", "lb2", wait),
		webtest.MemberDraining("lb1", true, wait),
		webtest.BannerContains("lb1 is draining", wait),
		webtest.Poll(`!!document.querySelector('#events li[data-type="ownership"]')`, wait),
		webtest.Poll(`window.notReloaded === true`, time.Second))
	if m := fake.Members()[0]; !m.Draining {
		t.Errorf("the fake's lb1 is not draining after the drain: %+v", m)
	}

	p.Do("another host's member is drained from this page too",
		webtest.ClickDrain("lb2", "drain"),
		webtest.MemberDraining("lb2", true, wait),
		webtest.BannerContains("lb2 is draining", wait),
		webtest.ClickDrain("lb2", "undrain"),
		webtest.MemberDraining("lb2", false, wait))

	p.Do("the traffic charts draw rates",
		webtest.Poll(`(ls => ls.length >= 2 && ls.every(l => l.points.length >= 4))([...document.querySelectorAll('#charts svg polyline')])`, wait))
	p.Screenshot("dashboard-fake")

	p.Do("an admin undrains lb1",
		webtest.ClickDrain("lb1", "undrain"),
		webtest.MemberDraining("lb1", false, wait))

	p.Do("a viewer's drain is refused and disables the buttons",
		chromedp.Click(chromedp.ID("signout")),
		webtest.SignIn(viewerToken),
		webtest.ClickDrain("lb1", "drain"),
		webtest.BannerContains("needs an admin token", wait),
		webtest.Poll(`[...document.querySelectorAll('#members button')].every(b => b.disabled)`, wait),
		webtest.Poll(`!document.querySelector('#readonly').hidden`, wait))
	if m := fake.Members()[0]; m.Draining {
		t.Errorf("a viewer drained lb1: %+v", m)
	}

	p.Do("a wrong token is refused at sign-in",
		chromedp.Click(chromedp.ID("signout")),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), "wrong"),
		chromedp.Click(chromedp.ID("login-submit")),
		webtest.Poll(`document.querySelector('#login-error').textContent.includes('not valid')`, wait),
		webtest.Poll(`sessionStorage.getItem('edgelb.token') === null`, wait))

	if errs := p.Errors(); len(errs) > 0 {
		t.Errorf("the page reported errors: %q", errs)
	}
}

// TestDashboardNoTokens: with no tokens configured, "continue without a
// token" shows the state and drains.
func TestDashboardNoTokens(t *testing.T) {
	ts, _ := serve(t, nil)
	p := webtest.NewPage(t)
	const wait = 15 * time.Second
	p.Do("continue without a token and drain lb1",
		chromedp.Navigate(ts.URL),
		webtest.SignIn(""),
		webtest.OwnerIs("192.0.2.10", "lb1", wait),
		webtest.ClickDrain("lb1", "drain"),
		webtest.OwnerIs("192.0.2.10", "lb2", wait))
	if errs := p.Errors(); len(errs) > 0 {
		t.Errorf("the page reported errors: %q", errs)
	}
}

// TestEventStreamReconnect: when the event stream breaks, the page
// reconnects with Last-Event-ID and shows every event once.
func TestEventStreamReconnect(t *testing.T) {
	var mu sync.Mutex
	var lastIDs []string
	ts, fake := serve(t, map[string][]string{api.RoleAdmin: {adminToken}}, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/api/v1/events" {
				mu.Lock()
				lastIDs = append(lastIDs, r.Header.Get("Last-Event-ID"))
				mu.Unlock()
			}
			h.ServeHTTP(w, r)
		})
	})
	p := webtest.NewPage(t)
	const wait = 15 * time.Second
	count := func(msg string) string {
		return `[...document.querySelectorAll('#events li .msg')].filter(e => e.textContent === '` + msg + `').length`
	}
	p.Do("sign in and see a first event",
		chromedp.Navigate(ts.URL),
		webtest.SignIn(adminToken),
		webtest.Poll(`document.querySelector('#stream').dataset.state === 'live'`, wait),
		chromedp.Func(func(context.Context, *chromedp.Target) error { fake.Bus.Publish("error", "first", nil); return nil }),
		webtest.Poll(count("first")+` === 1`, wait))
	ts.CloseClientConnections()
	fake.Bus.Publish("error", "second", nil)
	p.Do("after the break, the page shows the second event and the first still once",
		webtest.Poll(count("second")+` === 1`, wait),
		webtest.Poll(count("first")+` === 1`, time.Second),
		webtest.Poll(`document.querySelector('#stream').dataset.state === 'live'`, wait))
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(lastIDs, "1") {
		t.Errorf("the reconnecting page sent Last-Event-ID %q, want one of them to be 1 (the first event's)", lastIDs)
	}
}

// TestReadSSE feeds the page's Server-Sent Events parser chunks split at
// awkward places: inside a field name, between CR and LF, inside a UTF-8
// character.
func TestReadSSE(t *testing.T) {
	ts, _ := serve(t, nil)
	p := webtest.NewPage(t)
	p.Do("load the page", chromedp.Navigate(ts.URL), chromedp.WaitVisible(chromedp.ID("token")))
	got := p.EvalAsync(`(async () => {
		const { readSSE } = await import('/ui/api.js');
		const enc = new TextEncoder();
		const text = 'id: 1\nevent: own' + '|ership\ndata: {"a":1}\n|\n: keepalive\n\nid: 2\r|\nevent: drain\r\ndata: line1\r\ndata: line2\r\n\r\n' +
			'|data: no id\n\nevent: no data\n\nid: 3\ndata:nospace\n\ndata: caf';
		const chunks = text.split('|').map(s => enc.encode(s));
		const e = enc.encode('é\n\n');
		chunks.push(e.slice(0, 1), e.slice(1));
		const body = new ReadableStream({ start(c) { chunks.forEach(b => c.enqueue(b)); c.close(); } });
		const out = [];
		for await (const ev of readSSE(body)) out.push(ev);
		return JSON.stringify(out);
	})()`)
	type ev struct {
		ID   *string `json:"id"`
		Type string  `json:"type"`
		Data string  `json:"data"`
	}
	var evs []ev
	if err := json.Unmarshal([]byte(got), &evs); err != nil {
		t.Fatalf("%s: %v", got, err)
	}
	id := func(s string) *string { return &s }
	want := []ev{
		{id("1"), "ownership", `{"a":1}`},
		{id("2"), "drain", "line1\nline2"},
		{nil, "message", "no id"},
		{id("3"), "message", "nospace"},
		{nil, "message", "café"},
	}
	if len(evs) != len(want) {
		t.Fatalf("got %d events %s, want %d", len(evs), got, len(want))
	}
	for i := range want {
		g, w := evs[i], want[i]
		if g.Type != w.Type || g.Data != w.Data || (g.ID == nil) != (w.ID == nil) || (g.ID != nil && *g.ID != *w.ID) {
			t.Errorf("event %d: got %s", i, got)
		}
	}
}
