package repair

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/vishvananda/netlink"

	"github.com/edgelb/edgelb/vip"
	"github.com/edgelb/edgelb/vip/datapath"
)

// Kernel is the real Sources and Dialer: routes and neighbours through
// netlink, IPVS connections from /proc/net/ip_vs_conn, ARP on a packet
// socket and NDP on an ICMPv6 socket bound to the VIP. It is the one file
// of the package that touches the kernel.
type Kernel struct {
	// ConnFile overrides /proc/net/ip_vs_conn (tests).
	ConnFile string
}

var (
	_ Sources = Kernel{}
	_ Dialer  = Kernel{}
)

// Gateways implements Sources: the gateways of the interface's routes.
func (Kernel) Gateways(l vip.Link) ([]netip.Addr, error) {
	return datapath.Kernel{Interface: l.Name}.Targets()
}

// Neighbours implements Sources: the entries of the interface's neighbour
// table that have a hardware address and are not failed.
func (Kernel) Neighbours(l vip.Link) (map[netip.Addr]net.HardwareAddr, error) {
	ns, err := netlink.NeighList(l.Index, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("listing the neighbours of %s: %w", l.Name, err)
	}
	out := map[netip.Addr]net.HardwareAddr{}
	for _, n := range ns {
		const usable = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE | netlink.NUD_PERMANENT
		if n.State&usable == 0 || len(n.HardwareAddr) != 6 {
			continue
		}
		if a, ok := netip.AddrFromSlice(n.IP); ok {
			out[a.Unmap()] = n.HardwareAddr
		}
	}
	return out, nil
}

// Clients implements Sources: the client addresses of the IPVS
// connections to v, the synced ones included. No IPVS (no file) is no
// connection.
func (k Kernel) Clients(v netip.Addr) ([]netip.Addr, error) {
	path := k.ConnFile
	if path == "" {
		path = "/proc/net/ip_vs_conn"
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseConns(f, v)
}

// parseConns reads /proc/net/ip_vs_conn (Pro FromIP FPrt ToIP TPrt DestIP
// DPrt State Expires ...; IPv4 addresses as 8 hex digits, IPv6 ones
// written out) and returns the FromIP of the connections whose ToIP is v.
func parseConns(r io.Reader, v netip.Addr) ([]netip.Addr, error) {
	var out []netip.Addr
	s := bufio.NewScanner(r)
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) < 6 || f[0] == "Pro" {
			continue
		}
		to, ok := connAddr(f[3])
		if !ok || to != v {
			continue
		}
		if from, ok := connAddr(f[1]); ok {
			out = append(out, from)
		}
	}
	return out, s.Err()
}

func connAddr(s string) (netip.Addr, bool) {
	if len(s) == 8 && !strings.Contains(s, ":") {
		n, err := strconv.ParseUint(s, 16, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(n))
		return netip.AddrFrom4(b), true
	}
	a, err := netip.ParseAddr(s)
	return a.Unmap(), err == nil
}

// Dial implements Dialer.
func (Kernel) Dial(l vip.Link, v netip.Addr) (Conn, error) {
	ifi, err := net.InterfaceByIndex(l.Index)
	if err != nil {
		return nil, err
	}
	c := &conn{ifi: ifi, vip: v, answers: make(chan Answer, 64), done: make(chan struct{})}
	if v.Is4() {
		if c.arp, err = arp.Dial(ifi); err != nil {
			return nil, fmt.Errorf("opening an ARP socket on %s: %w", ifi.Name, err)
		}
		go c.readARP()
		return c, nil
	}
	// Bound to the VIP: a Neighbor Solicitation's source address is the
	// one whose entry its receiver updates, and the answer comes back to
	// it.
	if c.ndp, _, err = ndp.Listen(ifi, ndp.Addr(v.String())); err != nil {
		return nil, fmt.Errorf("opening an NDP socket on %s for %s: %w", ifi.Name, v, err)
	}
	go c.readNDP()
	return c, nil
}

// conn is one repair's sockets.
type conn struct {
	ifi     *net.Interface
	vip     netip.Addr
	arp     *arp.Client
	ndp     *ndp.Conn
	answers chan Answer
	done    chan struct{}
	once    sync.Once
}

var broadcast = ethernet.Broadcast

func (c *conn) Tell(t Target) error {
	if c.arp != nil {
		if t.MAC == nil {
			return nil
		}
		p, err := arp.NewPacket(arp.OperationReply, c.ifi.HardwareAddr, c.vip, t.MAC, t.Addr)
		if err != nil {
			return err
		}
		return c.arp.WriteTo(p, t.MAC)
	}
	na := &ndp.NeighborAdvertisement{
		Solicited:     true,
		Override:      true,
		TargetAddress: c.vip,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: c.ifi.HardwareAddr}},
	}
	return c.ndp.WriteTo(na, nil, zoned(t.Addr, c.ifi))
}

func (c *conn) Ask(t Target) error {
	if c.arp != nil {
		to := t.MAC
		if to == nil {
			to = broadcast
		}
		p, err := arp.NewPacket(arp.OperationRequest, c.ifi.HardwareAddr, c.vip, make(net.HardwareAddr, 6), t.Addr)
		if err != nil {
			return err
		}
		return c.arp.WriteTo(p, to)
	}
	dst := zoned(t.Addr, c.ifi)
	if t.MAC == nil {
		snm, err := ndp.SolicitedNodeMulticast(t.Addr)
		if err != nil {
			return err
		}
		dst = snm.WithZone(c.ifi.Name)
	}
	ns := &ndp.NeighborSolicitation{
		TargetAddress: t.Addr,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: c.ifi.HardwareAddr}},
	}
	return c.ndp.WriteTo(ns, nil, dst)
}

func zoned(a netip.Addr, ifi *net.Interface) netip.Addr {
	if a.IsLinkLocalUnicast() {
		return a.WithZone(ifi.Name)
	}
	return a
}

func (c *conn) Answers() <-chan Answer { return c.answers }

func (c *conn) answer(a Answer) {
	select {
	case c.answers <- a:
	case <-c.done:
	}
}

// maxReadErrors ends a reader that fails this often in a row (a frame
// that does not parse is an error too).
const maxReadErrors = 100

// readARP delivers the ARP replies to the VIP until Close.
func (c *conn) readARP() {
	for errs := 0; errs < maxReadErrors; {
		p, _, err := c.arp.Read()
		if err != nil {
			if c.closed() || errors.Is(err, net.ErrClosed) {
				return
			}
			errs++
			continue
		}
		errs = 0
		if p.Operation == arp.OperationReply && p.TargetIP == c.vip {
			c.answer(Answer{Addr: p.SenderIP, MAC: p.SenderHardwareAddr})
		}
	}
}

// readNDP delivers the Neighbor Advertisements to the VIP until Close.
func (c *conn) readNDP() {
	for errs := 0; errs < maxReadErrors; {
		m, _, _, err := c.ndp.ReadFrom()
		if err != nil {
			if c.closed() || errors.Is(err, net.ErrClosed) {
				return
			}
			errs++
			continue
		}
		errs = 0
		na, ok := m.(*ndp.NeighborAdvertisement)
		if !ok {
			continue
		}
		a := Answer{Addr: na.TargetAddress.WithZone("")}
		for _, o := range na.Options {
			if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target {
				a.MAC = lla.Addr
			}
		}
		c.answer(a)
	}
}

func (c *conn) closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *conn) Close() error {
	c.once.Do(func() { close(c.done) })
	if c.arp != nil {
		return c.arp.Close()
	}
	return c.ndp.Close()
}
