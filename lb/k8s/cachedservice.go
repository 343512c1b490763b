package k8s

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// cachedService is what the Service informer's cache holds of a Service:
// the fields slim keeps, 320 bytes where the API's Service struct takes
// 640 (most of its spec is what edgelb never reads). Readers get the API
// type from serviceLister, built on each read and sharing the cached
// values (which nobody modifies: a write patches, setIngress).
type cachedService struct {
	namespace, name string
	uid             types.UID
	resourceVersion string
	created         metav1.Time
	deleted         *metav1.Time
	annotations     map[string]string

	typ                 corev1.ServiceType
	ports               []corev1.ServicePort
	class               *string
	loadBalancerIP      string
	sourceRanges        []string
	trafficPolicy       corev1.ServiceExternalTrafficPolicy
	healthCheckNodePort int32
	allocateNodePorts   *bool
	affinity            corev1.ServiceAffinity
	affinityConfig      *corev1.SessionAffinityConfig
	families            []corev1.IPFamily
	familyPolicy        *corev1.IPFamilyPolicy

	ingress []corev1.LoadBalancerIngress
}

// newCachedService keeps what edgelb reads of svc (slimServiceMeta,
// slimServiceSpec, slimStatus).
func newCachedService(svc *corev1.Service) *cachedService {
	m := slimServiceMeta(&svc.ObjectMeta)
	s := slimServiceSpec(&svc.Spec)
	slimStatus(&svc.Status)
	return &cachedService{
		namespace: m.Namespace, name: m.Name, uid: m.UID, resourceVersion: m.ResourceVersion,
		created: m.CreationTimestamp, deleted: m.DeletionTimestamp, annotations: m.Annotations,
		typ: s.Type, ports: s.Ports, class: s.LoadBalancerClass, loadBalancerIP: s.LoadBalancerIP,
		sourceRanges: s.LoadBalancerSourceRanges, trafficPolicy: s.ExternalTrafficPolicy,
		healthCheckNodePort: s.HealthCheckNodePort, allocateNodePorts: s.AllocateLoadBalancerNodePorts,
		affinity: s.SessionAffinity, affinityConfig: s.SessionAffinityConfig,
		families: s.IPFamilies, familyPolicy: s.IPFamilyPolicy,
		ingress: slices.Clip(svc.Status.LoadBalancer.Ingress),
	}
}

// service is the API object again, with what the cache kept. Slices, maps
// and pointers are shared with the cache: read only.
func (c *cachedService) service() *corev1.Service {
	out := &corev1.Service{}
	c.into(out)
	return out
}

// into sets *out to the API object, as service does, without allocating.
func (c *cachedService) into(out *corev1.Service) {
	*out = corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: c.namespace, Name: c.name, UID: c.uid, ResourceVersion: c.resourceVersion,
			CreationTimestamp: c.created, DeletionTimestamp: c.deleted, Annotations: c.annotations},
		Spec: corev1.ServiceSpec{
			Type: c.typ, Ports: c.ports, LoadBalancerClass: c.class, LoadBalancerIP: c.loadBalancerIP,
			LoadBalancerSourceRanges: c.sourceRanges, ExternalTrafficPolicy: c.trafficPolicy,
			HealthCheckNodePort: c.healthCheckNodePort, AllocateLoadBalancerNodePorts: c.allocateNodePorts,
			SessionAffinity: c.affinity, SessionAffinityConfig: c.affinityConfig,
			IPFamilies: c.families, IPFamilyPolicy: c.familyPolicy,
		},
		Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: c.ingress}},
	}
}

// GetObjectMeta makes a cachedService a meta.Accessor for the informer's
// key functions; nobody keeps the answer.
func (c *cachedService) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: c.namespace, Name: c.name, ResourceVersion: c.resourceVersion, UID: c.uid}
}

// GetObjectKind and DeepCopyObject make it a runtime.Object; cached
// objects are never modified, so a copy may share their values.
func (c *cachedService) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

func (c *cachedService) DeepCopyObject() runtime.Object {
	cp := *c
	return &cp
}

// asService is the Service of a cache entry: a cachedService, or a
// Service put there as it is (tests fill the cache by hand); nil for
// anything else.
func asService(o any) *corev1.Service {
	switch o := o.(type) {
	case *cachedService:
		return o.service()
	case *corev1.Service:
		return o
	}
	return nil
}

// serviceLister reads the Service informer's cache as Services
// (listerscorev1.ServiceLister). The cache keeps no labels: a selector
// other than labels.Everything matches nothing.
type serviceLister struct{ indexer cache.Indexer }

var _ listerscorev1.ServiceLister = serviceLister{}

func (l serviceLister) List(sel labels.Selector) ([]*corev1.Service, error) {
	objs := l.indexer.List()
	out := make([]*corev1.Service, 0, len(objs))
	for _, o := range objs {
		if svc := asService(o); svc != nil && sel.Matches(labels.Set(svc.Labels)) {
			out = append(out, svc)
		}
	}
	return out, nil
}

// each calls fn with every cached Service, in no order, building none:
// fn gets the same scratch Service each time and must not keep it (or
// anything it points to beyond the cached values, which are read only).
// The loops over every Service — requeue after a pool change or a freed
// address, the pending view — run it: a list would build 10,000 Services
// each time.
func (l serviceLister) each(fn func(*corev1.Service)) {
	var scratch corev1.Service
	for _, o := range l.indexer.List() {
		switch o := o.(type) {
		case *cachedService:
			o.into(&scratch)
			fn(&scratch)
		case *corev1.Service:
			fn(o)
		}
	}
}

func (l serviceLister) Services(namespace string) listerscorev1.ServiceNamespaceLister {
	return serviceNamespaceLister{l.indexer, namespace}
}

type serviceNamespaceLister struct {
	indexer   cache.Indexer
	namespace string
}

func (l serviceNamespaceLister) List(sel labels.Selector) ([]*corev1.Service, error) {
	all, _ := serviceLister{l.indexer}.List(sel)
	out := all[:0]
	for _, svc := range all {
		if svc.Namespace == l.namespace {
			out = append(out, svc)
		}
	}
	return out, nil
}

func (l serviceNamespaceLister) Get(name string) (*corev1.Service, error) {
	o, ok, err := l.indexer.GetByKey(l.namespace + "/" + name)
	if err != nil {
		return nil, err
	}
	svc := asService(o)
	if !ok || svc == nil {
		return nil, errors.NewNotFound(corev1.Resource("service"), name)
	}
	return svc, nil
}
