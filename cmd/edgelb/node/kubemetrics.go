package node

import (
	"context"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/tools/metrics"
)

// client-go's own request metrics, for this process: every Node in it
// shares them (client-go takes one set of metrics per process).
var (
	kubeRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgelb_kubernetes_requests_total",
		Help: "Answers from the Kubernetes API server, by status code (429: its flow control turned the request away) and method.",
	}, []string{"code", "method"})
	kubeRetries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgelb_kubernetes_request_retries_total",
		Help: "Requests client-go sent again after a 429 (or a 5xx) with Retry-After, which it honours, by the status code of the answer to the attempt sent again.",
	}, []string{"code"})
	kubeThrottled = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "edgelb_kubernetes_rate_limiter_wait_seconds",
		Help:    "Time requests waited for the client-side rate limit (kubernetes.qps, burst; Events: eventQPS, eventBurst).",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
	})
	kubeEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgelb_kubernetes_events_total",
		Help: "Kubernetes Events by outcome: recorded, written, failed. Recorded but neither written nor failed: dropped by client-go's bounded queue or merged by its correlator.",
	}, []string{"outcome"})
	kubeMetricsOnce sync.Once
)

type resultMetric struct{}

func (resultMetric) Increment(_ context.Context, code, method, _ string) {
	kubeRequests.WithLabelValues(code, method).Inc()
}

type retryMetric struct{}

func (retryMetric) IncrementRetry(_ context.Context, code, _, _ string) {
	kubeRetries.WithLabelValues(code).Inc()
}

type throttleMetric struct{}

func (throttleMetric) Observe(_ context.Context, _ string, _ url.URL, d time.Duration) {
	kubeThrottled.Observe(d.Seconds())
}

// registerKubeMetrics hands client-go the counters above (once per
// process) and adds them to reg.
func registerKubeMetrics(reg prometheus.Registerer) {
	kubeMetricsOnce.Do(func() {
		metrics.Register(metrics.RegisterOpts{
			RequestResult:      resultMetric{},
			RequestRetry:       retryMetric{},
			RateLimiterLatency: throttleMetric{},
		})
	})
	reg.MustRegister(kubeRequests, kubeRetries, kubeThrottled, kubeEvents)
}
