package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
)

// logRecords is a slog.Handler that keeps every record's message and
// attributes, for tests that assert what was logged, and how often.
type logRecords struct {
	mu      sync.Mutex
	records []slog.Record
	// next, if set, also receives every record (CLUSTER_LOG).
	next slog.Handler
}

func (h *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecords) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logRecords) WithGroup(string) slog.Handler            { return h }
func (h *logRecords) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	h.records = append(h.records, r.Clone())
	h.mu.Unlock()
	if h.next != nil {
		return h.next.Handle(ctx, r)
	}
	return nil
}

// count is how many records have message msg and, when kind is not "",
// the attribute kind=kind.
func (h *logRecords) count(msg, kind string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.records {
		if r.Message != msg {
			continue
		}
		match := kind == ""
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "kind" && a.Value.String() == kind {
				match = true
			}
			return true
		})
		if match {
			n++
		}
	}
	return n
}

func newLogRecords() *logRecords {
	h := &logRecords{}
	if l := testLog(); l != nil {
		h.next = l.Handler()
	}
	return h
}

// taken records the messages a member offered its Options.Messages (the
// consensus log's, prefixed 'r').
type taken struct {
	mu   sync.Mutex
	msgs []string
}

func (k *taken) offer(b []byte) bool {
	if len(b) == 0 || b[0] != 'r' {
		return false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.msgs = append(k.msgs, string(b))
	return true
}

func (k *taken) count() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.msgs)
}

// msgSim is two members on the in-memory network, encrypted or insecure,
// each recording the messages offered to its consensus log, and the log
// of the second, which the tests send to.
func msgSim(t *testing.T, insecure bool) (s *sim, got []*taken, log *logRecords) {
	t.Helper()
	log = newLogRecords()
	got = []*taken{{}, {}}
	i := 0
	s = newSimWith(t, 2, 0, vipRange(20), func(o *Options) {
		o.Messages = got[i].offer
		if insecure {
			o.SecretKey, o.Insecure = nil, true
		}
		if i == 1 {
			o.Log = slog.New(log)
		}
		i++
	})
	return s, got, log
}

// inject sends msg from one member to another over gossip as it is, the
// way anyone on the network can when gossip is not authenticated.
func inject(t *testing.T, from, to *simMember, prefix byte, msg any) {
	t.Helper()
	b, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := from.c.view.get(to.c.opts.Name)
	ml := from.c.ml.Load()
	if !ok || ml == nil {
		t.Fatalf("%s does not see %s", from.c.opts.Name, to.c.opts.Name)
	}
	if err := ml.SendReliable(p.node(), append([]byte{prefix}, b...)); err != nil {
		t.Fatal(err)
	}
}

