package consensus

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/edgelb/edgelb/cluster/consensus/consensustest"
)

// The model and its types are consensustest's, shared with the fault
// suite's check of the real binary (test/chaos).
type (
	regInput  = consensustest.RegInput
	regOutput = consensustest.RegOutput
)

var registerModel = consensustest.RegisterModel(consensustest.RegState{})

// TestLinearizable runs concurrent writers and readers on every member
// while links are cut and members restarted, then checks the history of
// operations with porcupine, and that every acknowledged write is in
// every member's history, in order, afterwards.
func TestLinearizable(t *testing.T) {
	for _, size := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d members", size), func(t *testing.T) {
			linearizable(t, size, 3*time.Second)
		})
	}
}

func linearizable(t *testing.T, size int, run time.Duration) {
	c := newCluster(t, size, func(o *Options) { o.History = 100000; o.SnapshotEntries = 32 })
	c.leader()
	start := time.Now()
	var (
		mu     sync.Mutex
		ops    []porcupine.Operation
		acked  = map[uint64]string{}
		seen   = map[string]map[uint64]string{} // local reads: member, version, body
		seq    atomic.Int64
		stop   = make(chan struct{})
		wg     sync.WaitGroup
		client int
	)
	record := func(op porcupine.Operation) {
		mu.Lock()
		defer mu.Unlock()
		ops = append(ops, op)
	}
	for _, m := range c.peers {
		for kind := range 2 { // a writer and a reader per member
			id := client
			client++
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(id), 1))
				for {
					select {
					case <-stop:
						return
					default:
					}
					n := c.node(m)
					if n == nil {
						time.Sleep(testTick)
						continue
					}
					ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
					call := time.Since(start).Nanoseconds()
					d, ok, err := n.Read(ctx)
					ret := time.Since(start).Nanoseconds()
					// A local read (Current) may lag but must never show
					// a version that is later replaced.
					if ld, ok := n.Current(); ok {
						mu.Lock()
						if seen[m] == nil {
							seen[m] = map[uint64]string{}
						}
						seen[m][ld.Version] = string(ld.Body)
						mu.Unlock()
					}
					if err == nil {
						var body string
						if ok {
							body = string(d.Body)
						}
						record(porcupine.Operation{ClientId: id, Input: regInput{}, Call: call,
							Output: regOutput{V: d.Version, B: body}, Return: ret})
					}
					if kind == 0 && err == nil {
						// Write from the version just read, or now and
						// then from an older one (a stale If-Match).
						from := d.Version
						if rng.IntN(4) == 0 && from > 0 {
							from--
						}
						body := fmt.Sprintf("w%d", seq.Add(1))
						in := regInput{Write: true, If: from, B: body}
						call := time.Since(start).Nanoseconds()
						wd, err := n.Propose(ctx, []byte(body), "test", from)
						ret := time.Since(start).Nanoseconds()
						out := regOutput{OK: err == nil, Stale: errors.Is(err, ErrStale), V: wd.Version}
						if err != nil && !out.Stale {
							out.Unknown, ret = true, math.MaxInt64
						}
						if out.OK {
							mu.Lock()
							acked[wd.Version] = body
							mu.Unlock()
						}
						record(porcupine.Operation{ClientId: id, Input: in, Call: call, Output: out, Return: ret})
					}
					cancel()
				}
			})
		}
	}

	// Faults: cut a random member off or split the cluster, heal, and
	// crash and restart a random member (the leader as often as not).
	rng := rand.New(rand.NewPCG(uint64(size), 2))
	deadline := time.Now().Add(run)
	for time.Now().Before(deadline) {
		switch rng.IntN(3) {
		case 0:
			perm := rng.Perm(size)
			var a, b []string
			for i, p := range perm {
				if i < size/2 {
					a = append(a, c.peers[p])
				} else {
					b = append(b, c.peers[p])
				}
			}
			c.net.Partition(a, b)
		case 1:
			victim := c.peers[rng.IntN(size)]
			if rng.IntN(2) == 0 {
				for _, m := range c.running() {
					if ct := c.node(m).Contact(); ct.Leader == m {
						victim = m
					}
				}
			}
			c.stop(victim)
			time.Sleep(time.Duration(rng.IntN(20)) * testTick)
			c.start(victim, false)
		case 2:
			c.net.Heal()
		}
		time.Sleep(time.Duration(5+rng.IntN(30)) * testTick)
	}
	c.net.Heal()
	close(stop)
	wg.Wait()

	// Every acknowledged write is on every member, at its version.
	lead := c.leader()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cur, _, err := c.node(lead).Read(ctx)
	if err != nil {
		t.Fatalf("reading after the faults: %v", err)
	}
	final := c.propose(lead, "final", cur.Version) // commits anything pending first
	c.waitVersion(final.Version)
	for _, m := range c.running() {
		for v, body := range acked {
			d, err := c.node(m).Get(v)
			if err != nil || string(d.Body) != body {
				t.Errorf("%s: acknowledged version %d %q is %q (%v)", m, v, body, d.Body, err)
			}
		}
	}
	for m, vs := range seen {
		for v, body := range vs {
			if d, err := c.node(lead).Get(v); err != nil || string(d.Body) != body {
				t.Errorf("%s showed version %d %q, which became %q (%v)", m, v, body, d.Body, err)
			}
		}
	}
	writes := 0
	for _, op := range ops {
		if op.Input.(regInput).Write && op.Output.(regOutput).OK {
			writes++
		}
	}
	t.Logf("%d operations, %d acknowledged writes, final version %d", len(ops), writes, final.Version)
	if writes < 10 {
		t.Errorf("only %d writes were acknowledged: the faults left too little to check", writes)
	}
	res, _ := porcupine.CheckOperationsVerbose(registerModel, ops, time.Minute)
	if res != porcupine.Ok {
		t.Fatalf("the history of %d operations is not linearizable (%v)", len(ops), res)
	}
}
