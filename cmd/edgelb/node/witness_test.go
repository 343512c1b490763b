package node

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/cluster"
	"github.com/edgelb/edgelb/lb/config"
)

// witnessHost is the lab's third machine, running `edgelb witness`.
type witnessHost struct {
	path, dir string
	link      *link
	w         *Witness
	cancel    context.CancelFunc
	done      chan error
}

// newPairLab is two hosts, lb1 and lb2, and a witness w, the three
// configured members (cluster.join) on the in-memory network, as
// `edgelb run` and `edgelb witness` build and run them.
func newPairLab(t *testing.T) (*lab, *witnessHost) {
	t.Helper()
	return newPairLabWith(t, false)
}

// newPairLabWith is newPairLab; with later, the hosts' files list only
// the two of them (a pair without a witness) and the witness is not
// started: a test adds it to the running pair.
func newPairLabWith(t *testing.T, later bool) (*lab, *witnessHost) {
	t.Helper()
	l := &lab{t: t, clock: &clock{}, net: &memberlist.MockNetwork{}, reserved: map[string]*link{}}
	key := []byte(base64.StdEncoding.EncodeToString([]byte("lab gossip key, 32 bytes long!!!")))
	var join []string
	addr := func(lk *link) int {
		ip, port, err := lk.FinalAdvertiseAddr("", 0)
		if err != nil {
			t.Fatal(err)
		}
		join = append(join, fmt.Sprintf("%q", net.JoinHostPort(ip.String(), fmt.Sprint(port))))
		return port
	}
	for i := range 2 {
		h := l.newHost(fmt.Sprintf("lb%d", i+1), newLink(l.net, fmt.Sprintf("lb%d", i+1)))
		addr(h.link)
		l.hosts = append(l.hosts, h)
	}
	wh := &witnessHost{dir: t.TempDir(), link: newLink(l.net, "w")}
	wport := addr(wh.link)
	write := func(dir, body string) string {
		path := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, labKey), key, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	wh.path = write(wh.dir, fmt.Sprintf(`node: {name: w}
cluster:
  secretKeyFile: %s
  bindAddr: 127.0.0.1
  bindPort: %d
  join: [%s]
  probeInterval: 500ms
  probeTimeout: 250ms
`, labKey, wport, strings.Join(join, ", ")))
	hostJoin := join
	if later {
		hostJoin = join[:2]
	} else {
		l.startWitness(wh)
	}
	for _, h := range l.hosts {
		_, port, _ := h.link.FinalAdvertiseAddr("", 0)
		h.path = write(h.dir, labConfig(h.name, port, hostJoin, false, false))
		l.start(h)
	}
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, h := range l.hosts {
			wg.Go(func() { l.stop(h, nil) })
		}
		wg.Go(func() { l.stopWitness(wh) })
		wg.Wait()
		for _, h := range l.hosts {
			close(h.link.stop)
		}
		close(wh.link.stop)
	})
	return l, wh
}

