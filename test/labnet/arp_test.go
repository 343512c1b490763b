package labnet

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/edgelb/edgelb/test/prereq"
)

// ARPWatch tells apart no answer, one host and two hosts answering for an
// address: a client and two hosts on a bridge, in network namespaces.
func TestARPWatch(t *testing.T) {
	prereq.Require(t, os.Geteuid() == 0, "needs root for network namespaces")
	p := fmt.Sprintf("arpw%d", os.Getpid()%10000)
	sh := func(script string) {
		t.Helper()
		if out, err := exec.Command("bash", "-ec", script).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
	}
	t.Cleanup(func() {
		exec.Command("bash", "-c", fmt.Sprintf("for n in c h1 h2 br; do ip netns del %s$n; done", p)).Run()
	})
	sh(fmt.Sprintf(`p=%s
ip netns add ${p}br
ip -n ${p}br link add br0 type bridge
ip -n ${p}br link set br0 up
i=1
for n in c h1 h2; do
	ip netns add $p$n
	ip -n ${p}br link add v$n type veth peer name eth0 netns $p$n
	ip -n ${p}br link set v$n master br0 up
	ip -n $p$n link set eth0 up
	ip -n $p$n addr add 10.77.0.$i/24 dev eth0
	i=$((i+1))
done`, p))
	vip := netip.MustParseAddr("10.77.0.100")
	done := make(chan ARPResult)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	go func() {
		runtime.LockOSThread() // left locked: the thread dies with the goroutine
		ns, err := netns.GetFromName(p + "c")
		if err == nil {
			err = netns.Set(ns)
		}
		if err != nil {
			t.Error(err)
			close(ready)
			done <- ARPResult{}
			return
		}
		done <- ARPWatch(ctx, "eth0", vip, 10*time.Millisecond, 100*time.Millisecond, func() { close(ready) })
	}()
	<-ready
	marks := []time.Time{time.Now()}
	step := func(script string) {
		time.Sleep(500 * time.Millisecond)
		sh(script)
		marks = append(marks, time.Now())
	}
	step(fmt.Sprintf("ip -n %sh1 addr add %s/32 dev eth0", p, vip))
	step(fmt.Sprintf("ip -n %sh2 addr add %s/32 dev eth0", p, vip))
	step(fmt.Sprintf("ip -n %sh1 addr del %s/32 dev eth0; ip -n %sh2 addr del %s/32 dev eth0", p, vip, p, vip))
	time.Sleep(500 * time.Millisecond)
	cancel()
	r := <-done
	t.Logf("%d requests, spans %+v, errors %v", r.Requests, r.Spans, r.Errors)
	// Each phase lasted about 500 ms; allow for the gap at the edges.
	for i, want := range []int{0, 1, -1} {
		from, to := marks[i].Add(120*time.Millisecond), marks[i+1].Add(-20*time.Millisecond)
		if got := r.Answered(want, from, to); got < to.Sub(from)-60*time.Millisecond {
			t.Errorf("phase %d: %d answering for %v of %v", i, want, got, to.Sub(from))
		}
	}
	if d := r.Answered(-1, marks[0], marks[2].Add(-20*time.Millisecond)); d > 20*time.Millisecond {
		t.Errorf("two answers for %v while at most one host held the address", d)
	}
}
