package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/gin-gonic/gin"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/api/apitest"
	"github.com/edgelb/edgelb/api/clustercfg"
	"github.com/edgelb/edgelb/cluster"
	"github.com/edgelb/edgelb/cluster/consensus"
	"github.com/edgelb/edgelb/lb/config"
)

// loadSpec is api/openapi.json as a client generated from it would read
// it, made strict: an object schema that lists its properties and says
// nothing of others gets additionalProperties: false, so that a field the
// server sends and the spec does not describe fails the validation.
func loadSpec(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile("openapi.json")
	if err != nil {
		t.Fatalf("openapi.json does not load: %v", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI document: %v", err)
	}
	seen := map[*openapi3.Schema]bool{}
	var strict func(*openapi3.SchemaRef)
	strict = func(ref *openapi3.SchemaRef) {
		if ref == nil || ref.Value == nil || seen[ref.Value] {
			return
		}
		s := ref.Value
		seen[s] = true
		if len(s.Properties) > 0 && s.AdditionalProperties.Has == nil && s.AdditionalProperties.Schema == nil {
			no := false
			s.AdditionalProperties.Has = &no
		}
		for _, p := range s.Properties {
			strict(p)
		}
		strict(s.Items)
		strict(s.AdditionalProperties.Schema)
		for _, sub := range slices.Concat(s.OneOf, s.AnyOf, s.AllOf) {
			strict(sub)
		}
	}
	for _, s := range doc.Components.Schemas {
		strict(s)
	}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			for _, r := range op.Responses.Map() {
				for _, mt := range r.Value.Content {
					strict(mt.Schema)
				}
			}
		}
	}
	return doc
}

// specState is the fake State with the answers the fake cannot give:
// a drain the cluster cannot replicate, or cannot carry out.
type specState struct {
	*apitest.Fake
	drainErr error
}

func (s *specState) Drain(ctx context.Context, name string) error {
	if s.drainErr != nil {
		return s.drainErr
	}
	return s.Fake.Drain(ctx, name)
}

// everyField is the sample State with every optional field of every
// answer set, so that a field the spec does not describe shows up.
func everyField() *apitest.Fake {
	f := apitest.Sample()
	started := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	expires := started.Add(20 * 24 * time.Hour)
	f.St.LeaderName, f.St.Problem, f.St.Started, f.St.ConfigFileDiffers = "lb1", "interface eth1 is down", started, true
	f.St.Kubernetes = &api.KubernetesStatus{Problem: "the token expires in 20 days", TokenExpires: &expires}
	f.Mems[2].Restarting, f.Mems[2].Problem, f.Mems[2].Refused = true, "restarting", []string{"192.0.2.99"}
	f.Vips = append(f.Vips, api.VIP{Address: "192.0.2.99", Services: []string{"demo/bgp"}, Announce: "bgp",
		Refused: true, RefusedBy: []string{"lb3"}, Problem: "lb3's kernel refused it"})
	web := &f.Svcs[0]
	web.DisabledBackends, web.State = []string{"10.0.1.3:31000"}, "partial"
	web.Ports[0].Name, web.Ports[0].SourceRanges, web.Ports[0].Problem = "http", []string{"198.51.100.0/24"}, "the kernel refused the source ranges"
	web.Ports[0].Backends[0].AdminState, web.Ports[0].Backends[0].Terminating = "drain", true
	f.Svcs = append(f.Svcs, api.Service{Namespace: "demo", Name: "waiting", VIPs: []string{}, Ports: []api.Port{},
		Problem: `pool "default" is exhausted`, State: "pending"})
	f.Bus.Publish("ownership", "192.0.2.10 moved to lb1", map[string]string{"vip": "192.0.2.10", "owner": "lb1"})
	return f
}

// specServer is a real api.Server over the fake State and a real cluster
// configuration seeded from hostFile (unseeded: no version yet), with
// every optional part (metrics, BGP, dashboard) served.
func specServer(t *testing.T, state api.State, bus *api.Bus, seeded bool, unreplicated error) *gin.Engine {
	t.Helper()
	return specServerWith(t, state, bus, seeded, unreplicated, false)
}

