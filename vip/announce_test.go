package vip

import (
	"net"
	"net/netip"
	"testing"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"

	"github.com/edgelb/edgelb/test/prereq"
)

// recordConn is a net.PacketConn that keeps what is written to it.
type recordConn struct {
	net.PacketConn
	frames [][]byte
	to     []net.Addr
}

func (r *recordConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	r.frames = append(r.frames, append([]byte(nil), b...))
	r.to = append(r.to, addr)
	return len(b), nil
}

func (r *recordConn) Close() error { return nil }

func TestGratuitousARP(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		prereq.Missing(t, "no loopback interface: %v", err)
	}
	conn := &recordConn{}
	a := &Announcers{DialARP: func(*net.Interface) (net.PacketConn, error) { return conn, nil }}
	hw := net.HardwareAddr{2, 0, 0, 0, 0, 7}
	// The interface is looked up by index; give it a hardware address.
	a.ifi = &net.Interface{Index: lo.Index, Name: lo.Name, HardwareAddr: hw}
	vip := netip.MustParseAddr("192.0.2.10")
	if err := a.Announce(Link{Name: lo.Name, Index: lo.Index}, vip); err != nil {
		t.Fatal(err)
	}
	if len(conn.frames) != 1 {
		t.Fatalf("%d frames written, want 1", len(conn.frames))
	}
	if to := conn.to[0].(*packet.Addr).HardwareAddr; to.String() != "ff:ff:ff:ff:ff:ff" {
		t.Errorf("sent to %s, want broadcast", to)
	}
	var f ethernet.Frame
	if err := f.UnmarshalBinary(conn.frames[0]); err != nil {
		t.Fatal(err)
	}
	if f.EtherType != ethernet.EtherTypeARP || f.Source.String() != hw.String() || f.Destination.String() != "ff:ff:ff:ff:ff:ff" {
		t.Fatalf("frame %v -> %v type %v", f.Source, f.Destination, f.EtherType)
	}
	var p arp.Packet
	if err := p.UnmarshalBinary(f.Payload); err != nil {
		t.Fatal(err)
	}
	if p.Operation != arp.OperationRequest || p.SenderIP != vip || p.TargetIP != vip ||
		p.SenderHardwareAddr.String() != hw.String() || p.TargetHardwareAddr.String() != "00:00:00:00:00:00" {
		t.Fatalf("not a gratuitous ARP announcement: %+v", p)
	}
}
