package k8s

import (
	"net/netip"

	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/ipam"
	corev1 "k8s.io/api/core/v1"
)

// PoolUsage returns the pools' usage: the leader's allocation on the
// Lease holder; on any other host, the addresses in the status of the
// Services of edgelb's class in its informer cache, counted the way the
// leader counts them (once per address, in the first pool that has it).
// The status is what the leader wrote, so every host shows what it
// shows, a watch event later. Nil while the cache has not synced.
func (c *Controller) PoolUsage() []ipam.PoolUsage {
	if t := c.term.Load(); t != nil {
		return t.alloc.Usage()
	}
	for _, synced := range c.synced {
		if !synced() {
			return nil
		}
	}
	var ips []netip.Addr
	c.services.each(func(svc *corev1.Service) {
		if c.handles(svc) {
			ips = append(ips, lb.VIPs(svc)...)
		}
	})
	return ipam.UsageOf(c.config().Pools, ips)
}
