package lb

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/edgelb/edgelb/lb/config"
)

// Annotations of the per-Service choices. A bad value is a Problem with
// ReasonInvalidAnnotation (a Warning Event); the Service keeps working with
// the configured default for that choice.
const (
	AnnotationMode                = "edgelb.io/mode"
	AnnotationMethod              = "edgelb.io/method"
	AnnotationHealthCheckType     = "edgelb.io/health-check-type"
	AnnotationHealthCheckPort     = "edgelb.io/health-check-port"
	AnnotationHealthCheckPath     = "edgelb.io/health-check-path"
	AnnotationHealthCheckInterval = "edgelb.io/health-check-interval"
	AnnotationHealthCheckTimeout  = "edgelb.io/health-check-timeout"
	AnnotationHealthCheckRise     = "edgelb.io/health-check-rise"
	AnnotationHealthCheckFall     = "edgelb.io/health-check-fall"
	AnnotationMaxConnections      = "edgelb.io/max-connections-per-backend"
	// The BGP policy of a Service's bgp VIPs (announce: bgp), merged over
	// its pool's (config.BGPPolicy.Merge): communities ("65000:100,
	// no-export"), large communities ("65000:1:2") and the LOCAL_PREF
	// sent to iBGP peers ("200").
	AnnotationBGPCommunities      = "edgelb.io/bgp-communities"
	AnnotationBGPLargeCommunities = "edgelb.io/bgp-large-communities"
	AnnotationBGPLocalPref        = "edgelb.io/bgp-local-pref"
)

// Reasons of the Warning Events about per-Service choices.
const (
	ReasonInvalidAnnotation = "InvalidAnnotation"
	ReasonNoNodePort        = "NoNodePort"
)

// HealthCheck is how the backends of a virtual service are probed: the
// same as a static service's healthCheck.
type HealthCheck = config.ServiceCheck

// Choices are the per-service settings of a Service or static service,
// defaults applied.
type Choices struct {
	Mode   config.Mode
	Method Method
	Check  HealthCheck
	// MaxConns is the IPVS upper connection threshold of each backend;
	// 0 means no limit.
	MaxConns uint32
	// BGP is the service's own BGP policy (without its pool's).
	BGP config.BGPPolicy
}

