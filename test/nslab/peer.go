package nslab

import (
	"net/netip"
	"os/exec"
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
