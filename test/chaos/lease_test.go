package chaos

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/edgelb/edgelb/test/nslab"
)

// The edgelb process holding the Lease (the one member that allocates
// addresses and writes Service status) is SIGKILLed 20 times (3 in the
// reduced run) while 200 Services (50) are created and deleted. A Watch
// on the Services sees every status update: no address may ever be held
// by two live Services, and no Service's address may change once set.
func TestLeaseHolderKilled(t *testing.T) {
	const scenario = "Lease holder SIGKILL"
	kills, services := count(20, 3), count(200, 50)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k := newKubeLab(t, 3)
	w := k.watchStatuses(ctx, t)

	// Churn: a Service a second, the oldest deleted once ten are alive,
	// until enough were created and the kills are over.
	var created atomic.Int32
	killing := make(chan struct{})
	churned := make(chan error, 1)
	go func() {
		var alive []string
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for i := 0; ; i++ {
			if i >= services {
				select {
				case <-killing:
					churned <- nil
					return
				default:
				}
			}
			name := fmt.Sprintf("svc-%03d", i)
			if err := k.createService(ctx, name); err != nil {
				churned <- err
				return
			}
			created.Add(1)
			alive = append(alive, name)
			if len(alive) > 10 {
				if err := k.env.Admin.CoreV1().Services(namespace).Delete(ctx, alive[0], metav1.DeleteOptions{}); err != nil {
					churned <- err
					return
				}
				alive = alive[1:]
			}
			<-tick.C
		}
	}()

	var moved []time.Duration
	for i := range kills {
		var holder string
		if !nslab.Poll(time.Minute, func() bool { holder = k.leaseHolder(ctx); return holder != "" }) {
			t.Fatalf("kill %d: nobody holds the Lease", i+1)
		}
		h := k.host(holder)
		if h == nil {
			t.Fatalf("kill %d: the Lease holder %q is no host of the lab", i+1, holder)
		}
		time.Sleep(2 * time.Second) // let it allocate a little first
		killed := time.Now()
		h.Kill()
		var next string
		if !nslab.Poll(time.Minute, func() bool { next = k.leaseHolder(ctx); return next != "" && next != holder }) {
			t.Fatalf("kill %d: the Lease did not move from %s", i+1, holder)
		}
		moved = append(moved, time.Since(killed))
		t.Logf("kill %d: %s SIGKILLed holding the Lease, %s took it after %s; %d Services created so far",
			i+1, holder, next, time.Since(killed).Round(time.Millisecond), created.Load())
		h.Start()
	}
	close(killing)
	if err := <-churned; err != nil {
		t.Fatalf("creating and deleting Services: %v", err)
	}
	final, ok := k.addressed(t, time.Minute)
	if !ok {
		t.Errorf("not every Service has an address a minute after the kills: %v", final)
	}
	time.Sleep(2 * time.Second) // the watch catches up
	cancel()
	events, renumbered, doubled, err := w.result()
	if err != nil {
		t.Fatal(err)
	}
	figure(t, scenario, "kills", kills)
	figure(t, scenario, "Services created", created.Load())
	figure(t, scenario, "status events watched", events)
	figure(t, scenario, "renumbered Services", len(renumbered))
	figure(t, scenario, "addresses held by two live Services", len(doubled))
	figure(t, scenario, "Lease moved after a kill", ms(moved))
	if len(renumbered) > 0 {
		t.Errorf("Services renumbered: %v", renumbered)
	}
	if len(doubled) > 0 {
		t.Errorf("addresses held by two live Services: %v", doubled)
	}
	t.Logf("%d Services alive at the end, each with its address", len(final))
}
