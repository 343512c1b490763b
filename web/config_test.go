package web_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/edgelb/edgelb/api/apitest"
	"github.com/edgelb/edgelb/cluster"
	"github.com/edgelb/edgelb/web/webtest"
)

// storedSpec is the spec of the configuration's current version, as
// stored (passwords included).
type storedSpec struct {
	Pools []struct {
		Name       string   `json:"name"`
		Namespaces []string `json:"namespaces"`
		AutoAssign *bool    `json:"autoAssign"`
		Announce   string   `json:"announce"`
	} `json:"pools"`
	Services []map[string]any `json:"services"`
	BGP      struct {
		ASN   int              `json:"asn"`
		Peers []map[string]any `json:"peers"`
	} `json:"bgp"`
	Dataplane   map[string]any `json:"dataplane"`
	HealthCheck map[string]any `json:"healthCheck"`
}

func stored(t *testing.T, docs *cluster.Docs) (storedSpec, string) {
	t.Helper()
	d, _ := docs.Current()
	var s storedSpec
	if err := json.Unmarshal(d.Body, &s); err != nil {
		t.Fatal(err)
	}
	return s, string(d.Body)
}

func js(v any) string { b, _ := json.Marshal(v); return string(b) }

// TestDashboardConfigEveryKey edits every key of the cluster
// configuration through the forms: a pool's namespaces, autoAssign and
// announce; a static service's source ranges, scheduler, persistence and
// health check (a bad value refused under its own field); a BGP peer's
// AS, hold time and BFD with its password kept, a new peer's password
// (never in the page), a changed address that needs the password again,
// and a password removed; the dataplane and the health check defaults;
// BGP removed (refused while a pool announces over it) and a first peer
// added with the cluster's AS number. The services table shows a port's
// source ranges.
func TestDashboardConfigEveryKey(t *testing.T) {
	ts, docs, _ := serveConfig(t, bgpHostFile, func(f *apitest.Fake) {
		f.Svcs[0].Ports[0].SourceRanges = []string{"10.0.0.0/8", "2001:db8::/32"}
	})
	p := webtest.NewPage(t)
	const wait = 15 * time.Second
	p.Do("sign in: the services table shows demo/web's source ranges",
		chromedp.Navigate(ts.URL+"/?refresh=1"),
		webtest.SignIn(adminToken),
		webtest.Poll(`document.querySelector('#cfg-summary')?.dataset.version === '1'`, wait),
		webtest.Poll(`document.querySelector('#services tr[data-service="demo/web"] .source-ranges')?.textContent === 'from 10.0.0.0/8, 2001:db8::/32'`, wait),
		webtest.Poll(`!document.querySelector('#services tr[data-service="_static/dns"] .source-ranges')`, time.Second))

	p.Do("the pool's namespaces, autoAssign and announce",
		webtest.EditRow("#cfg-pools", "name", "default"),
		webtest.SetField("namespaces", "team-a, team-b"),
		webtest.SetField("autoAssign", "false"),
		webtest.SetField("announce", "bgp"),
		chromedp.Click(chromedp.ID("cfg-check")),
		webtest.Poll(`document.querySelector('#cfg-effect [data-effect="poolsChanged"]')?.textContent.includes('default')`, wait),
		chromedp.Click(chromedp.ID("cfg-apply")),
		webtest.BannerContains("Version 2 applied: pool default changed", wait),
		webtest.Poll(`document.querySelector('#cfg-pools tr[data-name="default"] .namespaces')?.textContent === 'team-a, team-b'`, wait))
	s, _ := stored(t, docs)
	if pl := s.Pools[0]; !slices.Equal(pl.Namespaces, []string{"team-a", "team-b"}) || pl.AutoAssign == nil || *pl.AutoAssign || pl.Announce != "bgp" {
		t.Errorf("version 2's pool is %+v", pl)
	}

	p.Do("a static service: a bad check interval and persistence are refused under their fields",
		chromedp.Click(chromedp.ID("cfg-add-service")),
		webtest.SetField("name", "web"),
		webtest.SetField("vip", "192.0.2.80"),
		webtest.SetField("ports", "80:8080/TCP"),
		webtest.SetField("backends", "10.0.1.7, 10.0.1.8"),
		webtest.SetField("sourceRanges", "10.0.0.0/8"),
		webtest.SetField("scheduler", "sh"),
		webtest.SetField("persistence", "ten minutes"),
		webtest.SetField("healthCheck.type", "http"),
		webtest.SetField("healthCheck.path", "/healthz"),
		webtest.SetField("healthCheck.interval", "5ms"),
		chromedp.Click(chromedp.ID("cfg-check")),
		webtest.FieldError("healthCheck.interval", "out of range", wait),
		webtest.FieldError("persistence", "ten minutes", wait),
		webtest.Poll(`document.querySelector('#cfg-apply').disabled`, time.Second))
	p.Screenshot("config-every-key-errors")
	p.Do("fixed, it is applied",
		webtest.SetField("persistence", "10m"),
		webtest.SetField("healthCheck.interval", "3s"),
		webtest.SetField("healthCheck.rise", "3"),
		webtest.CheckAndApply(3, wait),
		webtest.Poll(`document.querySelector('#cfg-services tr[data-name="web"] .source-ranges')?.textContent === '10.0.0.0/8'`, wait))
	s, raw := stored(t, docs)
	web := s.Services[0]
	hc, _ := web["healthCheck"].(map[string]any)
	if web["scheduler"] != "sh" || web["persistence"] != "10m" || js(web["sourceRanges"]) != `["10.0.0.0/8"]` ||
		hc["type"] != "http" || hc["path"] != "/healthz" || hc["interval"] != "3s" || hc["rise"] != float64(3) {
		t.Errorf("version 3's service is %s", js(web))
	}
	if !strings.Contains(raw, md5Key) {
		t.Errorf("version 3 lost the peer's password: %s", raw)
	}

	p.Do("the peer's AS, hold time and BFD; its password is kept",
		webtest.EditRow("#cfg-peers", "peer", "10.0.0.1"),
		webtest.Poll(`document.querySelector('#cfg-fields [data-field="password"]').value === '' && document.querySelector('#cfg-fields [data-field="password"]').placeholder.startsWith('stored')`, time.Second),
		webtest.SetField("asn", "64501"),
		webtest.SetField("holdTime", "30s"),
		webtest.SetField("bfd.multiplier", "5"),
		webtest.CheckAndApply(4, wait),
		webtest.Poll(`document.querySelector('#cfg-peers tr[data-peer="10.0.0.1"] .asn')?.textContent === '64501'`, wait))
	s, _ = stored(t, docs)
	if pe := s.BGP.Peers[0]; pe["asn"] != float64(64501) || pe["holdTime"] != "30s" || js(pe["bfd"]) != `{"multiplier":5}` || pe["password"] != md5Key {
		t.Errorf("version 4's peer is %s", js(pe))
	}

	const newKey = "md5-new-peer-0xF00D"
	p.Do("a new peer with a password",
		chromedp.Click(chromedp.ID("cfg-add-peer")),
		webtest.SetField("address", "10.0.0.2"),
		webtest.SetField("asn", "64502"),
		webtest.SetField("password", newKey),
		chromedp.Click(chromedp.ID("cfg-check")),
		webtest.Poll(`document.querySelector('#cfg-effect [data-effect="secretsChanged"]')?.textContent.includes('bgp.peers[10.0.0.2].password')`, wait),
		chromedp.Click(chromedp.ID("cfg-apply")),
		webtest.BannerContains("Version 5 applied: BGP peer 10.0.0.2 added", wait),
		webtest.Poll(`document.querySelector('#cfg-peers tr[data-peer="10.0.0.2"] .password')?.textContent === 'set'`, wait))
	if s, _ = stored(t, docs); len(s.BGP.Peers) != 2 || s.BGP.Peers[1]["password"] != newKey {
		t.Errorf("version 5's peers are %s", js(s.BGP.Peers))
	}

	p.Do("a changed address needs the password again, under its field",
		webtest.EditRow("#cfg-peers", "peer", "10.0.0.1"),
		webtest.SetField("address", "10.0.0.3"),
		chromedp.Click(chromedp.ID("cfg-check")),
		webtest.FieldError("password", "none is stored for a peer with this address", wait),
		chromedp.Click(chromedp.ID("cfg-cancel")))

	p.Do("the new peer's password removed",
		webtest.EditRow("#cfg-peers", "peer", "10.0.0.2"),
		chromedp.Click(chromedp.CSS(`#cfg-fields [data-field="password.remove"]`)),
		webtest.CheckAndApply(6, wait),
		webtest.Poll(`document.querySelector('#cfg-peers tr[data-peer="10.0.0.2"] .password')?.textContent === 'none'`, wait))
	if s, _ = stored(t, docs); len(s.BGP.Peers) != 2 || s.BGP.Peers[1]["password"] != nil || s.BGP.Peers[0]["password"] != md5Key {
		t.Errorf("version 6's peers are %s", js(s.BGP.Peers))
	}

	p.Do("the dataplane: a bad drain timeout is refused under its field, then applied",
		chromedp.Click(chromedp.ID("cfg-edit-dataplane")),
		webtest.SetField("scheduler", "wlc"),
		webtest.SetField("drainTimeout", "0s"),
		chromedp.Click(chromedp.ID("cfg-check")),
		webtest.FieldError("drainTimeout", "must be positive", wait),
		webtest.SetField("drainTimeout", "1m"),
		webtest.CheckAndApply(7, wait),
		webtest.Poll(`document.querySelector('#cfg-dataplane [data-key="scheduler"]')?.textContent === 'wlc'`, wait))
	p.Do("the health check defaults",
		chromedp.Click(chromedp.ID("cfg-edit-healthcheck")),
		webtest.SetField("interval", "4s"),
		webtest.SetField("fall", "4"),
		webtest.CheckAndApply(8, wait),
		webtest.Poll(`document.querySelector('#cfg-healthcheck [data-key="interval"]')?.textContent === '4s'`, wait))
	s, _ = stored(t, docs)
	if s.Dataplane["scheduler"] != "wlc" || s.Dataplane["drainTimeout"] != "1m" || s.HealthCheck["interval"] != "4s" || s.HealthCheck["fall"] != float64(4) {
		t.Errorf("version 8's dataplane is %s, healthCheck %s", js(s.Dataplane), js(s.HealthCheck))
	}
	p.Screenshot("config-every-key")

	p.Do("BGP cannot be removed while the pool announces over it",
		chromedp.Click(chromedp.ID("cfg-remove-bgp")),
		webtest.BannerContains("Cannot delete the BGP section", wait),
		webtest.BannerContains("announce: bgp needs a bgp section", wait))
	p.Do("the pool back to l2, BGP is removed",
		webtest.EditRow("#cfg-pools", "name", "default"),
		webtest.SetField("announce", ""),
		webtest.CheckAndApply(9, wait),
		chromedp.Click(chromedp.ID("cfg-remove-bgp")),
		webtest.ConfirmDialog(),
		webtest.BannerContains("Version 10 applied: the BGP section (every peer) deleted", wait),
		webtest.Poll(`document.querySelector('#cfg-peers tbody').textContent === 'No BGP peers.'`, wait))
	p.Do("a first peer also asks for the cluster's AS number",
		chromedp.Click(chromedp.ID("cfg-add-peer")),
		webtest.SetField("address", "10.0.0.5"),
		webtest.SetField("asn", "64505"),
		chromedp.Click(chromedp.ID("cfg-check")),
		webtest.FieldError("^asn", "AS number is required", wait),
		webtest.SetField("^asn", "64999"),
		webtest.CheckAndApply(11, wait),
		webtest.Poll(`document.querySelector('#cfg-bgp-summary').textContent === 'AS 64999'`, wait))
	if s, _ = stored(t, docs); s.BGP.ASN != 64999 || len(s.BGP.Peers) != 1 || s.BGP.Peers[0]["address"] != "10.0.0.5" || s.Pools[0].Announce != "" {
		t.Errorf("version 11's bgp is %+v, pools %+v", s.BGP, s.Pools)
	}

	html := p.Eval(`document.documentElement.outerHTML + JSON.stringify(sessionStorage)`)
	for _, key := range []string{md5Key, newKey} {
		if strings.Contains(html, key) {
			t.Errorf("the page holds a password: %s", key)
		}
	}
	if errs := p.Errors(); len(errs) > 0 {
		t.Errorf("the page reported errors: %q", errs)
	}
}
