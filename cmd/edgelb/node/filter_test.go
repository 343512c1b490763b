package node

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/filter"
	"github.com/edgelb/edgelb/lb/filter/filtertest"
)

// addServices adds static services to the running cluster configuration
// through h, as PUT /api/v1/config does.
func addServices(t *testing.T, h *host, svcs ...map[string]any) {
	t.Helper()
	editSpec(t, h, func(spec map[string]any) {
		for _, svc := range svcs {
			spec["services"] = append(spec["services"].([]any), svc)
		}
	})
}

func rangedService(name, vip string) map[string]any {
	return map[string]any{"name": name, "vip": vip, "ports": []any{map[string]any{"port": 80}},
		"backends": []any{"10.0.1.7:80"}, "sourceRanges": []any{"10.0.0.0/8", "172.16.0.0/12"}}
}

// A Service whose source ranges the kernel refuses on every host costs
// that Service only: its port is closed on every host, each host reports
// it, and every host stays healthy and keeps its VIPs. A host whose table
// cannot be created at all is unhealthy and gives its VIPs up.
func TestFilterFailureStaysWithItsService(t *testing.T) {
	l := newLab(t, 3, nil)
	l.eventually(t, "converged", l.converged)
	refused := netip.MustParseAddr("192.0.2.66")
	for _, h := range l.hosts {
		h.filter.Foreign(func(k *filtertest.Fake) {
			k.Refuse = func(c filter.Changes) error {
				for _, a := range c.AddAllowed {
					if a.Key.VIP == refused {
						return errors.New("no space left on device")
					}
				}
				return nil
			}
		})
	}
	addServices(t, l.hosts[0], rangedService("guarded", "192.0.2.65"), rangedService("refused", refused.String()))
	guarded := lb.Key{VIP: netip.MustParseAddr("192.0.2.65"), Port: 80, Protocol: lb.TCP}
	closed := lb.Key{VIP: refused, Port: 80, Protocol: lb.TCP}
	l.eventually(t, "every host programs guarded, closes refused, reports it, and stays healthy", func() bool {
		for _, h := range l.hosts {
			s, _ := h.filter.Snapshot()
			if !s.Restricted[guarded] || s.Closed[guarded] || !s.Closed[closed] || h.node.members.Problem() != "" {
				return false
			}
			if !strings.Contains(serviceProblem(h, "refused"), "no space left on device") || serviceProblem(h, "guarded") != "" {
				return false
			}
		}
		return l.converged() && len(l.holders(refused)) == 1
	})

	// The owner of the l2 VIP loses nftables altogether (its table
	// flushed and nothing can be created): it is unhealthy, not ready,
	// and another host takes the VIP.
	owner := l.host(l.holders(l2VIP)[0])
	owner.filter.Foreign(func(k *filtertest.Fake) {
		k.Present, k.State = false, filter.State{}
		k.Fail = func(m string) error {
			if m == "Apply" || m == "Ensure" {
				return errors.New("netlink: operation not supported")
			}
			return nil
		}
	})
	l.eventually(t, "the host without nftables is unhealthy and another owns the VIP", func() bool {
		ready, why := owner.node.state.Ready()
		h := l.holders(l2VIP)
		return strings.Contains(owner.node.members.Problem(), "filter") && !ready && strings.Contains(why, "source") &&
			len(h) == 1 && h[0] != owner.name && !owner.advertises(bgpVIP)
	})
	owner.filter.Foreign(func(k *filtertest.Fake) { k.Fail = nil })
	l.eventually(t, "healthy again", func() bool {
		ready, _ := owner.node.state.Ready()
		return ready && owner.node.members.Problem() == "" && l.converged()
	})
}

// serviceProblem is what h's API says of the static service name's port.
func serviceProblem(h *host, name string) string {
	for _, s := range h.node.state.Services() {
		if s.Static && s.Name == name && len(s.Ports) == 1 {
			return s.Ports[0].Problem
		}
	}
	return fmt.Sprintf("no service %s with one port", name)
}

// A host serves no VIP (holds no l2 VIP, advertises no bgp one) and is
// not ready before its filter's first pass:
// until then the ranges of its Services may not be enforced.
func TestFilterFirstPassGatesOwnership(t *testing.T) {
	l := newLab(t, 3, nil)
	l.eventually(t, "converged", l.converged)
	h := l.hosts[2]
	l.stop(h, nil)
	release := make(chan struct{})
	released := false
	defer func() {
		if !released {
			close(release) // so that the node can stop
		}
	}()
	h.filter.Foreign(func(k *filtertest.Fake) {
		k.Fail = func(m string) error {
			if m == "Read" {
				<-release
			}
			return nil
		}
	})
	l.start(h)
	l.eventually(t, "the restarted host's dataplane is programmed", func() bool { return h.programmed(l2VIP) && h.programmed(bgpVIP) })
	// Its IPVS is ready; give ownership time to act on it.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if h.advertises(bgpVIP) || h.holds(l2VIP) || h.node.members.MayServe() {
			t.Fatal("the host serves VIPs before its source-range filter was programmed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ready, why := h.node.state.Ready(); ready || !strings.Contains(why, "source ranges") {
		t.Errorf("Ready() = %v, %q before the filter's first pass", ready, why)
	}
	close(release)
	released = true
	l.eventually(t, "after the first pass the host serves", func() bool {
		ready, _ := h.node.state.Ready()
		return ready && h.advertises(bgpVIP) && l.converged()
	})
}
