package node

import (
	"log/slog"
	"net/netip"

	"github.com/edgelb/edgelb/lb/filter"
	"github.com/edgelb/edgelb/lb/ipvs"
	"github.com/edgelb/edgelb/lb/snat"
	"github.com/edgelb/edgelb/vip"
	"github.com/edgelb/edgelb/vip/aftercrash"
	"github.com/edgelb/edgelb/vip/bgp"
	"github.com/edgelb/edgelb/vip/datapath"
	"github.com/edgelb/edgelb/vip/repair"
)

// Kernels are the parts of a host a node programs: every one is an
// interface, so that a test assembles a node from the fakes (viptest,
// ipvstest, filtertest, bgptest). RealKernels builds the real ones; this
// file is the only one in the tree that does.
type Kernels struct {
	// VIP is node.interface's addresses and link state; nil when the
	// host has no node.interface (it then owns no VIP).
	VIP vip.Kernel
	// ARP sends the gratuitous ARP and unsolicited Neighbor
	// Advertisements of a takeover.
	ARP vip.Announcer
	// Repair lists node.interface's neighbours and talks to them for the
	// neighbour repair after a takeover; nil: no repair.
	Repair RepairKernel
	// Quiet keeps the kernel from answering address resolution for the
	// VIPs held without being announced (handovers, bgp VIPs).
	Quiet vip.Quieter
	// IPVS and IPVSStats are two handles on the IPVS table: the passes
	// use one, the API's and metrics' reads of the counters the other,
	// so neither queues behind the other. Used only with
	// dataplane.backend ipvs.
	IPVS, IPVSStats ipvs.Interface
	// Prepare readies the kernel for IPVS (modules, sysctls); it runs
	// before the first pass and again when a version needs other
	// schedulers, methods or continuity.
	Prepare func(ipvs.PrepareOptions) error
	// SNAT builds the source NAT of nat connections; fromVIP says which
	// VIPs' connections leave with the VIP as their source.
	SNAT func(fromVIP func(netip.Addr) bool) ipvs.SNAT
	// Filter is the source-range filter's table.
	Filter filter.Kernel
	// BGP builds the BGP speaker (BGP is off while the config has no AS
	// number).
	BGP func(bgp.Config, *slog.Logger) bgp.Speaker
	// DataPath probes node.interface's data path (ARP/NDP) at targets,
	// or at the gateways of its routes when there are none; nil: the
	// data path is not checked.
	DataPath func(targets []netip.Addr) DataPathKernel
	// Close releases what the kernels hold open (netlink sockets); nil:
	// nothing.
	Close func()
}

// RepairKernel finds the neighbours to repair and opens the sockets to
// repair them with.
type RepairKernel interface {
	repair.Sources
	repair.Dialer
}

// DataPathKernel probes the data path and names its targets.
type DataPathKernel interface {
	datapath.Prober
	datapath.Targets
}

// RealKernels are this host's kernels: netlink on iface (none when iface
// is empty) with its files in stateDir, IPVS through netlink, nftables,
// and GoBGP.
func RealKernels(iface, stateDir string) Kernels {
	k := ipvs.NewKernel()
	stats := ipvs.NewKernel()
	ks := Kernels{
		ARP:       &vip.Announcers{},
		Quiet:     vip.NewQuieter(),
		IPVS:      k,
		IPVSStats: stats,
		Prepare:   ipvs.Prepare,
		SNAT: func(fromVIP func(netip.Addr) bool) ipvs.SNAT {
			return snat.New().FromVIP(fromVIP)
		},
		Filter: filter.NewNFTables(),
		BGP: func(c bgp.Config, log *slog.Logger) bgp.Speaker {
			return bgp.NewGoBGP(c.Global, c.Peers, log)
		},
		Close: func() { k.Close(); stats.Close() },
	}
	if iface != "" {
		ks.VIP = VIPKernel(iface, stateDir)
		ks.Repair = repair.Kernel{}
		ks.DataPath = func(targets []netip.Addr) DataPathKernel {
			return datapath.Kernel{Interface: iface, Configured: targets}
		}
	}
	return ks
}

// VIPKernel is the VIP side of the kernel, with its files in the state
// directory: the VIPs kept across a graceful restart (kept-vips) and,
// where the kernel drops edgelb's address mark, those it added
// (added-vips).
func VIPKernel(iface, stateDir string) *vip.Netlink { return aftercrash.Kernel(iface, stateDir) }

// CleanupKernels are the handles `edgelb cleanup` removes edgelb's state
// with: the source NAT's and the quiet VIPs' tables, and an IPVS handle
// (closed by the caller).
func CleanupKernels() (ipvs.SNAT, vip.Quieter, *ipvs.Kernel, filter.Kernel) {
	return snat.New(), vip.NewQuieter(), ipvs.NewKernel(), filter.NewNFTables()
}

// DefaultStateDir is the service's state directory (systemd's
// $STATE_DIRECTORY, the unit's StateDirectory=edgelb), else /var/lib/edgelb
// when it is writable, else none (the address mark alone: Linux 6.2+).
func DefaultStateDir() string { return aftercrash.DefaultStateDir() }
