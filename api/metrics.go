package api

import (
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds the counters the daemon's loops update, and reads
// everything else from State when Prometheus scrapes.
type Metrics struct {
	Registry *prometheus.Registry

	ReconcileDuration *prometheus.HistogramVec
	ReconcileErrors   *prometheus.CounterVec
	OwnerChanges      *prometheus.CounterVec
	Allocations       prometheus.Counter

	state        State
	backendLimit atomic.Int64
}

// SetBackendSeriesLimit sets how many backends this host may have for the
// per-backend families to be exported (api.backendSeriesLimit; 0: never).
func (m *Metrics) SetBackendSeriesLimit(n int) { m.backendLimit.Store(int64(n)) }

// NewMetrics registers edgelb's metrics, the Go runtime's and the
// process's; those of the Services, backends and VIPs, which grow with
// their number, are written by ServeHTTP without the Registry.
func NewMetrics(state State) *Metrics {
	m := &Metrics{
		state:    state,
		Registry: prometheus.NewRegistry(),
		ReconcileDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "edgelb_reconcile_duration_seconds",
			Help:    "Time one reconcile pass took, by component (dataplane, vips, kubernetes).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"component"}),
		ReconcileErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgelb_reconcile_errors_total",
			Help: "Reconcile passes that failed, by component.",
		}, []string{"component"}),
		OwnerChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgelb_vip_owner_changes_total",
			Help: "Times the owner of a VIP changed, as seen by this host.",
		}, []string{"vip"}),
		Allocations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgelb_allocations_total",
			Help: "Load-balancer addresses assigned to Services by this host while it held the Lease.",
		}),
	}
	m.Registry.MustRegister(m.ReconcileDuration, m.ReconcileErrors, m.OwnerChanges, m.Allocations,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&stateCollector{state: state})
	m.backendLimit.Store(DefaultBackendSeriesLimit)
	return m
}

// ObserveReconcile records one pass of a component.
func (m *Metrics) ObserveReconcile(component string, took time.Duration, err error) {
	m.ReconcileDuration.WithLabelValues(component).Observe(took.Seconds())
	if err != nil {
		m.ReconcileErrors.WithLabelValues(component).Inc()
	}
}

var (
	descMembers    = prometheus.NewDesc("edgelb_cluster_members", "Appliance hosts this host sees, by state.", []string{"state"}, nil)
	descPoolSize   = prometheus.NewDesc("edgelb_pool_addresses", "Addresses in a pool (saturates for huge IPv6 pools).", []string{"pool"}, nil)
	descPoolUsed   = prometheus.NewDesc("edgelb_pool_addresses_used", "Addresses of a pool assigned to Services (the Lease holder's allocation; elsewhere the Services' status in the informer cache).", []string{"pool"}, nil)
	descLeader     = prometheus.NewDesc("edgelb_leader", "1 if this host holds the Lease and writes Service status.", nil, nil)
	descReady      = prometheus.NewDesc("edgelb_ready", "1 once the informers have synced and the dataplane is programmed.", nil, nil)
	descHealthy    = prometheus.NewDesc("edgelb_healthy", "1 if this host may own VIPs (interface up, dataplane programmed).", nil, nil)
	descDrainingMe = prometheus.NewDesc("edgelb_draining", "1 if this host is draining.", nil, nil)
	descBuildInfo  = prometheus.NewDesc("edgelb_build_info", "Always 1; its labels say which build runs: version (edgelb version), goversion and revision (the git commit, unknown when the build did not record it).", []string{"version", "goversion", "revision"}, nil)
	descKubeAccess = prometheus.NewDesc("edgelb_kubernetes_access_ok", "1 if the API server accepts edgelb's credentials and grants every permission it needs, 0 if not (see GET /api/v1/status: kubernetes); absent without Kubernetes.", nil, nil)
	descUnapplied  = prometheus.NewDesc("edgelb_config_unapplied_version", "The committed cluster configuration version this host cannot apply over its own config file (it owns no VIPs until one it can take is committed); 0 when it runs the committed version.", nil, nil)
	descFileDiffer = prometheus.NewDesc("edgelb_config_file_differs", "1 if the cluster-wide keys of this host's config file differ from the running cluster configuration (they are not used).", nil, nil)
)

// Revision is the git commit the binary was built from, set by make with
// -ldflags "-X github.com/edgelb/edgelb/api.Revision=<commit>": the go
// command records it itself only where it may run git (-buildvcs).
var Revision string

// revision is the git commit the binary was built from: Revision, else
// what the go command recorded ("-dirty" when the tree had changes), else
// "unknown".
func revision() string {
	if Revision != "" {
		return Revision
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	rev, dirty := "unknown", ""
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision" && s.Value != "":
			rev = s.Value
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = "-dirty"
		}
	}
	if rev == "unknown" {
		return rev
	}
	return rev + dirty
}

// stateCollector turns State into metrics at scrape time, but for the
// families WriteStreamed writes.
type stateCollector struct{ state State }

func (s *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMembers, descPoolSize, descPoolUsed, descLeader, descReady, descHealthy, descDrainingMe, descKubeAccess, descFileDiffer,
		descUnapplied,
		descBuildInfo} {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (s *stateCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	states := map[string]int{"healthy": 0, "unhealthy": 0, "draining": 0, "dead": 0}
	for _, m := range s.state.Members() {
		switch {
		case !m.Alive:
			states["dead"]++
		case m.Draining:
			states["draining"]++
		case m.Healthy:
			states["healthy"]++
		default:
			states["unhealthy"]++
		}
	}
	for st, n := range states {
		gauge(descMembers, float64(n), st)
	}
	st := s.state.Status()
	for _, p := range st.Pools {
		gauge(descPoolSize, float64(p.Size), p.Name)
		gauge(descPoolUsed, float64(p.Used), p.Name)
	}
	gauge(descLeader, b2f(st.Leader))
	gauge(descReady, b2f(st.Ready))
	gauge(descHealthy, b2f(st.Healthy))
	gauge(descDrainingMe, b2f(st.Draining))
	// The version is the one the API reports in /api/v1/status, so that
	// a dashboard can join both; it is the build's (node.Options.Version).
	gauge(descBuildInfo, 1, st.Version, runtime.Version(), revision())
	gauge(descFileDiffer, b2f(st.ConfigFileDiffers))
	gauge(descUnapplied, float64(st.ConfigUnapplied))
	if st.Kubernetes != nil {
		gauge(descKubeAccess, b2f(st.Kubernetes.Problem == ""))
	}
}
