package ipvs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/edgelb/edgelb/lb"
)

// Health tells the dataplane which backends pass their health checks.
type Health interface {
	// Up reports whether backend b of virtual service vs may get new
	// connections.
	Up(vs *lb.VirtualService, b lb.Backend) bool
	// Changed receives a value (coalesced) whenever a result changes.
	Changed() <-chan struct{}
	// Version increases whenever a result changes, so a pass can tell
	// cheaply whether any backend's health changed since the last one.
	Version() uint64
}

// SNAT source-NATs the connections the dataplane masquerades, so replies
// come back through this host.
type SNAT interface {
	// Sync makes the source NAT cover exactly these VIPs.
	Sync(vips []netip.Addr) error
}

// Options configure a Dataplane. IPVS, Store and Log are required.
type Options struct {
	IPVS  Interface
	Store *lb.Store
	Log   *slog.Logger
	// Prepare readies the kernel (modules, sysctls) before the first
	// pass; it is retried every PrepareRetry until it succeeds. nil: nothing
	// to prepare.
	Prepare      func() error
	PrepareRetry time.Duration
	// Owns reports whether a VIP belongs to edgelb even when no desired
	// service uses it (address pools, static services): stale virtual
	// services on it are deleted. nil: only desired VIPs and VIPs this
	// process programmed are edgelb's.
	Owns func(netip.Addr) bool
	// Health, if set, sets failing backends to weight 0.
	Health Health
	// SNAT, if set, is synced with the VIPs of nat virtual services.
	SNAT SNAT
	// DrainTimeout bounds how long a leaving backend is kept at weight 0.
	DrainTimeout time.Duration
	// MinSyncInterval is the least time between two passes; changes
	// within it are coalesced.
	MinSyncInterval time.Duration
	// ResyncPeriod is how often a full pass re-reads the whole table.
	ResyncPeriod time.Duration
	// DrainPoll is how often connections of draining backends are
	// checked.
	DrainPoll time.Duration
	// StatsIPVS is the table Stats reads the counters from: a handle of
	// its own, so that the reads of the API and metrics never queue
	// behind a pass's requests or hold up the pass. nil: IPVS.
	StatsIPVS Interface
	// StatsInterval is how long Stats serves the counters it read;
	// 0 means DefaultStatsInterval.
	StatsInterval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// Reporter, if set, is told the dataplane's health (Healthy) under
	// HealthSource: when Run starts (not synced yet), and then each time
	// it changes — unhealthy while the kernel cannot be prepared or the
	// table cannot be read, healthy after a pass that could read it (a
	// pass that fails only for some virtual services leaves it healthy).
	// An unchanged health is not reported again. See Reporter for the
	// concurrency rule.
	Reporter Reporter
	// OnSync, if set, is called after every pass that ran (the store
	// held a state) with the time it took and its error, the one
	// SyncOnce returns: nil, the virtual services that could not be
	// programmed, or the table that could not be read. It is called
	// like Reporter: from the pass's goroutine, and must not block.
	OnSync func(took time.Duration, err error)
}

// Status is the dataplane's health as other parts (cluster ownership, the
// API) see it.
type Status struct {
	// Ready is true once the kernel is prepared and a pass has run. It
	// turns false when the kernel cannot be used at all (no IPVS, the
	// table cannot be read); a pass that fails for some virtual services
	// only sets LastError (and is retried), so that one bad service does
	// not make every host unhealthy.
	Ready bool
	// Err is why it is not ready.
	Err string
	// LastError is the error of the last pass, if any.
	LastError       string
	LastSync        time.Time
	LastSyncTook    time.Duration
	VirtualServices int
	// Draining counts backends kept at weight 0 for open connections.
	Draining int
}

