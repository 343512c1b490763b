package ipvs_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/ipvs"
	"github.com/edgelb/edgelb/lb/ipvs/ipvstest"
)

// recorder is a test Dataplane's Reporter and OnSync: it keeps what it was
// told, in order, and wakes waitFor after each report and pass.
type recorder struct {
	mu      sync.Mutex
	sources []string
	health  []error // every SetHealth
	passes  []error // every OnSync
	wake    chan struct{}
}

var _ ipvs.Reporter = (*recorder)(nil)

func newRecorder() *recorder { return &recorder{wake: make(chan struct{}, 1)} }

func (r *recorder) SetHealth(source string, err error) {
	r.mu.Lock()
	r.sources = append(r.sources, source)
	r.health = append(r.health, err)
	r.mu.Unlock()
	r.signal()
}

func (r *recorder) onSync(took time.Duration, err error) {
	r.mu.Lock()
	r.passes = append(r.passes, err)
	r.mu.Unlock()
	r.signal()
}

func (r *recorder) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// reports returns every health reported so far as text ("ok" for nil).
func (r *recorder) reports() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.health))
	for i, err := range r.health {
		out[i] = "ok"
		if err != nil {
			out[i] = err.Error()
		}
	}
	return out
}

func (r *recorder) passCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.passes)
}

// waitFor returns once cond holds. cond is checked now and after every
// report and pass of the Dataplane r records, which is when what it
// looks at can change; it fails the test after 5 s.
func waitFor(t *testing.T, r *recorder, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-r.wake:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// A table that cannot be read is reported unhealthy, once however often it
// fails alike; the next pass that can read it reports healthy. A pass that
// fails only for some virtual services does not change the health, but
// OnSync gets its error.
func TestHealthIsPushed(t *testing.T) {
	e := newEnv(t, nil)
	fail := ""
	e.fake.Fail = func(m string) error {
		if m == fail {
			return errors.New("boom")
		}
		return nil
	}
	// Nothing to program yet: no pass, nothing to report.
	e.sync(t, true)
	if got := e.rec.reports(); len(got) != 0 || e.rec.passCount() != 0 {
		t.Fatalf("reports %q and %d passes before the store held a state", got, e.rec.passCount())
	}
	e.store.Set(desired(svc("192.0.2.1", 80, lb.TCP, "10.0.0.1:1")))

	steps := []struct {
		fail    string
		full    bool
		reports []string // all reports so far
	}{
		{"GetVirtualServers", true, []string{"boom"}},
		{"GetVirtualServers", true, []string{"boom"}},      // unchanged: not again
		{"AddVirtualServer", true, []string{"boom", "ok"}}, // the table was read
		{"", true, []string{"boom", "ok"}},
		{"", false, []string{"boom", "ok"}},
		{"GetVirtualServers", true, []string{"boom", "ok", "boom"}},
		{"", true, []string{"boom", "ok", "boom", "ok"}},
	}
	for i, s := range steps {
		fail = s.fail
		err := e.dp.SyncOnce(s.full)
		if (err != nil) != (s.fail != "") {
			t.Fatalf("step %d: SyncOnce = %v with %q failing", i, err, s.fail)
		}
		if got := e.rec.reports(); !slices.Equal(got, s.reports) {
			t.Fatalf("step %d (%q failing): reports %q, want %q", i, s.fail, got, s.reports)
		}
		e.rec.mu.Lock()
		passes := slices.Clone(e.rec.passes)
		e.rec.mu.Unlock()
		if len(passes) != i+1 || !errors.Is(passes[i], err) {
			t.Fatalf("step %d: OnSync got %v, want %d passes, the last with %v", i, passes, i+1, err)
		}
	}
	for _, src := range e.rec.sources {
		if src != ipvs.HealthSource {
			t.Fatalf("reported under %q, want %q", src, ipvs.HealthSource)
		}
	}
	assertTable(t, e.fake, e.store.Load(), nil)
}

// Run reports the health it starts with, then a kernel that cannot be
// prepared (once, however often the retry fails alike, with the error
// Prepare returned), then healthy after the first pass.
func TestRunPushesHealth(t *testing.T) {
	store := lb.NewStore()
	store.Set(desired(svc("192.0.2.1", 80, lb.TCP, "10.0.0.1:30080")))
	rec := newRecorder()
	var prepares atomic.Int32
	dp := ipvs.New(ipvs.Options{
		IPVS: ipvstest.New(), Store: store, Log: slog.New(slog.DiscardHandler), Owns: owns,
		Reporter: rec, OnSync: rec.onSync, MinSyncInterval: time.Millisecond,
		PrepareRetry: time.Millisecond,
		Prepare: func() error {
			if prepares.Add(1) <= 3 {
				return fmt.Errorf("loading ip_vs: %w", ipvs.ErrNoIPVS)
			}
			return nil
		},
	})
	if got := rec.reports(); len(got) != 0 {
		t.Fatalf("New reported %q", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- dp.Run(ctx) }()
	waitFor(t, rec, "healthy", func() bool { return slices.Contains(rec.reports(), "ok") })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run returned %v", err)
	}
	got := rec.reports()
	if len(got) != 3 || got[0] != "not synced yet" || !strings.Contains(got[1], "no IPVS") || got[2] != "ok" {
		t.Fatalf("reports %q, want not synced yet, no IPVS (once for 3 failures), ok", got)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if !errors.Is(rec.health[1], ipvs.ErrNoIPVS) {
		t.Errorf("reported %v, not Prepare's error", rec.health[1])
	}
	if len(rec.passes) == 0 || rec.passes[0] != nil {
		t.Errorf("OnSync got %v, want a first pass without error", rec.passes)
	}
	if n := prepares.Load(); n != 4 {
		t.Errorf("Prepare ran %d times, want 4", n)
	}
}
