package health_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/config"
	"github.com/edgelb/edgelb/lb/health"
)

func TestRiseAndFall(t *testing.T) {
	store := lb.NewStore()
	key := lb.Key{VIP: netip.MustParseAddr("192.0.2.1"), Port: 80, Protocol: lb.TCP}
	a := lb.Backend{Addr: netip.MustParseAddrPort("10.0.0.1:30080"), Weight: 1}
	b := lb.Backend{Addr: netip.MustParseAddrPort("10.0.0.2:30080"), Weight: 1}
	udp := lb.Key{VIP: key.VIP, Port: 53, Protocol: lb.UDP}
	store.Set(&lb.Desired{Services: []lb.VirtualService{
		{Key: udp, Backends: []lb.Backend{a}},
		{Key: key, Backends: []lb.Backend{a, b}},
	}})
	var mu sync.Mutex
	failing := map[netip.AddrPort]bool{}
	probes := 0
	c := health.New(health.Options{Store: store, Log: slog.New(slog.DiscardHandler),
		Config: health.Config{Rise: 2, Fall: 3},
		Probe: func(_ context.Context, t health.Target) error {
			mu.Lock()
			defer mu.Unlock()
			probes++
			if failing[t.Addr] {
				return errors.New("refused")
			}
			return nil
		}})
	ctx := context.Background()
	changedA, changedB := c.Changed(), c.Changed()
	for _, ch := range []<-chan struct{}{changedA, changedB} {
		select {
		case <-ch: // a subscription starts signalled
		default:
			t.Fatal("a new subscription did not start signalled")
		}
	}
	c.CheckOnce(ctx)
	if probes != 2 {
		t.Fatalf("probed %d targets, want 2 (UDP without HTTP is not probed)", probes)
	}
	mu.Lock()
	failing[b.Addr] = true
	mu.Unlock()
	for i := 1; i <= 3; i++ {
		if !c.Up(&lb.VirtualService{Key: key}, b) {
			t.Fatalf("down after %d failures, want 3", i-1)
		}
		c.CheckOnce(ctx)
	}
	if c.Up(&lb.VirtualService{Key: key}, b) {
		t.Fatal("still up after 3 failures")
	}
	for _, ch := range []<-chan struct{}{changedA, changedB} {
		select {
		case <-ch:
		default:
			t.Fatal("a subscriber was not told of the change")
		}
	}
	if !c.Up(&lb.VirtualService{Key: key}, a) || !c.Up(&lb.VirtualService{Key: udp}, a) {
		t.Fatal("healthy backends reported down")
	}
	mu.Lock()
	failing[b.Addr] = false
	mu.Unlock()
	c.CheckOnce(ctx)
	if c.Up(&lb.VirtualService{Key: key}, b) {
		t.Fatal("up after 1 success, want 2")
	}
	c.CheckOnce(ctx)
	if !c.Up(&lb.VirtualService{Key: key}, b) {
		t.Fatal("not up after 2 successes")
	}
	rs := c.Results()
	if len(rs) != 2 || !rs[1].Up || rs[1].Target.Addr != b.Addr {
		t.Fatalf("Results() = %+v", rs)
	}
	// Targets that leave the desired state are forgotten.
	store.Set(&lb.Desired{})
	c.CheckOnce(ctx)
	if len(c.Results()) != 0 {
		t.Fatalf("results kept for removed targets: %+v", c.Results())
	}
}

func TestProbe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	tcpAddr := netip.MustParseAddrPort(ln.Addr().String())
	httpPort := netip.MustParseAddrPort(srv.Listener.Addr().String()).Port()

	ctx := context.Background()
	tcp := lb.HealthCheck{Type: config.CheckTCP}
	if err := health.Probe(ctx, health.Target{Addr: tcpAddr, Protocol: lb.TCP, Check: tcp}); err != nil {
		t.Fatalf("TCP probe of a listener: %v", err)
	}
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := netip.MustParseAddrPort(ln2.Addr().String())
	ln2.Close()
	if err := health.Probe(ctx, health.Target{Addr: closed, Protocol: lb.TCP, Check: tcp}); err == nil {
		t.Fatal("TCP probe of a closed port succeeded")
	}
	ht := health.Target{Addr: tcpAddr, Protocol: lb.TCP, Check: tcp, HTTPPort: httpPort}
	if err := health.Probe(ctx, ht); err != nil {
		t.Fatalf("HTTP probe answering 200: %v", err)
	}
	status = http.StatusServiceUnavailable
	if err := health.Probe(ctx, ht); err == nil {
		t.Fatal("HTTP probe answering 503 succeeded")
	}
}

