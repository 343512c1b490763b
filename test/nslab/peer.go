package nslab

import (
	"encoding/json"
	"net/netip"
	"os/exec"
	"slices"
	"time"
)

// AddPeer adds a namespace named Prefix-name plugged into the bridge with
// eth0 at ip4/24 and ip6/64 — an upstream router, say — and returns its
// name. It goes away with the lab.
func (l *Lab) AddPeer(name, mac string, ip4, ip6 netip.Addr) string {
	ns := l.Prefix + "-" + name
	l.addNS(ns)
	l.plug(ns, name, mac, ip4.String(), ip6.String())
	return ns
}

// Edgelb runs the edgelb binary the lab built in h's namespace (`status
// --api ...`, say) and returns its combined output.
func (h *Host) Edgelb(args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", h.NS, edgelbBin}, args...)...).CombinedOutput()
	return string(out), err
}

// Configured waits, up to timeout, until every running host runs a
// committed version of the cluster configuration (its API lists one):
// the consensus log seeds version 1 once a majority of the hosts is up,
// an election timeout or so after they start. args are added to the
// edgelb command (--token TOKEN when the API wants one).
func (l *Lab) Configured(timeout time.Duration, args ...string) bool {
	for _, h := range l.Hosts {
		if !h.Running() || h.witness {
			continue
		}
		if !Poll(timeout, func() bool {
			out, err := h.Edgelb(append([]string{"config", "history", "--output", "json", "--api", "http://127.0.0.1:9080"}, args...)...)
			var hs []struct{ Current bool }
			return err == nil && json.Unmarshal([]byte(out), &hs) == nil && slices.ContainsFunc(hs, func(v struct{ Current bool }) bool { return v.Current })
		}) {
			return false
		}
	}
	return true
}
