package vip

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// AddrProto is the address protocol (IFA_PROTO) edgelb marks its VIPs
// with. Values up to 3 are the kernel's own; 0xe1 is edgelb's.
const AddrProto = 0xe1

// AddrProtoKept marks the VIPs an edgelb process kept on the interface for
// the next one when it restarted gracefully; they are edgelb's as well.
const AddrProtoKept = 0xe2

// isOurs reports whether an address protocol is one of edgelb's marks.
func isOurs(proto uint8) bool { return proto == AddrProto || proto == AddrProtoKept }

// ifaProto is IFA_PROTO, missing from x/sys/unix.
const ifaProto = 11

// Netlink is the real Kernel: the named interface's addresses and link
// state through rtnetlink in the current network namespace.
type Netlink struct {
	Interface string
	// KeptFile, when set, also records the VIPs kept for the next process
	// (RenewVIP with keep): Linux 6.1 ignores a new IFA_PROTO when an
	// address is replaced, so the mark alone does not survive there.
	// Kept reads the file and removes it; one older than keptMaxAge is
	// ignored. The daemon puts it in its state directory.
	KeptFile string
	// AddedFile, when set, lists the VIPs edgelb added where the kernel
	// does not keep the address mark at all (before Linux 6.1, which
	// ignores IFA_PROTO): those VIPs carry no mark, and VIPs takes the
	// host addresses (/32, /128) without a mark that the file lists for
	// edgelb's. An entry whose address has gone from the interface is
	// dropped, so an address added by hand later is not taken. Without
	// it such a kernel cannot hold VIPs (AddVIP returns ErrNoAddrProto).
	// The daemon puts it in its state directory.
	AddedFile string

	// noProto makes every request leave IFA_PROTO out, as a kernel
	// before 6.1 does (for tests).
	noProto bool
}

// keptMaxAge bounds how old a KeptFile may be: the longest restartHold.
const keptMaxAge = 10 * time.Minute

var _ Kernel = (*Netlink)(nil)

// Link implements Kernel.
func (n *Netlink) Link() (Link, error) {
	l, err := netlink.LinkByName(n.Interface)
	if err != nil {
		return Link{Name: n.Interface}, fmt.Errorf("%s: %w", n.Interface, err)
	}
	a := l.Attrs()
	out := Link{
		Name:         a.Name,
		Index:        a.Index,
		HardwareAddr: a.HardwareAddr,
		Up:           a.Flags&net.FlagUp != 0 && (a.OperState == netlink.OperUp || a.OperState == netlink.OperUnknown),
	}
	addrs, err := listAddrs(a.Index)
	if err != nil {
		return out, err
	}
	ours := n.ours(addrs)
	for _, ad := range addrs {
		if !slices.Contains(ours, ad.prefix.Addr()) && ad.prefix.Addr().IsGlobalUnicast() {
			out.Networks = append(out.Networks, ad.prefix.Masked())
		}
	}
	slices.SortFunc(out.Networks, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	out.Networks = slices.Compact(out.Networks)
	return out, nil
}

func (n *Netlink) index() (int, error) {
	l, err := netlink.LinkByName(n.Interface)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", n.Interface, err)
	}
	return l.Attrs().Index, nil
}

// VIPs implements Kernel: the addresses marked with AddrProto or
// AddrProtoKept, and the unmarked host addresses that the AddedFile
// lists.
func (n *Netlink) VIPs() ([]netip.Addr, error) {
	addrs, err := n.addrs()
	if err != nil {
		return nil, err
	}
	return n.ours(addrs), nil
}

// addrs lists the interface's addresses.
func (n *Netlink) addrs() ([]kernelAddr, error) {
	idx, err := n.index()
	if err != nil {
		return nil, err
	}
	return listAddrs(idx)
}