// ChoicesOf reads the choices a Service's annotations make over the
// defaults in o. Each bad annotation is an error, and its choice keeps the
// default.
func ChoicesOf(svc *corev1.Service, o *Options) (Choices, []error) {
	c := Choices{Mode: o.Mode, Method: o.Method}
	var errs []error
	a := svc.Annotations
	enum := func(key string, allowed []string, set func(string)) {
		s, ok := a[key]
		if !ok {
			return
		}
		for _, v := range allowed {
			if s == v {
				set(s)
				return
			}
		}
		errs = append(errs, fmt.Errorf("%s %q: not one of %s", key, s, strings.Join(allowed, ", ")))
	}
	enum(AnnotationMode, config.Modes, func(s string) { c.Mode = config.Mode(s) })
	enum(AnnotationMethod, config.Methods, func(s string) { c.Method = Method(s) })
	enum(AnnotationHealthCheckType, config.CheckTypes, func(s string) { c.Check.Type = config.CheckType(s) })
	num := func(key string, lo, hi int, set func(int)) {
		if s, ok := a[key]; ok {
			v, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || v < lo || v > hi {
				errs = append(errs, fmt.Errorf("%s %q: not a whole number from %d to %d", key, s, lo, hi))
				return
			}
			set(v)
		}
	}
	num(AnnotationHealthCheckPort, 1, 65535, func(v int) { c.Check.Port = uint16(v) })
	num(AnnotationHealthCheckRise, 1, 100, func(v int) { c.Check.Rise = v })
	num(AnnotationHealthCheckFall, 1, 100, func(v int) { c.Check.Fall = v })
	num(AnnotationMaxConnections, 0, config.MaxConnsLimit, func(v int) { c.MaxConns = uint32(v) })
	if s, ok := a[AnnotationHealthCheckPath]; ok {
		if err := config.CheckPath(s); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %v", AnnotationHealthCheckPath, s, err))
		} else {
			c.Check.Path = s
		}
	}
	dur := func(key string, set func(time.Duration)) {
		if s, ok := a[key]; ok {
			v, err := time.ParseDuration(strings.TrimSpace(s))
			if err != nil || v < config.MinCheckDuration || v > config.MaxCheckDuration {
				errs = append(errs, fmt.Errorf("%s %q: not a duration from %s to %s, like 2s or 500ms", key, s, config.MinCheckDuration, config.MaxCheckDuration))
				return
			}
			set(v)
		}
	}
	dur(AnnotationHealthCheckInterval, func(v time.Duration) { c.Check.Interval = v })
	dur(AnnotationHealthCheckTimeout, func(v time.Duration) { c.Check.Timeout = v })
	if c.Check.Timeout != 0 || c.Check.Interval != 0 {
		interval, timeout := c.Check.Interval, c.Check.Timeout
		if interval == 0 {
			interval = o.HealthCheck.Interval
		}
		if timeout == 0 {
			timeout = o.HealthCheck.Timeout
		}
		if interval != 0 && timeout >= interval {
			errs = append(errs, fmt.Errorf("%s %s must be shorter than the interval %s", AnnotationHealthCheckTimeout, timeout, interval))
			c.Check.Interval, c.Check.Timeout = 0, 0
		}
	}
	if s, ok := a[AnnotationBGPCommunities]; ok {
		if v, err := config.ParseCommunities(s); err != nil {
			errs = append(errs, fmt.Errorf("%s: %v", AnnotationBGPCommunities, err))
		} else {
			c.BGP.Communities = v
		}
	}
	if s, ok := a[AnnotationBGPLargeCommunities]; ok {
		if v, err := config.ParseLargeCommunities(s); err != nil {
			errs = append(errs, fmt.Errorf("%s: %v", AnnotationBGPLargeCommunities, err))
		} else {
			c.BGP.LargeCommunities = v
		}
	}
	if s, ok := a[AnnotationBGPLocalPref]; ok {
		if v, err := config.ParseLocalPref(s); err != nil {
			errs = append(errs, fmt.Errorf("%s: %v", AnnotationBGPLocalPref, err))
		} else {
			c.BGP.LocalPref = &v
		}
	}
	if c.Check.Type != config.CheckHTTP && c.Check.Path != "" {
		errs = append(errs, fmt.Errorf("%s is only used by %s: http", AnnotationHealthCheckPath, AnnotationHealthCheckType))
		c.Check.Path = ""
	}
	return c, errs
}

// StaticChoices are the choices of a static service, over the defaults in o.
// The config is validated: nothing can be wrong.
func StaticChoices(s *config.StaticService, o *Options) Choices {
	c := Choices{Mode: o.Mode, Method: o.Method, MaxConns: s.MaxConnectionsPerBackend}
	if s.Method != "" {
		c.Method = Method(s.Method)
	}
	if s.HealthCheck != nil {
		c.Check = *s.HealthCheck
	}
	if s.BGP != nil {
		c.BGP = *s.BGP
	}
	return c
}

// choices are the choices of svc; each bad annotation, and node ports
// missing in nodeport mode, is a problem.
func (b *builder) choices(src Source, svc *corev1.Service) Choices {
	ch, errs := ChoicesOf(svc, &b.opts)
	for _, err := range errs {
		b.problems = append(b.problems, Problem{Source: src, Reason: ReasonInvalidAnnotation, Message: err.Error() + "; using the default"})
	}
	if ch.Mode != config.ModeNodePort {
		return ch
	}
	for _, p := range svc.Spec.Ports {
		if p.NodePort != 0 {
			continue
		}
		why := "it has no nodePort"
		if a := svc.Spec.AllocateLoadBalancerNodePorts; a != nil && !*a {
			why = "spec.allocateLoadBalancerNodePorts is false"
		}
		b.problems = append(b.problems, Problem{Source: src, Reason: ReasonNoNodePort,
			Message: fmt.Sprintf("port %d/%s is not forwarded: %s, and in nodeport mode edgelb forwards to the nodes' nodePort; allocate node ports or set %s: direct", p.Port, p.Protocol, why, AnnotationMode)})
	}
	return ch
}