// Dataplane reconciles IPVS to the desired state. Run drives it; the
// read-only methods (Status, Healthy, Stats) are safe to call concurrently.
type Dataplane struct {
	o Options

	mu     sync.Mutex // guards status, unready and managed
	status Status
	// unready is why the dataplane is not ready (status.Err as an
	// error), nil when it is.
	unready error
	// managed holds the VIPs of the desired state at the last pass.
	managed map[netip.Addr]bool

	// Owned by the pass (Run or SyncOnce callers, one at a time).
	applied    map[lb.Key]*target
	programmed map[netip.Addr]bool
	// failing are the virtual services whose last reconcile failed, with
	// why (Run's goroutine only); failures is its copy for Failures,
	// under mu, renewed when failing changed.
	failing        map[lb.Key]string
	failingChanged bool
	failures       map[lb.Key]string
	draining       map[drainKey]time.Time
	drainKeys      map[lb.Key]int // number of draining backends by service
	snatVIPs       []netip.Addr
	snatDone       bool
	healthVer      uint64
	// gen is the store's generation the last pass applied (lb.Store.Since).
	gen uint64
	// What Reporter was last told (reportHealth).
	reported lb.HealthLatch

	stats statsCache

	// drainTimeout is Options.DrainTimeout until Reconfigure changes it.
	drainTimeout atomic.Int64
	// reconfigured wakes Run to prepare the kernel again and run a full
	// pass (Reconfigure).
	reconfigured chan struct{}
}

type drainKey struct {
	key  lb.Key
	addr netip.AddrPort
}

// target is what the kernel should hold for one virtual service. One is
// kept per virtual service between passes, so it is compact: the real
// servers share their method and threshold.
type target struct {
	src lb.VirtualService // what the target was computed from
	vs  VirtualServer
	rss []dest // in service, sorted by address
	// method and upper are every real server's Method and UpperThreshold.
	method Method
	upper  uint32
	// leaving are backends still terminating: kept only while draining.
	leaving []netip.AddrPort
}

// dest is a real server of a target.
type dest struct {
	addr   netip.AddrPort
	weight int
}

// real is the real server of t's i-th dest.
func (t *target) real(i int) *RealServer {
	d := t.rss[i]
	return &RealServer{Address: d.addr.Addr(), Port: d.addr.Port(), Weight: d.weight, Method: t.method, UpperThreshold: t.upper}
}

func (t *target) equal(o *target) bool {
	return t.vs.Equal(&o.vs) && t.method == o.method && t.upper == o.upper && slices.Equal(t.rss, o.rss) &&
		slices.Equal(t.leaving, o.leaving)
}

// New returns a Dataplane; it starts nothing.
func New(o Options) *Dataplane {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MinSyncInterval == 0 {
		o.MinSyncInterval = 100 * time.Millisecond
	}
	if o.ResyncPeriod == 0 {
		o.ResyncPeriod = time.Minute
	}
	if o.DrainPoll == 0 {
		o.DrainPoll = time.Second
	}
	if o.PrepareRetry == 0 {
		o.PrepareRetry = 30 * time.Second
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = 5 * time.Minute
	}
	if o.StatsIPVS == nil {
		o.StatsIPVS = o.IPVS
	}
	if o.StatsInterval == 0 {
		o.StatsInterval = DefaultStatsInterval
	}
	d := &Dataplane{
		o:            o,
		status:       Status{Err: errNotSynced.Error()},
		unready:      errNotSynced,
		applied:      map[lb.Key]*target{},
		programmed:   map[netip.Addr]bool{},
		failing:      map[lb.Key]string{},
		draining:     map[drainKey]time.Time{},
		drainKeys:    map[lb.Key]int{},
		reconfigured: make(chan struct{}, 1),
	}
	d.drainTimeout.Store(int64(o.DrainTimeout))
	return d
}

// Reconfigure takes a new drain timeout (0: the default) and has Run
// prepare the kernel again (Prepare reads what it needs, such as the
// schedulers and methods of a new configuration, when it runs) and then
// run a full pass. Nothing is flushed: the pass changes only what differs.
func (d *Dataplane) Reconfigure(drainTimeout time.Duration) {
	if drainTimeout == 0 {
		drainTimeout = 5 * time.Minute
	}
	d.drainTimeout.Store(int64(drainTimeout))
	select {
	case d.reconfigured <- struct{}{}:
	default:
	}
}

// prepare runs Prepare until it succeeds; false means ctx ended first.
// Until then the dataplane is unhealthy (logged once per distinct error).
func (d *Dataplane) prepare(ctx context.Context) bool {
	if d.o.Prepare == nil {
		return true
	}
	lastErr := ""
	// At once, then PrepareRetry after each failed attempt ends.
	retry := wait.Backoff{Duration: d.o.PrepareRetry}.DelayFunc()
	err := retry.Until(ctx, true, true, func(context.Context) (bool, error) {
		err := d.o.Prepare()
		if err == nil {
			return true, nil
		}
		d.setErr(err)
		if err.Error() != lastErr {
			d.o.Log.Error("dataplane cannot be programmed; host is unhealthy", "err", err)
			lastErr = err.Error()
		}
		return false, nil
	})
	return err == nil
}

