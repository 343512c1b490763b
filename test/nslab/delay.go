package nslab

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The kernel of the machines these tests run on may lack netem (sch_netem
// is not built on every host kernel), so Delay delays a host's frames in
// user space: a relay in the switch namespace between the host's bridge
// port and a new veth pair on the bridge, the role "delay" below.

// Delay delays every frame h sends onto the LAN by d until the returned
// undo is called (and at cleanup): h's bridge port leaves the bridge and
// a relay forwards between it and a new port, holding h's frames for d.
// Frames towards h are not delayed.
func (h *Host) Delay(d time.Duration) (undo func()) {
	l := h.Lab
	l.T.Helper()
	relay := h.Port + "-d"
	bridge := h.Port + "-b"
	l.IP(l.sw(), "link", "add", relay, "type", "veth", "peer", "name", bridge)
	l.IP(l.sw(), "link", "set", bridge, "master", "br0", "up")
	l.IP(l.sw(), "link", "set", relay, "up")
	// The relay first, then the port off the bridge: h is never off the
	// LAN (for the moment between, its frames may arrive twice).
	p := l.runIn(l.sw(), "delay", "ELBT_SLOW="+h.Port, "ELBT_FAST="+relay, "ELBT_DELAY="+d.String())
	if !Poll(5*time.Second, func() bool { return p.Last().OK }) {
		l.T.Fatalf("the delay relay for %s did not start", h.Name)
	}
	l.IP(l.sw(), "link", "set", h.Port, "nomaster")
	done := false
	undo = func() {
		if done {
			return
		}
		done = true
		p.Stop()
		l.try("ip", "-n", l.sw(), "link", "set", h.Port, "master", "br0")
		l.try("ip", "-n", l.sw(), "link", "del", relay)
	}
	l.T.Cleanup(undo)
	return undo
}

// try runs a command and reports a failure without stopping the test
// (undo runs at cleanup too).
func (l *Lab) try(name string, args ...string) {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		l.T.Errorf("%s %v: %v: %s", name, args, err, out)
	}
}

// delayRelay forwards every frame between the interfaces ELBT_SLOW and
// ELBT_FAST, those received on ELBT_SLOW ELBT_DELAY later, until SIGTERM.
func delayRelay() {
	d, err := time.ParseDuration(os.Getenv("ELBT_DELAY"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "delay:", err)
		os.Exit(1)
	}
	slow, err := rawSocket(os.Getenv("ELBT_SLOW"))
	if err == nil {
		var fast *rawSock
		if fast, err = rawSocket(os.Getenv("ELBT_FAST")); err == nil {
			type frame struct {
				at time.Time
				b  []byte
			}
			q := make(chan frame, 4096)
			go func() {
				for f := range q {
					time.Sleep(time.Until(f.at.Add(d)))
					fast.write(f.b)
				}
			}()
			go slow.relay(func(b []byte) {
				select {
				case q <- frame{at: time.Now(), b: b}:
				default: // a full queue drops, like a full qdisc
				}
			})
			go fast.relay(slow.write)
			stop := make(chan os.Signal, 1)
			signal.Notify(stop, syscall.SIGTERM)
			fmt.Println(time.Now().UnixNano(), "ok relaying")
			<-stop
			return
		}
	}
	fmt.Fprintln(os.Stderr, "delay:", err)
	os.Exit(1)
}

// rawSock is an AF_PACKET socket bound to one interface.
type rawSock struct {
	fd      int
	ifindex int
}

func rawSocket(name string) (*rawSock, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, err
	}
	proto := int(htons(unix.ETH_P_ALL))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, proto)
	if err != nil {
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	// Each frame comes with a virtio-net header, which goes back with it:
	// the host's stack leaves checksums to the "hardware" (veth) and may
	// hand over segmentation too, and the header carries both to the
	// other side as they were.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
		return nil, fmt.Errorf("PACKET_VNET_HDR: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		return nil, fmt.Errorf("binding to %s: %w", name, err)
	}
	return &rawSock{fd: fd, ifindex: ifi.Index}, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// relay reads frames received on s (not those it sent) and passes each
// to out.
func (s *rawSock) relay(out func([]byte)) {
	buf := make([]byte, 65536+16)
	for {
		n, from, err := unix.Recvfrom(s.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if os.Getenv("ELBT_DEBUG") != "" {
			fmt.Fprintf(os.Stderr, "delay: %d bytes on %d from %#v\n", n, s.ifindex, from)
		}
		out(append([]byte(nil), buf[:n]...))
	}
}

func (s *rawSock) write(b []byte) {
	// b starts with its virtio-net header. A frame the link refuses is
	// dropped, as a switch would.
	if err := unix.Sendto(s.fd, b, 0, &unix.SockaddrLinklayer{Ifindex: s.ifindex, Halen: 6}); err != nil && os.Getenv("ELBT_DEBUG") != "" {
		fmt.Fprintln(os.Stderr, "delay: sending:", err)
	}
}
