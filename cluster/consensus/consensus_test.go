package consensus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/edgelb/edgelb/cluster"
)

func TestProposeCommitsOnEveryMember(t *testing.T) {
	for _, size := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d members", size), func(t *testing.T) {
			c := newCluster(t, size, nil)
			lead := c.leader()
			changed := c.node(c.follower(lead)).Subscribe()
			<-changed // it starts signalled
			d := c.propose(lead, "one", 0)
			if d.Version != 1 || d.Member != lead || string(d.Body) != "one" {
				t.Fatalf("Propose on the leader = %+v, want version 1 made on %s", d, lead)
			}
			// A write on a follower is forwarded to the leader by raft.
			f := c.follower(lead)
			d = c.propose(f, "two", 1)
			if d.Version != 2 || d.Member != f {
				t.Fatalf("Propose on a follower = %+v, want version 2 made on %s", d, f)
			}
			got := c.waitVersion(2)
			select {
			case <-changed:
			default:
				t.Error("a follower's Subscribe channel was not signalled by the new versions")
			}
			for _, m := range c.running() {
				if ct := c.node(m).Contact(); !ct.Quorum || ct.Leader != lead || len(ct.Unreachable) > 0 {
					t.Errorf("%s: Contact() = %+v, want in contact through leader %s", m, ct, lead)
				}
			}
			if got.Parent != fmt.Sprintf("1:%s", c.mustGet(lead, 1).Hash) {
				t.Errorf("version 2's parent = %q, want version 1", got.Parent)
			}
			for _, m := range c.running() {
				if h := c.node(m).History(); len(h) != 2 || string(h[0].Body) != "one" || string(h[1].Body) != "two" {
					t.Errorf("%s: history = %v, want versions one, two", m, h)
				}
			}
		})
	}
}

func (c *tcluster) mustGet(m string, v uint64) cluster.Doc {
	c.t.Helper()
	d, err := c.node(m).Get(v)
	if err != nil {
		c.t.Fatalf("%s: Get(%d): %v", m, v, err)
	}
	return d
}

// Two writes made from the same version through two members at once:
// the log orders them, and the second finds the version changed.
func TestConcurrentProposalsFromOneVersionOneWins(t *testing.T) {
	for _, size := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d members", size), func(t *testing.T) {
			c := newCluster(t, size, nil)
			lead := c.leader()
			members := c.running()
			for round := range 10 {
				from := uint64(round)
				a, b := members[round%size], members[(round+1)%size]
				var wg sync.WaitGroup
				errs := make([]error, 2)
				for i, m := range []string{a, b} {
					wg.Go(func() {
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						defer cancel()
						_, errs[i] = c.node(m).Propose(ctx, fmt.Appendf(nil, "round %d by %s", round, m), "test", from)
					})
				}
				wg.Wait()
				ok, stale := 0, 0
				for _, err := range errs {
					switch {
					case err == nil:
						ok++
					case errors.Is(err, ErrStale):
						stale++
					default:
						t.Fatalf("round %d: %v", round, err)
					}
				}
				if ok != 1 || stale != 1 {
					t.Fatalf("round %d (leader %s, writes on %s and %s): %d succeeded and %d were stale, want one each", round, lead, a, b, ok, stale)
				}
				c.waitVersion(from + 1)
			}
		})
	}
}

// A write through a member cut off from the majority is refused, naming
// the members it cannot reach, and never appears after healing; the
// majority's write of the same moment survives.
func TestMinorityWriteRefusedAndNeverApplied(t *testing.T) {
	for _, who := range []string{"follower", "leader"} {
		t.Run("cut off "+who, func(t *testing.T) {
			c := newCluster(t, 3, nil)
			lead := c.leader()
			c.propose(lead, "base", 0)
			c.waitVersion(1)
			cut := c.follower(lead)
			if who == "leader" {
				cut = lead
			}
			var rest []string
			for _, m := range c.running() {
				if m != cut {
					rest = append(rest, m)
				}
			}
			c.net.Partition([]string{cut}, rest)

			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := c.node(cut).Propose(ctx, []byte("minority"), "test", 1)
			cancel()
			if !isNoQuorum(err) {
				t.Fatalf("Propose on the cut-off %s = %v, want ErrNoQuorum", cut, err)
			}
			var nq *NoQuorumError
			if !errors.As(err, &nq) || !slices.Equal(nq.Unreachable, rest) || !strings.Contains(err.Error(), rest[0]) {
				t.Errorf("the error names %v (%q), want the members cut off: %v", nq.Unreachable, err, rest)
			}
			if ct := c.node(cut).Contact(); ct.Quorum {
				t.Errorf("the cut-off member says it is in contact with a majority: %+v", ct)
			}
			// It still answers local reads, with what it applied; a
			// linearizable read needs the majority.
			if d, ok := c.node(cut).Current(); !ok || d.Version != 1 {
				t.Errorf("Current() on the cut-off member = %+v, %v, want version 1", d, ok)
			}
			ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
			_, _, err = c.node(cut).Read(ctx)
			cancel()
			if !isNoQuorum(err) {
				t.Errorf("Read on the cut-off member = %v, want ErrNoQuorum", err)
			}

			newLead := c.leader(rest...)
			c.propose(newLead, "majority", 1)
			c.net.Heal()
			c.waitVersion(2)
			// Give the healed member time to show anything it would.
			c.propose(c.leader(), "after", 2)
			c.waitVersion(3)
			for _, m := range c.running() {
				for _, h := range c.node(m).History() {
					if string(h.Body) == "minority" {
						t.Errorf("%s: the refused write is version %d", m, h.Version)
					}
				}
				if d := c.mustGet(m, 2); string(d.Body) != "majority" {
					t.Errorf("%s: version 2 = %q, want the majority's write", m, d.Body)
				}
			}
		})
	}
}

