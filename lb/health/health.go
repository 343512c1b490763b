package health

import (
	"cmp"
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
	"github.com/edgelb/edgelb/lb/config"
	"github.com/edgelb/edgelb/lb/notify"
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
	// Addr is the backend; Protocol is its virtual service's.
	Addr     netip.AddrPort
	Protocol lb.Protocol
	// Check is the backend's own check, its Type and (for http) Path
	// resolved: tcp connects to Addr (or Check.Port), http GETs Path there,
	// none probes nothing.
	Check lb.HealthCheck
	// HTTPPort, when not 0, is probed as well with GET
	// http://Addr.Addr():HTTPPort/healthz.
	HTTPPort uint16
}

func (t Target) String() string {
	s := fmt.Sprintf("%s/%s", t.Addr, t.Protocol)
	switch t.Check.Type {
	case config.CheckTCP:
		if t.Check.Port != 0 {
			s += fmt.Sprintf("+tcp:%d", t.Check.Port)
		}
	case config.CheckHTTP:
		s += fmt.Sprintf("+http:%d%s", t.checkPort(), t.Check.Path)
	}
	if t.HTTPPort != 0 {
		s += fmt.Sprintf("+http:%d", t.HTTPPort)
	}
	return s
}

func (t Target) checkPort() uint16 {
	if t.Check.Port != 0 {
		return t.Check.Port
	}
	return t.Addr.Port()
}

// TargetOf returns the target that decides whether backend b of virtual
// service vs is up, and whether it is probed at all.
func TargetOf(vs *lb.VirtualService, b lb.Backend) (Target, bool) {
	t := Target{Addr: b.Addr, Protocol: vs.Protocol, Check: vs.Check, HTTPPort: b.HealthCheckPort}
	switch {
	case t.Check.Type == "" && t.Protocol == lb.TCP:
		t.Check.Type = config.CheckTCP
	case t.Check.Type == "":
		t.Check.Type = config.CheckNone
	case t.Check.Type == config.CheckHTTP && t.Check.Path == "":
		t.Check.Path = config.DefaultCheckPath
	}
	return t, t.Check.Type != config.CheckNone || t.HTTPPort != 0
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
	o Options

	mu      sync.Mutex
	results map[Target]*Result
	version uint64
	changed notify.Broadcaster

	first     chan struct{}
	firstOnce sync.Once
	// reconfigured wakes Run when SetConfig changed the schedule.
	reconfigured chan struct{}
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
	o.Config = o.Config.withDefaults()
	return &Checker{o: o, results: map[Target]*Result{}, first: make(chan struct{}), reconfigured: make(chan struct{}, 1)}
}

func (c Config) withDefaults() Config {
	c.Rise, c.Fall = max(c.Rise, 1), max(c.Fall, 1)
	return c
}

// config is the schedule in force (SetConfig may change it).
func (c *Checker) config() Config {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.o.Config
}

// SetConfig changes the schedule of the targets whose check does not set
// their own (a new cluster configuration's healthCheck). Results are
// kept: a target stays up or down until the new rise or fall count says
// otherwise, and the next round follows the new interval.
func (c *Checker) SetConfig(cfg Config) {
	cfg = cfg.withDefaults()
	c.mu.Lock()
	changed := cfg != c.o.Config
	c.o.Config = cfg
	c.mu.Unlock()
	if changed {
		select {
		case c.reconfigured <- struct{}{}:
		default:
		}
	}
}

// Up reports whether backend b of vs passes its checks. Targets not probed
// yet, and targets that are not probed at all, are up.
func (c *Checker) Up(vs *lb.VirtualService, b lb.Backend) bool {
	up, _ := c.State(vs, b)
	return up
}

// State is Up, and whether that is known: false for a target not probed
// yet (a target that is never probed is known to be up).
func (c *Checker) State(vs *lb.VirtualService, b lb.Backend) (up, known bool) {
	t, probed := TargetOf(vs, b)
	if !probed {
		return true, true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.results[t]
	if !ok {
		return true, false
	}
	return r.Up, true
}

// Changed returns a new channel that receives a value (coalesced) whenever
// a target goes up or down. Each consumer calls it once and keeps its own
// channel: a shared channel would let one consumer swallow another's
// signal. The channel starts signalled (see package notify), so the
// consumer's first pass reads the results as they are.
func (c *Checker) Changed() <-chan struct{} { return c.changed.Subscribe() }

// Unsubscribe stops signalling ch, a channel Changed returned.
func (c *Checker) Unsubscribe(ch <-chan struct{}) { c.changed.Unsubscribe(ch) }

// Version increases whenever a target goes up or down.
func (c *Checker) Version() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.version
}

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

// Run probes each target every interval (its check's, else Config's)
// until ctx is done. Targets that appear in the desired state are probed at
// once, without waiting for the next round.
func (c *Checker) Run(ctx context.Context) error {
	sub := c.o.Store.Subscribe()
	defer c.o.Store.Unsubscribe(sub)
	wake := time.NewTimer(0)
	defer wake.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-wake.C:
		case <-sub:
		case <-c.reconfigured:
		}
		wake.Reset(c.check(ctx, dueNow))
	}
}

