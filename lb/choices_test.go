package lb

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/edgelb/edgelb/lb/config"
)

func annotated(kv ...string) svcOpt {
	return func(s *corev1.Service) {
		for i := 0; i+1 < len(kv); i += 2 {
			s.Annotations[kv[i]] = kv[i+1]
		}
	}
}

// choicesSnap is one Service, web, with a ready endpoint and three nodes.
func choicesSnap(opts ...svcOpt) Snapshot {
	return Snapshot{
		Services:       []*corev1.Service{svc("web", []string{"192.0.2.10"}, opts...)},
		EndpointSlices: []*EndpointSlice{slice("web", discoveryv1.AddressTypeIPv4, 8080, readyEP("10.1.1.1", "n1"))},
		Nodes:          threeNodes,
	}
}

func withDefaultCheck(o Options) Options {
	o.HealthCheck = config.HealthCheck{Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 2}
	return o
}

// Each annotation's effect on the desired state, over the defaults of a
// nodeport/nat appliance.
func TestChoiceAnnotations(t *testing.T) {
	nodePorts := []string{"10.0.0.1:30080 w=1 n1", "10.0.0.2:30080 w=1 n2", "10.0.0.3:30080 w=1 n3"}
	pods := []string{"10.1.1.1:8080 w=1 n1"}
	cases := []struct {
		name     string
		opts     []svcOpt
		backends []string
		method   Method
		check    HealthCheck
		maxConns uint32
	}{
		{name: "no annotation: the defaults", backends: nodePorts, method: NAT},
		{name: "mode direct: the pods", opts: []svcOpt{annotated(AnnotationMode, "direct")}, backends: pods, method: NAT},
		{name: "mode nodeport", opts: []svcOpt{annotated(AnnotationMode, "nodeport")}, backends: nodePorts, method: NAT},
		{name: "method dr", opts: []svcOpt{annotated(AnnotationMethod, "dr")}, backends: nodePorts, method: DR},
		{name: "method tunnel", opts: []svcOpt{annotated(AnnotationMethod, "tunnel")}, backends: nodePorts, method: Tunnel},
		{name: "method nat", opts: []svcOpt{annotated(AnnotationMethod, "nat")}, backends: nodePorts, method: NAT},
		{name: "http check on a path", opts: []svcOpt{annotated(AnnotationHealthCheckType, "http", AnnotationHealthCheckPath, "/ready")},
			backends: nodePorts, method: NAT, check: HealthCheck{Type: config.CheckHTTP, Path: "/ready"}},
		{name: "no check", opts: []svcOpt{annotated(AnnotationHealthCheckType, "none")},
			backends: nodePorts, method: NAT, check: HealthCheck{Type: config.CheckNone}},
		{name: "tcp check on a port", opts: []svcOpt{annotated(AnnotationHealthCheckType, "tcp", AnnotationHealthCheckPort, "9000")},
			backends: nodePorts, method: NAT, check: HealthCheck{Type: config.CheckTCP, Port: 9000}},
		{name: "check schedule", opts: []svcOpt{annotated(AnnotationHealthCheckInterval, "5s", AnnotationHealthCheckTimeout, "500ms",
			AnnotationHealthCheckRise, "3", AnnotationHealthCheckFall, "1")},
			backends: nodePorts, method: NAT, check: HealthCheck{Interval: 5 * time.Second, Timeout: 500 * time.Millisecond, Rise: 3, Fall: 1}},
		{name: "max connections", opts: []svcOpt{annotated(AnnotationMaxConnections, "100")}, backends: nodePorts, method: NAT, maxConns: 100},
		{name: "allocateLoadBalancerNodePorts false in direct mode: served", opts: []svcOpt{annotated(AnnotationMode, "direct"), func(s *corev1.Service) {
			s.Spec.AllocateLoadBalancerNodePorts = ptr(false)
			s.Spec.Ports[0].NodePort = 0
		}}, backends: pods, method: NAT},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, problems := Build(choicesSnap(c.opts...), withDefaultCheck(baseOpts(config.ModeNodePort)))
			if len(problems) != 0 {
				t.Errorf("problems: %+v", problems)
			}
			if len(d.Services) != 1 {
				t.Fatalf("%d virtual services, want 1", len(d.Services))
			}
			vs := d.Services[0]
			if got := be(vs); fmt.Sprint(got) != fmt.Sprint(c.backends) {
				t.Errorf("backends %v, want %v", got, c.backends)
			}
			if vs.Method != c.method || vs.Check != c.check || vs.MaxConns != c.maxConns {
				t.Errorf("method %s check %+v maxConns %d, want %s %+v %d", vs.Method, vs.Check, vs.MaxConns, c.method, c.check, c.maxConns)
			}
		})
	}
}