// With cluster.insecure anyone on the network can gossip, so a member
// takes from its peers only what insecure mode is for — membership,
// health, VIP ownership — and never a message of the consensus log (the
// cluster configuration) or a drain request. Encrypted, the same messages
// are taken: that is how the configuration replicates and the API drains
// another member.
func TestInsecureTakesOnlyOwnershipFromPeers(t *testing.T) {
	for _, insecure := range []bool{false, true} {
		t.Run(fmt.Sprintf("insecure=%v", insecure), func(t *testing.T) {
			vips := vipRange(20)
			s, got, log := msgSim(t, insecure)
			lb1, lb2 := s.members[0], s.members[1]
			// Ownership gossip works either way: the VIPs are shared.
			s.waitConverged(vips, s.members)
			for _, m := range s.members {
				if n := len(own(m.c)); n == 0 || n == len(vips) {
					t.Fatalf("%s owns %d of %d VIPs: ownership is not shared", m.c.opts.Name, n, len(vips))
				}
			}
			p, ok := lb1.c.view.get("lb2")
			if !ok {
				t.Fatal("lb1 does not see lb2")
			}
			frame := []byte("r\x03lb1 a raft message")

			// A drain of lb2 asked on lb1, as its API would.
			err := lb1.c.AskDrain("lb2", true)
			if !insecure {
				if err != nil {
					t.Fatal(err)
				}
				// A consensus message sent by lb1, as its log would.
				if err := lb1.c.SendTo(p.address(), frame, true); err != nil {
					t.Fatal(err)
				}
				if !poll(t, func() bool { return got[1].count() == 1 }) {
					t.Fatal("encrypted: lb2's consensus log was not offered lb1's message")
				}
				if !poll(t, lb2.c.Draining) {
					t.Fatal("encrypted: lb2 did not obey lb1's drain request")
				}
				s.waitOwnedBy(vips, s.members[:1])
				return
			}
			if !errors.Is(err, ErrInsecure) {
				t.Fatalf("insecure: AskDrain of another member = %v, want ErrInsecure", err)
			}

			// Insecure: what anyone sends anyway — a consensus message
			// and a drain request, over the gossip transport — is
			// refused, and said so once per kind.
			ml := lb1.c.ml.Load()
			for range 2 {
				if err := ml.SendReliable(p.node(), frame); err != nil {
					t.Fatal(err)
				}
				inject(t, lb1, lb2, drainMsgPrefix, drainMsg{From: "lb1", To: "lb2", Drain: true})
			}
			// Until lb2 has said it refused both, or has taken either.
			poll(t, func() bool {
				refused := log.count(refusedMsg, refusedConfig) > 0 && log.count(refusedMsg, refusedDrain) > 0
				return refused || got[1].count() > 0 || lb2.c.Draining()
			})
			if n := got[1].count(); n != 0 {
				t.Errorf("insecure: lb2's consensus log was offered %d messages from an unauthenticated peer", n)
			}
			if lb2.c.Draining() {
				t.Error("insecure: lb2 obeyed a drain request from a peer")
			}
			if n := log.count(refusedMsg, refusedConfig); n != 1 {
				t.Errorf("the refused consensus messages were logged %d times, want once", n)
			}
			if n := log.count(refusedMsg, refusedDrain); n != 1 {
				t.Errorf("the refused drain requests were logged %d times, want once", n)
			}
			// Ownership still follows the gossip: lb2 draining itself
			// (its own API) hands its VIPs to lb1.
			if err := lb2.c.AskDrain("lb2", true); err != nil {
				t.Fatal(err)
			}
			s.waitOwnedBy(vips, s.members[:1])
		})
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Only a cluster of more than one configured host loses something when
// its configuration does not replicate: the others would run another.
func TestOptionsUnreplicated(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want bool
	}{
		{"encrypted, three hosts", Options{Name: "lb1", SecretKey: testKey, Join: []string{"10.0.0.11", "10.0.0.12", "10.0.0.13"}, BindAddr: netip.MustParseAddr("10.0.0.11"), BindPort: 7946}, false},
		{"insecure, one host", Options{Name: "lb1", Insecure: true}, false},
		{"insecure, joining only itself", Options{Name: "lb1", Insecure: true, Join: []string{"10.0.0.11"}, BindAddr: netip.MustParseAddr("10.0.0.11"), BindPort: 7946}, false},
		{"insecure, three hosts", Options{Name: "lb1", Insecure: true, Join: []string{"10.0.0.11", "10.0.0.12", "10.0.0.13"}, BindAddr: netip.MustParseAddr("10.0.0.11"), BindPort: 7946}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Unreplicated()
			if (err != nil) != tc.want {
				t.Fatalf("Unreplicated() = %v, want an error: %v", err, tc.want)
			}
			if err != nil && !errors.Is(err, ErrInsecure) {
				t.Errorf("Unreplicated() = %v, want ErrInsecure", err)
			}
			if w := tc.o.InsecureWarning(); (w != "") != tc.o.Insecure {
				t.Errorf("InsecureWarning() = %q with insecure %v", w, tc.o.Insecure)
			}
		})
	}
}
