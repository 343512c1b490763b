package api_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/api/apitest"
)

// scaled is the sample state with n more Services of one port and
// backends backends each, the first backend of each down.
func scaled(n, backends int) *apitest.Fake {
	f := apitest.Sample()
	for i := range n {
		p := api.Port{VIP: fmt.Sprintf("10.224.%d.%d", i/256, i%256), Port: 80, Protocol: "TCP",
			Stats: api.Stats{Connections: uint64(i), BytesIn: 2 * uint64(i), BytesOut: 3 * uint64(i)}}
		for j := range backends {
			health := "up"
			if j == 0 {
				health = "down"
			}
			p.Backends = append(p.Backends, api.Backend{Address: fmt.Sprintf("10.%d.%d.%d:8080", 128+j, i/256, i%256), Weight: 1, Health: health,
				Stats: api.Stats{Connections: uint64(j)}})
		}
		f.Svcs = append(f.Svcs, api.Service{Namespace: "scale", Name: fmt.Sprintf("s%05d", i), State: "served", VIPs: []string{p.VIP}, Ports: []api.Port{p}})
		f.Vips = append(f.Vips, api.VIP{Address: p.VIP, Owner: "lb2"})
	}
	return f
}

// scrape fetches /metrics from m and parses it with Prometheus's own text
// parser, which refuses a family split in two or announced twice.
func scrape(t *testing.T, m *api.Metrics, gzipped bool) map[string]*dto.MetricFamily {
	t.Helper()
	req := httptest.NewRequest("GET", "/metrics", nil)
	if gzipped {
		req.Header.Set("Accept-Encoding", "deflate, gzip;q=1.0")
	}
	w := httptest.NewRecorder()
	m.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q, want the text format 0.0.4", ct)
	}
	var body io.Reader = w.Body
	if gzipped {
		if ce := w.Header().Get("Content-Encoding"); ce != "gzip" {
			t.Fatalf("Content-Encoding %q for a client that accepts gzip", ce)
		}
		zr, err := gzip.NewReader(w.Body)
		if err != nil {
			t.Fatal(err)
		}
		body = zr
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

// sample returns the value of the sample of fam whose labels include
// every one given, and whether there is one.
func sample(fams map[string]*dto.MetricFamily, fam string, labels map[string]string) (float64, bool) {
	for _, m := range fams[fam].GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range labels {
			match = match && have[k] == v
		}
		if match {
			if m.Counter != nil {
				return m.GetCounter().GetValue(), true
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// The families of Services, virtual services, backends and VIPs are
// written in batches: at 1,500 Services (several batches per family) every
// sample is there once, with its value, in one group per family that
// Prometheus's parser accepts, gzipped or not.
func TestMetricsManyServices(t *testing.T) {
	const n, backends = 1500, 2
	f := scaled(n, backends)
	m := api.NewMetrics(f)
	for _, gz := range []bool{false, true} {
		fams := scrape(t, m, gz)
		want := map[string]int{
			"edgelb_service_state":              n + 2,
			"edgelb_service_connections_total":  n + 2,
			"edgelb_service_packets_total":      2 * (n + 2),
			"edgelb_service_bytes_total":        2 * (n + 2),
			"edgelb_service_backends":           n + 2,
			"edgelb_service_backends_down":      n + 2,
			"edgelb_backend_connections_total":  n*backends + 3,
			"edgelb_backend_active_connections": n*backends + 3,
			"edgelb_backend_bytes_total":        2 * (n*backends + 3),
			"edgelb_backend_weight":             n*backends + 3,
			"edgelb_backend_up":                 n*backends + 2, // the UDP backend's health is unknown
			"edgelb_backend_metrics_omitted":    1,
			"edgelb_vip_owned":                  n + 2,
		}
		for fam, count := range want {
			if got := len(fams[fam].GetMetric()); got != count {
				t.Errorf("gzip %v: %s has %d samples, want %d", gz, fam, got, count)
			}
		}
		for _, c := range []struct {
			fam    string
			labels map[string]string
			want   float64
		}{
			{"edgelb_service_connections_total", map[string]string{"namespace": "scale", "service": "s01234", "vip": "10.224.4.210", "port": "80", "protocol": "TCP"}, 1234},
			{"edgelb_service_bytes_total", map[string]string{"service": "s01499", "direction": "out"}, 3 * 1499},
			{"edgelb_service_bytes_total", map[string]string{"service": "s01499", "direction": "in"}, 2 * 1499},
			{"edgelb_service_backends", map[string]string{"service": "s00777"}, backends},
			{"edgelb_service_backends_down", map[string]string{"service": "s00777"}, 1},
			{"edgelb_service_backends_down", map[string]string{"service": "web"}, 1},
			{"edgelb_backend_up", map[string]string{"backend": "10.128.5.219:8080", "service": "s01499"}, 0},
			{"edgelb_backend_up", map[string]string{"backend": "10.129.5.219:8080", "service": "s01499"}, 1},
			{"edgelb_backend_connections_total", map[string]string{"backend": "10.129.5.219:8080"}, 1},
			{"edgelb_backend_bytes_total", map[string]string{"backend": "10.0.1.1:31000", "direction": "in", "namespace": "demo"}, 0},
			{"edgelb_service_state", map[string]string{"service": "s00000", "state": "served"}, 1},
			{"edgelb_vip_owned", map[string]string{"vip": "10.224.0.0", "owner": "lb2"}, 0},
			{"edgelb_vip_owned", map[string]string{"vip": "192.0.2.10", "owner": "lb1"}, 1},
			{"edgelb_backend_metrics_omitted", nil, 0},
		} {
			got, ok := sample(fams, c.fam, c.labels)
			if !ok || got != c.want {
				t.Errorf("gzip %v: %s%v = %v (found %v), want %v", gz, c.fam, c.labels, got, ok, c.want)
			}
		}
		// The registry's own families are there too.
		for _, fam := range []string{"edgelb_build_info", "edgelb_ready", "go_goroutines", "process_resident_memory_bytes"} {
			if fams[fam] == nil {
				t.Errorf("gzip %v: %s missing", gz, fam)
			}
		}
		// No series twice.
		for name, mf := range fams {
			seen := map[string]bool{}
			for _, m := range mf.GetMetric() {
				key := fmt.Sprint(m.GetLabel())
				if seen[key] {
					t.Errorf("%s%s is there twice", name, key)
				}
				seen[key] = true
			}
		}
	}
}

// Above api.backendSeriesLimit backends the per-backend families are left
// out, and edgelb_backend_metrics_omitted says how many backends were;
// the per-virtual-service families still count them. At the limit they
// are all there. A limit of 0 leaves them out whatever the number.
func TestBackendSeriesLimit(t *testing.T) {
	f := scaled(10, 3) // 33 backends with the sample's 3
	m := api.NewMetrics(f)
	perBackend := []string{"edgelb_backend_connections_total", "edgelb_backend_active_connections", "edgelb_backend_bytes_total",
		"edgelb_backend_up", "edgelb_backend_weight"}
	for _, c := range []struct {
		limit   int
		omitted float64
	}{{33, 0}, {32, 33}, {0, 33}, {api.DefaultBackendSeriesLimit, 0}} {
		m.SetBackendSeriesLimit(c.limit)
		views := f.FullViews
		fams := scrape(t, m, false)
		// The backends' views are built only when their series are
		// written: the counts come from the summary.
		if built := f.FullViews > views; built != (c.omitted == 0) {
			t.Errorf("limit %d: the view of every backend built: %v", c.limit, built)
		}
		if got, _ := sample(fams, "edgelb_backend_metrics_omitted", nil); got != c.omitted {
			t.Errorf("limit %d: edgelb_backend_metrics_omitted = %v, want %v", c.limit, got, c.omitted)
		}
		for _, fam := range perBackend {
			if present := fams[fam] != nil; present != (c.omitted == 0) {
				t.Errorf("limit %d: %s present: %v", c.limit, fam, present)
			}
		}
		if got, _ := sample(fams, "edgelb_service_backends", map[string]string{"service": "s00003"}); got != 3 {
			t.Errorf("limit %d: edgelb_service_backends of s00003 = %v, want 3", c.limit, got)
		}
		if got, _ := sample(fams, "edgelb_service_backends_down", map[string]string{"service": "s00003"}); got != 1 {
			t.Errorf("limit %d: edgelb_service_backends_down of s00003 = %v, want 1", c.limit, got)
		}
		// Prometheus's linter (HELP texts, counters' suffixes, no
		// series twice) has nothing to say about edgelb's families.
		var all []*dto.MetricFamily
		for _, mf := range fams {
			all = append(all, mf)
		}
		problems, err := promlint.NewWithMetricFamilies(all).Lint()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			if strings.HasPrefix(p.Metric, "edgelb_") {
				t.Errorf("lint: %s: %s", p.Metric, p.Text)
			}
		}
	}
}

// A scrape at 10,000 Services × 10 backends, every per-backend series
// included (690,000 samples), holds a batch at a time: the heap it leaves
// in use afterwards and its peak stay a small multiple of the state
// itself, where the Registry held every sample (about 1 kB each) at once.
func TestScrapeMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 10,000 Services")
	}
	f := scaled(10000, 10)
	m := api.NewMetrics(f)
	m.SetBackendSeriesLimit(1 << 30)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	w := &countingWriter{}
	if err := m.WriteStreamed(w); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if w.lines < 690000 {
		t.Fatalf("%d lines written, want every sample (690,000 and more)", w.lines)
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d lines, %d MB written, %d MB allocated in all", w.lines, w.n>>20, allocated>>20)
	// The whole scrape allocates less than 100 bytes a sample (the
	// Registry's path: about 1 kB a sample, all alive at once).
	if allocated > 100*uint64(w.lines) {
		t.Errorf("the scrape allocated %d MB for %d samples", allocated>>20, w.lines)
	}
}

type countingWriter struct{ n, lines int }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += len(p)
	c.lines += bytes.Count(p, []byte("\n"))
	return len(p), nil
}

// BenchmarkScrape serves /metrics at 10,000 Services × 10 backends, with
// the default limit (the per-backend families left out) and without.
func BenchmarkScrape(b *testing.B) {
	f := scaled(10000, 10)
	for _, limit := range []int{api.DefaultBackendSeriesLimit, 1 << 30} {
		b.Run(fmt.Sprintf("limit=%d", limit), func(b *testing.B) {
			m := api.NewMetrics(f)
			m.SetBackendSeriesLimit(limit)
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest("GET", "/metrics", nil)
				req.Header.Set("Accept-Encoding", "gzip")
				m.ServeHTTP(httptest.NewRecorder(), req)
			}
		})
	}
}
