package filter_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/filter"
	"github.com/edgelb/edgelb/lb/filter/filtertest"
)

// recorder is a test Filter's Reporter: it keeps what it was told, in
// order, and wakes waitReports after each report.
type recorder struct {
	mu      sync.Mutex
	sources []string
	health  []string // "ok" for nil
	wake    chan struct{}
}

var _ filter.Reporter = (*recorder)(nil)

func (r *recorder) SetHealth(source string, err error) {
	r.mu.Lock()
	r.sources = append(r.sources, source)
	if err == nil {
		r.health = append(r.health, "ok")
	} else {
		r.health = append(r.health, err.Error())
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *recorder) reports() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.health)
}

// waitReports returns once n reports were made, failing the test after 5 s.
func (r *recorder) waitReports(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	for {
		if got := r.reports(); len(got) >= n {
			return got
		}
		select {
		case <-r.wake:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %d reports; have %q", n, r.reports())
		}
	}
}

// Run reports the filter not synced when it starts (the host must not own
// VIPs whose ranges are not enforced yet), a table that cannot be created
// once however often the retry fails alike, and healthy after the pass
// that writes it; passes that succeed report nothing more.
func TestRunPushesHealth(t *testing.T) {
	k := filtertest.New()
	var failing atomic.Bool
	failing.Store(true)
	// One value per Apply, sent before it returns: once the test has
	// received the nth, every pass before the nth Apply has ended.
	applies := make(chan struct{}, 100)
	k.Fail = func(m string) error {
		if m == "Ensure" && failing.Load() {
			return errors.New("no nftables")
		}
		if m != "Apply" {
			return nil
		}
		applies <- struct{}{}
		if failing.Load() {
			return errors.New("no nftables")
		}
		return nil
	}
	store := lb.NewStore()
	rec := &recorder{wake: make(chan struct{}, 1)}
	f := filter.New(filter.Options{Kernel: k, Store: store, Log: discard(), Reporter: rec,
		RetryPeriod: time.Millisecond, ResyncPeriod: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.Run(ctx) }()

	if got := rec.waitReports(t, 1); !slices.Equal(got, []string{filter.ErrNotSynced.Error()}) {
		t.Fatalf("at start: reports %q, want %q", got, filter.ErrNotSynced)
	}
	d := &lb.Desired{Services: []lb.VirtualService{vs("192.0.2.1", 80, lb.TCP, "s", "10.0.0.0/8")}}
	store.Set(d)
	receive := func(what string) {
		t.Helper()
		select {
		case <-applies:
		case <-time.After(5 * time.Second):
			t.Fatalf("timed out waiting for %s", what)
		}
	}
	for i := range 5 {
		receive("a retry")
		if i == 0 {
			continue
		}
		// Apply i+1 runs: the passes of Applies 1..i have reported.
		if got := rec.reports(); len(got) != 2 || got[1] != "creating the filter table: no nftables" {
			t.Fatalf("after %d failed passes: reports %q, want not synced and the error once", i, got)
		}
	}
	failing.Store(false)
	if got := rec.waitReports(t, 3); got[2] != "ok" {
		t.Fatalf("after the table was written: reports %q", got)
	}
	for len(applies) > 0 {
		<-applies
	}
	// Two more passes that write: the first has ended once the second's
	// Apply runs. Neither reports.
	store.Set(&lb.Desired{Services: []lb.VirtualService{vs("192.0.2.1", 80, lb.TCP, "s", "10.0.0.0/16")}})
	receive("the second pass")
	store.Set(d)
	receive("the third pass")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run returned %v", err)
	}
	if got := rec.reports(); len(got) != 3 {
		t.Fatalf("passes that succeeded reported again: %q", got)
	}
	if f.LastError() != nil {
		t.Fatalf("LastError = %v", f.LastError())
	}
	for _, src := range rec.sources {
		if src != filter.HealthSource {
			t.Fatalf("reported under %q, want %q", src, filter.HealthSource)
		}
	}
	if c := filter.Diff(k.State, filter.Want(d)); !c.Empty() {
		t.Errorf("the table differs: %+v", c)
	}
}

// Another program flushing the ruleset (a reload of nftables.service) is
// repaired at once, not at the next resync: the kernel says the ruleset
// changed and Run reads the table again.
func TestRunRepairsForeignFlush(t *testing.T) {
	k := filtertest.New()
	store := lb.NewStore()
	f := filter.New(filter.Options{Kernel: k, Store: store, Log: discard(), RetryPeriod: time.Hour, ResyncPeriod: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error)
	go func() { done <- f.Run(ctx) }()
	d := &lb.Desired{Services: []lb.VirtualService{vs("192.0.2.1", 80, lb.TCP, "s", "10.0.0.0/8")}}
	store.Set(d)
	programmed := func() bool {
		s, present := k.Snapshot()
		return present && filter.Diff(s, filter.Want(d)).Empty()
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitFor("the first pass", programmed)
	k.Foreign(func(k *filtertest.Fake) { k.Present, k.State = false, filter.State{} })
	waitFor("the repair after a foreign flush", programmed)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a log destination safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A refused Service is retried, logged once however often it fails
// alike, and its recovery is logged; the host stays healthy throughout.
func TestRunLogsARefusedServiceOnce(t *testing.T) {
	k := filtertest.New()
	var refusing atomic.Bool
	refusing.Store(true)
	var applies atomic.Int32
	k.Refuse = func(c filter.Changes) error {
		applies.Add(1)
		if refusing.Load() && len(c.AddAllowed) > 0 {
			return errors.New("set full")
		}
		return nil
	}
	store := lb.NewStore()
	var logs syncBuffer
	rec := &recorder{wake: make(chan struct{}, 1)}
	f := filter.New(filter.Options{Kernel: k, Store: store, Log: slog.New(slog.NewTextHandler(&logs, nil)), Reporter: rec,
		RetryPeriod: time.Millisecond, ResyncPeriod: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.Run(ctx) }()
	store.Set(&lb.Desired{Services: []lb.VirtualService{vs("192.0.2.1", 80, lb.TCP, "s", "10.0.0.0/8")}})
	deadline := time.Now().Add(5 * time.Second)
	for applies.Load() < 30 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d Applies: the refused Service is not retried", applies.Load())
		}
		time.Sleep(time.Millisecond)
	}
	refusing.Store(false)
	for !strings.Contains(logs.String(), "programmed again") {
		if time.Now().After(deadline) {
			t.Fatalf("the recovery was not logged:\n%s", logs.String())
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if n := strings.Count(logs.String(), "the kernel refused a Service's source ranges"); n != 1 {
		t.Errorf("the refusal was logged %d times, want once:\n%s", n, logs.String())
	}
	if got := rec.reports(); slices.Contains(got, "set full") || got[len(got)-1] != "ok" {
		t.Errorf("health reports %q: a Service's refusal is not the host's", got)
	}
}
