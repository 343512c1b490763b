package api

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/edgelb/edgelb/lb/config"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// DefaultBackendSeriesLimit is how many backends a host may have for the
// per-backend families (edgelb_backend_*) to be exported, unless
// SetBackendSeriesLimit says otherwise (config.API.BackendSeriesLimit):
// 10,000 backends are 60,000 series. Above it they are left out of every
// scrape, and edgelb_backend_metrics_omitted says how many backends were;
// the per-virtual-service families (backends, backends down, traffic) and
// the REST API keep every backend's figures.
const DefaultBackendSeriesLimit = config.DefaultBackendSeriesLimit

// The families that grow with the number of Services, VIPs and backends.
// Metrics.ServeHTTP writes them one batch of samples at a time (the
// Registry would hold all of them at once: about 1 kB per sample, 700 MB
// at 10,000 Services × 10 backends).
var (
	famSvcState     = family{"edgelb_service_state", "1 for the state a Service is in on this host: served (every port programmed), partial (some port refused here) or pending (no address).", dto.MetricType_GAUGE}
	famVSConns      = family{"edgelb_service_connections_total", "Connections accepted by a virtual service.", dto.MetricType_COUNTER}
	famVSPackets    = family{"edgelb_service_packets_total", "Packets through a virtual service, by direction (in: from clients).", dto.MetricType_COUNTER}
	famVSBytes      = family{"edgelb_service_bytes_total", "Bytes through a virtual service, by direction.", dto.MetricType_COUNTER}
	famVSRefused    = family{"edgelb_service_refused", "1 if the kernel refused the virtual service on this host (retried; the others are unaffected).", dto.MetricType_GAUGE}
	famVSBackends   = family{"edgelb_service_backends", "Backends in a virtual service's table (draining ones included).", dto.MetricType_GAUGE}
	famVSDown       = family{"edgelb_service_backends_down", "Backends of a virtual service that fail their health check (out of its table until they pass).", dto.MetricType_GAUGE}
	famBEConns      = family{"edgelb_backend_connections_total", "Connections forwarded to a backend.", dto.MetricType_COUNTER}
	famBEActive     = family{"edgelb_backend_active_connections", "Connections open to a backend now.", dto.MetricType_GAUGE}
	famBEBytes      = family{"edgelb_backend_bytes_total", "Bytes forwarded to and from a backend, by direction.", dto.MetricType_COUNTER}
	famBEUp         = family{"edgelb_backend_up", "1 if the backend passes its health check, 0 if it fails, absent while unknown.", dto.MetricType_GAUGE}
	famBEWeight     = family{"edgelb_backend_weight", "Configured weight of a backend (0: draining).", dto.MetricType_GAUGE}
	famBEOmitted    = family{"edgelb_backend_metrics_omitted", "Backends whose edgelb_backend_* series this scrape left out: this host has more than api.backendSeriesLimit of them (0: none left out).", dto.MetricType_GAUGE}
	famVIPOwned     = family{"edgelb_vip_owned", "1 if this host owns and announces the VIP, else 0.", dto.MetricType_GAUGE}
	famVIPRefused   = family{"edgelb_vip_refused", "1 if this host's kernel would not add the VIP (it goes to another member; the host keeps its other VIPs).", dto.MetricType_GAUGE}
	svcStateLabels  = []string{"namespace", "service", "state"}
	vsLabelNames    = []string{"namespace", "port", "protocol", "service", "vip"}
	vsDirLabels     = []string{"direction", "namespace", "port", "protocol", "service", "vip"}
	beLabelNames    = []string{"backend", "namespace", "port", "protocol", "service", "vip"}
	beDirLabelNames = []string{"backend", "direction", "namespace", "port", "protocol", "service", "vip"}
	vipOwnedLabels  = []string{"owner", "vip"}
	vipLabels       = []string{"vip"}
)

type family struct {
	name, help string
	typ        dto.MetricType
}

// batchSize is how many samples a familyWriter holds before it writes them.
const batchSize = 512

// familyWriter writes one family in the Prometheus text format, batchSize
// samples at a time, through expfmt: the HELP and TYPE lines once, then
// every batch's samples. Its buffers are reused from batch to batch.
type familyWriter struct {
	w       io.Writer
	fam     family
	names   []string // label names, sorted
	started bool
	err     error

	values  []float64
	lvalues []string // len(names) per sample

	mf       dto.MetricFamily
	metrics  []dto.Metric
	pairs    []dto.LabelPair
	gauges   []dto.Gauge
	counters []dto.Counter
	buf      bytes.Buffer
}