// Status returns the current status.
func (d *Dataplane) Status() Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.status
}

// Failures returns the virtual services the kernel refused in their last
// pass, with why. Each costs that virtual service only: it is retried
// (every second, with a full pass) and the host stays healthy.
func (d *Dataplane) Failures() map[lb.Key]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.failures
}

// result records how reconciling k ended and returns err naming k.
func (d *Dataplane) result(k lb.Key, err error) error {
	old, had := d.failing[k]
	switch {
	case err != nil:
		if !had || old != err.Error() {
			d.o.Log.Warn("the kernel refused a virtual service; retrying, the others are unaffected", "service", k.String(), "err", err)
		}
		d.failing[k], d.failingChanged = err.Error(), true
		return fmt.Errorf("%s: %w", k, err)
	case had:
		d.o.Log.Info("virtual service programmed after failing", "service", k.String())
		delete(d.failing, k)
		d.failingChanged = true
	}
	return nil
}

// forgetFailing drops the failures of virtual services no longer wanted.
func (d *Dataplane) forgetFailing(want func(lb.Key) bool) {
	for k := range d.failing {
		if !want(k) {
			delete(d.failing, k)
			d.failingChanged = true
		}
	}
}

// Healthy returns nil when the dataplane is programmed, or why not. A host
// whose dataplane is not healthy must not own VIPs.
func (d *Dataplane) Healthy() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.status.Ready {
		return nil
	}
	return d.unready
}

// setErr makes the dataplane unready because of err, and reports it.
func (d *Dataplane) setErr(err error) {
	d.mu.Lock()
	d.status.Ready, d.status.Err, d.unready = false, err.Error(), err
	d.mu.Unlock()
	d.reportHealth()
}

// Run prepares the kernel and then reconciles until ctx is done. It returns
// nil on cancellation; a kernel that cannot be prepared makes the dataplane
// unhealthy (logged once per distinct error), not Run fail, so the daemon
// keeps serving its API and gives up its VIPs.
func (d *Dataplane) Run(ctx context.Context) error {
	sub := d.o.Store.Subscribe()
	var healthC <-chan struct{}
	if d.o.Health != nil {
		healthC = d.o.Health.Changed()
	}
	d.reportHealth()
	if !d.prepare(ctx) {
		return nil
	}
	// Let the health checker probe every backend once, so that the first
	// pass after a restart does not give traffic to a dead backend.
	if fr, ok := d.o.Health.(interface{ FirstRound() <-chan struct{} }); ok {
	firstRound:
		select {
		case <-ctx.Done():
			return nil
		case <-fr.FirstRound():
		case <-sub:
			if d.o.Store.Load() == nil {
				goto firstRound // the subscription starts signalled
			}
			// A desired state arrived; its targets are being probed.
			select {
			case <-ctx.Done():
				return nil
			case <-fr.FirstRound():
			case <-time.After(10 * time.Second):
			}
		}
	}
	resync := time.NewTicker(d.o.ResyncPeriod)
	defer resync.Stop()
	wake := time.NewTimer(time.Hour)
	wake.Stop()
	defer wake.Stop()

	dirty, full := true, true
	var last time.Time
	for {
		if dirty {
			if wait := d.o.MinSyncInterval - time.Since(last); wait > 0 {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(wait):
				}
			}
			// Coalesce everything that arrived meanwhile.
			select {
			case <-sub:
			default:
			}
			last = time.Now()
			err := d.SyncOnce(full)
			dirty = false
			next := time.Duration(0)
			switch {
			case err != nil:
				d.o.Log.Error("dataplane sync failed; retrying", "err", err)
				full, next = true, time.Second
			case len(d.draining) > 0:
				full, next = false, d.o.DrainPoll
			default:
				full = false
			}
			if next > 0 {
				wake.Reset(next)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-sub:
			dirty = true
		case <-healthC:
			dirty = true
		case <-wake.C:
			dirty = true
		case <-resync.C:
			dirty, full = true, true
		case <-d.reconfigured:
			if !d.prepare(ctx) {
				return nil
			}
			dirty, full = true, true
		}
	}
}

