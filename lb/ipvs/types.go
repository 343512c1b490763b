package ipvs

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Interface is the part of the kernel's IPVS table the dataplane uses. It
// deliberately has no Flush. Implementations are safe for concurrent use.
type Interface interface {
	// GetVirtualServers lists every virtual service in the table,
	// including those edgelb does not manage.
	GetVirtualServers() ([]*VirtualServer, error)
	AddVirtualServer(*VirtualServer) error
	UpdateVirtualServer(*VirtualServer) error
	DeleteVirtualServer(*VirtualServer) error
	// GetRealServers lists the real servers of one virtual service; it
	// returns an error wrapping ErrNoService if the service does not exist.
	GetRealServers(*VirtualServer) ([]*RealServer, error)
	AddRealServer(*VirtualServer, *RealServer) error
	UpdateRealServer(*VirtualServer, *RealServer) error
	DeleteRealServer(*VirtualServer, *RealServer) error
}

// ErrNoService is returned (wrapped) for a virtual service the table does
// not hold.
var ErrNoService = errors.New("no such virtual service")

// Method is the forwarding method of a real server.
type Method int

const (
	Masquerade  Method = iota // nat
	DirectRoute               // dr
	Tunnel                    // tunnel (IPIP)
)

func (m Method) String() string {
	switch m {
	case Masquerade:
		return "masq"
	case DirectRoute:
		return "route"
	case Tunnel:
		return "tunnel"
	}
	return fmt.Sprintf("method(%d)", int(m))
}

// Stats are the counters IPVS keeps per virtual and per real server.
type Stats struct {
	Connections uint64
	PacketsIn   uint64
	PacketsOut  uint64
	BytesIn     uint64
	BytesOut    uint64
}

// VirtualServer is one IPVS virtual service.
type VirtualServer struct {
	Address  netip.Addr
	Protocol string // "TCP", "UDP" or "SCTP"
	Port     uint16
	// Scheduler is the IPVS scheduler name (rr, wlc, ...).
	Scheduler string
	// SchedFlags are the scheduler's flags (ipvsadm -b).
	SchedFlags SchedFlags
	// Timeout is the persistence timeout in seconds; 0 means not
	// persistent.
	Timeout uint32
	// Stats is filled in by GetVirtualServers and ignored otherwise.
	Stats Stats
}

// ID is what identifies a virtual server in the table.
type ID struct {
	Address  netip.Addr
	Protocol string
	Port     uint16
}

// ID returns the identity of v.
func (v *VirtualServer) ID() ID { return ID{v.Address, strings.ToUpper(v.Protocol), v.Port} }

// Equal reports whether v and o have the same identity and settings;
// statistics are ignored.
func (v *VirtualServer) Equal(o *VirtualServer) bool {
	return v.ID() == o.ID() && v.Scheduler == o.Scheduler && v.SchedFlags == o.SchedFlags && v.Timeout == o.Timeout
}

// DefaultScheduler is the scheduler of a virtual service that names none:
// mh, which every host computes alike (see MHPort).
const DefaultScheduler = "mh"

// SchedFlags are a virtual service's scheduler flags; what each means
// depends on the scheduler.
type SchedFlags uint32

// The flags of the mh (Maglev hashing) scheduler.
const (
	// MHFallback sends a flow whose backend is unavailable (weight 0,
	// over its threshold) to the next one in the table instead of
	// dropping it: ipvsadm's mh-fallback.
	MHFallback SchedFlags = 0x0008
	// MHPort hashes the source port with the source address, so the
	// connections of one client spread over the backends: mh-port.
	MHPort SchedFlags = 0x0010
)

func (v *VirtualServer) String() string {
	return fmt.Sprintf("%s/%s", netip.AddrPortFrom(v.Address, v.Port), strings.ToLower(v.Protocol))
}

// RealServer is one destination of a virtual service.
type RealServer struct {
	Address netip.Addr
	Port    uint16
	Weight  int
	Method  Method
	// UpperThreshold, when not 0, is the most connections IPVS gives the
	// real server; beyond it the server is overloaded and gets no new ones.
	UpperThreshold uint32
	// ActiveConns, InactiveConns and Stats are filled in by
	// GetRealServers and ignored otherwise.
	ActiveConns   int
	InactiveConns int
	Stats         Stats
}

// AddrPort returns the real server's address and port.
func (r *RealServer) AddrPort() netip.AddrPort { return netip.AddrPortFrom(r.Address, r.Port) }

// Equal reports whether r and o have the same address, weight, method and
// threshold.
func (r *RealServer) Equal(o *RealServer) bool {
	return r.AddrPort() == o.AddrPort() && r.Weight == o.Weight && r.Method == o.Method && r.UpperThreshold == o.UpperThreshold
}

func (r *RealServer) String() string {
	return fmt.Sprintf("%s w=%d %s", r.AddrPort(), r.Weight, r.Method)
}