// specServerWith is specServer, its writes finding no majority when
// noQuorum.
func specServerWith(t *testing.T, state api.State, bus *api.Bus, seeded bool, unreplicated error, noQuorum bool, more ...func(*api.Options)) *gin.Engine {
	t.Helper()
	host := config.NewHost("config.yaml", []byte(hostFile), ".")
	docs, err := cluster.NewDocs(cluster.DocOptions{Name: "lb1", Validate: func(b []byte) error { _, err := host.Apply(b); return err }})
	if err != nil {
		t.Fatal(err)
	}
	if seeded {
		spec, err := config.SpecFromFile("config.yaml", []byte(hostFile))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := docs.Seed(spec, "file"); err != nil {
			t.Fatal(err)
		}
	}
	var versions consensus.Versions = cluster.LocalDocs{Docs: docs}
	if noQuorum {
		versions = quorumless{cluster.LocalDocs{Docs: docs}}
	}
	since := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var members api.MemberSet
	if unreplicated == nil {
		ms := &apitest.Members{Names: []string{"10.0.0.11:7946", "10.0.0.12:7946", "10.0.0.13:7946"},
			Cont: api.Contact{Quorum: true, Leader: "10.0.0.12:7946", Unreachable: []string{}}}
		if noQuorum {
			ms.Cont = api.Contact{Unreachable: []string{"10.0.0.12:7946", "10.0.0.13:7946"}}
			ms.Err = fmt.Errorf("%w (unreachable: 10.0.0.12:7946, 10.0.0.13:7946)", api.ErrNoQuorum)
		}
		members = ms
	}
	localPref := uint32(200)
	o := api.Options{State: state, Bus: bus, Log: slog.New(slog.DiscardHandler),
		Members:   members,
		Tokens:    map[string][]string{"admin": {adminTok}, "viewer": {viewerTok}},
		Config:    &clustercfg.Config{Versions: versions, Host: host, Unreplicated: unreplicated},
		Metrics:   api.NewMetrics(state),
		Dashboard: nil,
		BGP: func() api.BGPStatus {
			return api.BGPStatus{Enabled: true, ASN: 64512, RouterID: "10.0.0.11", Serving: true, Advertised: []string{"192.0.2.99/32"},
				Routes: []api.BGPRoute{{Prefix: "192.0.2.99/32", Communities: []string{"65000:100", "no-export"}, LargeCommunities: []string{"65000:1:2"}, LocalPref: &localPref}},
				Peers:  []api.BGPPeer{{Address: "10.0.0.1", ASN: 64500, State: "established", Since: &since, UptimeSeconds: 60, BFD: "up", PrefixesSent: 1}}}
		},
		ServiceEvents: func(_ context.Context, ns, name string) ([]api.ServiceEvent, error) {
			return []api.ServiceEvent{{Type: "Normal", Reason: "IPAllocated", Message: "Assigned IP 192.0.2.10", Count: 1, From: "edgelb/lb1", FirstTime: since, LastTime: since}}, nil
		},
	}
	for _, m := range more {
		m(&o)
	}
	srv := api.New(o)
	return srv.Handler().(*gin.Engine)
}

// specCase is one request and the status the server must answer it with.
type specCase struct {
	name   string
	route  string // "METHOD /template" of the operation in the spec
	path   string // the request's path and query ("" : the route's template)
	token  string
	body   string
	header map[string]string
	status int
	// server picks the server: "" the seeded one, or one of specServers'.
	server string
	// stream: read the answer only up to its first bytes (the event
	// stream never ends), and check its headers only.
	stream bool
}