// SyncOnce runs one pass against the newest desired state. A full pass
// reads every virtual service in the kernel; an incremental one touches only
// the virtual services whose desired state or backend health changed since
// the last pass, or that have draining backends or failed, so its kernel
// work is proportional to the change. When the store tells which keys
// changed (lb.Store.SetChanged) and no backend's health did, only those
// keys are looked at (a dirty set, like kube-proxy's change trackers);
// otherwise finding the change is one cheap comparison per service.
// Nothing is done before the store holds a state.
func (d *Dataplane) SyncOnce(full bool) error {
	desired, gen, changed, known := d.o.Store.Since(d.gen)
	if desired == nil {
		return nil
	}
	start := time.Now()
	now := d.o.Now()
	var hv uint64
	if d.o.Health != nil {
		hv = d.o.Health.Version()
	}
	healthChanged := hv != d.healthVer

	var errs []error
	var err error
	var vipsChanged bool
	if full {
		vipsChanged, err = d.fullPass(desired, now, &errs)
		if err != nil {
			d.mu.Lock()
			d.status.Ready, d.status.Err, d.status.LastError = false, err.Error(), err.Error()
			d.unready = err
			d.mu.Unlock()
			d.reportHealth()
			d.syncDone(time.Since(start), err)
			return err
		}
	} else if known && !healthChanged {
		vipsChanged = d.keysPass(desired, changed, now, &errs)
	} else {
		vipsChanged = d.incrementalPass(desired, healthChanged, now, &errs)
	}
	d.gen = gen
	if vipsChanged || !d.snatDone || full {
		vips, natVIPs := vipSets(desired)
		d.mu.Lock()
		d.managed = vips
		d.mu.Unlock()
		if d.o.SNAT != nil && (!d.snatDone || full || !slices.Equal(natVIPs, d.snatVIPs)) {
			if err := d.o.SNAT.Sync(natVIPs); err != nil {
				errs = append(errs, fmt.Errorf("syncing source NAT: %w", err))
			} else {
				d.snatVIPs, d.snatDone = natVIPs, true
			}
		} else if d.o.SNAT == nil {
			d.snatDone = true
		}
	}
	err = errors.Join(errs...)
	if err == nil {
		d.healthVer = hv
	}
	took := time.Since(start)
	d.mu.Lock()
	d.status.LastSync, d.status.LastSyncTook = now, took
	d.status.VirtualServices, d.status.Draining = len(desired.Services), len(d.draining)
	d.status.Ready, d.status.Err, d.unready = true, "", nil
	d.status.LastError = ""
	if err != nil {
		d.status.LastError = err.Error()
	}
	if d.failingChanged {
		d.failures, d.failingChanged = maps.Clone(d.failing), false
	}
	d.mu.Unlock()
	d.reportHealth()
	d.syncDone(took, err)
	return err
}

// vipSets returns the VIPs of the desired state and, sorted, those of its
// nat services.
func vipSets(desired *lb.Desired) (map[netip.Addr]bool, []netip.Addr) {
	vips := map[netip.Addr]bool{}
	var nat []netip.Addr
	for i := range desired.Services {
		vs := &desired.Services[i]
		if vs.Method == lb.NAT {
			nat = append(nat, vs.VIP)
		}
		vips[vs.VIP] = true
	}
	slices.SortFunc(nat, netip.Addr.Compare)
	return vips, slices.Compact(nat)
}

// fullPass reconciles every desired service against a fresh read of the
// kernel and deletes stale services on managed VIPs. It returns an error
// only when the table cannot be read.
func (d *Dataplane) fullPass(desired *lb.Desired, now time.Time, errs *[]error) (bool, error) {
	kvs, err := d.o.IPVS.GetVirtualServers()
	if err != nil {
		return false, err
	}
	vips := make(map[netip.Addr]bool, len(desired.Services))
	want := make(map[lb.Key]bool, len(desired.Services))
	for i := range desired.Services {
		vips[desired.Services[i].VIP] = true
		want[desired.Services[i].Key] = true
	}
	inKernel := map[lb.Key]*VirtualServer{}
	for _, kv := range kvs {
		if !d.manages(kv.Address, vips) {
			continue // foreign: never touched
		}
		k := keyOf(kv)
		if !want[k] {
			*errs = append(*errs, d.deleteService(k, kv))
			continue
		}
		inKernel[k] = kv
	}
	for k := range d.applied {
		if !want[k] {
			delete(d.applied, k)
		}
	}
	d.forgetFailing(func(k lb.Key) bool { return want[k] })
	for i := range desired.Services {
		vs := &desired.Services[i]
		*errs = append(*errs, d.result(vs.Key, d.reconcile(vs.Key, d.target(vs), inKernel[vs.Key], true, now)))
	}
	return true, nil
}

