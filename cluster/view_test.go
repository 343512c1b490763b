package cluster

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestViewWhileAPeerRewritesItsMetadata is the data-race test of the
// membership view (run it with -race). memberlist rewrites a node's
// fields (Meta, Addr, Port, State) under its own lock each time it hears
// of the node; a Cluster that read them through the pointers
// memberlist.Members returns, outside memberlist's callbacks, could
// decide from torn metadata. Here lb2 changes its metadata again and
// again while lb1 re-decides (update), looks for its missing configured
// peer (missing: three are configured, two run) and sends lb2 messages
// (AskDrain) as fast as it can; every change must reach lb1's view.
func TestViewWhileAPeerRewritesItsMetadata(t *testing.T) {
	vips := vipRange(4)
	s := newSimWith(t, 2, 0, vips, func(o *Options) {
		o.Join = append(o.Join, "127.0.0.250:7946") // never there
		o.RejoinInterval = 5 * time.Millisecond
		o.GossipInterval = 5 * time.Millisecond
	})
	s.waitConverged(vips, s.members)
	lb1, lb2 := s.members[0].c, s.members[1].c

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			lb1.kick()
			if err := lb1.AskDrain(lb2.opts.Name, false); err != nil {
				t.Errorf("asking %s: %v", lb2.opts.Name, err)
				return
			}
		}
	})
	defer func() {
		close(stop)
		wg.Wait()
	}()

	nets := func(i int) []netip.Prefix {
		return []netip.Prefix{netip.MustParsePrefix(fmt.Sprintf("2001:db8:%x::/64", i+1))}
	}
	const changes = 40
	for i := range changes {
		want := nets(i)
		lb2.SetNetworks(want)
		if !poll(t, func() bool {
			for _, m := range lb1.Members() {
				if m.Name == lb2.opts.Name {
					return slices.Equal(m.Networks, want)
				}
			}
			return false
		}) {
			t.Fatalf("change %d: lb1 does not see lb2 on %v: %+v", i, want, lb1.Members())
		}
	}
}