func (f *familyWriter) reset(w io.Writer, fam family, names []string) {
	f.w, f.fam, f.names, f.started = w, fam, names, false
	f.values, f.lvalues = f.values[:0], f.lvalues[:0]
}

// add adds a sample whose label values are in the order of the names.
func (f *familyWriter) add(v float64, values ...string) {
	f.values = append(f.values, v)
	f.lvalues = append(f.lvalues, values...)
	if len(f.values) == batchSize {
		f.flush()
	}
}

// flush writes the samples held.
func (f *familyWriter) flush() {
	k, n := len(f.values), len(f.names)
	if f.err != nil || k == 0 {
		f.values, f.lvalues = f.values[:0], f.lvalues[:0]
		return
	}
	if len(f.metrics) < k {
		f.metrics, f.gauges, f.counters = make([]dto.Metric, k), make([]dto.Gauge, k), make([]dto.Counter, k)
	}
	if len(f.pairs) < k*n {
		f.pairs = make([]dto.LabelPair, k*n)
	}
	mf := &f.mf
	mf.Name, mf.Type, mf.Help, mf.Metric = &f.fam.name, &f.fam.typ, nil, mf.Metric[:0]
	if !f.started {
		mf.Help = &f.fam.help
	}
	for i := range k {
		m := &f.metrics[i]
		m.Label, m.Gauge, m.Counter = m.Label[:0], nil, nil
		for j := range n {
			p := &f.pairs[i*n+j]
			p.Name, p.Value = &f.names[j], &f.lvalues[i*n+j]
			m.Label = append(m.Label, p)
		}
		if f.fam.typ == dto.MetricType_COUNTER {
			f.counters[i].Value = &f.values[i]
			m.Counter = &f.counters[i]
		} else {
			f.gauges[i].Value = &f.values[i]
			m.Gauge = &f.gauges[i]
		}
		mf.Metric = append(mf.Metric, m)
	}
	f.buf.Reset()
	_, f.err = expfmt.MetricFamilyToText(&f.buf, mf)
	if f.err == nil {
		out := f.buf.Bytes()
		if f.started {
			// Only the first batch carries the family's HELP and TYPE:
			// drop the TYPE line expfmt writes before every batch.
			out = out[bytes.IndexByte(out, '\n')+1:]
		}
		_, f.err = f.w.Write(out)
	}
	f.started = true
	f.values, f.lvalues = f.values[:0], f.lvalues[:0]
}

// ServeHTTP serves /metrics in the Prometheus text format (version
// 0.0.4, gzipped when the client accepts it): the Registry's families,
// then those of the Services, VIPs and backends, written a batch at a
// time so that a scrape holds a few hundred samples at once whatever the
// number of Services. A collector that fails costs its own series only.
func (m *Metrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	mfs, err := m.Registry.Gather()
	if err != nil && len(mfs) == 0 {
		http.Error(w, "gathering metrics: "+err.Error(), http.StatusInternalServerError)
		return
	}
	format := expfmt.NewFormat(expfmt.TypeTextPlain)
	w.Header().Set("Content-Type", string(format))
	var out io.Writer = w
	if acceptsGzip(r.Header.Get("Accept-Encoding")) {
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Add("Vary", "Accept-Encoding")
		gz := gzip.NewWriter(w)
		defer gz.Close()
		out = gz
	}
	enc := expfmt.NewEncoder(out, format)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return // the client went away
		}
	}
	m.WriteStreamed(out)
}

func acceptsGzip(header string) bool {
	for part := range strings.SplitSeq(header, ",") {
		enc, _, _ := strings.Cut(part, ";")
		if strings.TrimSpace(enc) == "gzip" {
			return true
		}
	}
	return false
}

// step is one streamed family and what fills it.
type step struct {
	fam   family
	names []string
	fill  func(f *familyWriter)
}