func TestFirstResultDecides(t *testing.T) {
	store := lb.NewStore()
	key := lb.Key{VIP: netip.MustParseAddr("192.0.2.1"), Port: 80, Protocol: lb.TCP}
	dead := lb.Backend{Addr: netip.MustParseAddrPort("10.0.0.9:30080"), Weight: 1}
	c := health.New(health.Options{Store: store, Log: slog.New(slog.DiscardHandler),
		Config: health.Config{Rise: 2, Fall: 3},
		Probe:  func(context.Context, health.Target) error { return errors.New("refused") }})
	c.CheckOnce(context.Background()) // no desired state yet: not a round
	select {
	case <-c.FirstRound():
		t.Fatal("first round reported before any desired state")
	default:
	}
	store.Set(&lb.Desired{Services: []lb.VirtualService{{Key: key, Backends: []lb.Backend{dead}}}})
	if !c.Up(&lb.VirtualService{Key: key}, dead) {
		t.Fatal("an unprobed backend should count as up")
	}
	c.CheckOnce(context.Background())
	if c.Up(&lb.VirtualService{Key: key}, dead) {
		t.Fatal("a backend whose first probe failed is up")
	}
	select {
	case <-c.FirstRound():
	default:
		t.Fatal("first round not reported")
	}
}

// An http check GETs its path on the backend (or its port) and wants
// 200-399; tcp on another port connects there; none probes nothing.
func TestHTTPCheck(t *testing.T) {
	var mu sync.Mutex
	status := map[string]int{"/ready": http.StatusOK}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		code, ok := status[r.URL.Path]
		if !ok {
			code = http.StatusNotFound
		}
		w.WriteHeader(code)
	}))
	defer srv.Close()
	addr := netip.MustParseAddrPort(srv.Listener.Addr().String())
	vs := &lb.VirtualService{Key: lb.Key{VIP: netip.MustParseAddr("192.0.2.1"), Port: 80, Protocol: lb.TCP},
		Check: lb.HealthCheck{Type: config.CheckHTTP, Path: "/ready"}}
	b := lb.Backend{Addr: addr, Weight: 1}
	target, probed := health.TargetOf(vs, b)
	if !probed || target.Check.Path != "/ready" {
		t.Fatalf("TargetOf = %+v, %v", target, probed)
	}
	ctx := context.Background()
	for _, c := range []struct {
		code int
		up   bool
	}{{200, true}, {500, false}, {302, true}, {404, false}, {204, true}} {
		mu.Lock()
		status["/ready"] = c.code
		mu.Unlock()
		if err := health.Probe(ctx, target); (err == nil) != c.up {
			t.Errorf("GET /ready answering %d: err %v, want up=%v", c.code, err, c.up)
		}
	}
	// The default path is /healthz; the check port replaces the backend's.
	def, _ := health.TargetOf(&lb.VirtualService{Key: vs.Key, Check: lb.HealthCheck{Type: config.CheckHTTP, Port: addr.Port()}},
		lb.Backend{Addr: netip.AddrPortFrom(addr.Addr(), 1)})
	if err := health.Probe(ctx, def); err == nil || !strings.Contains(err.Error(), "/healthz") {
		t.Errorf("default path: %v, want a 404 of /healthz", err)
	}
	if _, probed := health.TargetOf(&lb.VirtualService{Key: vs.Key, Check: lb.HealthCheck{Type: config.CheckNone}}, b); probed {
		t.Error("a none check is probed")
	}
	udp := lb.Key{VIP: vs.VIP, Port: 53, Protocol: lb.UDP}
	if _, probed := health.TargetOf(&lb.VirtualService{Key: udp}, b); probed {
		t.Error("a UDP service without a check is probed")
	}
	tt, probed := health.TargetOf(&lb.VirtualService{Key: udp, Check: lb.HealthCheck{Type: config.CheckTCP, Port: addr.Port()}}, lb.Backend{Addr: netip.AddrPortFrom(addr.Addr(), 53)})
	if !probed {
		t.Fatal("a UDP service with a tcp check is not probed")
	}
	if err := health.Probe(ctx, tt); err != nil {
		t.Errorf("tcp check on the check port: %v", err)
	}
}