// A leader that crashes and restarts from its directory keeps every
// acknowledged version, and catches up with the ones made without it; so
// does a follower.
func TestRestartKeepsAcknowledgedAndCatchesUp(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.leader()
	var acked []cluster.Doc
	for i := range 3 {
		acked = append(acked, c.propose(lead, fmt.Sprintf("v%d", i+1), uint64(i)))
	}
	c.stop(lead)
	rest := c.running()
	newLead := c.leader(rest...)
	acked = append(acked, c.propose(newLead, "v4", 3))
	c.start(lead, false)
	c.waitVersion(4)

	f := c.follower(newLead)
	c.stop(f)
	acked = append(acked, c.propose(newLead, "v5", 4))
	c.stop(newLead) // and the leader too: the whole cluster restarts
	c.stopAll()
	for _, m := range c.peers {
		c.start(m, false)
	}
	c.waitVersion(5)
	for _, m := range c.running() {
		h := c.node(m).History()
		if len(h) != len(acked) {
			t.Fatalf("%s: %d versions after the restarts, want %d", m, len(h), len(acked))
		}
		for i, d := range acked {
			if h[i].ID() != d.ID() {
				t.Errorf("%s: version %d = %s, want the acknowledged %s", m, d.Version, h[i].ID(), d.ID())
			}
		}
	}
}

// With a low snapshot threshold the log is compacted, a member that was
// down catches up from a snapshot, and a restart recovers from one.
func TestSnapshotCompactsAndCatchesUp(t *testing.T) {
	c := newCluster(t, 3, func(o *Options) { o.SnapshotEntries = 4; o.History = 3 })
	lead := c.leader()
	down := c.follower(lead)
	c.stop(down)
	for i := range 20 {
		c.propose(lead, fmt.Sprintf("v%d", i+1), uint64(i))
	}
	first, err := c.node(lead).ms.FirstIndex()
	if err != nil || first < 10 {
		t.Fatalf("the leader's log starts at %d (%v): it was not compacted", first, err)
	}
	c.start(down, false)
	d := c.waitVersion(20)
	if string(d.Body) != "v20" {
		t.Fatalf("version 20 = %q", d.Body)
	}
	n := c.node(down)
	n.mu.Lock()
	snapIndex := n.snapIndex
	n.mu.Unlock()
	if snapIndex == 0 {
		t.Errorf("%s caught up without a snapshot", down)
	}
	for _, m := range c.running() {
		if h := c.node(m).History(); len(h) != 3 || h[0].Version != 18 {
			t.Errorf("%s: history %v, want versions 18-20", m, h)
		}
	}
	c.stopAll()
	for _, m := range c.peers {
		c.start(m, false)
	}
	c.waitVersion(20)
	c.propose(c.leader(), "v21", 20)
	c.waitVersion(21)
}

