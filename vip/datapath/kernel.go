package datapath

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
	"github.com/vishvananda/netlink"
)

// Kernel probes and finds gateways on one interface with packet sockets
// and netlink. It is the one file of the package that touches the kernel.
type Kernel struct {
	Interface string
	// Configured targets; none: the gateways of the interface's routes.
	Configured []netip.Addr
}

var (
	_ Prober  = Kernel{}
	_ Targets = Kernel{}
)

// Targets returns the configured targets, or the gateways of the
// interface's routes in the main table, IPv4 first.
func (k Kernel) Targets() ([]netip.Addr, error) {
	if len(k.Configured) > 0 {
		return k.Configured, nil
	}
	link, err := netlink.LinkByName(k.Interface)
	if err != nil {
		return nil, err
	}
	routes, err := netlink.RouteList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, r := range routes {
		gws := []net.IP{r.Gw}
		for _, nh := range r.MultiPath {
			if nh.LinkIndex == link.Attrs().Index {
				gws = append(gws, nh.Gw)
			}
		}
		for _, g := range gws {
			a, ok := netip.AddrFromSlice(g)
			if !ok || !a.IsValid() || a.IsUnspecified() {
				continue
			}
			if a = a.Unmap(); !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int {
		if a.Is4() != b.Is4() {
			if a.Is4() {
				return -1
			}
			return 1
		}
		return a.Compare(b)
	})
	return out, nil
}

// Probe resolves target's link-layer address with ARP or NDP.
func (k Kernel) Probe(ctx context.Context, target netip.Addr) error {
	ifi, err := net.InterfaceByName(k.Interface)
	if err != nil {
		return err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Second)
	}
	if target.Is4() {
		return probeARP(ctx, ifi, target, deadline)
	}
	return probeNDP(ctx, ifi, target, deadline)
}

func probeARP(ctx context.Context, ifi *net.Interface, target netip.Addr, deadline time.Time) error {
	c, err := arp.Dial(ifi)
	if err != nil {
		return fmt.Errorf("opening an ARP socket: %w", err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	if err := c.SetDeadline(deadline); err != nil {
		return err
	}
	if _, err := c.Resolve(target); err != nil {
		return noAnswer(err)
	}
	return nil
}

func probeNDP(ctx context.Context, ifi *net.Interface, target netip.Addr, deadline time.Time) error {
	c, _, err := ndp.Listen(ifi, ndp.LinkLocal)
	if err != nil {
		return fmt.Errorf("opening an NDP socket: %w", err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	if err := c.SetDeadline(deadline); err != nil {
		return err
	}
	snm, err := ndp.SolicitedNodeMulticast(target)
	if err != nil {
		return err
	}
	ns := &ndp.NeighborSolicitation{TargetAddress: target,
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr}}}
	if err := c.WriteTo(ns, nil, snm); err != nil {
		return fmt.Errorf("sending a neighbor solicitation: %w", err)
	}
	for {
		m, _, _, err := c.ReadFrom()
		if err != nil {
			return noAnswer(err)
		}
		if na, ok := m.(*ndp.NeighborAdvertisement); ok && na.TargetAddress == target {
			return nil
		}
	}
}

// noAnswer shortens a timeout to what it means.
func noAnswer(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		return errors.New("no answer")
	}
	return err
}