// Each service's check has its own rise, fall and interval; the others
// take the Checker's.
func TestPerServiceSchedule(t *testing.T) {
	store := lb.NewStore()
	fast := lb.VirtualService{Key: lb.Key{VIP: netip.MustParseAddr("192.0.2.1"), Port: 80, Protocol: lb.TCP},
		Check:    lb.HealthCheck{Interval: time.Second, Rise: 1, Fall: 1},
		Backends: []lb.Backend{{Addr: netip.MustParseAddrPort("10.0.0.1:80"), Weight: 1}}}
	slow := lb.VirtualService{Key: lb.Key{VIP: fast.VIP, Port: 81, Protocol: lb.TCP},
		Backends: []lb.Backend{{Addr: netip.MustParseAddrPort("10.0.0.2:80"), Weight: 1}}}
	store.Set(&lb.Desired{Services: []lb.VirtualService{fast, slow}})
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	failing := false
	probed := map[netip.AddrPort]int{}
	c := health.New(health.Options{Store: store, Log: slog.New(slog.DiscardHandler),
		Config: health.Config{Interval: 10 * time.Second, Timeout: time.Second, Rise: 3, Fall: 3},
		Now:    func() time.Time { mu.Lock(); defer mu.Unlock(); return now },
		Probe: func(_ context.Context, t health.Target) error {
			mu.Lock()
			defer mu.Unlock()
			probed[t.Addr]++
			if failing {
				return errors.New("refused")
			}
			return nil
		}})
	step := func(d time.Duration) {
		mu.Lock()
		now = now.Add(d)
		mu.Unlock()
	}
	ctx := context.Background()
	if next := c.CheckDue(ctx); next != time.Second {
		t.Errorf("next round in %s, want 1s (the fast check's interval)", next)
	}
	step(2 * time.Second)
	mu.Lock()
	failing = true
	mu.Unlock()
	c.CheckDue(ctx)
	if probed[fast.Backends[0].Addr] != 2 || probed[slow.Backends[0].Addr] != 1 {
		t.Errorf("probes after 2s: %v, want the fast target twice and the slow one once", probed)
	}
	if c.Up(&fast, fast.Backends[0]) {
		t.Error("fall 1: the fast target is still up after a failure")
	}
	step(10 * time.Second)
	c.CheckDue(ctx)
	if !c.Up(&slow, slow.Backends[0]) {
		t.Error("fall 3 (the default): the slow target is down after one failure")
	}
}

// A new healthCheck (a new cluster configuration) takes effect on the
// targets already probed, and keeps what is known of them.
func TestSetConfigKeepsResults(t *testing.T) {
	store := lb.NewStore()
	key := lb.Key{VIP: netip.MustParseAddr("192.0.2.1"), Port: 80, Protocol: lb.TCP}
	b := lb.Backend{Addr: netip.MustParseAddrPort("10.0.0.2:30080"), Weight: 1}
	store.Set(&lb.Desired{Services: []lb.VirtualService{{Key: key, Backends: []lb.Backend{b}}}})
	var mu sync.Mutex
	failing := false
	c := health.New(health.Options{Store: store, Log: slog.New(slog.DiscardHandler),
		Config: health.Config{Interval: time.Hour, Rise: 1, Fall: 5},
		Probe: func(context.Context, health.Target) error {
			mu.Lock()
			defer mu.Unlock()
			if failing {
				return errors.New("refused")
			}
			return nil
		}})
	ctx := context.Background()
	c.CheckOnce(ctx)
	mu.Lock()
	failing = true
	mu.Unlock()
	c.CheckOnce(ctx)
	if !c.Up(&lb.VirtualService{Key: key}, b) {
		t.Fatal("down after 1 failure with fall 5")
	}
	c.SetConfig(health.Config{Interval: time.Hour, Rise: 1, Fall: 2})
	if !c.Up(&lb.VirtualService{Key: key}, b) {
		t.Fatal("SetConfig forgot the result")
	}
	c.CheckOnce(ctx)
	if c.Up(&lb.VirtualService{Key: key}, b) {
		t.Fatal("still up after 2 failures once fall is 2")
	}
	// Run probes again at once with the new interval, not after the old.
	c.SetConfig(health.Config{Interval: 20 * time.Millisecond, Rise: 1, Fall: 2})
	mu.Lock()
	failing = false
	mu.Unlock()
	changed := c.Changed() // before Run: no change is missed
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go c.Run(rctx)
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for !c.Up(&lb.VirtualService{Key: key}, b) {
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatal("the new 20ms interval was not followed: still down after 10s (the old interval was an hour)")
		}
	}
}
