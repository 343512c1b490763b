package k8s

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	authorizationv1 "k8s.io/client-go/kubernetes/typed/authorization/v1"
	coordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	discoveryv1 "k8s.io/client-go/kubernetes/typed/discovery/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
)

// Client is the part of the Kubernetes API edgelb calls: Services, Nodes
// and Events (core/v1), EndpointSlices (discovery/v1), the Lease
// (coordination/v1) and its own access reviews (authorization/v1). client-go's whole clientset (kubernetes.Interface)
// has these methods too, so its fake serves the unit tests; edgelb itself
// builds only these four groups' clients (NewClient): the clientset,
// its informer factory and its scheme would link every API group's types
// and clients into the binary, about 15 MB of it for nothing.
type Client interface {
	CoreV1() typedcorev1.CoreV1Interface
	DiscoveryV1() discoveryv1.DiscoveryV1Interface
	CoordinationV1() coordinationv1.CoordinationV1Interface
	AuthorizationV1() authorizationv1.AuthorizationV1Interface
}

// NewClient builds a Client from rc as client-go's clientset would: one
// HTTP transport and one rate limiter (rc's QPS and Burst) shared by the
// four groups' clients.
func NewClient(rc *rest.Config) (Client, error) {
	c := *rc
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	if c.RateLimiter == nil && c.QPS > 0 {
		if c.Burst <= 0 {
			return nil, fmt.Errorf("a QPS of %v needs a burst greater than 0", c.QPS)
		}
		c.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(c.QPS, c.Burst)
	}
	hc, err := rest.HTTPClientFor(&c)
	if err != nil {
		return nil, err
	}
	var cl clients
	if cl.core, err = typedcorev1.NewForConfigAndClient(&c, hc); err != nil {
		return nil, err
	}
	if cl.discovery, err = discoveryv1.NewForConfigAndClient(&c, hc); err != nil {
		return nil, err
	}
	if cl.coordination, err = coordinationv1.NewForConfigAndClient(&c, hc); err != nil {
		return nil, err
	}
	if cl.authorization, err = authorizationv1.NewForConfigAndClient(&c, hc); err != nil {
		return nil, err
	}
	return cl, nil
}

type clients struct {
	core          typedcorev1.CoreV1Interface
	discovery     discoveryv1.DiscoveryV1Interface
	coordination  coordinationv1.CoordinationV1Interface
	authorization authorizationv1.AuthorizationV1Interface
}

func (c clients) CoreV1() typedcorev1.CoreV1Interface           { return c.core }
func (c clients) DiscoveryV1() discoveryv1.DiscoveryV1Interface { return c.discovery }
func (c clients) CoordinationV1() coordinationv1.CoordinationV1Interface {
	return c.coordination
}
func (c clients) AuthorizationV1() authorizationv1.AuthorizationV1Interface {
	return c.authorization
}

// eventScheme knows the one kind edgelb records Events about, the
// Service (client-go's scheme.Scheme would register every API group).
var eventScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := corev1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}()
