package web_test

import (
	"log/slog"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/api/apitest"
	"github.com/edgelb/edgelb/web"
	"github.com/edgelb/edgelb/web/webtest"
)

// TestDashboardMembers: the configuration card says whether this host is
// in contact with a majority; an admin adds a host by its gossip address
// and removes one from the members card; a viewer cannot.
func TestDashboardMembers(t *testing.T) {
	cc, _, err := webtest.ClusterConfig(bgpHostFile)
	if err != nil {
		t.Fatal(err)
	}
	fake := apitest.Sample()
	ms := &apitest.Members{Names: []string{"10.0.0.11:7946", "10.0.0.12:7946", "10.0.0.13:7946"},
		Cont: api.Contact{Quorum: true, Leader: "10.0.0.12:7946"}}
	ts := httptest.NewServer(api.New(api.Options{
		Tokens: map[string][]string{api.RoleAdmin: {adminToken}, api.RoleViewer: {viewerToken}},
		State:  &webtest.Traffic{State: fake, Start: time.Now()},
		Bus:    fake.Bus, Config: cc, Members: ms, Dashboard: web.Files(), Log: slog.New(slog.DiscardHandler),
	}).Handler())
	t.Cleanup(func() { ts.CloseClientConnections(); ts.Close() })
	p := webtest.NewPage(t)
	const wait = 15 * time.Second

	p.Do("sign in as admin: the configuration card says the host is in contact with a majority",
		chromedp.Navigate(ts.URL+"/?refresh=1"),
		webtest.SignIn(adminToken),
		webtest.Poll(`document.querySelector('#cfg-contact')?.dataset.quorum === 'true' && document.querySelector('#cfg-contact').textContent.includes('leader 10.0.0.12:7946')`, wait))

	p.Do("an admin adds 10.0.0.14:7946: listed, configured and not alive yet",
		chromedp.SetValue(chromedp.ID("member-address"), "10.0.0.14:7946"),
		chromedp.Click(chromedp.ID("member-add-submit")),
		webtest.ConfirmDialog(),
		webtest.BannerContains("10.0.0.14:7946 added", wait),
		webtest.Poll(`!!document.querySelector('tr[data-member="10.0.0.14:7946"] button.remove')`, wait))

	p.Do("an admin removes lb3: it is listed as not configured",
		chromedp.Click(chromedp.CSS(`tr[data-member="lb3"] button.remove`)),
		webtest.ConfirmDialog(),
		webtest.BannerContains("10.0.0.13:7946 removed", wait),
		webtest.Poll(`document.querySelector('tr[data-member="lb3"] .state').textContent.includes('not configured') && !document.querySelector('tr[data-member="lb3"] button.remove')`, wait))
	if got := ms.Configured(); !slices.Equal(got, []string{"10.0.0.11:7946", "10.0.0.12:7946", "10.0.0.14:7946"}) {
		t.Errorf("configured members after the page's changes: %v", got)
	}

	ms.SetContact(api.Contact{Unreachable: []string{"10.0.0.12:7946", "10.0.0.14:7946"}})
	p.Do("cut off from the others, the card says so and names them",
		webtest.Poll(`document.querySelector('#cfg-contact').dataset.quorum === 'false' && document.querySelector('#cfg-contact').textContent.includes('unreachable: 10.0.0.12:7946, 10.0.0.14:7946')`, wait))

	p.Do("a viewer cannot add or remove",
		chromedp.Click(chromedp.ID("signout")),
		webtest.SignIn(viewerToken),
		chromedp.Click(chromedp.CSS(`tr[data-member="lb2"] button.remove`)),
		webtest.ConfirmDialog(),
		webtest.BannerContains("needs an admin token", wait),
		webtest.Poll(`document.querySelector('#member-add-submit').disabled && [...document.querySelectorAll('#members button')].every(b => b.disabled)`, wait))
	if got := ms.Configured(); len(got) != 3 {
		t.Errorf("a viewer changed the members: %v", got)
	}
	if errs := p.Errors(); len(errs) > 0 {
		t.Errorf("the page reported errors: %q", errs)
	}
}

// A witness is shown as one — not unhealthy — and cannot be drained: it
// owns nothing to hand over.
func TestDashboardWitness(t *testing.T) {
	fake := apitest.Sample()
	fake.SetMember("lb3", func(m *api.Member) { m.Name, m.Healthy, m.Witness = "witness", false, true })
	ts := httptest.NewServer(api.New(api.Options{
		Tokens: map[string][]string{api.RoleAdmin: {adminToken}, api.RoleViewer: {viewerToken}},
		State:  &webtest.Traffic{State: fake, Start: time.Now()},
		Bus:    fake.Bus, Dashboard: web.Files(), Log: slog.New(slog.DiscardHandler),
	}).Handler())
	t.Cleanup(func() { ts.CloseClientConnections(); ts.Close() })
	p := webtest.NewPage(t)
	p.Do("the witness row says witness and has no drain button",
		chromedp.Navigate(ts.URL+"/?refresh=1"),
		webtest.SignIn(adminToken),
		webtest.Poll(`(() => { const r = document.querySelector('tr[data-member="witness"]');
			return !!r && r.querySelector('.state').textContent.includes('witness') && !r.querySelector('.state').textContent.includes('unhealthy') &&
				!r.querySelector('button.drain') && !!document.querySelector('tr[data-member="lb2"] button.drain'); })()`, 15*time.Second))
	if errs := p.Errors(); len(errs) > 0 {
		t.Errorf("the page reported errors: %q", errs)
	}
}
