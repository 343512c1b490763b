package lb

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/edgelb/edgelb/lb/config"
)

func TestBackendStates(t *testing.T) {
	ap := netip.MustParseAddrPort
	static := []config.StaticService{{Name: "dns", VIP: netip.MustParseAddr("198.51.100.53"),
		Ports:    []config.StaticPort{{Port: 53, Protocol: "UDP"}},
		Backends: []netip.AddrPort{ap("10.0.1.5:53"), ap("10.0.1.6:53"), ap("10.0.1.7:53")}}}
	opts := Options{Mode: config.ModeNodePort, DefaultScheduler: "rr", Static: static, BackendStates: []config.BackendAdmin{
		{Service: "_static/dns", Backend: ap("10.0.1.5:53"), State: config.BackendDrain},
		{Service: "_static/dns", Backend: ap("10.0.1.6:53"), State: config.BackendDisable},
		{Service: "_static/other", Backend: ap("10.0.1.7:53"), State: config.BackendDisable},
	}}
	d, _ := Build(Snapshot{}, opts)
	if len(d.Services) != 1 {
		t.Fatalf("services %+v", d.Services)
	}
	if got := fmt.Sprint(d.Services[0].Backends); got != "[10.0.1.5:53 w=0 10.0.1.7:53 w=1]" {
		t.Errorf("backends %s, want 10.0.1.5 drained, 10.0.1.6 disabled, 10.0.1.7 as it was", got)
	}
	// The static service's own list is untouched.
	if len(static[0].Backends) != 3 {
		t.Errorf("Build changed the options: %v", static[0].Backends)
	}
}
