package ipvs

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"

	"github.com/moby/ipvs"
)

// Flags of an IPVS service (include/uapi/linux/ip_vs.h).
const (
	svcFlagPersistent = 0x0001
	// The scheduler flags (IP_VS_SVC_F_SCHED1..3) mean what the scheduler
	// says: for mh, SCHED1 is fallback and SCHED2 hashes the source port.
	svcFlagSchedMask = 0x0008 | 0x0010 | 0x0020
)

// Kernel is the Interface backed by the kernel's IPVS over generic netlink.
// It serialises all requests on one netlink socket.
type Kernel struct {
	mu sync.Mutex
	h  *ipvs.Handle // opened on first use
}

var _ Interface = (*Kernel)(nil)

// NewKernel returns the IPVS of the current network namespace. It opens
// nothing: the netlink socket is opened on first use, which must come after
// Prepare has loaded the module (moby/ipvs resolves the IPVS netlink family
// once per process).
func NewKernel() *Kernel { return &Kernel{} }

// Close releases the netlink socket. The table is left as it is.
func (k *Kernel) Close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.h != nil {
		k.h.Close()
		k.h = nil
	}
}

// handle returns the open handle; k.mu must be held.
func (k *Kernel) handle() (*ipvs.Handle, error) {
	if k.h == nil {
		h, err := ipvs.New("")
		if err != nil {
			return nil, fmt.Errorf("opening IPVS netlink socket: %w", err)
		}
		k.h = h
	}
	return k.h, nil
}

func protoNum(p string) uint16 {
	switch strings.ToUpper(p) {
	case "UDP":
		return syscall.IPPROTO_UDP
	case "SCTP":
		return syscall.IPPROTO_SCTP
	}
	return syscall.IPPROTO_TCP
}

func protoName(n uint16) string {
	switch n {
	case syscall.IPPROTO_UDP:
		return "UDP"
	case syscall.IPPROTO_SCTP:
		return "SCTP"
	case syscall.IPPROTO_TCP:
		return "TCP"
	}
	return fmt.Sprintf("proto-%d", n)
}

func family(a netip.Addr) uint16 {
	if a.Is4() {
		return syscall.AF_INET
	}
	return syscall.AF_INET6
}

func toAddr(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

func toService(v *VirtualServer) *ipvs.Service {
	s := &ipvs.Service{
		Address:       net.IP(v.Address.AsSlice()),
		Protocol:      protoNum(v.Protocol),
		Port:          v.Port,
		SchedName:     v.Scheduler,
		AddressFamily: family(v.Address),
		Netmask:       0xffffffff,
	}
	if v.Address.Is6() {
		s.Netmask = 128
	}
	if v.Timeout > 0 {
		s.Flags |= svcFlagPersistent
		s.Timeout = v.Timeout
	}
	s.Flags |= uint32(v.SchedFlags) & svcFlagSchedMask
	return s
}

func fromService(s *ipvs.Service) *VirtualServer {
	v := &VirtualServer{
		Address:   toAddr(s.Address),
		Protocol:  protoName(s.Protocol),
		Port:      s.Port,
		Scheduler: s.SchedName,
		Stats: Stats{
			Connections: uint64(s.Stats.Connections),
			PacketsIn:   uint64(s.Stats.PacketsIn),
			PacketsOut:  uint64(s.Stats.PacketsOut),
			BytesIn:     s.Stats.BytesIn,
			BytesOut:    s.Stats.BytesOut,
		},
	}
	if s.Flags&svcFlagPersistent != 0 {
		v.Timeout = s.Timeout
	}
	v.SchedFlags = SchedFlags(s.Flags & svcFlagSchedMask)
	return v
}

func toDest(r *RealServer) *ipvs.Destination {
	d := &ipvs.Destination{
		Address:        net.IP(r.Address.AsSlice()),
		Port:           r.Port,
		Weight:         r.Weight,
		UpperThreshold: r.UpperThreshold,
		AddressFamily:  family(r.Address),
	}
	switch r.Method {
	case DirectRoute:
		d.ConnectionFlags = ipvs.ConnectionFlagDirectRoute
	case Tunnel:
		d.ConnectionFlags = ipvs.ConnectionFlagTunnel
	default:
		d.ConnectionFlags = ipvs.ConnectionFlagMasq
	}
	return d
}

func fromDest(d *ipvs.Destination) *RealServer {
	r := &RealServer{
		Address:        toAddr(d.Address),
		Port:           d.Port,
		Weight:         d.Weight,
		UpperThreshold: d.UpperThreshold,
		ActiveConns:    d.ActiveConnections,
		InactiveConns:  d.InactiveConnections,
		Stats: Stats{
			Connections: uint64(d.Stats.Connections),
			PacketsIn:   uint64(d.Stats.PacketsIn),
			PacketsOut:  uint64(d.Stats.PacketsOut),
			BytesIn:     d.Stats.BytesIn,
			BytesOut:    d.Stats.BytesOut,
		},
	}
	switch d.ConnectionFlags & ipvs.ConnectionFlagFwdMask {
	case ipvs.ConnectionFlagDirectRoute:
		r.Method = DirectRoute
	case ipvs.ConnectionFlagTunnel:
		r.Method = Tunnel
	default:
		r.Method = Masquerade
	}
	return r
}

// GetVirtualServers implements Interface. Firewall-mark services are
// skipped: edgelb does not use them.
func (k *Kernel) GetVirtualServers() ([]*VirtualServer, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	h, err := k.handle()
	if err != nil {
		return nil, err
	}
	svcs, err := h.GetServices()
	if err != nil {
		return nil, fmt.Errorf("listing IPVS services: %w", err)
	}
	out := make([]*VirtualServer, 0, len(svcs))
	for _, s := range svcs {
		if s.FWMark != 0 {
			continue
		}
		out = append(out, fromService(s))
	}
	return out, nil
}

// AddVirtualServer implements Interface.
func (k *Kernel) AddVirtualServer(v *VirtualServer) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	h, err := k.handle()
	if err != nil {
		return err
	}
	if err := h.NewService(toService(v)); err != nil {
		return fmt.Errorf("adding virtual server %s: %w", v, err)
	}
	return nil
}

