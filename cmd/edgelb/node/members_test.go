package node

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// addHost makes a new lab host named name (its link reserved by
// newLabReserving), whose file lists every lab host and itself, as an
// operator writes the file of a host being added; it does not start it.
func (l *lab) addHost(name string) *host {
	l.t.Helper()
	lk, ok := l.reserved[name]
	if !ok {
		l.t.Fatalf("no link reserved for %s", name)
	}
	h := l.newHost(name, lk)
	l.hosts = append(l.hosts, h)
	var join []string
	for _, o := range l.hosts {
		ip, port, err := o.link.FinalAdvertiseAddr("", 0)
		if err != nil {
			l.t.Fatal(err)
		}
		join = append(join, fmt.Sprintf("%q", net.JoinHostPort(ip.String(), fmt.Sprint(port))))
	}
	_, port, _ := h.link.FinalAdvertiseAddr("", 0)
	h.path = filepath.Join(h.dir, "config.yaml")
	if err := os.WriteFile(h.path, []byte(labConfig(name, port, join, false, false)), 0o600); err != nil {
		l.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.dir, labKey), []byte(base64.StdEncoding.EncodeToString([]byte("lab gossip key, 32 bytes long!!!"))), 0o600); err != nil {
		l.t.Fatal(err)
	}
	return h
}

// addr is h's gossip address, its name in the consensus log.
func (h *host) addr() string {
	ip, port, _ := h.link.FinalAdvertiseAddr("", 0)
	return net.JoinHostPort(ip.String(), fmt.Sprint(port))
}

// apiDo sends a request to h's API, as an operator's client does.
func apiDo(h *host, method, path, body string) (int, string) {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Host = "127.0.0.1"
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.node.server.Handler().ServeHTTP(w, req)
	return w.Code, w.Body.String()
}

// members is h's view of the configured members.
func (h *host) members() []string { return h.node.live.raft.Members() }

// Adding a fourth host through the API of an existing one: it starts with
// an empty log, joins instead of bootstrapping a cluster of its own,
// catches up the committed version and becomes a voter. Removing a host
// then: the quorum is counted over the three that remain (losing one of
// them leaves a majority, which two of the four would not be), and the
// removed host owns no VIP.
func TestAddAndRemoveAHost(t *testing.T) {
	l := newLabReserving(t, 3, nil, false, nil, []string{"lb4"})
	l.eventually(t, "three hosts converge", l.converged)
	lb1 := l.hosts[0]
	v := putServiceOK(t, lb1, "before-lb4", "192.0.2.126")

	lb4 := l.addHost("lb4")
	code, body := apiDo(lb1, "POST", "/api/v1/members", fmt.Sprintf(`{"address": %q}`, lb4.addr()))
	if code != http.StatusCreated {
		t.Fatalf("adding lb4 through lb1: %d %s", code, body)
	}
	if code, body := apiDo(lb1, "POST", "/api/v1/members", fmt.Sprintf(`{"address": %q}`, lb4.addr())); code != http.StatusConflict {
		t.Errorf("adding lb4 twice: %d %s, want 409", code, body)
	}
	l.start(lb4)
	l.eventually(t, "lb4 catches up the committed version and is a voter everywhere", func() bool {
		if lb4.version() != v || !lb4.runs("before-lb4") {
			return false
		}
		for _, h := range l.hosts {
			if len(h.members()) != 4 || !slices.Contains(h.members(), lb4.addr()) {
				return false
			}
		}
		return true
	})
	l.eventually(t, "four hosts converge", l.converged)
	// A write through the new host is committed by the four.
	v = putServiceOK(t, lb4, "through-lb4", "192.0.2.127")
	l.eventually(t, "every host runs the write made through lb4", func() bool {
		for _, h := range l.hosts {
			if h.version() != v {
				return false
			}
		}
		return true
	})

	// Remove the host that holds the l2 VIP, through another one.
	var gone *host
	l.eventually(t, "one holder of the l2 VIP", func() bool { return len(l.holders(l2VIP)) == 1 })
	gone = l.host(l.holders(l2VIP)[0])
	var via *host
	for _, h := range l.hosts {
		if h != gone {
			via = h
			break
		}
	}
	if code, body := apiDo(via, "DELETE", "/api/v1/members/10.9.9.9:7946", ""); code != http.StatusNotFound {
		t.Errorf("removing an unknown member: %d %s, want 404", code, body)
	}
	code, body = apiDo(via, "DELETE", "/api/v1/members/"+gone.addr(), "")
	if code != http.StatusOK {
		t.Fatalf("removing %s through %s: %d %s", gone.name, via.name, code, body)
	}
	var rest []*host
	for _, h := range l.hosts {
		if h != gone {
			rest = append(rest, h)
		}
	}
	l.eventually(t, "the removed host holds no VIP and another holds the l2 VIP", func() bool {
		holders := l.holders(l2VIP)
		return !gone.holds(l2VIP) && !gone.advertises(bgpVIP) && len(holders) == 1 && holders[0] != gone.name
	})
	for _, h := range rest {
		if got := h.members(); len(got) != 3 || slices.Contains(got, gone.addr()) {
			t.Errorf("%s: members %v, want three without %s", h.name, got, gone.addr())
		}
	}
	// The operator stops the removed host; then one more is lost: two of
	// the three configured members are a majority.
	l.stop(gone, nil)
	lost := rest[2]
	lost.link.cut.Store(true)
	l.stop(lost, nil)
	survivors := rest[:2]
	l.eventually(t, "two of three configured members keep the l2 VIP", func() bool {
		n := 0
		for _, h := range survivors {
			if h.holds(l2VIP) && !h.quiet.Is(l2VIP) {
				n++
			}
		}
		return n == 1
	})
	putServiceOK(t, survivors[0], "two-of-three", "192.0.2.128")

	// Removing members until one would be left without a majority is
	// refused unless forced; the last member can never be removed.
	code, body = apiDo(survivors[0], "DELETE", "/api/v1/members/"+survivors[1].addr(), "")
	if code != http.StatusConflict || !strings.Contains(body, "force=true") {
		t.Errorf("removing a live member so that one of two is reachable: %d %s, want 409 suggesting force=true", code, body)
	}
}

