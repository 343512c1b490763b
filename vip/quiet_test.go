package vip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/vishvananda/netns"

	"github.com/edgelb/edgelb/test/prereq"
)

// A quiet VIP gets no answer to a client's new address resolution, yet
// the host still takes the traffic of a client that knows where it is and
// answers its unicast ARP probes; once not quiet, it answers again. A host and a client in network namespaces;
// the client dials a closed port: "connection refused" means the VIP was
// resolved and reached, a timeout that resolution got no answer.
func TestQuietVIPsGetNoResolutionAnswer(t *testing.T) {
	prereq.Require(t, os.Geteuid() == 0, "needs root for network namespaces")
	p := fmt.Sprintf("q%d", os.Getpid()%100000)
	sh := func(script string) {
		t.Helper()
		if out, err := exec.Command("bash", "-ec", script).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
	}
	t.Cleanup(func() { exec.Command("bash", "-c", fmt.Sprintf("ip netns del %sh; ip netns del %sc", p, p)).Run() })
	v4, v6 := netip.MustParseAddr("10.78.0.100"), netip.MustParseAddr("fd78::100")
	sh(fmt.Sprintf(`p=%s
ip netns add ${p}h; ip netns add ${p}c
ip -n ${p}h link add eth0 type veth peer name eth0 netns ${p}c
for n in h c; do ip -n $p$n link set eth0 up; ip -n $p$n link set lo up; done
ip -n ${p}h addr add 10.78.0.1/24 dev eth0; ip -n ${p}h addr add fd78::1/64 dev eth0 nodad
ip -n ${p}c addr add 10.78.0.2/24 dev eth0; ip -n ${p}c addr add fd78::2/64 dev eth0 nodad
ip -n ${p}h addr add %s/32 dev eth0; ip -n ${p}h addr add %s/128 dev eth0 nodad`, p, v4, v6))
	hostNS, err := netns.GetFromName(p + "h")
	if err != nil {
		t.Fatal(err)
	}
	defer hostNS.Close()
	q := NewQuieterInNetNS(int(hostNS))

	// inClient runs f on a thread in the client's namespace.
	inClient := func(f func() error) error {
		errc := make(chan error, 1)
		go func() {
			runtime.LockOSThread() // left locked: the thread dies with the goroutine
			ns, err := netns.GetFromName(p + "c")
			if err == nil {
				defer ns.Close()
				err = netns.Set(ns)
			}
			if err != nil {
				errc <- err
				return
			}
			errc <- f()
		}()
		return <-errc
	}
	// reach dials vip:9 from the client after it forgot its neighbours.
	reach := func(vip netip.Addr, forget bool) error {
		t.Helper()
		if forget {
			sh(fmt.Sprintf("ip -n %sc neigh flush dev eth0", p))
		}
		err := inClient(func() error {
			c, err := net.DialTimeout("tcp", netip.AddrPortFrom(vip, 9).String(), 1500*time.Millisecond)
			if err == nil {
				c.Close()
			}
			return err
		})
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil
		}
		if err == nil {
			return errors.New("something listens on port 9")
		}
		return err
	}
	// arpAsk sends one ARP request for v4 from the client, to the host's
	// MAC (a neighbour entry being confirmed) or broadcast (a new
	// resolution), and reports whether the host answered.
	hostMAC := func() net.HardwareAddr {
		out, err := exec.Command("ip", "-n", p+"h", "-br", "link", "show", "eth0").Output()
		if err != nil {
			t.Fatal(err)
		}
		mac, err := net.ParseMAC(strings.Fields(string(out))[2])
		if err != nil {
			t.Fatal(err)
		}
		return mac
	}()
	arpAsk := func(unicast bool) bool {
		t.Helper()
		answered := false
		err := inClient(func() error {
			ifi, err := net.InterfaceByName("eth0")
			if err != nil {
				return err
			}
			c, err := arp.Dial(ifi)
			if err != nil {
				return err
			}
			defer c.Close()
			to := ethernet.Broadcast
			if unicast {
				to = hostMAC
			}
			req, err := arp.NewPacket(arp.OperationRequest, ifi.HardwareAddr, netip.MustParseAddr("10.78.0.2"), ethernet.Broadcast, v4)
			if err == nil {
				err = c.WriteTo(req, to)
			}
			if err != nil {
				return err
			}
			c.SetReadDeadline(time.Now().Add(time.Second))
			for {
				p, _, err := c.Read()
				if err != nil {
					return nil // the deadline: no answer
				}
				if p.Operation == arp.OperationReply && p.SenderIP == v4 {
					answered = true
					return nil
				}
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		return answered
	}
	if err := q.Quiet([]netip.Addr{v4}); err != nil {
		t.Fatal(err)
	}
	if arpAsk(false) {
		t.Error("a broadcast ARP request for a quiet VIP was answered")
	}
	if !arpAsk(true) {
		t.Error("a unicast ARP request for a quiet VIP (a client confirming its entry) was not answered")
	}
	if err := q.Quiet(nil); err != nil {
		t.Fatal(err)
	}
	if !arpAsk(false) {
		t.Error("a broadcast ARP request was not answered once the VIP is no longer quiet")
	}

	for _, vip := range []netip.Addr{v4, v6} {
		if err := reach(vip, true); err != nil {
			t.Fatalf("%s before quieting: %v", vip, err)
		}
		if err := q.Quiet([]netip.Addr{v4, v6}); err != nil {
			t.Fatal(err)
		}
		// The client still knows the host's address: traffic gets there.
		if err := reach(vip, false); err != nil {
			t.Errorf("%s quiet, client with a neighbour entry: %v (want reached)", vip, err)
		}
		if err := reach(vip, true); err == nil {
			t.Errorf("%s quiet: resolved and reached, want no answer", vip)
		}
		if out, err := exec.Command("ip", "netns", "exec", p+"h", "nft", "list", "ruleset").CombinedOutput(); err != nil {
			t.Errorf("nft list ruleset: %v\n%s", err, out)
		}
		if err := q.Quiet(nil); err != nil {
			t.Fatal(err)
		}
		if err := reach(vip, true); err != nil {
			t.Errorf("%s no longer quiet: %v", vip, err)
		}
	}
	out, _ := exec.Command("ip", "netns", "exec", p+"h", "nft", "list", "ruleset").CombinedOutput()
	if len(out) != 0 {
		t.Errorf("tables left with no quiet VIP:\n%s", out)
	}
}
