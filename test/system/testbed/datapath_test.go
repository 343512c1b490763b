//go:build sysvm

package testbed

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgelb/edgelb/test/labnet"
)

// hostStatus is what the data-path step reads of `edgelb status --output
// json`.
type hostStatus struct {
	Status struct {
		Healthy  bool   `json:"healthy"`
		Problem  string `json:"problem"`
		DataPath *struct {
			OK      bool   `json:"ok"`
			GaveUp  bool   `json:"gaveUp"`
			Targets string `json:"targets"`
			Problem string `json:"problem"`
		} `json:"dataPath"`
	} `json:"status"`
	Members []struct {
		Name            string `json:"name"`
		Alive           bool   `json:"alive"`
		Healthy         bool   `json:"healthy"`
		DataPathFailing bool   `json:"dataPathFailing"`
	} `json:"members"`
}

func (h host) status(t testing.TB) hostStatus {
	t.Helper()
	out := h.run(t, "edgelb", "status", "--output", "json")
	var s hostStatus
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("%s: edgelb status --output json: %v\n%s", h.name, err, out)
	}
	return s
}

// metrics returns the values of the given series (name and labels as
// exposed) from one GET /metrics of the host.
func (h host) metrics(t testing.TB, series ...string) []float64 {
	t.Helper()
	out := h.sh(t, apiGet("/metrics"))
	vals := make([]float64, len(series))
	for i, s := range series {
		found := false
		for _, l := range strings.Split(out, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), s+" "); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatalf("%s: %s: %v", h.name, l, err)
				}
				vals[i], found = f, true
			}
		}
		if !found {
			t.Fatalf("%s: GET /metrics has no %s", h.name, s)
		}
	}
	return vals
}

// journalCount counts the lines of the host's edgelb journal since the
// given time that match the regular expression what.
func (h host) journalCount(t testing.TB, since time.Time, what string) int {
	t.Helper()
	j := h.run(t, "journalctl", "-u", "edgelb", "-o", "cat", "--no-pager", "--since", fmt.Sprintf("@%d", since.Unix()))
	return len(regexp.MustCompile("(?m)"+what).FindAllString(j, -1))
}

// blackhole makes h's switch port dead for the data and alive for the
// control plane: nftables on the VM's bridge drops h's ARP to the gateway
// and everything it sends or receives for the VIP (ARP and IP), while
// its carrier stays up and its gossip and heartbeats (its own address)
// flow. It returns the undo.
func blackhole(t testing.TB, h host) func(testing.TB) {
	t.Helper()
	port := "vb-" + h.name
	sh(t, fmt.Sprintf("ip link show %s >/dev/null\nnft -f - <<'EOF'\n%sEOF", port, labnet.Blackhole("tbbh", port, gateway, vip)))
	return func(t testing.TB) { sh(t, "nft delete table bridge tbbh") }
}

