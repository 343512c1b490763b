package web_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/api/apitest"
	"github.com/edgelb/edgelb/api/clustercfg"
	"github.com/edgelb/edgelb/cluster"
	"github.com/edgelb/edgelb/web"
	"github.com/edgelb/edgelb/web/webtest"
)

const (
	md5Key    = "md5-page-0xC0FFEE"
	md5NewKey = "md5-page-0xBEEF"
)

const bgpHostFile = `node: {name: lb1}
cluster: {insecure: true}
bgp:
  asn: 64512
  routerID: 10.0.0.11
  peers: [{address: 10.0.0.1, asn: 64500, password: ` + md5Key + `}]
pools:
  - {name: default, addresses: ["192.0.2.10-192.0.2.50"]}
`

// serveConfig starts the API with the dashboard over fake state and a
// real cluster configuration seeded from hostFile's cluster-wide keys;
// edit, when given, changes the fake state first.
func serveConfig(t *testing.T, hostFile string, edit func(*apitest.Fake)) (*httptest.Server, *cluster.Docs, *clustercfg.Config) {
	t.Helper()
	cc, docs, err := webtest.ClusterConfig(hostFile)
	if err != nil {
		t.Fatal(err)
	}
	fake := apitest.Sample()
	if edit != nil {
		edit(fake)
	}
	ts := httptest.NewServer(api.New(api.Options{
		Tokens: map[string][]string{api.RoleAdmin: {adminToken}},
		State:  &webtest.Traffic{State: fake, Start: time.Now()},
		Bus:    fake.Bus, Config: cc, Dashboard: web.Files(), Log: slog.New(slog.DiscardHandler),
	}).Handler())
	t.Cleanup(func() { ts.CloseClientConnections(); ts.Close() })
	return ts, docs, cc
}

// TestDashboardConfigKeepsSecrets: the page never holds a BGP password;
// a service added with the form keeps it; the diff of a version that
// changed it says so without a value; a rollback from the page says the
// password changes and restores the version's password.
func TestDashboardConfigKeepsSecrets(t *testing.T) {
	ts, docs, cc := serveConfig(t, bgpHostFile, nil)
	stored := func() string { d, _ := docs.Current(); return string(d.Body) }

	p := webtest.NewPage(t)
	const wait = 15 * time.Second
	p.Do("sign in as admin: the configuration card shows version 1",
		chromedp.Navigate(ts.URL+"/?refresh=1"),
		webtest.SignIn(adminToken),
		webtest.Poll(`document.querySelector('#cfg-summary')?.dataset.version === '1'`, wait))
	p.Do("add a static service with the form",
		chromedp.Click(chromedp.ID("cfg-add-service")),
		webtest.SetField("name", "web"),
		webtest.SetField("vip", "192.0.2.80"),
		webtest.SetField("ports", "80/TCP"),
		webtest.SetField("backends", "10.0.1.7:8080"),
		chromedp.Click(chromedp.ID("cfg-check")),
		webtest.Poll(`document.querySelector('#cfg-effect [data-effect="servicesAdded"]')?.textContent.includes('web')`, wait),
		webtest.Poll(`!document.querySelector('#cfg-effect [data-effect="secretsChanged"]')`, time.Second),
		chromedp.Click(chromedp.ID("cfg-apply")),
		webtest.BannerContains("Version 2 applied", wait))
	if s := stored(); docs.Version() != 2 || !strings.Contains(s, `"password":"`+md5Key+`"`) || !strings.Contains(s, `"name":"web"`) {
		t.Fatalf("after the form's change, version %d stores %s: want the service added and the password kept", docs.Version(), s)
	}

	// A new password, set through the API, is version 3; its diff names it.
	cur, err := cc.Current(true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cc.Put(context.Background(), []byte(strings.Replace(string(cur.Spec), md5Key, md5NewKey, 1)), 2, "test"); err != nil {
		t.Fatal(err)
	}
	p.Do("the diff of version 3 names the password that changed",
		chromedp.Navigate(ts.URL+"/?refresh=1"),
		webtest.Poll(`!!document.querySelector('#cfg-history tr[data-version="3"] button.diff')`, wait),
		chromedp.Click(chromedp.CSS(`#cfg-history tr[data-version="3"] button.diff`)),
		webtest.Poll(`document.querySelector('#cfg-diff')?.dataset.version === '3'`, wait),
		webtest.Poll(`[...document.querySelectorAll('#cfg-diff .secret')].some(l => l.textContent.includes('bgp.peers[10.0.0.1].password changed'))`, wait))
	p.Do("roll back to version 1 from the page: the dialog says the password changes",
		chromedp.Click(chromedp.CSS(`#cfg-history tr[data-version="1"] button.rollback`)),
		chromedp.WaitVisible(chromedp.ID("confirm")),
		webtest.Poll(`document.querySelector('#confirm-text').textContent.includes('Secrets changed (values not shown): bgp.peers[10.0.0.1].password')`, wait),
		webtest.ConfirmDialog(),
		webtest.BannerContains("a rollback to version 1", wait))
	if s := stored(); docs.Version() != 4 || !strings.Contains(s, `"password":"`+md5Key+`"`) || strings.Contains(s, `"name":"web"`) {
		t.Errorf("after the rollback, version %d stores %s: want version 1's content and password", docs.Version(), s)
	}
	html := p.Eval(`document.documentElement.outerHTML`)
	for _, key := range []string{md5Key, md5NewKey} {
		if strings.Contains(html, key) {
			t.Errorf("the page holds a password: %s", key)
		}
	}
	if errs := p.Errors(); len(errs) > 0 {
		t.Errorf("the page reported errors: %q", errs)
	}
}
