package nslab

import (
	"fmt"
	"net/netip"
)

// DataVIP4 is the VIP of a lab with a data link (AddDataLink).
var DataVIP4 = netip.MustParseAddr("10.98.0.100")

// AddDataLink gives the lab a second network: a bridge brdata, and on every
// host and the client an eth1 on it (10.98.0.0/24; hosts at .11, .12, ...,
// the client at .2). The hosts gossip on eth0 as before and serve their
// VIPs on eth1 (node.interface), the way production hosts gossip on a
// management network and serve on a data network. Call it after adding
// the hosts and before starting them.
func (l *Lab) AddDataLink() {
	l.data = true
	sw := l.sw()
	l.IP(sw, "link", "add", "brdata", "type", "bridge", "mcast_snooping", "0")
	l.IP(sw, "link", "set", "brdata", "up")
	l.plugData(l.Client, "dc", "02:98:00:00:00:02", netip.MustParseAddr("10.98.0.2"))
	for i, h := range l.Hosts {
		h.DataPort = "d" + h.Name
		h.DataMAC = fmt.Sprintf("02:98:00:00:00:%02x", 0x11+i)
		h.DataIP4 = netip.MustParseAddr(fmt.Sprintf("10.98.0.%d", 11+i))
		l.plugData(h.NS, h.DataPort, h.DataMAC, h.DataIP4)
	}
}

// AddDataPeer adds a namespace Prefix-name on the data bridge with eth0 at
// ip4/24 (the data network's gateway, say) and returns its name.
func (l *Lab) AddDataPeer(name, mac string, ip4 netip.Addr) string {
	ns := l.Prefix + "-" + name
	l.addNS(ns)
	l.IP(l.sw(), "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", ns)
	l.IP(l.sw(), "link", "set", name, "master", "brdata", "up")
	l.IP(ns, "link", "set", "eth0", "address", mac)
	l.IP(ns, "addr", "add", ip4.String()+"/24", "dev", "eth0")
	l.IP(ns, "link", "set", "eth0", "up")
	return ns
}

// plugData connects ns to the data bridge with eth1.
func (l *Lab) plugData(ns, port, mac string, ip4 netip.Addr) {
	l.IP(l.sw(), "link", "add", port, "type", "veth", "peer", "name", "eth1", "netns", ns)
	l.IP(l.sw(), "link", "set", port, "master", "brdata", "up")
	l.IP(ns, "link", "set", "eth1", "address", mac)
	l.IP(ns, "addr", "add", ip4.String()+"/24", "dev", "eth1")
	l.IP(ns, "link", "set", "eth1", "up")
}

// SetDataSwitchPort takes h's data port off the data bridge (on false) or
// puts it back: the port stays up, so h's eth1 keeps its carrier, but no
// frame crosses the switch — a port taken off its VLAN or switch.
func (h *Host) SetDataSwitchPort(on bool) {
	if on {
		h.Lab.IP(h.Lab.sw(), "link", "set", h.DataPort, "master", "brdata")
		return
	}
	h.Lab.IP(h.Lab.sw(), "link", "set", h.DataPort, "nomaster")
}

// DataARPWatch is ARPWatch on the client's data link (eth1).
func (l *Lab) DataARPWatch(vip netip.Addr) *Probes {
	return l.client("arpwatch", "ELBT_TARGET="+vip.String(), "ELBT_INTERVAL=10ms", "ELBT_IFACE=eth1")
}
