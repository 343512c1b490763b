package k8s

import (
	"sync"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/tools/cache"
)

// changes collects what the informers changed since the desired-state loop
// last took them, the way kube-proxy's change trackers do: the keys of the
// Services whose Service or EndpointSlices changed, whether a Node did, and
// whether everything must be rebuilt. It is safe for concurrent use.
type changes struct {
	mu      sync.Mutex
	keys    map[string]bool
	nodes   bool
	rebuild bool
}

func (c *changes) service(k string) {
	c.mu.Lock()
	if c.keys == nil {
		c.keys = map[string]bool{}
	}
	c.keys[k] = true
	c.mu.Unlock()
}

func (c *changes) node() {
	c.mu.Lock()
	c.nodes = true
	c.mu.Unlock()
}

func (c *changes) all() {
	c.mu.Lock()
	c.rebuild = true
	c.mu.Unlock()
}

// take returns what changed and forgets it.
func (c *changes) take() (keys []string, nodes, all bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	keys = make([]string, 0, len(c.keys))
	for k := range c.keys {
		keys = append(keys, k)
	}
	clear(c.keys)
	nodes, all = c.nodes, c.rebuild
	c.nodes, c.rebuild = false, false
	return keys, nodes, all
}

// sliceKey is the key of the Service of an EndpointSlice (or of a deleted
// one's last state), "" if it names none.
func sliceKey(o any) string {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	var ns, name string
	switch es := o.(type) {
	case *cachedSlice:
		ns, name = es.Namespace, es.Service
	case *discoveryv1.EndpointSlice: // not transformed
		ns, name = es.Namespace, es.Labels[discoveryv1.LabelServiceName]
	}
	if name == "" {
		return ""
	}
	return ns + "/" + name
}

func (c *Controller) sliceChanged(o any) {
	if k := sliceKey(o); k != "" {
		c.changes.service(k)
		c.wake()
	}
}

func (c *Controller) serviceChanged(o any) {
	if k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(o); err == nil {
		c.changes.service(k)
		c.wake()
	}
}

func (c *Controller) nodesChanged() {
	c.changes.node()
	c.wake()
}
