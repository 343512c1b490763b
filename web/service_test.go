package web_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/api/apitest"
	"github.com/edgelb/edgelb/web"
	"github.com/edgelb/edgelb/web/webtest"
)

// TestServiceView drives the per-Service view in Chromium against fake
// state: a click on a Service shows its state, the owner of its VIP (and
// a new owner without a reload), its ports' source ranges, its backends
// with weight, health and admin state, and its Kubernetes Events; a
// pending Service shows why; a static one has no Events; Events the API
// server does not give show as an error; Close hides the view.
func TestServiceView(t *testing.T) {
	fake := apitest.Sample()
	web0 := &fake.Svcs[0]
	web0.Ports[0].SourceRanges = []string{"198.51.100.0/24"}
	web0.Ports[0].Backends[1].AdminState = "drain"
	web0.DisabledBackends = []string{"10.0.1.3:31000"}
	fake.Svcs = append(fake.Svcs, api.Service{Namespace: "demo", Name: "waiting", State: "pending", VIPs: []string{}, Ports: []api.Port{},
		Problem: `pool "default" is exhausted: 41 of 41 addresses used`})
	at := time.Date(2026, 12, 7, 2, 0, 0, 0, time.UTC)
	srv := api.New(api.Options{
		Tokens:    map[string][]string{api.RoleViewer: {viewerToken}},
		State:     &webtest.Traffic{State: fake, Start: time.Now()},
		Bus:       fake.Bus,
		Dashboard: web.Files(),
		Log:       slog.New(slog.DiscardHandler),
		ServiceEvents: func(_ context.Context, ns, name string) ([]api.ServiceEvent, error) {
			switch ns + "/" + name {
			case "demo/web":
				return []api.ServiceEvent{
					{Type: "Normal", Reason: "OwnerChanged", Message: "192.0.2.10 is owned by lb1", Count: 2, From: "edgelb/lb1", FirstTime: at, LastTime: at.Add(time.Minute)},
					{Type: "Normal", Reason: "IPAllocated", Message: "Assigned IP 192.0.2.10 from pool default", Count: 1, From: "edgelb/lb1", FirstTime: at, LastTime: at},
				}, nil
			case "demo/waiting":
				return nil, errors.New(`reading the Events of Service demo/waiting: events is forbidden`)
			}
			return nil, nil
		},
	})
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
	})
	p := webtest.NewPage(t)
	const wait = 15 * time.Second
	view := func(cond string) chromedp.Action[chromedp.Void] {
		return webtest.Poll(`(v => !!v && !v.hidden && (`+cond+`))(document.querySelector('#service-view'))`, wait)
	}

	p.Do("sign in as a viewer and click demo/web",
		chromedp.Navigate(ts.URL+"/?refresh=1"),
		webtest.SignIn(viewerToken),
		webtest.ServiceShown("demo", "web", wait),
		chromedp.Evaluate[chromedp.Void](`window.notReloaded = true`),
		chromedp.Click(chromedp.CSS(`#services tr[data-service="demo/web"] a.svc-link`)))
	p.Do("the view shows the state, owner, source ranges, backends and Events",
		view(`v.dataset.service === 'demo/web' && location.hash === '#service/demo/web'`),
		view(`v.querySelector('.svc-state-badge').textContent === 'served'`),
		view(`v.querySelector('tr[data-vip="192.0.2.10"] .svc-owner')?.textContent.startsWith('lb1')`),
		view(`v.querySelector('.svc-ranges').textContent === '198.51.100.0/24'`),
		view(`(r => r && r.querySelector('.be-weight').textContent === '1' && r.querySelector('.be-health').textContent === 'up' && r.querySelector('.be-admin').textContent === 'enabled')(v.querySelector('tr[data-backend="10.0.1.1:31000"]'))`),
		view(`(r => r && r.querySelector('.be-health').textContent === 'down' && r.querySelector('.be-admin').textContent === 'drained')(v.querySelector('tr[data-backend="10.0.1.2:31000"]'))`),
		view(`v.querySelector('tr[data-backend="10.0.1.3:31000"] .be-admin')?.textContent === 'disabled'`),
		view(`[...v.querySelectorAll('.svc-events tr[data-reason]')].map(r => r.dataset.reason).join() === 'OwnerChanged,IPAllocated'`),
		view(`v.querySelector('.svc-events tr[data-reason="IPAllocated"] .ev-message').textContent === 'Assigned IP 192.0.2.10 from pool default'`))
	p.Screenshot("service-view")

	if err := fake.Drain(context.Background(), "lb1"); err != nil {
		t.Fatal(err)
	}
	p.Do("a new owner shows in the view without a reload",
		view(`v.querySelector('tr[data-vip="192.0.2.10"] .svc-owner')?.textContent.startsWith('lb2')`),
		webtest.Poll(`window.notReloaded === true`, time.Second))

	p.Do("a pending Service says why, and Events the API server refuses show as an error",
		chromedp.Evaluate[chromedp.Void](`location.hash = '#service/demo/waiting'`),
		view(`v.dataset.service === 'demo/waiting' && v.querySelector('.svc-state-badge').textContent === 'pending'`),
		view(`v.querySelector('.svc-reason').textContent.includes('pool "default" is exhausted')`),
		view(`v.querySelector('.svc-events .error')?.textContent.includes('events is forbidden')`))

	p.Do("a static service has no Kubernetes Events",
		chromedp.Evaluate[chromedp.Void](`location.hash = '#service/_static/dns'`),
		view(`v.dataset.service === '_static/dns' && v.querySelector('.svc-events').textContent.includes('no Kubernetes Events')`),
		view(`v.querySelector('tr[data-vip="192.0.2.53"] .svc-owner')?.textContent.startsWith('lb2')`))

	p.Do("Close hides the view",
		chromedp.Click(chromedp.ID("service-close")),
		webtest.Poll(`document.querySelector('#service-view').hidden && location.hash === ''`, wait))

	if errs := p.Errors(); len(errs) > 0 {
		t.Errorf("the page reported errors: %q", errs)
	}
}