// startWitness runs a new `edgelb witness` process on wh.
func (l *lab) startWitness(wh *witnessHost) {
	l.t.Helper()
	cfg, err := config.Load(wh.path)
	if err != nil {
		l.t.Fatal(err)
	}
	w, err := NewWitness(cfg, Options{Transport: wh.link, Now: l.clock.Now, StateDir: wh.dir, Log: testLog(l.t, "w")})
	if err != nil {
		l.t.Fatalf("witness: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wh.w, wh.cancel, wh.done = w, cancel, make(chan error, 1)
	go func() { wh.done <- w.Run(ctx) }()
}

func (l *lab) stopWitness(wh *witnessHost) {
	if wh.cancel == nil {
		return
	}
	wh.cancel()
	select {
	case err := <-wh.done:
		if err != nil && !errors.Is(err, context.Canceled) {
			l.t.Errorf("the witness stopped: %v", err)
		}
	case <-time.After(30 * time.Second):
		l.t.Error("the witness did not stop within 30 s")
	}
	wh.cancel = nil
}

// pairServes: both hosts run the same committed version, one of them
// owns and announces the l2 VIP, and the witness is known to both as a
// witness and counted in their quorum of 2 of 3.
func (l *lab) pairServes() bool {
	if !l.converged() {
		return false
	}
	for _, h := range l.hosts {
		if h.node.members.Quorum() != 2 || !slices.ContainsFunc(h.node.members.Members(), func(m cluster.Member) bool { return m.Name == "w" && m.Witness }) {
			return false
		}
	}
	return true
}

// A pair with a witness keeps serving with either host lost, never gives
// a VIP two owners on a partition, keeps serving without the witness,
// and accepts a configuration change with one host down.
func TestPairWithWitness(t *testing.T) {
	l, wh := newPairLab(t)
	l.eventually(t, "the pair and the witness converge", l.pairServes)

	t.Run("the witness counts for the quorum and owns nothing", func(t *testing.T) {
		wm := wh.w.Members()
		if !wm.HasQuorum() || wm.Quorum() != 2 {
			t.Errorf("the witness: quorum %v of %d, want a quorum of 2", wm.HasQuorum(), wm.Quorum())
		}
		if own, handover := wm.Owned(); len(own)+len(handover) != 0 {
			t.Errorf("the witness holds %v and %v", own, handover)
		}
		for _, h := range l.hosts {
			if !slices.ContainsFunc(h.node.state.Members(), func(m api.Member) bool { return m.Name == "w" && m.Witness && !m.Healthy && len(m.VIPs) == 0 }) {
				t.Errorf("%s's GET /api/v1/members does not list w as a witness: %+v", h.name, h.node.state.Members())
			}
			for v, o := range h.node.members.Owners() {
				if o == "w" {
					t.Errorf("%s assigns %s to the witness", h.name, v)
				}
			}
		}
	})

	for _, i := range []int{0, 1} {
		t.Run(fmt.Sprintf("lb%d lost: the other host and the witness serve every VIP", i+1), func(t *testing.T) {
			l.eventually(t, "converged", l.pairServes)
			lost, other := l.hosts[i], l.hosts[1-i]
			// A crash: the link goes first, nothing is handed over.
			lost.link.cut.Store(true)
			l.stop(lost, nil)
			l.eventually(t, "the other host owns the l2 VIP and advertises the bgp one", func() bool {
				return slices.Equal(l.holders(l2VIP), []string{other.name}) && other.advertises(bgpVIP) && other.node.members.HasQuorum()
			})
			lost.link.cut.Store(false)
			l.start(lost)
		})
	}

	t.Run("a configuration change is accepted with one host down", func(t *testing.T) {
		l.eventually(t, "converged", l.pairServes)
		down, up := l.hosts[1], l.hosts[0]
		l.stop(down, nil)
		down.link.cut.Store(true)
		next, err := putService(up, up.version(), "while-down", "192.0.2.126")
		if err != nil {
			down.link.cut.Store(false)
			l.start(down)
			t.Fatalf("a write with lb2 down: %v", err)
		}
		// Acknowledged: committed by lb1 and the witness, 2 of 3.
		l.eventually(t, "the witness has the version", func() bool { return wh.w.Log().Version() == next.Version })
		l.eventually(t, "lb1 runs the accepted write", func() bool { return up.runs("while-down") })
		down.link.cut.Store(false)
		l.start(down)
		l.eventually(t, "lb2 comes back and runs the change made while it was down", func() bool {
			return down.version() == next.Version && down.runs("while-down") && l.pairServes()
		})
	})

	t.Run("the pair partitioned, the witness with one side: exactly one owner, on that side", func(t *testing.T) {
		l.eventually(t, "converged", l.pairServes)
		for _, cut := range l.hosts {
			// Cutting cut's link is the partition {cut} | {other, w}.
			other := l.hosts[0]
			if other == cut {
				other = l.hosts[1]
			}
			cut.link.cut.Store(true)
			l.eventually(t, "the side with the witness owns the VIP, the other side nothing", func() bool {
				return slices.Equal(l.holders(l2VIP), []string{other.name}) && !cut.holds(l2VIP) &&
					!cut.node.members.HasQuorum() && !cut.advertises(bgpVIP) && other.advertises(bgpVIP)
			})
			cut.link.cut.Store(false)
			l.eventually(t, "healed", l.pairServes)
		}
	})

	t.Run("the pair partitioned, the witness with neither side: no owner", func(t *testing.T) {
		l.eventually(t, "converged", l.pairServes)
		done := l.watch(l2VIP)
		for _, lk := range []*link{l.hosts[0].link, l.hosts[1].link, wh.link} {
			lk.cut.Store(true)
		}
		l.eventually(t, "nobody owns the VIP", func() bool {
			return len(l.holders(l2VIP)) == 0 && !l.hosts[0].node.members.HasQuorum() && !l.hosts[1].node.members.HasQuorum() &&
				!l.hosts[0].advertises(bgpVIP) && !l.hosts[1].advertises(bgpVIP)
		})
		// Each host may count the one member it has not yet declared
		// failed until it has declared both: not asserted (docs/failover.md).
		if _, _, announced := done(); announced > 1 {
			t.Logf("%d hosts announced the VIP at once before failure detection settled", announced)
		}
		for _, lk := range []*link{l.hosts[0].link, l.hosts[1].link, wh.link} {
			lk.cut.Store(false)
		}
		l.eventually(t, "healed", l.pairServes)
	})

	t.Run("the witness lost: the pair keeps serving, 2 of 3", func(t *testing.T) {
		l.eventually(t, "converged", l.pairServes)
		done := l.watch(l2VIP)
		l.stopWitness(wh)
		wh.link.cut.Store(true)
		l.eventually(t, "both hosts see the witness gone and keep their quorum", func() bool {
			for _, h := range l.hosts {
				if slices.ContainsFunc(h.node.members.Members(), func(m cluster.Member) bool { return m.Name == "w" }) || !h.node.members.HasQuorum() {
					return false
				}
			}
			return len(l.holders(l2VIP)) == 1
		})
		if fewest, most, announced := done(); fewest != 1 || most != 1 || announced > 1 {
			t.Errorf("while the witness left, %d to %d hosts held the VIP and %d announced it: want one all along", fewest, most, announced)
		}
		if _, err := putService(l.hosts[0], l.hosts[0].version(), "no-witness", "192.0.2.127"); err != nil {
			t.Errorf("a write without the witness: %v", err)
		}

		t.Run("and then a host lost: no tie-breaker left, the survivor owns nothing", func(t *testing.T) {
			lost, survivor := l.hosts[1], l.hosts[0]
			lost.link.cut.Store(true)
			l.eventually(t, "the survivor has no quorum and owns nothing", func() bool {
				return !survivor.node.members.HasQuorum() && !survivor.holds(l2VIP) && !survivor.advertises(bgpVIP)
			})
			lost.link.cut.Store(false)
		})
		wh.link.cut.Store(false)
		l.startWitness(wh)
		l.eventually(t, "the witness is back", l.pairServes)
	})
}

// A running pair (its files list the two hosts only: both are needed)
// gets a witness: `edgelb members add` through one host, then the witness
// starts, joins the running log instead of bootstrapping one, and from
// then on either host with the witness serves — without a change to the
// hosts' files, since the VIP quorum counts the log's members.
func TestAddAWitnessToARunningPair(t *testing.T) {
	l, wh := newPairLabWith(t, true)
	l.eventually(t, "the pair converges", l.converged)
	lb1, lb2 := l.hosts[0], l.hosts[1]
	if q := lb1.node.members.Quorum(); q != 2 {
		t.Fatalf("a pair's quorum is %d, want both hosts", q)
	}
	ip, port, _ := wh.link.FinalAdvertiseAddr("", 0)
	waddr := net.JoinHostPort(ip.String(), fmt.Sprint(port))
	if code, body := apiDo(lb1, "POST", "/api/v1/members", fmt.Sprintf(`{"address": %q}`, waddr)); code != http.StatusCreated {
		t.Fatalf("adding the witness through lb1: %d %s", code, body)
	}
	l.startWitness(wh)
	l.eventually(t, "the witness catches up and both hosts count it", func() bool {
		return wh.w.Log().Version() == lb1.version() && l.pairServes() && slices.Contains(lb2.members(), waddr)
	})
	lb2.link.cut.Store(true)
	l.stop(lb2, nil)
	l.eventually(t, "lb1 and the witness serve every VIP", func() bool {
		return slices.Equal(l.holders(l2VIP), []string{lb1.name}) && lb1.advertises(bgpVIP) && lb1.node.members.HasQuorum()
	})
	if _, err := putService(lb1, lb1.version(), "with-witness", "192.0.2.126"); err != nil {
		t.Errorf("a write with lb2 down: %v", err)
	}
	lb2.link.cut.Store(false)
	l.start(lb2)
	l.eventually(t, "lb2 is back", l.pairServes)
}