func TestMembersAddAndRemove(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.leader()
	c.propose(lead, "v1", 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Added through a follower: forwarded like any proposal.
	if err := c.node(c.follower(lead)).AddMember(ctx, "n9"); err != nil {
		t.Fatalf("AddMember: %v", err)
	}
	c.start("n9", true)
	c.waitVersion(1)
	want := []string{"n1", "n2", "n3", "n9"}
	eventually(t, 10*time.Second, "members are not n1-n3 and n9 everywhere", func() bool {
		for _, m := range c.running() {
			if !slices.Equal(c.node(m).Members(), want) {
				return false
			}
		}
		return true
	})
	// Four voters: a majority is three, so with n9 and one other down
	// nothing commits, and with one down it does.
	c.propose(c.leader(), "v2", 1)
	c.waitVersion(2)
	if err := c.node(lead).AddMember(ctx, "n9"); err == nil {
		t.Error("adding n9 twice succeeded")
	}

	if err := c.node(c.leader()).RemoveMember(ctx, "n1"); err != nil {
		t.Fatalf("RemoveMember: %v", err)
	}
	want = []string{"n2", "n3", "n9"}
	eventually(t, 10*time.Second, "members are not n2, n3, n9 everywhere", func() bool {
		for _, m := range []string{"n2", "n3", "n9"} {
			if !slices.Equal(c.node(m).Members(), want) {
				return false
			}
		}
		return true
	})
	c.stop("n1")
	c.propose(c.leader("n2", "n3", "n9"), "v3", 2)
	c.waitVersion(3, "n2", "n3", "n9")
	// n9 restarts from its own directory as a full member.
	c.stop("n9")
	c.start("n9", true)
	c.propose(c.leader("n2", "n3", "n9"), "v4", 3)
	c.waitVersion(4, "n2", "n3", "n9")
}

func TestOptionsErrors(t *testing.T) {
	tr := struct{ Transport }{}
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{Peers: []string{"a"}, Dir: t.TempDir(), Transport: tr}, "Options.Name"},
		{Options{Name: "a", Peers: []string{"a"}, Transport: tr}, "Options.Dir"},
		{Options{Name: "a", Peers: []string{"a"}, Dir: t.TempDir()}, "Options.Transport"},
		{Options{Name: "a", Peers: []string{"b"}, Dir: t.TempDir(), Transport: tr}, `does not list this member "a"`},
		{Options{Name: "a", Peers: []string{"a", "a"}, Dir: t.TempDir(), Transport: tr}, `lists "a" twice`},
	} {
		_, err := New(tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error about %s", tc.opts, err, tc.want)
		}
	}
}

func TestSeedOnlyOnce(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.leader()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	seeded := make([]bool, 3)
	for i, m := range c.running() {
		wg.Go(func() {
			ok, err := c.node(m).Seed(ctx, []byte("file of "+m), "file")
			if err != nil {
				t.Errorf("%s: Seed: %v", m, err)
			}
			seeded[i] = ok
		})
	}
	wg.Wait()
	if n := len(slices.DeleteFunc(seeded, func(b bool) bool { return !b })); n != 1 {
		t.Errorf("%d members seeded, want 1", n)
	}
	c.waitVersion(1)
}

// A proposal forwarded to a member that knows no leader waits inside
// raft; the member must go on ticking, hearing and catching up meanwhile.
func TestForwardedProposalWithoutLeaderDoesNotStallTheMember(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.leader()
	c.propose(lead, "v1", 0)
	c.waitVersion(1)
	x := c.follower(lead)
	var rest []string
	for _, m := range c.running() {
		if m != x {
			rest = append(rest, m)
		}
	}
	c.net.Partition([]string{x}, rest)
	eventually(t, 10*time.Second, x+" still knows a leader", func() bool { return c.node(x).Contact().Leader == "" })
	// What a follower sends when it forwards a proposal to x.
	data, _ := json.Marshal(op{ID: "forwarded", Body: []byte("forwarded"), By: "test", Member: rest[0], IfVersion: 1})
	msg, err := proto.Marshal(&pb.Message{Type: pb.MsgProp.Enum(), From: new(IDOf(rest[0])), To: new(IDOf(x)),
		Entries: []*pb.Entry{{Data: data}}})
	if err != nil {
		t.Fatal(err)
	}
	c.node(x).Deliver(rest[0], msg)

	c.propose(c.leader(rest...), "v2", 1)
	c.net.Heal()
	c.waitVersion(2)
}

