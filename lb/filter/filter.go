package filter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/edgelb/edgelb/lb"
)

// Kernel is the filter table in the kernel. Implementations need not be
// safe for concurrent use except for Dropped, which may run beside the
// others, and the channel Changed returns.
type Kernel interface {
	// Read returns what the table holds, and whether it exists.
	Read() (State, bool, error)
	// Apply makes the changes in one transaction, creating the table
	// (chains, rules, sets) first if it is missing or incomplete. When it
	// fails, some changes may have been made (a change too large for one
	// transaction): the Filter reads the table back.
	Apply(c Changes) error
	// Ensure creates the table (chain, rules, sets) if it is missing or
	// incomplete, and leaves the sets' elements as they are. An error is
	// the host's: no Service can be filtered.
	Ensure() error
	// Delete removes the table, if it exists.
	Delete() error
	// Changed returns a channel that receives a value, soon after, each
	// time another program changes the ruleset in a way that may concern
	// the table (`nft flush ruleset`, say); changes made through this
	// Kernel are not reported. The channel works until ctx ends.
	Changed(ctx context.Context) (<-chan struct{}, error)
	// Dropped returns the packets dropped so far per restricted key; a
	// key's counter starts at 0 when its element is added.
	Dropped() (map[lb.Key]uint64, error)
}

// HealthSource is the source under which the Filter reports its health to
// Options.Reporter.
const HealthSource = "filter"

// Reporter receives the filter's health; *cluster.Cluster implements it.
//
// Concurrency: SetHealth is called from the goroutine that runs Run, one
// call at a time and in the order the health changed. It must not block —
// record the value and return — or the filter stops with it; it may call
// the Filter's read-only methods (LastError, Failed, Dropped).
type Reporter interface {
	// SetHealth reports the filter's health under HealthSource: nil, or
	// why source ranges cannot be enforced on this host — ErrNotSynced
	// before the first pass, or a host-wide error of the last pass — so
	// it must not forward what they exclude. A Service whose ranges the
	// kernel refused is closed instead, and is not reported here.
	SetHealth(source string, err error)
}

// Options configure a Filter. Kernel, Store and Log are required.
type Options struct {
	Kernel Kernel
	Store  *lb.Store
	Log    *slog.Logger
	// ResyncPeriod is how often the table is read back and repaired;
	// 0 means a minute.
	ResyncPeriod time.Duration
	// RetryPeriod is how long a failed pass, or one that closed a
	// Service whose ranges the kernel refused, waits before the next; 0
	// means 5 seconds.
	RetryPeriod time.Duration
	// Reporter, if set, is told the filter's health (LastError) under
	// HealthSource: when Run starts (ErrNotSynced until the first pass
	// succeeds), and then after each pass of Run whose result differs
	// from the last one reported (healthy or not, and the error's text).
	Reporter Reporter
}

// Filter keeps the kernel's filter table in line with the desired state.
// Run drives it; Dropped, Failed and LastError may be called
// concurrently.
type Filter struct {
	o Options

	// Owned by the pass.
	have    State
	present bool
	known   bool // have and present reflect the kernel
	// What Reporter was last told (report).
	reported lb.HealthLatch
	// What was logged of each Service's failure, and of the stale keys'
	// (logFailures).
	logged      map[lb.Source]string
	loggedStale string

	mu      sync.Mutex           // guards the fields below
	sources map[lb.Key]lb.Source // PortName cleared
	last    map[lb.Key]uint64
	total   map[lb.Source]uint64
	lastErr error
	failed  map[lb.Source]error
	// staleErr is why elements of keys no Service has any more could not
	// be deleted (they stay as restrictive as they were).
	staleErr error
}

// ErrNotSynced is the filter's health before its first pass: until then a
// Service's ranges may not be enforced, so the host must not own its VIP.
var ErrNotSynced = errors.New("source ranges not programmed yet")

