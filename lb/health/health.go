package health

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/edgelb/edgelb/lb"
)

// Config is the probing schedule.
type Config struct {
	Interval time.Duration
	Timeout  time.Duration
	// Rise successes in a row bring a target up, Fall failures take it
	// down.
	Rise, Fall int
}

// Target is one thing probed.
type Target struct {
	// Addr is the backend; it is connected to over TCP when Protocol is
	// TCP.
	Addr     netip.AddrPort
	Protocol lb.Protocol
	// HTTPPort, when not 0, is probed with GET http://Addr.Addr():HTTPPort/healthz.
	HTTPPort uint16
}

func (t Target) String() string {
	if t.HTTPPort != 0 {
		return fmt.Sprintf("%s/%s+http:%d", t.Addr, t.Protocol, t.HTTPPort)
	}
	return fmt.Sprintf("%s/%s", t.Addr, t.Protocol)
}

// TargetOf returns the target that decides whether backend b of virtual
// service k is up, and whether it is probed at all.
func TargetOf(k lb.Key, b lb.Backend) (Target, bool) {
	t := Target{Addr: b.Addr, Protocol: k.Protocol, HTTPPort: b.HealthCheckPort}
	return t, t.Protocol == lb.TCP || t.HTTPPort != 0
}

// Result is the state of one target, as the API shows it.
type Result struct {
	Target    Target
	Up        bool
	Since     time.Time // when Up last changed (or the target appeared)
	LastCheck time.Time
	LastError string
	// Successes and Failures count the current run of equal outcomes.
	Successes, Failures int
}

// Prober checks one target; nil error means healthy.
type Prober func(ctx context.Context, t Target) error

// Options configure a Checker. Store and Log are required.
type Options struct {
	Store  *lb.Store
	Log    *slog.Logger
	Config Config
	// Probe replaces the network probe (tests); nil means TCP/HTTP.
	Probe Prober
	// Concurrency bounds probes in flight; 0 means 256.
	Concurrency int
	Now         func() time.Time
}

// Checker probes backends. Run drives it; Up, Changed and Results are safe
// for concurrent use.
type Checker struct {
	o       Options
	changed chan struct{}

	mu      sync.Mutex
	results map[Target]*Result
}

// New returns a Checker; it starts nothing.
func New(o Options) *Checker {
	if o.Probe == nil {
		o.Probe = Probe
	}
	if o.Concurrency == 0 {
		o.Concurrency = 256
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Config.Rise < 1 {
		o.Config.Rise = 1
	}
	if o.Config.Fall < 1 {
		o.Config.Fall = 1
	}
	return &Checker{o: o, changed: make(chan struct{}, 1), results: map[Target]*Result{}}
}

// Up reports whether backend b of k passes its checks. Targets not probed
// yet, and targets that are not probed at all, are up.
func (c *Checker) Up(k lb.Key, b lb.Backend) bool {
	t, probed := TargetOf(k, b)
	if !probed {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.results[t]
	return !ok || r.Up
}

// Changed receives a value whenever a target goes up or down.
func (c *Checker) Changed() <-chan struct{} { return c.changed }

// Results returns a copy of every result, sorted by target.
func (c *Checker) Results() []Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Result, 0, len(c.results))
	for _, r := range c.results {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b Result) int {
		if x := a.Target.Addr.Compare(b.Target.Addr); x != 0 {
			return x
		}
		return int(a.Target.HTTPPort) - int(b.Target.HTTPPort)
	})
	return out
}

// Run probes every Interval until ctx is done.
func (c *Checker) Run(ctx context.Context) error {
	tick := time.NewTicker(c.o.Config.Interval)
	defer tick.Stop()
	for {
		c.CheckOnce(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func (c *Checker) targets() []Target {
	d := c.o.Store.Load()
	if d == nil {
		return nil
	}
	seen := map[Target]bool{}
	var out []Target
	for _, vs := range d.Services {
		for _, b := range vs.Backends {
			if t, ok := TargetOf(vs.Key, b); ok && !seen[t] {
				seen[t] = true
				out = append(out, t)
			}
		}
	}
	return out
}

// CheckOnce runs one round: every current target is probed once, targets
// no longer wanted are forgotten.
func (c *Checker) CheckOnce(ctx context.Context) {
	ts := c.targets()
	want := make(map[Target]bool, len(ts))
	for _, t := range ts {
		want[t] = true
	}
	c.mu.Lock()
	for t := range c.results {
		if !want[t] {
			delete(c.results, t)
		}
	}
	c.mu.Unlock()

	sem := make(chan struct{}, c.o.Concurrency)
	var wg sync.WaitGroup
	for _, t := range ts {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			pctx, cancel := context.WithTimeout(ctx, c.o.Config.Timeout)
			err := c.o.Probe(pctx, t)
			cancel()
			if ctx.Err() == nil {
				c.record(t, err)
			}
		}()
	}
	wg.Wait()
}

func (c *Checker) record(t Target, err error) {
	now := c.o.Now()
	c.mu.Lock()
	r, ok := c.results[t]
	if !ok {
		r = &Result{Target: t, Up: true, Since: now}
		c.results[t] = r
	}
	r.LastCheck = now
	flipped := false
	if err == nil {
		r.LastError = ""
		r.Successes++
		r.Failures = 0
		if !r.Up && r.Successes >= c.o.Config.Rise {
			r.Up, r.Since, flipped = true, now, true
		}
	} else {
		r.LastError = err.Error()
		r.Failures++
		r.Successes = 0
		if r.Up && r.Failures >= c.o.Config.Fall {
			r.Up, r.Since, flipped = false, now, true
		}
	}
	up := r.Up
	c.mu.Unlock()
	if flipped {
		if up {
			c.o.Log.Info("backend up", "backend", t.String())
		} else {
			c.o.Log.Warn("backend down", "backend", t.String(), "err", err)
		}
		select {
		case c.changed <- struct{}{}:
		default:
		}
	}
}

// Probe is the network probe: a TCP connect for TCP targets, and an HTTP
// GET of /healthz expecting 200 when HTTPPort is set.
func Probe(ctx context.Context, t Target) error {
	if t.Protocol == lb.TCP {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", t.Addr.String())
		if err != nil {
			return err
		}
		conn.Close()
	}
	if t.HTTPPort != 0 {
		u := "http://" + net.JoinHostPort(t.Addr.Addr().String(), strconv.Itoa(int(t.HTTPPort))) + "/healthz"
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		resp, err := httpClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", u, resp.Status)
		}
	}
	return nil
}

var httpClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
