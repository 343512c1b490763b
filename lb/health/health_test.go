package health_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"

	"github.com/edgelb/edgelb/lb"
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
	c.CheckOnce(ctx)
	if probes != 2 {
		t.Fatalf("probed %d targets, want 2 (UDP without HTTP is not probed)", probes)
	}
	mu.Lock()
	failing[b.Addr] = true
	mu.Unlock()
	for i := 1; i <= 3; i++ {
		if !c.Up(key, b) {
			t.Fatalf("down after %d failures, want 3", i-1)
		}
		c.CheckOnce(ctx)
	}
	if c.Up(key, b) {
		t.Fatal("still up after 3 failures")
	}
	select {
	case <-c.Changed():
	default:
		t.Fatal("no change signalled")
	}
	if !c.Up(key, a) || !c.Up(udp, a) {
		t.Fatal("healthy backends reported down")
	}
	mu.Lock()
	failing[b.Addr] = false
	mu.Unlock()
	c.CheckOnce(ctx)
	if c.Up(key, b) {
		t.Fatal("up after 1 success, want 2")
	}
	c.CheckOnce(ctx)
	if !c.Up(key, b) {
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
	if err := health.Probe(ctx, health.Target{Addr: tcpAddr, Protocol: lb.TCP}); err != nil {
		t.Fatalf("TCP probe of a listener: %v", err)
	}
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := netip.MustParseAddrPort(ln2.Addr().String())
	ln2.Close()
	if err := health.Probe(ctx, health.Target{Addr: closed, Protocol: lb.TCP}); err == nil {
		t.Fatal("TCP probe of a closed port succeeded")
	}
	ht := health.Target{Addr: tcpAddr, Protocol: lb.TCP, HTTPPort: httpPort}
	if err := health.Probe(ctx, ht); err != nil {
		t.Fatalf("HTTP probe answering 200: %v", err)
	}
	status = http.StatusServiceUnavailable
	if err := health.Probe(ctx, ht); err == nil {
		t.Fatal("HTTP probe answering 503 succeeded")
	}
}
