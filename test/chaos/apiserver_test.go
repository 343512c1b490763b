package chaos

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/edgelb/edgelb/test/nslab"
)

// The kube-apiserver is stopped for five minutes (30 s in the reduced
// run) and returns, while the client sends requests through every VIP
// every 10 ms: no request may fail, no VIP may move, and afterwards no
// Service is renumbered and a new Service gets a free address.
func TestAPIServerOutage(t *testing.T) {
	const scenario = "API server outage"
	outage := count(5*time.Minute, 30*time.Second)
	ctx := context.Background()
	k := newKubeLab(t, 3)
	before, vips := k.addressedServices(ctx, t, "web", 3)
	want := owners(t, k.Lab, vips...)
	ps := startProbes(t, k.Lab, vips...)
	// Owners are sampled every 50 ms, and every host's log tells whether
	// it added a VIP, which catches a move shorter than a sample.
	watch := k.WatchVIPs(50*time.Millisecond, vips...)
	marks := logMarks(k.Lab)

	k.env.StopAPIServer()
	t.Logf("API server stopped for %s; VIPs %v", outage, vips)
	time.Sleep(outage) // the fault itself
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := k.env.StartAPIServer(rctx); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	// The controller comes back: a new Service gets an address. The
	// informers retry with a backoff of up to a minute after a long
	// outage.
	if err := k.createService(ctx, "after"); err != nil {
		t.Fatal(err)
	}
	after, ok := k.addressed(t, 3*time.Minute)
	served := time.Since(back)
	if !ok {
		t.Errorf("the Service created after the return has no address %s later: %v", served.Round(time.Second), after)
	}
	time.Sleep(5 * time.Second) // traffic goes on while the controller resyncs
	samples := watch()
	sent, failed := stopProbes(t, ps)

	moved := append(moves(samples, want), vipsAdded(k.Lab, marks, vips...)...)
	var renumbered []string
	for name, ips := range before {
		if !slices.Equal(after[name], ips) {
			renumbered = append(renumbered, fmt.Sprintf("%s: %v -> %v", name, ips, after[name]))
		}
	}
	for name, ips := range after {
		for _, ip := range ips {
			for other, o := range after {
				if other != name && slices.Contains(o, ip) {
					t.Errorf("%s and %s both have %s", name, other, ip)
				}
			}
		}
	}
	figure(t, scenario, "outage", outage)
	figure(t, scenario, "failed requests", fmt.Sprintf("%d of %d", failed, sent))
	figure(t, scenario, "VIP moves (samples off the owner, VIPs added)", len(moved))
	figure(t, scenario, "renumbered Services", len(renumbered))
	figure(t, scenario, "new Service addressed after the return", served)
	if failed > 0 {
		t.Errorf("%d of %d requests through the VIPs failed", failed, sent)
		for v, o := range want {
			t.Logf("%s: owner %s (%s), on %v, client's neighbour entry %s", v, o.Name, o.MAC, nslab.Names(k.Holders(v)), k.Neighbour(v))
		}
	}
	if len(moved) > 0 {
		t.Errorf("VIPs moved during the outage: %d of %d owner samples off the owner or VIPs added in a log: %v", len(moved), len(samples), moved[:min(5, len(moved))])
	}
	if len(renumbered) > 0 {
		t.Errorf("Services renumbered by the outage: %v", renumbered)
	}
}