// A bad annotation is a Problem with a Reason (a Warning Event); the
// Service keeps working with the default for that choice.
func TestBadChoiceAnnotations(t *testing.T) {
	cases := []struct{ key, value, want string }{
		{AnnotationMode, "pods", "not one of nodeport, direct"},
		{AnnotationMethod, "fullnat", "not one of nat, dr, tunnel"},
		{AnnotationHealthCheckType, "icmp", "not one of tcp, http, none"},
		{AnnotationHealthCheckPort, "0", "from 1 to 65535"},
		{AnnotationHealthCheckPort, "http", "from 1 to 65535"},
		{AnnotationHealthCheckPath, "ready", "must start with /"},
		{AnnotationHealthCheckPath, "/a b", "must not contain spaces"},
		{AnnotationHealthCheckInterval, "2", "not a duration"},
		{AnnotationHealthCheckInterval, "-1s", "not a duration"},
		{AnnotationHealthCheckTimeout, "5s", "must be shorter than the interval 2s"},
		{AnnotationHealthCheckRise, "0", "from 1 to 100"},
		{AnnotationHealthCheckFall, "many", "from 1 to 100"},
		{AnnotationMaxConnections, "-5", "from 0 to"},
		{AnnotationMaxConnections, "lots", "from 0 to"},
	}
	for _, c := range cases {
		t.Run(c.key+"="+c.value, func(t *testing.T) {
			d, problems := Build(choicesSnap(annotated(c.key, c.value)), withDefaultCheck(baseOpts(config.ModeNodePort)))
			if len(problems) != 1 || problems[0].Reason != ReasonInvalidAnnotation || problems[0].Source.Name != "web" ||
				!strings.Contains(problems[0].Message, c.key) || !strings.Contains(problems[0].Message, c.want) {
				t.Fatalf("problems = %+v, want one %s naming %s: %s", problems, ReasonInvalidAnnotation, c.key, c.want)
			}
			if len(d.Services) != 1 {
				t.Fatalf("%d virtual services, want the Service kept", len(d.Services))
			}
			vs := d.Services[0]
			if vs.Method != NAT || vs.Check != (HealthCheck{}) || vs.MaxConns != 0 || len(vs.Backends) != 3 {
				t.Errorf("the Service does not keep the defaults: %+v", vs)
			}
		})
	}
	// A path without an http check is refused too.
	_, problems := Build(choicesSnap(annotated(AnnotationHealthCheckPath, "/ready")), withDefaultCheck(baseOpts(config.ModeNodePort)))
	if len(problems) != 1 || problems[0].Reason != ReasonInvalidAnnotation {
		t.Errorf("path without http: problems = %+v", problems)
	}
}

// Without node ports (spec.allocateLoadBalancerNodePorts: false), nodeport
// mode has nothing to forward to: a Warning that says why.
func TestNoNodePorts(t *testing.T) {
	for _, mode := range []string{"", "nodeport"} {
		opts := []svcOpt{func(s *corev1.Service) {
			s.Spec.AllocateLoadBalancerNodePorts = ptr(false)
			s.Spec.Ports[0].NodePort = 0
		}}
		if mode != "" {
			opts = append(opts, annotated(AnnotationMode, mode))
		}
		d, problems := Build(choicesSnap(opts...), baseOpts(config.ModeNodePort))
		if len(problems) != 1 || problems[0].Reason != ReasonNoNodePort ||
			!strings.Contains(problems[0].Message, "allocateLoadBalancerNodePorts is false") || !strings.Contains(problems[0].Message, "edgelb.io/mode: direct") {
			t.Errorf("mode %q: problems = %+v", mode, problems)
		}
		if len(d.Services) != 1 || len(d.Services[0].Backends) != 0 {
			t.Errorf("mode %q: %+v, want the virtual service without backends", mode, d.Services)
		}
	}
	// On a direct appliance, the same Service is served.
	d, problems := Build(choicesSnap(func(s *corev1.Service) {
		s.Spec.AllocateLoadBalancerNodePorts = ptr(false)
		s.Spec.Ports[0].NodePort = 0
	}), baseOpts(config.ModeDirect))
	if len(problems) != 0 || len(d.Services) != 1 || len(d.Services[0].Backends) != 1 {
		t.Errorf("direct appliance: %+v %+v", d.Services, problems)
	}
}

// Static services take method, healthCheck and maxConnectionsPerBackend
// from the config.
func TestStaticChoices(t *testing.T) {
	check := &config.ServiceCheck{Type: config.CheckHTTP, Path: "/up", Interval: time.Second, Timeout: 200 * time.Millisecond, Rise: 1, Fall: 4}
	d, problems := Build(Snapshot{}, Options{Method: NAT, DefaultScheduler: "rr", Static: []config.StaticService{{
		Name: "api", VIP: netip.MustParseAddr("192.0.2.53"), Ports: []config.StaticPort{{Port: 443, Protocol: "TCP"}},
		Backends: []netip.AddrPort{netip.MustParseAddrPort("10.0.1.5:8443")},
		Method:   config.MethodDR, HealthCheck: check, MaxConnectionsPerBackend: 500,
	}, {
		Name: "plain", VIP: netip.MustParseAddr("192.0.2.54"), Ports: []config.StaticPort{{Port: 80, Protocol: "TCP"}},
		Backends: []netip.AddrPort{netip.MustParseAddrPort("10.0.1.5:80")},
	}}})
	if len(problems) != 0 || len(d.Services) != 2 {
		t.Fatalf("%+v %+v", d.Services, problems)
	}
	if vs := d.Services[0]; vs.Method != DR || vs.Check != *check || vs.MaxConns != 500 {
		t.Errorf("api: method %s check %+v maxConns %d", vs.Method, vs.Check, vs.MaxConns)
	}
	if vs := d.Services[1]; vs.Method != NAT || vs.Check != (HealthCheck{}) || vs.MaxConns != 0 {
		t.Errorf("plain: method %s check %+v maxConns %d", vs.Method, vs.Check, vs.MaxConns)
	}
}