// A member added to a cluster whose log was compacted receives a
// snapshot: the versions, the member set and the members' names, so that
// it can forward a write of its own.
func TestMemberJoinsFromSnapshot(t *testing.T) {
	c := newCluster(t, 3, func(o *Options) { o.SnapshotEntries = 4 })
	lead := c.leader()
	for i := range 12 {
		c.propose(lead, fmt.Sprintf("v%d", i+1), uint64(i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.node(lead).AddMember(ctx, "n9"); err != nil {
		t.Fatalf("AddMember: %v", err)
	}
	n9 := c.start("n9", true)
	c.waitVersion(12)
	n9.mu.Lock()
	snapIndex := n9.snapIndex
	n9.mu.Unlock()
	if snapIndex == 0 {
		t.Error("n9 caught up without a snapshot")
	}
	if got, want := n9.Members(), []string{"n1", "n2", "n3", "n9"}; !slices.Equal(got, want) {
		t.Errorf("n9: Members() = %v, want %v", got, want)
	}
	c.propose("n9", "v13", 12)
	c.waitVersion(13)
}

// An upgrade from the last-writer-wins release imports its history: the
// numbers, authors and bodies stay, the first import wins, and the next
// write follows the imported current version.
func TestImportKeepsAnOlderReleasesHistory(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.leader()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	old := []cluster.Doc{
		{Version: 4, UpdatedBy: "file", Member: "a", UpdatedAt: at, Body: []byte("v4"), Hash: "h4"},
		{Version: 5, UpdatedBy: "admin", Member: "b", UpdatedAt: at.Add(time.Hour), Parent: "4:h4", Body: []byte("v5"), Hash: "h5"},
	}
	if _, err := c.node(c.running()[0]).Import(ctx, []cluster.Doc{old[1], old[0]}); err == nil {
		t.Error("Import of a history out of order succeeded")
	}
	var wg sync.WaitGroup
	imported := make([]bool, 3)
	for i, m := range c.running() {
		wg.Go(func() {
			ok, err := c.node(m).Import(ctx, old)
			if err != nil {
				t.Errorf("%s: Import: %v", m, err)
			}
			imported[i] = ok
		})
	}
	wg.Wait()
	if n := len(slices.DeleteFunc(imported, func(b bool) bool { return !b })); n != 1 {
		t.Errorf("%d members imported, want 1", n)
	}
	c.waitVersion(5)
	for _, m := range c.running() {
		h := c.node(m).History()
		if len(h) != 2 || h[0].Version != 4 || h[1].UpdatedBy != "admin" || string(h[1].Body) != "v5" || !h[1].UpdatedAt.Equal(at.Add(time.Hour)) {
			t.Errorf("%s: history after the import = %+v", m, h)
		}
	}
	if ok, err := c.node(c.running()[1]).Seed(ctx, []byte("file"), "file"); ok || err != nil {
		t.Errorf("Seed after the import = %v, %v; want false, nil", ok, err)
	}
	d, err := c.node(c.running()[2]).Propose(ctx, []byte("v6"), "admin", 5)
	if err != nil || d.Version != 6 || d.Parent != "5:h5" {
		t.Errorf("Propose from the imported version = %+v, %v; want version 6 after 5:h5", d, err)
	}
}

// A new host is started with a file that lists the cluster it joins, so
// Options.Peers differ from the running cluster's: told by Existing that
// a cluster runs, it makes no bootstrap entries of its own (which would
// contradict the cluster's log at the same indexes) and waits for the
// leader once AddMember has made it a member.
func TestFreshMemberJoinsARunningCluster(t *testing.T) {
	asked := make(chan struct{}, 1)
	c := newCluster(t, 3, func(o *Options) {
		if o.Name != "n9" {
			return
		}
		o.Peers = []string{"n1", "n2", "n3", "n9"}
		o.Existing = func(ctx context.Context) (bool, error) {
			asked <- struct{}{}
			return true, nil
		}
	})
	lead := c.leader()
	c.propose(lead, "v1", 0)
	c.waitVersion(1)
	n9 := c.start("n9", false)
	<-asked
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.node(lead).AddMember(ctx, "n9"); err != nil {
		t.Fatalf("AddMember: %v", err)
	}
	c.waitVersion(1)
	if got, want := n9.Members(), []string{"n1", "n2", "n3", "n9"}; !slices.Equal(got, want) {
		t.Errorf("n9: Members() = %v, want %v", got, want)
	}
	c.propose("n9", "v2", 1)
	c.waitVersion(2)
}

// A member removed while it was cut off never receives the entry that
// removes it: the others stop sending to it. When it comes back and talks
// to them (its pre-votes), they tell it, and it no longer lists itself
// among the members, so that the VIP quorum built on Members does not
// count it a voter of the old set.
func TestRemovedMemberCutOffLearnsItsRemoval(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.leader()
	c.propose(lead, "v1", 0)
	c.waitVersion(1)
	x := c.follower(lead)
	var rest []string
	for _, m := range c.running() {
		if m != x {
			rest = append(rest, m)
		}
	}
	c.net.Partition([]string{x}, rest)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.node(c.leader(rest...)).RemoveMember(ctx, x); err != nil {
		t.Fatalf("RemoveMember(%s): %v", x, err)
	}
	if !slices.Contains(c.node(x).Members(), x) {
		t.Fatalf("%s learnt of its removal while cut off", x)
	}
	c.net.Heal()
	eventually(t, 10*time.Second, x+" still lists itself a member", func() bool {
		return !slices.Contains(c.node(x).Members(), x)
	})
	if c.node(x).Contact().Quorum {
		t.Errorf("the removed %s reports a quorum", x)
	}
	// Added again, it is a member again.
	if err := c.node(c.leader(rest...)).AddMember(ctx, x); err != nil {
		t.Fatalf("AddMember(%s): %v", x, err)
	}
	eventually(t, 10*time.Second, x+" does not list itself again", func() bool {
		return slices.Contains(c.node(x).Members(), x)
	})
}