// New returns a Filter; it starts nothing.
func New(o Options) *Filter {
	if o.ResyncPeriod == 0 {
		o.ResyncPeriod = time.Minute
	}
	if o.RetryPeriod == 0 {
		o.RetryPeriod = 5 * time.Second
	}
	return &Filter{o: o, sources: map[lb.Key]lb.Source{}, last: map[lb.Key]uint64{}, total: map[lb.Source]uint64{},
		lastErr: ErrNotSynced, logged: map[lb.Source]string{}}
}

// Run reconciles the table whenever the desired state changes, when
// another program changes the ruleset (Kernel.Changed: a reload of
// nftables.service flushes everything), and every ResyncPeriod, until ctx
// is done. Errors are logged and retried; they never end Run.
func (f *Filter) Run(ctx context.Context) error {
	sub := f.o.Store.Subscribe()
	resync := time.NewTicker(f.o.ResyncPeriod)
	defer resync.Stop()
	foreign := f.watch(ctx)
	var retry <-chan time.Time
	lastErr := ""
	f.report(f.LastError())
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sub:
		case <-resync.C:
			f.known = false
		case <-foreign:
			// Read the table again: what it holds is no longer what
			// the last pass left.
			f.known = false
		case <-retry:
		}
		retry = nil
		d := f.o.Store.Load()
		if d == nil {
			continue
		}
		err := f.SyncOnce(d)
		f.report(err)
		f.logFailures()
		if err != nil {
			if err.Error() != lastErr {
				f.o.Log.Error("programming the source-range filter, will retry; this host owns no VIPs meanwhile", "err", err)
			}
			lastErr = err.Error()
			retry = time.After(f.o.RetryPeriod)
			continue
		}
		if lastErr != "" {
			f.o.Log.Info("source-range filter programmed again")
		}
		lastErr = ""
		if len(f.Failed()) > 0 || f.staleError() != nil {
			// Try the refused Services again.
			retry = time.After(f.o.RetryPeriod)
		}
	}
}

// watch returns the channel of Kernel.Changed, or nil (never ready) when
// the kernel cannot report changes: then only the resync repairs them.
func (f *Filter) watch(ctx context.Context) <-chan struct{} {
	ch, err := f.o.Kernel.Changed(ctx)
	if err != nil {
		f.o.Log.Warn("cannot watch the nftables ruleset: a foreign change (nft flush ruleset) is repaired only at the next resync",
			"err", err, "resync", f.o.ResyncPeriod)
		return nil
	}
	return ch
}

// logFailures logs each Service's failure once per distinct error, and
// its recovery. Called by Run only.
func (f *Filter) logFailures() {
	failed := f.Failed()
	for src, err := range failed {
		if f.logged[src] != err.Error() {
			f.o.Log.Error("the kernel refused a Service's source ranges: its ports are closed (every packet dropped) until they can be programmed",
				"service", src.String(), "err", err)
			f.logged[src] = err.Error()
		}
	}
	for src := range f.logged {
		if _, ok := failed[src]; !ok {
			f.o.Log.Info("a Service's source ranges are programmed again", "service", src.String())
			delete(f.logged, src)
		}
	}
	stale := ""
	if err := f.staleError(); err != nil {
		stale = err.Error()
	}
	if stale != "" && stale != f.loggedStale {
		f.o.Log.Error("the kernel refused to lift source ranges no Service has any more: they stay as they were until it can", "err", stale)
	}
	f.loggedStale = stale
}

// report tells Reporter the error of the last pass if it differs from
// what Reporter was last told, or if it was told nothing yet. Called by
// Run only.
func (f *Filter) report(err error) {
	if f.o.Reporter == nil {
		return
	}
	if f.reported.Changed(err) {
		f.o.Reporter.SetHealth(HealthSource, err)
	}
}

// LastError is the host-wide error of the last pass, ErrNotSynced before
// the first, or nil. A Service whose ranges the kernel refused is not an
// error here but in Failed.
func (f *Filter) LastError() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastErr
}

// Failed returns the Services (Source with PortName empty) whose ranges
// the kernel refused at the last pass, with its error: every port of
// theirs is closed until a pass can program them.
func (f *Filter) Failed() map[lb.Source]error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.failed)
}

