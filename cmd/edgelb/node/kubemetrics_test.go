package node

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/edgelb/edgelb/lb/config"
)

// apiServer is an httptest server in front of handler, and a kubeconfig
// naming it.
func apiServer(t *testing.T, handler http.HandlerFunc) (kubeconfig string) {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	path := filepath.Join(t.TempDir(), "kubeconfig")
	err := os.WriteFile(path, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: k, cluster: {server: %q}}]
users: [{name: edgelb, user: {}}]
contexts: [{name: k, context: {cluster: k, user: edgelb}}]
current-context: k
`, srv.URL)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func nodeList(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"kind":"NodeList","apiVersion":"v1","items":[]}`))
}

// A 429 from the API server's flow control is retried after its
// Retry-After, and counted: the request succeeds.
func TestTooManyRequestsIsRetriedAndCounted(t *testing.T) {
	var calls atomic.Int32
	path := apiServer(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"TooManyRequests","code":429}`))
			return
		}
		nodeList(w)
	})
	registerKubeMetrics(prometheus.NewRegistry())
	retries := func() float64 {
		return testutil.ToFloat64(kubeRetries.WithLabelValues("429")) + testutil.ToFloat64(kubeRetries.WithLabelValues("200"))
	}
	retries0 := retries()
	answers0 := testutil.ToFloat64(kubeRequests.WithLabelValues("429", "GET"))
	client, _, _, err := kubeClients(&config.Kubernetes{Kubeconfig: path, QPS: 50, Burst: 100, EventQPS: 50, EventBurst: 100}, "test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{}); err != nil {
		t.Fatalf("the request failed after two 429s: %v", err)
	}
	if took := time.Since(start); took < 2*time.Second {
		t.Errorf("answered after %s: Retry-After (1 s, twice) was not honoured", took)
	}
	if got := retries() - retries0; got != 2 {
		t.Errorf("edgelb_kubernetes_request_retries_total rose by %v, want 2", got)
	}
	if got := testutil.ToFloat64(kubeRequests.WithLabelValues("429", "GET")) - answers0; got != 2 {
		t.Errorf("edgelb_kubernetes_requests_total{code=429} rose by %v, want 2", got)
	}
}

// The Events' client has a rate limit of its own: with it spent, the main
// client (status writes, the Lease) is not slowed at all.
func TestEventsClientHasItsOwnRateLimit(t *testing.T) {
	path := apiServer(t, func(w http.ResponseWriter, r *http.Request) { nodeList(w) })
	client, events, _, err := kubeClients(&config.Kubernetes{Kubeconfig: path, QPS: 1, Burst: 1, EventQPS: 0.01, EventBurst: 1}, "test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := events.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	// The Events' bucket is empty for 100 s now; a request waits in it.
	waiting := make(chan error, 1)
	go func() {
		_, err := events.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		waiting <- err
	}()
	start := time.Now()
	if _, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("the main client waited %s behind the Events' rate limit", took)
	}
	select {
	case err := <-waiting:
		t.Errorf("the Events' client was not limited by eventQPS: %v", err)
	default:
	}
}