// FirstRound returns a channel closed once every target of the first
// desired state has been probed, so that the dataplane's first pass uses
// real results: after a restart, a backend that is down stays at weight 0
// instead of briefly coming back.
func (c *Checker) FirstRound() <-chan struct{} { return c.first }

func (c *Checker) targets() []Target {
	d := c.o.Store.Load()
	if d == nil {
		return nil
	}
	seen := map[Target]bool{}
	var out []Target
	for i := range d.Services {
		vs := &d.Services[i]
		for _, b := range vs.Backends {
			if t, ok := TargetOf(vs, b); ok && !seen[t] {
				seen[t] = true
				out = append(out, t)
			}
		}
	}
	return out
}

// CheckOnce runs one round: every current target is probed once, targets
// no longer wanted are forgotten.
func (c *Checker) CheckOnce(ctx context.Context) { c.check(ctx, all) }

// Which targets a round probes.
const (
	all    = iota
	dueNow // those without a result, or whose interval has passed
)

// check probes the current targets that which selects and returns how long
// until the next one is due.
func (c *Checker) check(ctx context.Context, which int) time.Duration {
	cfg := c.config()
	next := cfg.Interval
	if c.o.Store.Load() == nil {
		return next
	}
	ts := c.targets()
	want := make(map[Target]bool, len(ts))
	for _, t := range ts {
		want[t] = true
	}
	now := c.o.Now()
	c.mu.Lock()
	for t := range c.results {
		if !want[t] {
			delete(c.results, t)
		}
	}
	if which == dueNow {
		ts = slices.DeleteFunc(ts, func(t Target) bool {
			r := c.results[t]
			return r != nil && now.Sub(r.LastCheck) < interval(t, cfg)
		})
	}
	c.mu.Unlock()

	sem := make(chan struct{}, c.o.Concurrency)
	var wg sync.WaitGroup
	for _, t := range ts {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			timeout := cfg.Timeout
			if t.Check.Timeout != 0 {
				timeout = t.Check.Timeout
			}
			pctx, cancel := context.WithTimeout(ctx, timeout)
			err := c.o.Probe(pctx, t)
			cancel()
			if ctx.Err() == nil {
				c.record(t, err)
			}
		}()
	}
	wg.Wait()
	if ctx.Err() == nil {
		c.firstOnce.Do(func() { close(c.first) })
	}
	now = c.o.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for t, r := range c.results {
		if d := interval(t, c.o.Config) - now.Sub(r.LastCheck); d < next {
			next = d
		}
	}
	return max(next, minWait)
}

// minWait keeps a busy round from spinning.
const minWait = 10 * time.Millisecond

func interval(t Target, cfg Config) time.Duration {
	if t.Check.Interval != 0 {
		return t.Check.Interval
	}
	return cfg.Interval
}

func (c *Checker) record(t Target, err error) {
	now := c.o.Now()
	c.mu.Lock()
	r, ok := c.results[t]
	flipped := false
	if !ok {
		// The first result decides at once: a backend found dead is
		// not given traffic until it has risen.
		r = &Result{Target: t, Up: err == nil, Since: now}
		c.results[t] = r
		flipped = err != nil
	}
	r.LastCheck = now
	if err == nil {
		r.LastError = ""
		r.Successes++
		r.Failures = 0
		if ok && !r.Up && r.Successes >= cmp.Or(t.Check.Rise, c.o.Config.Rise) {
			r.Up, r.Since, flipped = true, now, true
		}
	} else {
		r.LastError = err.Error()
		r.Failures++
		r.Successes = 0
		if ok && r.Up && r.Failures >= cmp.Or(t.Check.Fall, c.o.Config.Fall) {
			r.Up, r.Since, flipped = false, now, true
		}
	}
	up := r.Up
	if flipped {
		c.version++
		c.changed.Notify()
	}
	c.mu.Unlock()
	if flipped {
		if up {
			c.o.Log.Info("backend up", "backend", t.String())
		} else {
			c.o.Log.Warn("backend down", "backend", t.String(), "err", err)
		}
	}
}

// Probe is the network probe: a TCP connect for a tcp check, an HTTP GET
// of the check's path expecting 200-399 for an http check, and an HTTP GET
// of /healthz expecting 200 when HTTPPort is set.
func Probe(ctx context.Context, t Target) error {
	switch t.Check.Type {
	case config.CheckTCP:
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(t.Addr.Addr(), t.checkPort()).String())
		if err != nil {
			return err
		}
		conn.Close()
	case config.CheckHTTP:
		if err := get(ctx, t.Addr.Addr(), t.checkPort(), t.Check.Path, http.StatusBadRequest); err != nil {
			return err
		}
	}
	if t.HTTPPort != 0 {
		return get(ctx, t.Addr.Addr(), t.HTTPPort, "/healthz", http.StatusOK+1)
	}
	return nil
}

// get sends GET path and wants a status from 200 to below.
func get(ctx context.Context, ip netip.Addr, port uint16, path string, below int) error {
	u := "http://" + net.JoinHostPort(ip.String(), strconv.Itoa(int(port))) + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "edgelb-health-check")
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < http.StatusOK || resp.StatusCode >= below {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return nil
}

// httpClient does not follow redirects: a 3xx answer is the backend's.
var httpClient = &http.Client{
	Transport:     &http.Transport{DisableKeepAlives: true, Proxy: nil},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}
