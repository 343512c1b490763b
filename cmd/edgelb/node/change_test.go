package node

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/edgelb/edgelb/api/clustercfg"
	"github.com/edgelb/edgelb/lb/config"
)

// Each kind of edit is classified as what it changes, and nothing else.
func TestClassify(t *testing.T) {
	// bindAddr: the router ID of a bgp version.
	host := config.NewHost("config.yaml", []byte("node: {name: lb1}\ncluster: {insecure: true, bindAddr: 10.0.0.11}\n"), ".")
	base, _ := newTestLive(t, "").Config()
	apply := func(t *testing.T, spec string) *config.Config {
		t.Helper()
		cfg, err := host.Apply(json.RawMessage(spec))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	svc := `"services":[{"name":"dns","vip":"192.0.2.53","ports":[{"port":53,"protocol":"UDP"}],"backends":["10.0.1.5:53"]}]`
	pools := `"pools":[{"name":"default","addresses":["192.0.2.10-192.0.2.50"]}]`
	same := apply(t, `{`+pools+`,`+svc+`}`)
	for _, tc := range []struct {
		name string
		spec string
		want Change
	}{
		{"nothing", `{` + pools + `,` + svc + `}`, Change{}},
		{"a service", `{` + pools + `,"services":[{"name":"web","vip":"192.0.2.80","ports":[{"port":80}],"backends":["10.0.1.5:80"]}]}`, Change{Desired: true}},
		{"a pool", `{"pools":[{"name":"default","addresses":["192.0.2.10-192.0.2.52"]}],` + svc + `}`, Change{Desired: true, Pools: true}},
		{"health checks", `{` + pools + `,` + svc + `,"healthCheck":{"interval":"5s","timeout":"1s","rise":2,"fall":2}}`, Change{Desired: true, Health: true}},
		{"continuity", `{` + pools + `,` + svc + `,"dataplane":{"continuity":false}}`, Change{Kernel: true}},
		{"the drain timeout", `{` + pools + `,` + svc + `,"dataplane":{"drainTimeout":"7s"}}`, Change{Kernel: true}},
		{"bgp on", `{` + pools + `,` + svc + `,"bgp":{"asn":64512,"peers":[{"address":"192.0.2.1","asn":64500}]}}`, Change{BGP: true}},
		{"the backend", `{` + pools + `,` + svc + `,"dataplane":{"backend":"none"}}`, Change{Backend: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := classify(same, apply(t, tc.spec))
			if got != tc.want {
				t.Errorf("classify = %+v, want %+v", got, tc.want)
			}
		})
	}
	if c := classify(nil, base); !c.Desired || !c.Kernel || !c.BGP || !c.Health || !c.Pools {
		t.Errorf("from nothing: %+v, want everything changed", c)
	}
}

// A subscriber that was busy gets one Change: the newest version with
// every flag of the versions it missed.
func TestSubscriptionMerges(t *testing.T) {
	s := &Subscription{c: make(chan struct{}, 1)}
	if _, ok := s.Next(); ok {
		t.Fatal("a new subscription has a change pending")
	}
	a, b := &config.Config{}, &config.Config{}
	s.add(Change{Config: a, Version: 2, BGP: true})
	s.add(Change{Config: b, Version: 3, Health: true})
	select {
	case <-s.C():
	case <-time.After(time.Second):
		t.Fatal("no signal")
	}
	c, ok := s.Next()
	if !ok || c.Config != b || c.Version != 3 || !c.BGP || !c.Health || c.Desired {
		t.Errorf("Next = %+v, %v", c, ok)
	}
	if _, ok := s.Next(); ok {
		t.Error("the change is still pending")
	}
}

// A version put through the API is parsed and checked once on the host:
// the API's check, the replication's validator and the running copy share
// the result.
func TestAVersionIsParsedOnce(t *testing.T) {
	l := newTestLive(t, t.TempDir())
	api := &clustercfg.Config{Versions: l.versions, Host: l.host}
	before := l.host.Parses()
	spec := json.RawMessage(`{"services":[{"name":"web","vip":"203.0.113.80","ports":[{"port":80}],"backends":["10.0.1.7:8080"]}]}`)
	if _, err := api.Validate(spec); err != nil {
		t.Fatal(err)
	}
	if _, err := api.Put(context.Background(), spec, 1, "test"); err != nil {
		t.Fatal(err)
	}
	_, sub := l.Subscribe()
	if !l.update() {
		t.Fatal("the new version was not taken")
	}
	if c, ok := sub.Next(); !ok || c.Version != 2 || !c.Desired || c.Kernel {
		t.Errorf("change %+v", c)
	}
	if n := l.host.Parses() - before; n != 1 {
		t.Errorf("the new version was parsed %d times on this host, want once", n)
	}
}