// WriteStreamed writes the families of the Services, virtual services,
// backends and VIPs in the text format, one family after the other.
func (m *Metrics) WriteStreamed(w io.Writer) error {
	// The summary first, when the state has one: the backends' views are
	// built only when their series are written.
	var svcs []Service
	if sum, ok := m.state.(ServiceSummaries); ok {
		svcs = sum.ServiceSummaries()
	} else {
		svcs = m.state.Services()
	}
	backends := 0
	for i := range svcs {
		for j := range svcs[i].Ports {
			n, _, _ := svcs[i].Ports[j].Counted()
			backends += n
		}
	}
	omitted := 0
	if backends > int(m.backendLimit.Load()) {
		omitted = backends
	} else if _, ok := m.state.(ServiceSummaries); ok {
		svcs = m.state.Services()
	}
	// vs runs fn for every virtual service with its label values in the
	// order of vsLabelNames, and a spare first place for a direction or
	// a backend (vsDirLabels, beLabelNames).
	// The label values are written as they are added (familyWriter.add
	// copies them): one slice serves every call.
	vs := func(fn func(p *Port, l []string)) {
		l := make([]string, 6)
		for i := range svcs {
			svc := &svcs[i]
			for j := range svc.Ports {
				p := &svc.Ports[j]
				l[0], l[1], l[2], l[3], l[4], l[5] = "", svc.Namespace, strconv.Itoa(int(p.Port)), p.Protocol, svc.Name, p.VIP
				fn(p, l)
			}
		}
	}
	byDir := func(in, out func(p *Port) uint64) func(f *familyWriter) {
		return func(f *familyWriter) {
			vs(func(p *Port, l []string) {
				l[0] = "in"
				f.add(float64(in(p)), l...)
				l[0] = "out"
				f.add(float64(out(p)), l...)
			})
		}
	}
	steps := []step{
		{famSvcState, svcStateLabels, func(f *familyWriter) {
			for i := range svcs {
				if svcs[i].State != "" {
					f.add(1, svcs[i].Namespace, svcs[i].Name, svcs[i].State)
				}
			}
		}},
		{famVSConns, vsLabelNames, func(f *familyWriter) {
			vs(func(p *Port, l []string) { f.add(float64(p.Stats.Connections), l[1:]...) })
		}},
		{famVSPackets, vsDirLabels, byDir(func(p *Port) uint64 { return p.Stats.PacketsIn }, func(p *Port) uint64 { return p.Stats.PacketsOut })},
		{famVSBytes, vsDirLabels, byDir(func(p *Port) uint64 { return p.Stats.BytesIn }, func(p *Port) uint64 { return p.Stats.BytesOut })},
		{famVSRefused, vsLabelNames, func(f *familyWriter) {
			vs(func(p *Port, l []string) {
				if p.Problem != "" {
					f.add(1, l[1:]...)
				}
			})
		}},
		{famVSBackends, vsLabelNames, func(f *familyWriter) {
			vs(func(p *Port, l []string) {
				n, _, _ := p.Counted()
				f.add(float64(n), l[1:]...)
			})
		}},
		{famVSDown, vsLabelNames, func(f *familyWriter) {
			vs(func(p *Port, l []string) {
				_, down, _ := p.Counted()
				f.add(float64(down), l[1:]...)
			})
		}},
		{famBEOmitted, nil, func(f *familyWriter) { f.add(float64(omitted)) }},
	}
	if omitted == 0 {
		// be runs fn for every backend with its label values in the
		// order of beLabelNames.
		be := func(fn func(b *Backend, l []string)) {
			vs(func(p *Port, l []string) {
				for k := range p.Backends {
					l[0] = p.Backends[k].Address
					fn(&p.Backends[k], l)
				}
			})
		}
		steps = append(steps,
			step{famBEConns, beLabelNames, func(f *familyWriter) {
				be(func(b *Backend, l []string) { f.add(float64(b.Stats.Connections), l...) })
			}},
			step{famBEActive, beLabelNames, func(f *familyWriter) {
				be(func(b *Backend, l []string) { f.add(float64(b.Stats.ActiveConnections), l...) })
			}},
			step{famBEBytes, beDirLabelNames, func(f *familyWriter) {
				be(func(b *Backend, l []string) {
					// beDirLabelNames: backend, direction, then the
					// virtual service's.
					f.add(float64(b.Stats.BytesIn), append([]string{l[0], "in"}, l[1:]...)...)
					f.add(float64(b.Stats.BytesOut), append([]string{l[0], "out"}, l[1:]...)...)
				})
			}},
			step{famBEUp, beLabelNames, func(f *familyWriter) {
				be(func(b *Backend, l []string) {
					if b.Health != "unknown" {
						f.add(b2f(b.Health == "up"), l...)
					}
				})
			}},
			step{famBEWeight, beLabelNames, func(f *familyWriter) {
				be(func(b *Backend, l []string) { f.add(float64(b.Weight), l...) })
			}},
		)
	}
	vips := m.state.VIPs()
	steps = append(steps,
		step{famVIPOwned, vipOwnedLabels, func(f *familyWriter) {
			for _, v := range vips {
				f.add(b2f(v.Local), v.Owner, v.Address)
			}
		}},
		step{famVIPRefused, vipLabels, func(f *familyWriter) {
			for _, v := range vips {
				if v.Refused {
					f.add(1, v.Address)
				}
			}
		}})
	f := &familyWriter{}
	for _, s := range steps {
		f.reset(w, s.fam, s.names)
		s.fill(f)
		f.flush()
		if f.err != nil {
			return f.err
		}
	}
	return nil
}
