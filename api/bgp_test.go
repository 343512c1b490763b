package api_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/api/apitest"
)

func TestBGPPath(t *testing.T) {
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	lp := uint32(200)
	st := api.BGPStatus{Enabled: true, ASN: 64512, RouterID: "10.0.0.11", Serving: true, Advertised: []string{"198.51.100.1/32"},
		Routes: []api.BGPRoute{{Prefix: "198.51.100.1/32", Communities: []string{"65000:100", "no-export"}, LocalPref: &lp}},
		Peers: []api.BGPPeer{
			{Address: "10.0.0.1", ASN: 64500, State: "established", Established: true, Since: &since, UptimeSeconds: 42, BFD: "up", PrefixesSent: 1},
			{Address: "10.0.0.2", ASN: 64501, State: "active"},
		}}
	f := apitest.Sample()
	m := api.NewMetrics(f)
	m.Registry.MustRegister(api.BGPCollector(func() api.BGPStatus { return st }))
	srv := httptest.NewServer(api.New(api.Options{State: f, Bus: f.Bus, Log: slog.New(slog.DiscardHandler), Metrics: m,
		BGP: func() api.BGPStatus { return st }}).Handler())
	t.Cleanup(srv.Close)

	code, body := do(t, srv, "GET", "/api/v1/bgp", "", "")
	var got api.BGPStatus
	if code != http.StatusOK || json.Unmarshal([]byte(body), &got) != nil {
		t.Fatalf("GET /api/v1/bgp: %d %s", code, body)
	}
	if len(got.Peers) != 2 || !got.Peers[0].Established || got.Peers[0].BFD != "up" || got.Peers[1].Since != nil || got.Advertised[0] != "198.51.100.1/32" ||
		len(got.Routes) != 1 || got.Routes[0].LocalPref == nil || *got.Routes[0].LocalPref != 200 || got.Routes[0].Communities[1] != "no-export" {
		t.Errorf("GET /api/v1/bgp = %s", body)
	}

	code, body = do(t, srv, "GET", "/metrics", "", "")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	value := func(name string, labels map[string]string) float64 {
		for _, m := range families[name].GetMetric() {
			match := true
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
					match = false
				}
			}
			if match {
				return m.GetGauge().GetValue()
			}
		}
		t.Fatalf("no %s%v in\n%s", name, labels, body)
		return 0
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"edgelb_bgp_session_up", map[string]string{"peer": "10.0.0.1", "asn": "64500"}, 1},
		{"edgelb_bgp_session_up", map[string]string{"peer": "10.0.0.2"}, 0},
		{"edgelb_bgp_prefixes_advertised", map[string]string{"peer": "10.0.0.1"}, 1},
		{"edgelb_bgp_bfd_up", map[string]string{"peer": "10.0.0.1"}, 1},
		{"edgelb_bgp_serving", nil, 1},
		{"edgelb_bgp_routes_advertised", nil, 1},
		{"edgelb_bgp_graceful_shutdown", nil, 0},
	} {
		if got := value(c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

// Without a bgp section the path answers, disabled.
func TestBGPPathDisabled(t *testing.T) {
	srv, _ := newServer(t, false)
	code, body := do(t, srv, "GET", "/api/v1/bgp", "", "")
	if code != http.StatusOK || !strings.Contains(body, `"enabled":false`) || !strings.Contains(body, `"peers":[]`) {
		t.Errorf("GET /api/v1/bgp: %d %s", code, body)
	}
}