// incrementalPass reconciles only what changed since the last pass.
func (d *Dataplane) incrementalPass(desired *lb.Desired, healthChanged bool, now time.Time, errs *[]error) bool {
	vipsChanged := false
	matched := 0
	for i := range desired.Services {
		vs := &desired.Services[i]
		if _, ok := d.applied[vs.Key]; ok {
			matched++
		}
		vipsChanged = d.applyOne(vs, healthChanged, now, errs) || vipsChanged
	}
	if matched != len(d.applied) || len(d.failing) > 0 {
		vipsChanged = vipsChanged || matched != len(d.applied)
		want := make(map[lb.Key]bool, len(desired.Services))
		for i := range desired.Services {
			want[desired.Services[i].Key] = true
		}
		d.forgetFailing(func(k lb.Key) bool { return want[k] })
		for k, a := range d.applied {
			if !want[k] {
				*errs = append(*errs, d.deleteService(k, &a.vs))
			}
		}
	}
	return vipsChanged
}

// keysPass reconciles the keys the store says changed, and those with
// draining backends or that failed: the others are not looked at.
func (d *Dataplane) keysPass(desired *lb.Desired, changed []lb.Key, now time.Time, errs *[]error) bool {
	keys := slices.Clone(changed)
	for k := range d.drainKeys {
		keys = append(keys, k)
	}
	for k := range d.failing {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, lb.Key.Compare)
	keys = slices.Compact(keys)
	vipsChanged := false
	for _, k := range keys {
		i, found := slices.BinarySearchFunc(desired.Services, k, func(v lb.VirtualService, k lb.Key) int { return v.Key.Compare(k) })
		a, ok := d.applied[k]
		if !found {
			if _, had := d.failing[k]; had {
				delete(d.failing, k)
				d.failingChanged = true
			}
			if ok {
				vipsChanged = true
				*errs = append(*errs, d.deleteService(k, &a.vs))
			}
			continue
		}
		vipsChanged = d.applyOne(&desired.Services[i], false, now, errs) || vipsChanged
	}
	return vipsChanged
}

// applyOne reconciles one virtual service of an incremental pass unless
// what was applied for it still holds (and, unless healthChanged, its
// description is the same). It reports whether the VIPs' set or
// forwarding method may have changed.
func (d *Dataplane) applyOne(vs *lb.VirtualService, healthChanged bool, now time.Time, errs *[]error) bool {
	a, ok := d.applied[vs.Key]
	vipsChanged := !ok
	draining := d.drainKeys[vs.Key] > 0
	if ok && !healthChanged && !draining && a.src.Equal(vs) {
		return vipsChanged
	}
	if ok && a.src.Method != vs.Method {
		vipsChanged = true
	}
	t := d.target(vs)
	if ok && !draining && a.equal(t) {
		a.src = t.src
		return vipsChanged
	}
	*errs = append(*errs, d.result(vs.Key, d.reconcile(vs.Key, t, nil, false, now)))
	return vipsChanged
}

func (d *Dataplane) manages(vip netip.Addr, desired map[netip.Addr]bool) bool {
	return desired[vip] || d.programmed[vip] || (d.o.Owns != nil && d.o.Owns(vip))
}

func keyOf(v *VirtualServer) lb.Key {
	return lb.Key{VIP: v.Address, Port: v.Port, Protocol: lb.Protocol(v.Protocol)}
}

func methodOf(m lb.Method) Method {
	switch m {
	case lb.DR:
		return DirectRoute
	case lb.Tunnel:
		return Tunnel
	}
	return Masquerade
}