// putServiceOK is putService from the current version, which must
// succeed; it returns the new version.
func putServiceOK(t *testing.T, h *host, name, vip string) uint64 {
	t.Helper()
	d, err := putService(h, h.version(), name, vip)
	if err != nil {
		t.Fatalf("a write through %s: %v", h.name, err)
	}
	return d.Version
}

// A host removed while it was cut off does not receive its removal from
// the log; when its link comes back it must not count itself a member of
// the old set and take VIPs beside their owners: the others tell it, and
// it owns nothing.
func TestHostRemovedWhileCutOffOwnsNothingWhenBack(t *testing.T) {
	l := newLab(t, 3, nil)
	l.eventually(t, "three hosts converge", l.converged)
	gone := l.hosts[2]
	gone.link.cut.Store(true)
	code, body := apiDo(l.hosts[0], "DELETE", "/api/v1/members/"+gone.addr(), "")
	if code != http.StatusOK {
		t.Fatalf("removing the cut-off %s: %d %s", gone.name, code, body)
	}
	l.eventually(t, "the two left hold the l2 VIP", func() bool {
		h := l.holders(l2VIP)
		return len(h) == 1 && h[0] != gone.name
	})
	watch := l.watch(l2VIP)
	gone.link.cut.Store(false)
	l.eventually(t, "the removed host knows it is no member", func() bool {
		return !slices.Contains(gone.members(), gone.addr())
	})
	l.eventually(t, "the removed host holds no VIP, another holds the l2 VIP", func() bool {
		h := l.holders(l2VIP)
		return !gone.holds(l2VIP) && !gone.advertises(bgpVIP) && len(h) == 1 && h[0] != gone.name
	})
	if code, body := apiDo(gone, "GET", "/api/v1/members", ""); code != http.StatusOK || !strings.Contains(body, "not a configured member") {
		t.Errorf("the removed host's members do not say it is not configured: %d %s", code, body)
	}
	if _, _, announced := watch(); announced > 1 {
		t.Errorf("%d hosts announced %s at once after the removed host came back", announced, l2VIP)
	}
}

// An explicit cluster.quorum is checked against the member set a change
// through the API leaves: a removal that leaves fewer members than the
// quorum would leave every VIP unowned on the hosts with that setting,
// and is refused (409, forceable) with nothing changed.
func TestRemovalBelowTheQuorumRefused(t *testing.T) {
	l := newLabPrepared(t, 3, nil, false, func(h *host) {
		editFile(t, h, func(file string) string {
			return strings.Replace(file, "  handoverTimeout: 2s\n", "  handoverTimeout: 2s\n  quorum: 3\n", 1)
		})
	})
	l.eventually(t, "three hosts converge", l.converged)
	code, body := apiDo(l.hosts[0], "DELETE", "/api/v1/members/"+l.hosts[2].addr(), "")
	if code != http.StatusConflict || !strings.Contains(body, "fewer than this host's cluster.quorum 3") || !strings.Contains(body, "force") {
		t.Fatalf("removing a member below cluster.quorum 3: %d %s; want 409 saying so", code, body)
	}
	if got := l.hosts[0].members(); len(got) != 3 {
		t.Errorf("members after the refused removal: %v", got)
	}
	if len(l.holders(l2VIP)) != 1 {
		t.Errorf("the l2 VIP is held by %v after the refused removal", l.holders(l2VIP))
	}
}

func TestQuorumProblem(t *testing.T) {
	for _, c := range []struct {
		quorum, members int
		want            string
	}{
		{0, 1, ""}, {0, 5, ""},
		{3, 3, ""}, {3, 4, ""}, {3, 5, ""},
		{3, 2, "fewer than this host's cluster.quorum 3"},
		{2, 4, "not a majority"}, {3, 6, "not a majority"},
		{1, 2, ""}, // a pair with quorum 1: the start-up warning's case
		{2, 3, ""},
	} {
		got := quorumProblem(c.quorum, c.members, "removing x")
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("quorum %d, %d members: %q, want %q", c.quorum, c.members, got, c.want)
		}
	}
}
