package cli

import (
	"strings"
	"testing"

	"github.com/edgelb/edgelb/api"
)

// A failing data path is one line of `edgelb status`, saying whether the
// host gave its VIPs up or keeps them, and why.
func TestStatusDataPath(t *testing.T) {
	for _, c := range []struct {
		dp   *api.DataPathStatus
		want string
	}{
		{nil, ""},
		{&api.DataPathStatus{OK: true, Targets: "10.0.0.1"}, ""},
		{&api.DataPathStatus{GaveUp: true, Problem: "no answer on eth1 within 100ms from 10.0.0.1: no answer"},
			"data path: FAILING (owning no VIPs while another member's data path works): no answer on eth1 within 100ms from 10.0.0.1"},
		{&api.DataPathStatus{Problem: "no answer"}, "data path: FAILING (keeping the VIPs: no other member has a working data path): no answer"},
	} {
		var b strings.Builder
		printStatus(&b, api.Status{Node: "lb1", Healthy: true, DataPath: c.dp}, nil, nil, nil)
		got := b.String()
		if c.want == "" && strings.Contains(got, "data path") || !strings.Contains(got, c.want) {
			t.Errorf("%+v: status\n%s\nwant %q", c.dp, got, c.want)
		}
	}
}

// A member that gave its VIPs up for its data path says so in the table.
func TestStatusMemberDataPath(t *testing.T) {
	var b strings.Builder
	printStatus(&b, api.Status{Node: "lb1", Healthy: true}, []api.Member{
		{Name: "lb1", Alive: true, Healthy: true, Configured: true, Self: true},
		{Name: "lb2", Alive: true, Configured: true, DataPathFailing: true},
		{Name: "lb3", Alive: true, Configured: true},
	}, nil, nil)
	out := b.String()
	if !strings.Contains(out, "unhealthy (data path)") || strings.Count(out, "unhealthy") != 2 {
		t.Errorf("status:\n%s\nwant lb2 unhealthy (data path), lb3 unhealthy", out)
	}
}

// A witness is listed as one, not as an unhealthy host.
func TestStatusMemberWitness(t *testing.T) {
	var b strings.Builder
	printStatus(&b, api.Status{Node: "lb1", Healthy: true}, []api.Member{
		{Name: "lb1", Alive: true, Healthy: true, Configured: true, Self: true},
		{Name: "witness", Alive: true, Configured: true, Witness: true},
	}, nil, nil)
	out := b.String()
	if !strings.Contains(out, "witness (owns no VIP)") || strings.Contains(out, "unhealthy") {
		t.Errorf("status:\n%s\nwant the witness listed as one", out)
	}
}