// target computes what the kernel should hold for vs.
func (d *Dataplane) target(vs *lb.VirtualService) *target {
	t := &target{src: *vs, vs: VirtualServer{
		Address:   vs.VIP,
		Protocol:  string(vs.Protocol),
		Port:      vs.Port,
		Scheduler: vs.Scheduler,
		Timeout:   uint32(vs.Persistence / time.Second),
	}}
	if t.vs.Scheduler == "" {
		t.vs.Scheduler = DefaultScheduler
	}
	if t.vs.Scheduler == "mh" {
		// Every host hashes a flow to the same backend with no state
		// shared: a flow that reaches another host (an ECMP rehash, a
		// VIP that moved) goes on to the backend it had.
		t.vs.SchedFlags = MHPort | MHFallback
	}
	if vs.Persistence > 0 && t.vs.Timeout == 0 {
		t.vs.Timeout = 1
	}
	m := methodOf(vs.Method)
	for _, b := range vs.Backends {
		if b.Terminating {
			t.leaving = append(t.leaving, b.Addr)
			continue
		}
		w := b.Weight
		if d.o.Health != nil && !d.o.Health.Up(vs, b) {
			w = 0
		}
		t.rss = append(t.rss, dest{addr: b.Addr, weight: int(w)})
	}
	t.method, t.upper = m, vs.MaxConns
	slices.SortFunc(t.rss, func(a, b dest) int { return a.addr.Compare(b.addr) })
	slices.SortFunc(t.leaving, netip.AddrPort.Compare)
	return t
}

func (d *Dataplane) startDrain(dk drainKey, now time.Time) time.Time {
	if since, ok := d.draining[dk]; ok {
		return since
	}
	d.draining[dk] = now
	d.drainKeys[dk.key]++
	return now
}

func (d *Dataplane) endDrain(dk drainKey) {
	if _, ok := d.draining[dk]; !ok {
		return
	}
	delete(d.draining, dk)
	if d.drainKeys[dk.key]--; d.drainKeys[dk.key] <= 0 {
		delete(d.drainKeys, dk.key)
	}
}

func (d *Dataplane) deleteService(k lb.Key, v *VirtualServer) error {
	if d.drainKeys[k] > 0 {
		for dk := range d.draining {
			if dk.key == k {
				d.endDrain(dk)
			}
		}
	}
	delete(d.applied, k)
	err := d.o.IPVS.DeleteVirtualServer(v)
	if errors.Is(err, ErrNoService) {
		return nil
	}
	if err == nil {
		d.o.Log.Info("deleted virtual service", "service", k.String())
	}
	return err
}

