package vip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
)

// Announcers is the real Announcer: gratuitous ARP requests on a raw
// packet socket and unsolicited Neighbor Advertisements on an ICMPv6
// socket, both opened on first use and reopened after an error or when
// the interface changes.
type Announcers struct {
	// DialARP opens the raw socket ARP frames are written to; nil means a
	// packet socket that reads nothing. Tests inject a fake.
	DialARP func(ifi *net.Interface) (net.PacketConn, error)

	mu     sync.Mutex
	ifi    *net.Interface
	arp    net.PacketConn
	ndp    *ndp.Conn
	closed bool
}

var _ Announcer = (*Announcers)(nil)

var broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// Announce implements Announcer.
func (a *Announcers) Announce(l Link, v netip.Addr) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return errors.New("announcer closed")
	}
	if a.ifi == nil || a.ifi.Index != l.Index || a.ifi.Name != l.Name {
		a.closeLocked()
		ifi, err := net.InterfaceByIndex(l.Index)
		if err != nil {
			return fmt.Errorf("announcing %s: %w", v, err)
		}
		a.ifi = ifi
	}
	var err error
	if v.Is4() {
		err = a.garp(v)
	} else {
		err = a.unsolicitedNA(v)
	}
	if err != nil {
		a.closeLocked()
		return fmt.Errorf("announcing %s on %s: %w", v, l.Name, err)
	}
	return nil
}

// garp sends an ARP request for v from v (RFC 5227 announcement): every
// host with v in its neighbour table updates it to our address.
func (a *Announcers) garp(v netip.Addr) error {
	if a.arp == nil {
		dial := a.DialARP
		if dial == nil {
			dial = dialARP
		}
		pc, err := dial(a.ifi)
		if err != nil {
			return err
		}
		a.arp = pc
	}
	frame, err := garpFrame(a.ifi.HardwareAddr, v)
	if err != nil {
		return err
	}
	_, err = a.arp.WriteTo(frame, &packet.Addr{HardwareAddr: broadcast})
	return err
}

// garpFrame builds the Ethernet frame of a gratuitous ARP request: sender
// and target protocol address v, target hardware address zero, to the
// broadcast address. Linux updates an existing neighbour entry from it
// whatever its locktime (arp_is_garp).
func garpFrame(hw net.HardwareAddr, v netip.Addr) ([]byte, error) {
	p, err := arp.NewPacket(arp.OperationRequest, hw, v, make(net.HardwareAddr, len(hw)), v)
	if err != nil {
		return nil, err
	}
	payload, err := p.MarshalBinary()
	if err != nil {
		return nil, err
	}
	f := &ethernet.Frame{Destination: broadcast, Source: hw, EtherType: ethernet.EtherTypeARP, Payload: payload}
	return f.MarshalBinary()
}

// dialARP opens a raw ARP packet socket whose filter drops every incoming
// frame: it is only written to.
func dialARP(ifi *net.Interface) (net.PacketConn, error) {
	drop, err := bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: 0}})
	if err != nil {
		return nil, err
	}
	return packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeARP), &packet.Config{Filter: drop})
}

// unsolicitedNA sends a Neighbor Advertisement for v with the override
// flag to all nodes (RFC 4861 7.2.6).
func (a *Announcers) unsolicitedNA(v netip.Addr) error {
	if a.ndp == nil {
		// From the link-local address as RFC 4861 wants; an interface
		// without one (addr_gen_mode none) uses a global address.
		c, _, err := ndp.Listen(a.ifi, ndp.LinkLocal)
		if err != nil {
			var err2 error
			if c, _, err2 = ndp.Listen(a.ifi, ndp.Global); err2 != nil {
				return err
			}
		}
		a.ndp = c
	}
	na := &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: v,
		Options: []ndp.Option{&ndp.LinkLayerAddress{
			Direction: ndp.Target,
			Addr:      a.ifi.HardwareAddr,
		}},
	}
	return a.ndp.WriteTo(na, nil, netip.IPv6LinkLocalAllNodes())
}

func (a *Announcers) closeLocked() {
	if a.arp != nil {
		a.arp.Close()
		a.arp = nil
	}
	if a.ndp != nil {
		a.ndp.Close()
		a.ndp = nil
	}
}

// Close closes the sockets.
func (a *Announcers) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closeLocked()
	a.closed = true
	return nil
}