// UpdateVirtualServer implements Interface.
func (k *Kernel) UpdateVirtualServer(v *VirtualServer) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	h, err := k.handle()
	if err != nil {
		return err
	}
	if err := h.UpdateService(toService(v)); err != nil {
		return fmt.Errorf("updating virtual server %s: %w", v, err)
	}
	return nil
}

// DeleteVirtualServer implements Interface.
func (k *Kernel) DeleteVirtualServer(v *VirtualServer) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	h, err := k.handle()
	if err != nil {
		return err
	}
	if err := h.DelService(toService(v)); err != nil {
		return fmt.Errorf("deleting virtual server %s: %w", v, err)
	}
	return nil
}

// GetRealServers implements Interface.
func (k *Kernel) GetRealServers(v *VirtualServer) ([]*RealServer, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	h, err := k.handle()
	if err != nil {
		return nil, err
	}
	ds, err := h.GetDestinations(toService(v))
	if err != nil {
		if errors.Is(err, syscall.ESRCH) || errors.Is(err, syscall.ENOENT) {
			return nil, fmt.Errorf("listing real servers of %s: %w", v, ErrNoService)
		}
		return nil, fmt.Errorf("listing real servers of %s: %w", v, err)
	}
	if len(ds) == 0 {
		// The kernel answers a dump of the real servers of a service that
		// does not exist with an empty list, not an error: ask for the
		// service itself to tell the two apart.
		if _, err := h.GetService(toService(v)); err != nil {
			if errors.Is(err, syscall.ESRCH) || errors.Is(err, syscall.ENOENT) {
				return nil, fmt.Errorf("listing real servers of %s: %w", v, ErrNoService)
			}
			return nil, fmt.Errorf("looking up %s: %w", v, err)
		}
	}
	out := make([]*RealServer, 0, len(ds))
	for _, d := range ds {
		out = append(out, fromDest(d))
	}
	return out, nil
}

// AddRealServer implements Interface.
func (k *Kernel) AddRealServer(v *VirtualServer, r *RealServer) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	h, err := k.handle()
	if err != nil {
		return err
	}
	if err := h.NewDestination(toService(v), toDest(r)); err != nil {
		return fmt.Errorf("adding real server %s to %s: %w", r, v, err)
	}
	return nil
}

// UpdateRealServer implements Interface.
func (k *Kernel) UpdateRealServer(v *VirtualServer, r *RealServer) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	h, err := k.handle()
	if err != nil {
		return err
	}
	if err := h.UpdateDestination(toService(v), toDest(r)); err != nil {
		return fmt.Errorf("updating real server %s of %s: %w", r, v, err)
	}
	return nil
}

// DeleteRealServer implements Interface.
func (k *Kernel) DeleteRealServer(v *VirtualServer, r *RealServer) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	h, err := k.handle()
	if err != nil {
		return err
	}
	if err := h.DelDestination(toService(v), toDest(r)); err != nil {
		return fmt.Errorf("deleting real server %s of %s: %w", r, v, err)
	}
	return nil
}
