package labnet

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// Probe's LongestGap is the client's time without an answer: a server
// that refuses for a while shows as a gap at least that long, and the
// refused requests as failures.
func TestProbeLongestGap(t *testing.T) {
	var down atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("node1 ok\n"))
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan ProbeResult)
	go func() { done <- Probe(ctx, srv.URL, 10*time.Millisecond) }()
	time.Sleep(200 * time.Millisecond)
	down.Store(true)
	time.Sleep(300 * time.Millisecond)
	down.Store(false)
	time.Sleep(200 * time.Millisecond)
	cancel()
	r := <-done
	if r.Failed == 0 || r.OK == 0 || r.Answers["node1"] != r.OK {
		t.Fatalf("probe: %+v, want answers from node1 and failures while the server refused", r)
	}
	if r.LongestGap < 300 || r.LongestGap > 2000 {
		t.Errorf("LongestGap = %d ms, want about the 300 ms the server refused", r.LongestGap)
	}
}