// ours returns the addresses of addrs that are edgelb's, sorted, and
// drops from the AddedFile those no longer on the interface.
func (n *Netlink) ours(addrs []kernelAddr) []netip.Addr {
	var out []netip.Addr
	for _, a := range addrs {
		if isOurs(a.proto) {
			out = append(out, a.prefix.Addr())
		}
	}
	if n.AddedFile != "" {
		listed := readAddrFile(n.AddedFile)
		var still []netip.Addr
		for _, v := range listed {
			if slices.ContainsFunc(addrs, func(a kernelAddr) bool { return a.unmarkedHost(v) }) {
				still = append(still, v)
			}
		}
		if len(still) != len(listed) {
			_ = writeAddrFile(n.AddedFile, still)
		}
		out = append(out, still...)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// unmarkedHost reports whether a is v as a host address without a mark:
// how a VIP edgelb added looks on a kernel that ignores IFA_PROTO.
func (a kernelAddr) unmarkedHost(v netip.Addr) bool {
	return a.proto == 0 && a.prefix.Addr() == v && a.prefix.IsSingleIP()
}

// Kept implements Kernel: the addresses marked with AddrProtoKept, and
// those of edgelb's addresses that the KeptFile lists (then removed).
func (n *Netlink) Kept() ([]netip.Addr, error) {
	addrs, err := n.addrs()
	if err != nil {
		return nil, err
	}
	var kept []netip.Addr
	for _, a := range addrs {
		if a.proto == AddrProtoKept {
			kept = append(kept, a.prefix.Addr())
		}
	}
	if n.KeptFile != "" {
		listed := n.readKeptFile()
		os.Remove(n.KeptFile)
		ours := n.ours(addrs)
		for _, v := range listed {
			if slices.Contains(ours, v) && !slices.Contains(kept, v) {
				kept = append(kept, v)
			}
		}
	}
	slices.SortFunc(kept, netip.Addr.Compare)
	return kept, nil
}

// readKeptFile returns the addresses of a KeptFile younger than
// keptMaxAge.
func (n *Netlink) readKeptFile() []netip.Addr {
	fi, err := os.Stat(n.KeptFile)
	if err != nil || time.Since(fi.ModTime()) > keptMaxAge {
		return nil
	}
	return readAddrFile(n.KeptFile)
}

// recordKept adds v to the KeptFile.
func (n *Netlink) recordKept(v netip.Addr) error {
	return writeAddrFile(n.KeptFile, append(n.readKeptFile(), v))
}

// readAddrFile returns the addresses a file lists, one per line; none if
// it cannot be read.
func readAddrFile(path string) []netip.Addr {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, l := range strings.Fields(string(b)) {
		if a, err := netip.ParseAddr(l); err == nil && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// writeAddrFile replaces a file with a list of addresses, atomically; an
// empty list removes it.
func writeAddrFile(path string, vs []netip.Addr) error {
	if len(vs) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	var b strings.Builder
	for _, a := range vs {
		b.WriteString(a.String() + "\n")
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ErrNoAddrProto means the kernel dropped the address mark (IFA_PROTO
// needs Linux 6.1): edgelb could not tell its VIPs from others.
var ErrNoAddrProto = errors.New("the kernel does not keep the address protocol mark (IFA_PROTO, Linux 6.1 or later is required)")

// AddVIP implements Kernel. It checks that the kernel kept the mark; if
// it did not (before Linux 6.1) it lists the VIP in the AddedFile
// instead, or, without one, takes the address back off.
func (n *Netlink) AddVIP(v netip.Addr, lifetime time.Duration) error {
	idx, err := n.index()
	if err != nil {
		return err
	}
	flags := unix.NLM_F_CREATE | unix.NLM_F_EXCL | unix.NLM_F_ACK
	err = n.addrRequest(unix.RTM_NEWADDR, flags, idx, v, &addAttrs{lifetime, AddrProto})
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
		// Kernels before 6.1 ignore IFA_PROTO (checked below); should
		// one refuse it instead, add the address without the mark.
		err = addrRequest(unix.RTM_NEWADDR, flags, idx, v, &addAttrs{lifetime: lifetime})
	}
	if err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("adding %s to %s: the address is already configured, not by edgelb", v, n.Interface)
		}
		return fmt.Errorf("adding %s to %s: %w", v, n.Interface, err)
	}
	addrs, err := listAddrs(idx)
	if err != nil {
		return err
	}
	if slices.ContainsFunc(addrs, func(a kernelAddr) bool { return a.prefix.Addr() == v && isOurs(a.proto) }) {
		return nil
	}
	// The address did not exist before (NLM_F_EXCL): it is edgelb's.
	if n.AddedFile != "" {
		if err = writeAddrFile(n.AddedFile, append(readAddrFile(n.AddedFile), v)); err == nil {
			return nil
		}
		err = fmt.Errorf("recording it in %s: %w", n.AddedFile, err)
	} else {
		err = ErrNoAddrProto
	}
	_ = addrRequest(unix.RTM_DELADDR, unix.NLM_F_ACK, idx, v, nil)
	return fmt.Errorf("adding %s to %s: %w", v, n.Interface, err)
}

// RenewVIP implements Kernel: it replaces the address's lifetime and mark
// (RTM_NEWADDR with NLM_F_REPLACE). It touches only an address that
// carries one of edgelb's marks.
func (n *Netlink) RenewVIP(v netip.Addr, lifetime time.Duration, keep bool) error {
	idx, err := n.index()
	if err != nil {
		return err
	}
	addrs, err := listAddrs(idx)
	if err != nil {
		return err
	}
	if !slices.Contains(n.ours(addrs), v) {
		return fmt.Errorf("renewing %s on %s: not an address edgelb added", v, n.Interface)
	}
	proto := uint8(AddrProto)
	if keep {
		proto = AddrProtoKept
	}
	if err := n.addrRequest(unix.RTM_NEWADDR, unix.NLM_F_REPLACE|unix.NLM_F_ACK, idx, v, &addAttrs{lifetime, proto}); err != nil {
		return fmt.Errorf("renewing %s on %s: %w", v, n.Interface, err)
	}
	if keep && n.KeptFile != "" {
		if err := n.recordKept(v); err != nil {
			return fmt.Errorf("recording %s as kept in %s: %w", v, n.KeptFile, err)
		}
	}
	return nil
}

// DelVIP implements Kernel.
func (n *Netlink) DelVIP(v netip.Addr) error {
	idx, err := n.index()
	if err != nil {
		return err
	}
	if err := addrRequest(unix.RTM_DELADDR, unix.NLM_F_ACK, idx, v, nil); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("removing %s from %s: %w", v, n.Interface, err)
	}
	if n.AddedFile != "" {
		if listed := readAddrFile(n.AddedFile); slices.Contains(listed, v) {
			if err := writeAddrFile(n.AddedFile, slices.DeleteFunc(listed, func(a netip.Addr) bool { return a == v })); err != nil {
				return fmt.Errorf("removing %s from %s: %w", v, n.AddedFile, err)
			}
		}
	}
	return nil
}

// addAttrs are the attributes of an address being added or replaced.
type addAttrs struct {
	lifetime time.Duration // valid lifetime; 0: forever
	proto    uint8         // 0: no IFA_PROTO
}

// addrRequest is addrRequest without the mark when n.noProto.
func (n *Netlink) addrRequest(op, flags, idx int, v netip.Addr, add *addAttrs) error {
	if n.noProto && add != nil {
		add = &addAttrs{lifetime: add.lifetime}
	}
	return addrRequest(op, flags, idx, v, add)
}

// lifetimeSecs is a lifetime in the kernel's whole seconds, rounded up;
// 0 is forever.
func lifetimeSecs(d time.Duration) uint32 {
	if d <= 0 {
		return 0xffffffff // INFINITY_LIFE_TIME
	}
	return uint32(min((d+time.Second-1)/time.Second, 0xfffffffe))
}

func addrRequest(op, flags, idx int, v netip.Addr, add *addAttrs) error {
	req := nl.NewNetlinkRequest(op, flags)
	fam, bits := nl.FAMILY_V4, 32
	if v.Is6() {
		fam, bits = nl.FAMILY_V6, 128
	}
	msg := nl.NewIfAddrmsg(fam)
	msg.Index = uint32(idx)
	msg.Prefixlen = uint8(bits)
	msg.Scope = unix.RT_SCOPE_UNIVERSE
	req.AddData(msg)
	ip := v.AsSlice()
	req.AddData(nl.NewRtAttr(unix.IFA_LOCAL, ip))
	req.AddData(nl.NewRtAttr(unix.IFA_ADDRESS, ip))
	if add != nil {
		valid := lifetimeSecs(add.lifetime)
		preferred := valid
		if v.Is6() {
			req.AddData(nl.NewRtAttr(unix.IFA_FLAGS, nl.Uint32Attr(unix.IFA_F_NODAD)))
			// Deprecated (preferred lifetime 0): the VIP still receives
			// traffic, but the kernel never picks it as the source of
			// the host's own connections or of nat's masquerade, which
			// use the host's real address instead.
			preferred = 0
		}
		ci := make([]byte, 16)                           // struct ifa_cacheinfo
		binary.NativeEndian.PutUint32(ci[0:], preferred) // ifa_prefered
		binary.NativeEndian.PutUint32(ci[4:], valid)     // ifa_valid
		req.AddData(nl.NewRtAttr(unix.IFA_CACHEINFO, ci))
		if add.proto != 0 {
			req.AddData(nl.NewRtAttr(ifaProto, []byte{add.proto}))
		}
	}
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

type kernelAddr struct {
	prefix netip.Prefix
	proto  uint8
	// preferred and valid are the remaining lifetimes in seconds;
	// 0xffffffff is forever.
	preferred, valid uint32
}

// listAddrs dumps the addresses of one interface with their IFA_PROTO,
// which netlink.AddrList does not return.
func listAddrs(idx int) ([]kernelAddr, error) {
	var out []kernelAddr
	for try := 0; ; try++ {
		req := nl.NewNetlinkRequest(unix.RTM_GETADDR, unix.NLM_F_DUMP)
		req.AddData(nl.NewIfAddrmsg(unix.AF_UNSPEC))
		msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWADDR)
		if errors.Is(err, nl.ErrDumpInterrupted) && try < 3 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("listing addresses: %w", err)
		}
		for _, m := range msgs {
			hdr := nl.DeserializeIfAddrmsg(m)
			if int(hdr.Index) != idx {
				continue
			}
			attrs, err := nl.ParseRouteAttr(m[hdr.Len():])
			if err != nil {
				return nil, fmt.Errorf("listing addresses: %w", err)
			}
			var a kernelAddr
			var local, addr netip.Addr
			for _, at := range attrs {
				switch at.Attr.Type {
				case unix.IFA_LOCAL:
					local, _ = netip.AddrFromSlice(at.Value)
				case unix.IFA_ADDRESS:
					addr, _ = netip.AddrFromSlice(at.Value)
				case ifaProto:
					if len(at.Value) > 0 {
						a.proto = at.Value[0]
					}
				case unix.IFA_CACHEINFO:
					if len(at.Value) >= 8 {
						a.preferred = binary.NativeEndian.Uint32(at.Value[0:])
						a.valid = binary.NativeEndian.Uint32(at.Value[4:])
					}
				}
			}
			if local.IsValid() {
				addr = local
			}
			if !addr.IsValid() {
				continue
			}
			a.prefix = netip.PrefixFrom(addr.Unmap(), int(hdr.Prefixlen))
			out = append(out, a)
		}
		return out, nil
	}
}

// WatchLink implements Kernel with link and address subscriptions.
func (n *Netlink) WatchLink(ctx context.Context, changed func()) error {
	done := make(chan struct{})
	defer close(done)
	errc := make(chan error, 2)
	onErr := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}
	links := make(chan netlink.LinkUpdate, 16)
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{ErrorCallback: onErr}); err != nil {
		return fmt.Errorf("subscribing to link updates: %w", err)
	}
	addrs := make(chan netlink.AddrUpdate, 16)
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{ErrorCallback: onErr}); err != nil {
		return fmt.Errorf("subscribing to address updates: %w", err)
	}
	changed() // whatever happened before the subscription
	idx, _ := n.index()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return fmt.Errorf("link updates: %w", err)
		case u, ok := <-links:
			if !ok {
				return errors.New("link updates ended")
			}
			if u.Attrs().Name == n.Interface {
				idx = u.Attrs().Index
				changed()
			}
		case u, ok := <-addrs:
			if !ok {
				return errors.New("address updates ended")
			}
			if u.LinkIndex == idx {
				changed()
			}
		}
	}
}