// Every operation the server has is in api/openapi.json, and each answer
// the server gives — success and the error cases it answers — has its
// status code listed for that operation and a body that matches the
// listed schema, validated with kin-openapi as a client generated from
// the spec would expect it.
func TestOpenAPIDescribesEveryAnswer(t *testing.T) {
	doc := loadSpec(t)
	f := everyField()
	notReady := apitest.Sample()
	notReady.NotReady = "informers have not synced"
	servers := map[string]*gin.Engine{
		"":             specServer(t, &specState{Fake: f}, f.Bus, true, nil),
		"notReady":     specServer(t, notReady, notReady.Bus, true, nil),
		"unseeded":     specServer(t, f, f.Bus, false, nil),
		"unreplicated": specServer(t, &specState{Fake: f, drainErr: api.ErrNotReplicated}, f.Bus, true, errors.New("cluster.insecure is set")),
		"drainFails":   specServer(t, &specState{Fake: f, drainErr: errors.New("lb2 did not answer")}, f.Bus, true, nil),
		"noQuorum":     specServerWith(t, f, f.Bus, true, nil, true),
		"eventsFail": specServerWith(t, f, f.Bus, true, nil, false, func(o *api.Options) {
			o.ServiceEvents = func(context.Context, string, string) ([]api.ServiceEvent, error) {
				return nil, errors.New(`reading the Events of Service demo/web: events is forbidden: User "system:serviceaccount:kube-system:edgelb" cannot list resource "events"`)
			}
		}),
	}

	big := `{"pools":[],"x":"` + strings.Repeat("a", api.MaxConfigBytes) + `"}`
	ifMatch := func(v string) map[string]string { return map[string]string{"If-Match": v} }
	cases := []specCase{
		{name: "healthz", route: "GET /healthz", status: 200},
		{name: "readyz", route: "GET /readyz", token: viewerTok, status: 200},
		{name: "readyz not ready", route: "GET /readyz", token: viewerTok, status: 503, server: "notReady"},
		{name: "readyz without a token", route: "GET /readyz", status: 401},
		{name: "metrics", route: "GET /metrics", token: viewerTok, status: 200},
		{name: "metrics without a token", route: "GET /metrics", status: 401},
		{name: "heap profile", route: "GET /debug/pprof/{name}", path: "/debug/pprof/heap", token: adminTok, status: 200},
		{name: "goroutines as text", route: "GET /debug/pprof/{name}", path: "/debug/pprof/goroutine?debug=1", token: adminTok, status: 200},
		{name: "no such profile", route: "GET /debug/pprof/{name}", path: "/debug/pprof/nosuch", token: adminTok, status: 404},
		{name: "profile for a viewer", route: "GET /debug/pprof/{name}", path: "/debug/pprof/heap", token: viewerTok, status: 403},
		{name: "profile without a token", route: "GET /debug/pprof/{name}", path: "/debug/pprof/heap", status: 401},
		{name: "openapi.json", route: "GET /api/v1/openapi.json", token: viewerTok, status: 200},
		{name: "openapi.json without a token", route: "GET /api/v1/openapi.json", status: 401},
		{name: "status", route: "GET /api/v1/status", token: viewerTok, status: 200},
		{name: "status with a bad token", route: "GET /api/v1/status", token: "wrong", status: 401},
		{name: "members", route: "GET /api/v1/members", token: viewerTok, status: 200},
		{name: "members without a token", route: "GET /api/v1/members", status: 401},
		{name: "vips", route: "GET /api/v1/vips", token: viewerTok, status: 200},
		{name: "vips without a token", route: "GET /api/v1/vips", status: 401},
		{name: "bgp", route: "GET /api/v1/bgp", token: viewerTok, status: 200},
		{name: "bgp without a token", route: "GET /api/v1/bgp", status: 401},
		{name: "services", route: "GET /api/v1/services", token: viewerTok, status: 200},
		{name: "services without a token", route: "GET /api/v1/services", status: 401},
		{name: "service", route: "GET /api/v1/services/{namespace}/{name}", path: "/api/v1/services/demo/web", token: viewerTok, status: 200},
		{name: "service unknown", route: "GET /api/v1/services/{namespace}/{name}", path: "/api/v1/services/demo/nope", token: viewerTok, status: 404},
		{name: "service without a token", route: "GET /api/v1/services/{namespace}/{name}", path: "/api/v1/services/demo/web", status: 401},
		{name: "service events", route: "GET /api/v1/services/{namespace}/{name}/events", path: "/api/v1/services/demo/web/events", token: viewerTok, status: 200},
		{name: "service events of a pending service", route: "GET /api/v1/services/{namespace}/{name}/events", path: "/api/v1/services/demo/waiting/events", token: viewerTok, status: 200},
		{name: "service events unknown", route: "GET /api/v1/services/{namespace}/{name}/events", path: "/api/v1/services/demo/nope/events", token: viewerTok, status: 404},
		{name: "service events unreadable", route: "GET /api/v1/services/{namespace}/{name}/events", path: "/api/v1/services/demo/web/events", token: viewerTok, status: 502, server: "eventsFail"},
		{name: "service events without a token", route: "GET /api/v1/services/{namespace}/{name}/events", path: "/api/v1/services/demo/web/events", status: 401},
		{name: "events", route: "GET /api/v1/events", token: viewerTok, status: 200, stream: true},
		{name: "events with a bad Last-Event-ID", route: "GET /api/v1/events", token: viewerTok, header: map[string]string{"Last-Event-ID": "x"}, status: 400},
		{name: "events without a token", route: "GET /api/v1/events", status: 401},
		{name: "audit", route: "GET /api/v1/audit", token: viewerTok, status: 200},
		{name: "audit without a token", route: "GET /api/v1/audit", status: 401},

		{name: "drain", route: "POST /api/v1/members/{name}/drain", path: "/api/v1/members/lb3/drain", token: adminTok, status: 202},
		{name: "drain with a body", route: "POST /api/v1/members/{name}/drain", path: "/api/v1/members/lb3/drain", token: adminTok, body: `{"now":true}`, status: 400},
		{name: "drain without a token", route: "POST /api/v1/members/{name}/drain", path: "/api/v1/members/lb3/drain", status: 401},
		{name: "drain as a viewer", route: "POST /api/v1/members/{name}/drain", path: "/api/v1/members/lb3/drain", token: viewerTok, status: 403},
		{name: "drain cross-site", route: "POST /api/v1/members/{name}/drain", path: "/api/v1/members/lb3/drain", token: adminTok, header: map[string]string{"Sec-Fetch-Site": "cross-site"}, status: 403},
		{name: "drain unknown member", route: "POST /api/v1/members/{name}/drain", path: "/api/v1/members/lb9/drain", token: adminTok, status: 404},
		{name: "drain not replicated", route: "POST /api/v1/members/{name}/drain", path: "/api/v1/members/lb3/drain", token: adminTok, status: 409, server: "unreplicated"},
		{name: "drain as text/plain", route: "POST /api/v1/members/{name}/drain", path: "/api/v1/members/lb3/drain", token: adminTok, header: map[string]string{"Content-Type": "text/plain"}, status: 415},
		{name: "drain that fails", route: "POST /api/v1/members/{name}/drain", path: "/api/v1/members/lb3/drain", token: adminTok, status: 502, server: "drainFails"},
		{name: "drain with a huge body", route: "POST /api/v1/members/{name}/drain", path: "/api/v1/members/lb3/drain", token: adminTok, body: `{"x":"` + strings.Repeat("a", api.MaxBodyBytes) + `"}`, status: 413},
		{name: "add member", route: "POST /api/v1/members", token: adminTok, body: `{"address": "10.0.0.14:7946"}`, status: 201},
		{name: "add member twice", route: "POST /api/v1/members", token: adminTok, body: `{"address": "10.0.0.11:7946"}`, status: 409},
		{name: "add member without an address", route: "POST /api/v1/members", token: adminTok, body: `{}`, status: 400},
		{name: "add member, bad force", route: "POST /api/v1/members", path: "/api/v1/members?force=maybe", token: adminTok, body: `{"address": "10.0.0.15:7946"}`, status: 400},
		{name: "add member without a token", route: "POST /api/v1/members", body: `{"address": "10.0.0.15:7946"}`, status: 401},
		{name: "add member as a viewer", route: "POST /api/v1/members", token: viewerTok, body: `{"address": "10.0.0.15:7946"}`, status: 403},
		{name: "add member as text/plain", route: "POST /api/v1/members", token: adminTok, body: `{"address": "10.0.0.15:7946"}`, header: map[string]string{"Content-Type": "text/plain"}, status: 415},
		{name: "add member with a huge body", route: "POST /api/v1/members", token: adminTok, body: `{"x":"` + strings.Repeat("a", api.MaxBodyBytes) + `"}`, status: 413},
		{name: "add member without a log", route: "POST /api/v1/members", token: adminTok, body: `{"address": "10.0.0.15:7946"}`, status: 409, server: "unreplicated"},
		{name: "add member without a majority", route: "POST /api/v1/members", token: adminTok, body: `{"address": "10.0.0.15:7946"}`, status: 503, server: "noQuorum"},
		{name: "remove member", route: "DELETE /api/v1/members/{name}", path: "/api/v1/members/10.0.0.14:7946?force=false", token: adminTok, status: 200},
		{name: "remove unknown member", route: "DELETE /api/v1/members/{name}", path: "/api/v1/members/10.0.0.99:7946", token: adminTok, status: 404},
		{name: "remove member, bad force", route: "DELETE /api/v1/members/{name}", path: "/api/v1/members/10.0.0.13:7946?force=2", token: adminTok, status: 400},
		{name: "remove member without a token", route: "DELETE /api/v1/members/{name}", path: "/api/v1/members/10.0.0.13:7946", status: 401},
		{name: "remove member as a viewer", route: "DELETE /api/v1/members/{name}", path: "/api/v1/members/10.0.0.13:7946", token: viewerTok, status: 403},
		{name: "remove member as text/plain", route: "DELETE /api/v1/members/{name}", path: "/api/v1/members/10.0.0.13:7946", token: adminTok, header: map[string]string{"Content-Type": "text/plain"}, status: 415},
		{name: "remove member without a log", route: "DELETE /api/v1/members/{name}", path: "/api/v1/members/10.0.0.13:7946", token: adminTok, status: 409, server: "unreplicated"},
		{name: "remove member without a majority", route: "DELETE /api/v1/members/{name}", path: "/api/v1/members/10.0.0.13:7946", token: adminTok, status: 503, server: "noQuorum"},
		{name: "undrain", route: "POST /api/v1/members/{name}/undrain", path: "/api/v1/members/lb3/undrain", token: adminTok, status: 202},
		{name: "undrain with a body", route: "POST /api/v1/members/{name}/undrain", path: "/api/v1/members/lb3/undrain", token: adminTok, body: `[1]`, status: 400},
		{name: "undrain without a token", route: "POST /api/v1/members/{name}/undrain", path: "/api/v1/members/lb3/undrain", status: 401},
		{name: "undrain as a viewer", route: "POST /api/v1/members/{name}/undrain", path: "/api/v1/members/lb3/undrain", token: viewerTok, status: 403},
		{name: "undrain unknown member", route: "POST /api/v1/members/{name}/undrain", path: "/api/v1/members/lb9/undrain", token: adminTok, status: 404},
		{name: "undrain as text/plain", route: "POST /api/v1/members/{name}/undrain", path: "/api/v1/members/lb3/undrain", token: adminTok, header: map[string]string{"Content-Type": "text/plain"}, status: 415},

		{name: "config", route: "GET /api/v1/config", token: viewerTok, status: 200},
		{name: "config with secrets", route: "GET /api/v1/config", path: "/api/v1/config?secrets=true", token: adminTok, status: 200},
		{name: "config secrets=maybe", route: "GET /api/v1/config", path: "/api/v1/config?secrets=maybe", token: adminTok, status: 400},
		{name: "config secrets as a viewer", route: "GET /api/v1/config", path: "/api/v1/config?secrets=true", token: viewerTok, status: 403},
		{name: "config without a token", route: "GET /api/v1/config", status: 401},
		{name: "config before the first version", route: "GET /api/v1/config", token: viewerTok, status: 503, server: "unseeded"},
		{name: "history", route: "GET /api/v1/config/history", token: viewerTok, status: 200},
		{name: "history without a token", route: "GET /api/v1/config/history", status: 401},
		{name: "version", route: "GET /api/v1/config/history/{n}", path: "/api/v1/config/history/1", token: viewerTok, status: 200},
		{name: "version not a number", route: "GET /api/v1/config/history/{n}", path: "/api/v1/config/history/x", token: viewerTok, status: 400},
		{name: "version secrets as a viewer", route: "GET /api/v1/config/history/{n}", path: "/api/v1/config/history/1?secrets=true", token: viewerTok, status: 403},
		{name: "version unknown", route: "GET /api/v1/config/history/{n}", path: "/api/v1/config/history/9", token: viewerTok, status: 404},
		{name: "version without a token", route: "GET /api/v1/config/history/{n}", path: "/api/v1/config/history/1", status: 401},

		{name: "validate", route: "POST /api/v1/config/validate", token: adminTok, body: newSpec, status: 200},
		{name: "validate an invalid spec", route: "POST /api/v1/config/validate", token: adminTok, body: `{"pools":[{"name":"a","adresses":[]}]}`, status: 200},
		{name: "validate without a token", route: "POST /api/v1/config/validate", body: newSpec, status: 401},
		{name: "validate as a viewer", route: "POST /api/v1/config/validate", token: viewerTok, body: newSpec, status: 403},
		{name: "validate as text/plain", route: "POST /api/v1/config/validate", token: adminTok, body: newSpec, header: map[string]string{"Content-Type": "text/plain"}, status: 415},
		{name: "validate a huge body", route: "POST /api/v1/config/validate", token: adminTok, body: big, status: 413},

		{name: "put without If-Match", route: "PUT /api/v1/config", token: adminTok, body: newSpec, status: 428},
		{name: "put with a bad If-Match", route: "PUT /api/v1/config", token: adminTok, body: newSpec, header: ifMatch("three"), status: 400},
		{name: "put stale", route: "PUT /api/v1/config", token: adminTok, body: newSpec, header: ifMatch(`"7"`), status: 409},
		{name: "put without a majority", route: "PUT /api/v1/config", token: adminTok, body: newSpec, header: ifMatch(`"1"`), status: 503, server: "noQuorum"},
		{name: "put not replicated", route: "PUT /api/v1/config", token: adminTok, body: newSpec, header: ifMatch(`"1"`), status: 409, server: "unreplicated"},
		{name: "put invalid", route: "PUT /api/v1/config", token: adminTok, body: `{"pools":[{"name":"a","addresses":["192.0.2.300"]}]}`, header: ifMatch(`"1"`), status: 422},
		{name: "put without a token", route: "PUT /api/v1/config", body: newSpec, header: ifMatch(`"1"`), status: 401},
		{name: "put as a viewer", route: "PUT /api/v1/config", token: viewerTok, body: newSpec, header: ifMatch(`"1"`), status: 403},
		{name: "put as text/plain", route: "PUT /api/v1/config", token: adminTok, body: newSpec, header: map[string]string{"If-Match": `"1"`, "Content-Type": "text/plain"}, status: 415},
		{name: "put a huge body", route: "PUT /api/v1/config", token: adminTok, body: big, header: ifMatch(`"1"`), status: 413},
		{name: "put", route: "PUT /api/v1/config", token: adminTok, body: newSpec, header: ifMatch(`"1"`), status: 200},

		{name: "backend drain", route: "POST /api/v1/services/{namespace}/{name}/backends/{backend}/{action}", path: "/api/v1/services/_static/web/backends/10.0.1.7:8080/drain", token: adminTok, status: 200},
		{name: "backend unknown action", route: "POST /api/v1/services/{namespace}/{name}/backends/{backend}/{action}", path: "/api/v1/services/_static/web/backends/10.0.1.7:8080/explode", token: adminTok, status: 404},
		{name: "backend not ip:port", route: "POST /api/v1/services/{namespace}/{name}/backends/{backend}/{action}", path: "/api/v1/services/_static/web/backends/10.0.1.7/drain", token: adminTok, status: 422},
		{name: "backend without a majority", route: "POST /api/v1/services/{namespace}/{name}/backends/{backend}/{action}", path: "/api/v1/services/_static/dns/backends/10.0.1.5:53/drain", token: adminTok, status: 503, server: "noQuorum"},
		{name: "backend not replicated", route: "POST /api/v1/services/{namespace}/{name}/backends/{backend}/{action}", path: "/api/v1/services/_static/dns/backends/10.0.1.5:53/drain", token: adminTok, status: 409, server: "unreplicated"},
		{name: "backend without a token", route: "POST /api/v1/services/{namespace}/{name}/backends/{backend}/{action}", path: "/api/v1/services/_static/web/backends/10.0.1.7:8080/drain", status: 401},
		{name: "backend as a viewer", route: "POST /api/v1/services/{namespace}/{name}/backends/{backend}/{action}", path: "/api/v1/services/_static/web/backends/10.0.1.7:8080/drain", token: viewerTok, status: 403},
		{name: "backend as text/plain", route: "POST /api/v1/services/{namespace}/{name}/backends/{backend}/{action}", path: "/api/v1/services/_static/web/backends/10.0.1.7:8080/drain", token: adminTok, header: map[string]string{"Content-Type": "text/plain"}, status: 415},

		{name: "rollback dry run", route: "POST /api/v1/config/rollback/{n}", path: "/api/v1/config/rollback/1?dryRun=true", token: adminTok, status: 200},
		{name: "rollback without a majority", route: "POST /api/v1/config/rollback/{n}", path: "/api/v1/config/rollback/1", token: adminTok, status: 503, server: "noQuorum"},
		{name: "rollback bad number", route: "POST /api/v1/config/rollback/{n}", path: "/api/v1/config/rollback/0", token: adminTok, status: 400},
		{name: "rollback bad backendStates", route: "POST /api/v1/config/rollback/{n}", path: "/api/v1/config/rollback/1?backendStates=all", token: adminTok, status: 400},
		{name: "rollback unknown version", route: "POST /api/v1/config/rollback/{n}", path: "/api/v1/config/rollback/9", token: adminTok, status: 404},
		{name: "rollback stale", route: "POST /api/v1/config/rollback/{n}", path: "/api/v1/config/rollback/1", token: adminTok, header: ifMatch(`"1"`), status: 409},
		{name: "rollback without a token", route: "POST /api/v1/config/rollback/{n}", path: "/api/v1/config/rollback/1", status: 401},
		{name: "rollback as a viewer", route: "POST /api/v1/config/rollback/{n}", path: "/api/v1/config/rollback/1", token: viewerTok, status: 403},
		{name: "rollback as text/plain", route: "POST /api/v1/config/rollback/{n}", path: "/api/v1/config/rollback/1", token: adminTok, header: map[string]string{"Content-Type": "text/plain"}, status: 415},
		{name: "rollback", route: "POST /api/v1/config/rollback/{n}", path: "/api/v1/config/rollback/1", token: adminTok, status: 200},
	}

	// Every route but /healthz refuses a request by a name the API does
	// not serve and without a token (DNS rebinding), before anything else.
	rebound := map[string]bool{"GET /healthz": true}
	for _, c := range cases {
		if !rebound[c.route] {
			rebound[c.route] = true
			cases = append(cases, specCase{name: c.route + " by a name the API does not serve", route: c.route, path: c.path,
				header: map[string]string{"Host": "rebound.example"}, status: 421})
		}
	}

	// Every route of the server but the dashboard's static files is an
	// operation of the spec and has a case here, and every operation of
	// the spec is a route of the server.
	covered := map[string]bool{}
	for _, c := range cases {
		covered[c.route] = true
	}
	routes := map[string]bool{}
	param := regexp.MustCompile(`[:*]([a-zA-Z]+)`)
	for _, r := range servers[""].Routes() {
		route := r.Method + " " + param.ReplaceAllString(r.Path, "{$1}")
		routes[route] = true
		if doc.Paths.Find(param.ReplaceAllString(r.Path, "{$1}")).GetOperation(r.Method) == nil {
			t.Errorf("the server has %s, which openapi.json does not describe", route)
		} else if !covered[route] {
			t.Errorf("no case sends %s", route)
		}
	}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if !routes[method+" "+path] {
				t.Errorf("openapi.json describes %s %s, which the server does not have", method, path)
			}
		}
	}

	opts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}
	for _, c := range cases {
		method, tmpl, _ := strings.Cut(c.route, " ")
		path := c.path
		if path == "" {
			path = tmpl
		}
		item := doc.Paths.Find(tmpl)
		op := item.GetOperation(method)
		if op == nil {
			t.Errorf("%s: openapi.json has no %s", c.name, c.route)
			continue
		}
		rawPath, _, _ := strings.Cut(path, "?")
		if !regexp.MustCompile(`^` + regexp.MustCompile(`\\\{[a-z]+\\\}`).ReplaceAllString(regexp.QuoteMeta(tmpl), `[^/]+`) + `$`).MatchString(rawPath) {
			t.Fatalf("%s: path %s is not one of %s", c.name, path, tmpl)
		}

		var body io.Reader
		if c.body != "" {
			body = strings.NewReader(c.body)
		}
		req := httptest.NewRequest(method, "http://127.0.0.1"+path, body)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		if method != "GET" {
			req.Header.Set("Content-Type", "application/json")
		}
		for k, v := range c.header {
			req.Header.Set(k, v)
			if k == "Host" {
				req.Host = v
			}
		}
		var rec *httptest.ResponseRecorder
		if c.stream {
			rec = stream(t, servers[c.server], req)
		} else {
			rec = httptest.NewRecorder()
			servers[c.server].ServeHTTP(rec, req)
		}
		if rec.Code != c.status {
			t.Errorf("%s: %s %s answered %d, want %d: %s", c.name, method, path, rec.Code, c.status, rec.Body)
			continue
		}
		validation := *opts
		validation.ExcludeResponseBody = c.stream
		in := &openapi3filter.ResponseValidationInput{
			RequestValidationInput: &openapi3filter.RequestValidationInput{
				Request: req,
				Route:   &routers.Route{Spec: doc, Path: tmpl, PathItem: item, Method: method, Operation: op},
			},
			Status:  rec.Code,
			Header:  rec.Header(),
			Body:    io.NopCloser(bytes.NewReader(rec.Body.Bytes())),
			Options: &validation,
		}
		if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
			t.Errorf("%s: %s %s answered %d, which openapi.json does not describe: %v\n%s", c.name, method, path, rec.Code, err, truncate(rec.Body.String()))
		}
		if c.stream {
			if op.Responses.Status(rec.Code).Value.Content.Get(rec.Header().Get("Content-Type")) == nil {
				t.Errorf("%s: Content-Type %q is not listed for %s %d", c.name, rec.Header().Get("Content-Type"), c.route, rec.Code)
			}
			// Each event's data is an Event as the spec describes it.
			events := 0
			for _, line := range strings.Split(rec.Body.String(), "\n") {
				data, ok := strings.CutPrefix(line, "data: ")
				if !ok {
					continue
				}
				events++
				var v any
				if err := json.Unmarshal([]byte(data), &v); err != nil {
					t.Errorf("%s: event data is not JSON: %v: %s", c.name, err, data)
				} else if err := doc.Components.Schemas["Event"].Value.VisitJSON(v, openapi3.VisitAsResponse(), openapi3.MultiErrors()); err != nil {
					t.Errorf("%s: an event does not match the Event schema: %v\n%s", c.name, err, data)
				}
			}
			if events == 0 {
				t.Errorf("%s: no event in the backlog:\n%s", c.name, rec.Body)
			}
		}
	}
}

// stream sends req to h over a real connection (the event stream never
// ends), reads the backlog of events and hangs up: the status, headers
// and what was read.
func stream(t *testing.T, h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(req.Context(), 5*time.Second)
	defer cancel()
	out := req.Clone(ctx)
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host, out.Host = "http", srv.Listener.Addr().String(), ""
	resp, err := srv.Client().Do(out)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// The backlog comes first, then the comment ": connected".
	var got []byte
	buf := make([]byte, 4096)
	for !bytes.Contains(got, []byte(": connected\n\n")) {
		n, err := resp.Body.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
	}
	rec := httptest.NewRecorder()
	for k, v := range resp.Header {
		rec.Header()[k] = v
	}
	rec.WriteHeader(resp.StatusCode)
	rec.Write(got)
	return rec
}

func truncate(s string) string {
	if len(s) > 500 {
		return s[:500] + fmt.Sprintf("... (%d bytes)", len(s))
	}
	return s
}