// dataPathStep black-holes the owner's data path while its carrier and
// gossip stay up (docs/failover.md, "Data path"): the hosts, as
// installed, probe the gateway of their default route; the owner gives
// the VIP up, another host serves it, the owner says why, and once the
// path is back the VIP returns after the rise rounds and stays. It
// returns the owner at the end.
func dataPathStep(t *testing.T) host {
	journalsOnFailure(t)
	owner := waitOwner(t, time.Minute)
	mac, name := map[string]string{}, map[string]string{}
	for _, h := range hosts {
		m := strings.TrimSpace(h.run(t, "cat", "/sys/class/net/host0/address"))
		mac[h.name], name[m] = m, h.name
	}
	// As installed, with no node.dataPath in the config: every host
	// probes its default gateway, and has had no reason to fail so far.
	var rounds []string
	for _, h := range hosts {
		st := h.status(t)
		if dp := st.Status.DataPath; dp == nil || dp.Targets != gateway || !dp.OK {
			t.Fatalf("%s: the data path is not checked against the gateway %s: %+v", h.name, gateway, dp)
		}
		m := h.metrics(t, `edgelb_datapath_probe_rounds_total{result="bad"}`, `edgelb_datapath_probe_rounds_total{result="good"}`)
		bad, good := m[0], m[1]
		failing := h.journalCount(t, time.Unix(0, 0), "data path failing")
		rounds = append(rounds, fmt.Sprintf("%s %.0f of %.0f bad, failing %d times", h.name, bad, bad+good, failing))
	}
	figure(t, "datapathquiet", "data-path rounds before the black hole (ARP to %s, every %v, timeout %v, fall %d), since each host's last start: %s", gateway, dpInterval, dpTimeout, dpFall, strings.Join(rounds, "; "))

	w := startHelper(t, "client", "arpwatch", "eth0", vip, "10ms", "100ms")
	p := startProbe(t, "client", webURL)
	time.Sleep(time.Second)
	cut := time.Now()
	undo := blackhole(t, owner)
	undone := false
	t.Cleanup(func() {
		if !undone {
			undo(t)
		}
	})
	var next host
	waitFor(t, 30*time.Second, "another host to hold the VIP alone", func() (bool, string) {
		os := owners(t)
		if len(os) == 1 && os[0].name != owner.name {
			next = os[0]
			return true, ""
		}
		return false, fmt.Sprint(len(os), " holders")
	})
	moved := time.Now()

	// The old owner says why; gossip still carries it, and the peers know
	// its path fails.
	if out := owner.run(t, "edgelb", "status"); !strings.Contains(out, "data path: FAILING (owning no VIPs while another member's data path works)") {
		t.Errorf("%s: edgelb status does not say its data path fails:\n%s", owner.name, out)
	}
	st := owner.status(t)
	if dp := st.Status.DataPath; dp == nil || dp.OK || !dp.GaveUp || !strings.Contains(dp.Problem, gateway) || st.Status.Healthy {
		t.Errorf("%s: GET /api/v1/status: healthy %v, problem %q, dataPath %+v; want unhealthy, not ok, gave up, the gateway named", owner.name, st.Status.Healthy, st.Status.Problem, dp)
	}
	if m := owner.metrics(t, "edgelb_datapath_ok", "edgelb_datapath_gave_up"); m[0] != 0 || m[1] != 1 {
		ok, gaveUp := m[0], m[1]
		t.Errorf("%s: edgelb_datapath_ok %v, edgelb_datapath_gave_up %v; want 0 and 1", owner.name, ok, gaveUp)
	}
	seen := false
	for _, m := range next.status(t).Members {
		if m.Name == owner.name {
			seen = true
			if !m.Alive || !m.DataPathFailing {
				t.Errorf("%s sees %s alive %v, dataPathFailing %v: want alive (gossip up) with its data path failing", next.name, owner.name, m.Alive, m.DataPathFailing)
			}
		}
	}
	if !seen {
		t.Errorf("%s does not list %s among the members: gossip should be up", next.name, owner.name)
	}
	r := stopProbe(t, p)
	// Served again: a new client gets every answer.
	p2 := startProbe(t, "client", webURL)
	time.Sleep(2 * time.Second)
	r2 := stopProbe(t, p2)
	if r2.Failed != 0 || r2.OK == 0 {
		t.Errorf("the client through %s after the move: %+v", next.name, r2)
	}

	restored := time.Now()
	undo(t)
	undone = true
	waitFor(t, time.Minute, "the VIP back on "+owner.name+" alone", func() (bool, string) {
		os := owners(t)
		return len(os) == 1 && os[0].name == owner.name, fmt.Sprint(len(os), " holders")
	})
	back := time.Now()
	// No flapping: it stays.
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
		if os := owners(t); len(os) != 1 || os[0].name != owner.name {
			t.Errorf("the VIP moved again after returning to %s: %d holders", owner.name, len(os))
			break
		}
	}
	settled := time.Now()
	var a labnet.ARPResult
	w.stop(t, &a)
	if len(a.Errors) > 0 || a.Requests == 0 {
		t.Fatalf("ARP sampling: %d requests, errors %v", a.Requests, a.Errors)
	}
	taker, took := a.FirstAnswer(cut, mac[owner.name])
	if taker != mac[next.name] || took.After(moved) {
		t.Errorf("first ARP answer after the cut from %q at %v (moved %v), want %s", name[taker], took.Sub(cut), moved.Sub(cut), next.name)
	}
	away, onReturn, after := a.Answered(-1, cut, restored), a.Answered(-1, restored, back), a.Answered(-1, back.Add(200*time.Millisecond), settled)
	figure(t, "datapath", "owner %s's data path black-holed at its switch port (ARP to the gateway and VIP traffic dropped; carrier, gossip and heartbeats up): %s answered ARP for the VIP %v after the cut (alone on host0 by %v); the client's probe (a new connection every 10 ms, 5 s timeout): %d failed of %d, longest %d ms without an answer (a request whose SYNs all went to the cut-off owner waits out its timeout); two hosts answering while it moved away: %v (%d sampler stalls)",
		owner.name, next.name, took.Sub(cut).Round(10*time.Millisecond), moved.Sub(cut).Round(100*time.Millisecond), r.Failed, r.OK+r.Failed, r.LongestGap, away, a.Stalls)
	figure(t, "datapathback", "black hole removed: the VIP back on %s alone after %v (rise %d rounds of %v, then make before break: two hosts answered ARP for %v), no move and %v of two answers in the %v after",
		owner.name, back.Sub(restored).Round(100*time.Millisecond), dpRise, dpInterval, onReturn, after, settled.Sub(back).Round(100*time.Millisecond))
	if away > 0 || after > 0 {
		t.Errorf("two hosts answered ARP for %s: %v while it moved away, %v after it returned: %+v", vip, away, after, a.Spans)
	}

	// Hysteresis: the owner failed once and recovered once; the others
	// never failed; the metrics agree.
	if n, g := owner.journalCount(t, cut, "data path failing$"), owner.journalCount(t, cut, "data path good again"); n != 1 || g != 1 {
		t.Errorf("%s's journal since the cut: 'data path failing' %d times, 'data path good again' %d times; want once each", owner.name, n, g)
	}
	for _, h := range others(owner) {
		if n := h.journalCount(t, cut, "data path failing"); n != 0 {
			t.Errorf("%s: data path failing %d times since the cut; only %s's path was cut", h.name, n, owner.name)
		}
	}
	if m := owner.metrics(t, "edgelb_datapath_ok", "edgelb_datapath_gave_up"); m[0] != 1 || m[1] != 0 {
		ok, gaveUp := m[0], m[1]
		t.Errorf("%s after the path came back: edgelb_datapath_ok %v, edgelb_datapath_gave_up %v; want 1 and 0", owner.name, ok, gaveUp)
	}
	if o := waitOwner(t, time.Minute); o.name != owner.name {
		t.Errorf("the VIP settled on %s, want %s", o.name, owner.name)
	}
	return owner
}
