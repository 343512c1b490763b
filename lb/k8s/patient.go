package k8s

import (
	"context"
	"errors"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// apiRetry is how often the informers try the API server again while it
// cannot be reached.
const apiRetry = time.Second

// patient builds the informers of Services, EndpointSlices and Nodes,
// whose caches keep only what edgelb reads (slim), with list and watch
// calls that keep trying, every apiRetry, while the API server cannot be
// reached. client-go's reflector backs off up to 30 s, doubled by jitter,
// between attempts: after an outage of a few minutes its caches, and so
// new Services, would wait up to a minute after the API server is back.
// The dataplane does not depend on this: it keeps the last desired state
// throughout.
func (c *Controller) patient(client Client) (services, slices, nodes cache.SharedIndexInformer) {
	informer := func(obj runtime.Object, listFn func(metav1.ListOptions) (runtime.Object, error), watchFn func(metav1.ListOptions) (watch.Interface, error)) cache.SharedIndexInformer {
		lw := &cache.ListWatch{
			ListFunc: func(o metav1.ListOptions) (runtime.Object, error) {
				return retry(c.stopped, apiRetry, func() (runtime.Object, error) { return listFn(o) })
			},
			WatchFunc: func(o metav1.ListOptions) (watch.Interface, error) {
				return retry(c.stopped, apiRetry, func() (watch.Interface, error) { return watchFn(o) })
			},
		}
		inf := cache.NewSharedIndexInformer(lw, obj, 0, cache.Indexers{})
		_ = inf.SetTransform(slim) // fails only once the informer runs
		return inf
	}
	ctx := context.Background()
	// Services are read by key and all at once: no namespace index. The
	// indexes by status address and by Service are edgelb's (index.go).
	services = informer(&corev1.Service{},
		func(o metav1.ListOptions) (runtime.Object, error) { return client.CoreV1().Services("").List(ctx, o) },
		func(o metav1.ListOptions) (watch.Interface, error) { return client.CoreV1().Services("").Watch(ctx, o) })
	slices = informer(&discoveryv1.EndpointSlice{},
		func(o metav1.ListOptions) (runtime.Object, error) {
			return client.DiscoveryV1().EndpointSlices("").List(ctx, o)
		},
		func(o metav1.ListOptions) (watch.Interface, error) {
			return client.DiscoveryV1().EndpointSlices("").Watch(ctx, o)
		})
	nodes = informer(&corev1.Node{},
		func(o metav1.ListOptions) (runtime.Object, error) { return client.CoreV1().Nodes().List(ctx, o) },
		func(o metav1.ListOptions) (watch.Interface, error) { return client.CoreV1().Nodes().Watch(ctx, o) })
	return services, slices, nodes
}

// retry calls f until it succeeds, fails with an answer of the API server
// that retrying cannot change (forbidden, gone, invalid: the reflector
// acts on those), or stop is closed; between attempts it waits every.
func retry[T any](stop <-chan struct{}, every time.Duration, f func() (T, error)) (T, error) {
	for {
		v, err := f()
		if err == nil || !unreachable(err) {
			return v, err
		}
		select {
		case <-stop:
			return v, err
		case <-time.After(every):
		}
	}
}

// unreachable reports whether err says the API server could not be
// reached or could not answer now: no answer at all, 429, or a 5xx.
func unreachable(err error) bool {
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		return true
	}
	code := st.Status().Code
	return code == 429 || code >= 500
}