func (f *Filter) staleError() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.staleErr
}

// setFailed records the Services the pass closed.
func (f *Filter) setFailed(failed map[lb.Source]error, stale error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed, f.staleErr = failed, stale
}

// SyncOnce brings the table to the state d wants, changing only the
// difference. A Service whose ranges the kernel refuses is closed and
// recorded (Failed), and the others are programmed: the error it returns
// is the host's (the table cannot be read, created or written at all).
// After an error the next pass reads the kernel again.
func (f *Filter) SyncOnce(d *lb.Desired) error {
	err := f.syncOnce(d)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastErr = err
	return err
}

func (f *Filter) syncOnce(d *lb.Desired) error {
	f.setSources(d)
	want := Want(d)
	if !f.known {
		have, present, err := f.o.Kernel.Read()
		if err != nil && want.Empty() {
			// Nothing to enforce: a host without nftables is fine as
			// long as no service has ranges.
			f.setFailed(nil, nil)
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the filter table: %w", err)
		}
		f.have, f.present, f.known = have, present, true
	}
	if want.Empty() {
		if !f.present {
			f.setFailed(nil, nil)
			return nil
		}
		if err := f.o.Kernel.Delete(); err != nil {
			f.known = false
			return fmt.Errorf("deleting the filter table: %w", err)
		}
		f.have, f.present = want, false
		f.setFailed(nil, nil)
		f.forget(nil, true)
		f.o.Log.Info("no service has source ranges: filter table removed")
		return nil
	}
	c := Diff(f.have, want)
	if c.Empty() && f.present {
		f.setFailed(nil, nil)
		return nil
	}
	if f.o.Kernel.Apply(c) != nil {
		// Find the Services the kernel refuses; program the others.
		f.known = false
		if err := f.isolate(d, want); err != nil {
			return err
		}
		f.forget(c.DelRestricted, false)
		return nil
	}
	f.have, f.present = want, true
	f.setFailed(nil, nil)
	f.forget(c.DelRestricted, false)
	f.o.Log.Info("source ranges updated", "restricted", len(want.Restricted),
		"added", len(c.AddRestricted)+len(c.AddAllowed), "deleted", len(c.DelRestricted)+len(c.DelAllowed))
	return nil
}

// forget drops the last counter values read of keys whose elements were
// deleted (or of every key): a new element counts from 0.
func (f *Filter) forget(keys []lb.Key, all bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if all {
		clear(f.last)
	}
	for _, k := range keys {
		delete(f.last, k)
	}
}

func (f *Filter) setSources(d *lb.Desired) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k := range f.sources {
		delete(f.sources, k)
	}
	if d == nil {
		return
	}
	for i := range d.Services {
		if vs := &d.Services[i]; vs.SourceRanges != nil {
			src := vs.Source
			src.PortName = ""
			f.sources[vs.Key] = src
		}
	}
}

// Dropped returns the packets dropped per service (Source with PortName
// empty), counted since this process started: it reads the
// kernel's counters and adds what they grew by since the previous call, so
// the totals never go down when an element (and its counter) is recreated.
// Services whose keys are gone from the desired state keep their total.
func (f *Filter) Dropped() (map[lb.Source]uint64, error) {
	now, err := f.o.Kernel.Dropped()
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	for k, v := range now {
		delta := v
		if prev, ok := f.last[k]; ok && v >= prev {
			delta = v - prev
		}
		f.last[k] = v
		if src, ok := f.sources[k]; ok {
			f.total[src] += delta
		}
	}
	for k := range f.last {
		if _, ok := now[k]; !ok {
			delete(f.last, k)
		}
	}
	for _, src := range f.sources {
		if _, ok := f.total[src]; !ok {
			f.total[src] = 0
		}
	}
	out := make(map[lb.Source]uint64, len(f.total))
	for s, v := range f.total {
		out[s] = v
	}
	return out, nil
}