// reconcile makes the kernel's virtual service k match t. On a full pass
// (known) kv is the kernel's copy, nil if absent; otherwise the real servers
// are looked up and tell whether the service exists.
func (d *Dataplane) reconcile(k lb.Key, t *target, kv *VirtualServer, known bool, now time.Time) error {
	prev := d.applied[k]
	delete(d.applied, k)
	var cur []*RealServer
	exists := kv != nil
	if !known {
		rss, err := d.o.IPVS.GetRealServers(&t.vs)
		switch {
		case errors.Is(err, ErrNoService):
		case err != nil:
			return err
		default:
			exists, cur = true, rss
			// The kernel's settings are not read on an incremental
			// pass; compare with what was applied before, and update
			// when that is unknown.
			if prev != nil {
				kv = &prev.vs
			}
		}
	}
	switch {
	case !exists:
		if err := d.o.IPVS.AddVirtualServer(&t.vs); err != nil {
			return err
		}
		d.programmed[t.vs.Address] = true
		d.o.Log.Info("added virtual service", "service", k.String(), "scheduler", t.vs.Scheduler)
	case kv == nil || !kv.Equal(&t.vs):
		if err := d.o.IPVS.UpdateVirtualServer(&t.vs); err != nil {
			return err
		}
		d.programmed[t.vs.Address] = true
	default:
		d.programmed[t.vs.Address] = true
	}
	if known && exists {
		rss, err := d.o.IPVS.GetRealServers(&t.vs)
		if err != nil {
			return err
		}
		cur = rss
	}

	byAddr := make(map[netip.AddrPort]*RealServer, len(cur))
	for _, r := range cur {
		byAddr[r.AddrPort()] = r
	}
	var errs []error
	added := false
	for i := range t.rss {
		want := t.real(i)
		d.endDrain(drainKey{k, want.AddrPort()})
		c, ok := byAddr[want.AddrPort()]
		delete(byAddr, want.AddrPort())
		switch {
		case !ok:
			errs = append(errs, d.o.IPVS.AddRealServer(&t.vs, want))
			added = true
		case !c.Equal(want):
			err := d.o.IPVS.UpdateRealServer(&t.vs, want)
			errs = append(errs, err)
			if err == nil && c.Weight != want.Weight {
				d.o.Log.Info("backend weight", "service", k.String(), "backend", want.AddrPort().String(), "weight", want.Weight, "was", c.Weight)
			}
		}
	}
	// Whatever is left is leaving: drain it. Inactive connections
	// (FIN_WAIT, TIME_WAIT, UDP) count too: IPVS still forwards their
	// packets to the backend, and deleting it would cut them off. A
	// backend an administrator disabled goes at once.
	for ap, c := range byAddr {
		dk := drainKey{k, ap}
		since := d.startDrain(dk, now)
		_, disabled := slices.BinarySearchFunc(t.src.Disabled, ap, netip.AddrPort.Compare)
		switch {
		case disabled || c.ActiveConns+c.InactiveConns == 0 || now.Sub(since) >= time.Duration(d.drainTimeout.Load()):
			err := d.o.IPVS.DeleteRealServer(&t.vs, c)
			errs = append(errs, err)
			if err == nil {
				d.endDrain(dk)
				d.o.Log.Info("removed backend", "service", k.String(), "backend", ap.String(),
					"activeConns", c.ActiveConns, "inactiveConns", c.InactiveConns)
			}
		case c.Weight != 0:
			z := *c
			z.Weight = 0
			errs = append(errs, d.o.IPVS.UpdateRealServer(&t.vs, &z))
			d.o.Log.Info("draining backend", "service", k.String(), "backend", ap.String(),
				"activeConns", c.ActiveConns, "inactiveConns", c.InactiveConns)
		}
	}
	// Forget drains of backends that are gone from the kernel.
	if d.drainKeys[k] > 0 {
		for dk := range d.draining {
			if dk.key == k {
				if _, ok := byAddr[dk.addr]; !ok {
					d.endDrain(dk)
				}
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if t.vs.Scheduler == "mh" && (added || known) {
		if err := d.maglevOrder(k, t); err != nil {
			return err
		}
	}
	d.applied[k] = t
	return nil
}

// maglevOrder puts the destinations of an mh virtual service in one order,
// the same on every host. The kernel fills the Maglev table by visiting
// the destinations in the order of its list, and a slot two destinations
// prefer goes to the one visited first; the list is in reverse order of
// addition. Two hosts that added the same backends in another order (one
// of them restarted since, say) would send some flows to different
// backends, and a flow that moves between them would break. The order
// wanted, head first, is descending address: what adding them in
// ascending order gives, and what a host that only ever adds new highest
// addresses keeps without help. Only destinations with a weight take part
// in the table. A destination out of place is deleted and added again at
// once: its connections stay (IPVS keeps a deleted destination that has
// connections and restores it when it is added again).
func (d *Dataplane) maglevOrder(k lb.Key, t *target) error {
	cur, err := d.o.IPVS.GetRealServers(&t.vs)
	if err != nil {
		return err
	}
	var have []*RealServer
	for _, r := range cur {
		if r.Weight > 0 {
			have = append(have, r)
		}
	}
	want := slices.Clone(have)
	slices.SortFunc(want, func(a, b *RealServer) int { return b.AddrPort().Compare(a.AddrPort()) })
	// The destinations at the tail already in their place stay.
	keep := 0
	for keep < len(have) && have[len(have)-1-keep].AddrPort() == want[len(want)-1-keep].AddrPort() {
		keep++
	}
	if keep == len(have) {
		return nil
	}
	for i := len(want) - 1 - keep; i >= 0; i-- {
		r := want[i]
		if err := d.o.IPVS.DeleteRealServer(&t.vs, r); err != nil {
			return err
		}
		if err := d.o.IPVS.AddRealServer(&t.vs, r); err != nil {
			return err
		}
	}
	d.o.Log.Info("ordered the backends of an mh service", "service", k.String(), "moved", len(want)-keep)
	return nil
}
