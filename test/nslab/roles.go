package nslab

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
)

// The test binary re-executes itself inside the namespaces in one of
// these roles, chosen by ELBT_ROLE (Main).
var roles = map[string]func(){
	"responder": responder,
	"prober":    prober,
	"holder":    holder,
	"arpwatch":  arpWatch,
	"slowarp":   slowARP,
	"delay":     delayRelay,
}

// responder answers every TCP connection on :8080 with the host's name,
// and echoes what it receives on :8081 (for a long-lived connection).
func responder() {
	ln, err := net.Listen("tcp", ":8080")
	if err != nil {
		fmt.Fprintln(os.Stderr, "responder:", err)
		os.Exit(1)
	}
	echo, err := net.Listen("tcp", ":8081")
	if err != nil {
		fmt.Fprintln(os.Stderr, "responder:", err)
		os.Exit(1)
	}
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				continue
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	name := os.Getenv("ELBT_NAME")
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		go func() {
			c.Write([]byte(name + "\n"))
			c.Close()
		}()
	}
}

// prober starts a probe of ELBT_TARGET every ELBT_INTERVAL and prints one
// line per probe: "start-unix-nanos ok host" or "start-unix-nanos fail
// error". With ELBT_COUNT set it stops after that many probes. SIGTERM
// stops it too, once the probes in flight have ended (a probe sent into
// an outage shorter than its timeout still counts as failed).
func prober() {
	target := os.Getenv("ELBT_TARGET")
	interval, _ := time.ParseDuration(os.Getenv("ELBT_INTERVAL"))
	timeout, _ := time.ParseDuration(os.Getenv("ELBT_TIMEOUT"))
	count, _ := strconv.Atoi(os.Getenv("ELBT_COUNT"))
	out := bufio.NewWriter(os.Stdout)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	var mu sync.Mutex
	var wg sync.WaitGroup
	t := time.NewTicker(interval)
loop:
	for i := 0; count == 0 || i < count; i++ {
		start := time.Now()
		wg.Add(1)
		go func() {
			defer wg.Done()
			host, err := probe(target, timeout)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				fmt.Fprintf(out, "%d fail %v\n", start.UnixNano(), err)
			} else {
				fmt.Fprintf(out, "%d ok %s\n", start.UnixNano(), host)
			}
			out.Flush()
		}()
		if count != 0 && i == count-1 {
			break
		}
		select {
		case <-t.C:
		case <-stop:
			break loop
		}
	}
	wg.Wait()
}

func probe(target string, timeout time.Duration) (string, error) {
	c, err := net.DialTimeout("tcp", target, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	return line[:len(line)-1], nil
}

// holder opens one TCP connection to ELBT_TARGET and, every
// ELBT_INTERVAL until SIGTERM, writes a line and reads it back (one second
// at most). It prints one line per exchange: "start-unix-nanos ok N" or
// "start-unix-nanos fail error"; after a failure the connection is gone
// and it stops.
func holder() {
	target := os.Getenv("ELBT_TARGET")
	interval, _ := time.ParseDuration(os.Getenv("ELBT_INTERVAL"))
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	start := time.Now()
	c, err := net.DialTimeout("tcp", target, time.Second)
	if err != nil {
		fmt.Fprintf(out, "%d fail %v\n", start.UnixNano(), err)
		return
	}
	defer c.Close()
	r := bufio.NewReader(c)
	t := time.NewTicker(interval)
	defer t.Stop()
	for i := 0; ; i++ {
		start := time.Now()
		c.SetDeadline(start.Add(time.Second))
		msg := fmt.Sprintf("exchange %d", i)
		_, err := fmt.Fprintln(c, msg)
		var line string
		if err == nil {
			line, err = r.ReadString('\n')
		}
		if err == nil && line != msg+"\n" {
			err = fmt.Errorf("echo %q, want %q", line, msg)
		}
		if err != nil {
			fmt.Fprintf(out, "%d fail %v\n", start.UnixNano(), err)
			return
		}
		fmt.Fprintf(out, "%d ok %d\n", start.UnixNano(), i)
		out.Flush()
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// arpWatch asks, every ELBT_INTERVAL until SIGTERM, who has ELBT_TARGET
// (an ARP request from eth0) and prints which hardware addresses answered
// each request before the next one: "start-unix-nanos ok mac[,mac]", or
// "start-unix-nanos fail none" when nobody did.
func arpWatch() {
	target := netip.MustParseAddr(os.Getenv("ELBT_TARGET"))
	interval, _ := time.ParseDuration(os.Getenv("ELBT_INTERVAL"))
	iface := os.Getenv("ELBT_IFACE")
	if iface == "" {
		iface = "eth0"
	}
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		fmt.Fprintln(os.Stderr, "arpwatch:", err)
		os.Exit(1)
	}
	addrs, _ := ifi.Addrs()
	var self netip.Addr
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
			self = p.Addr()
		}
	}
	c, err := arp.Dial(ifi)
	if err != nil {
		fmt.Fprintln(os.Stderr, "arpwatch:", err)
		os.Exit(1)
	}
	req, err := arp.NewPacket(arp.OperationRequest, ifi.HardwareAddr, self, ethernet.Broadcast, target)
	if err != nil {
		fmt.Fprintln(os.Stderr, "arpwatch:", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	go func() {
		for {
			p, _, err := c.Read()
			if err != nil {
				continue
			}
			if p.Operation == arp.OperationReply && p.SenderIP == target {
				mu.Lock()
				seen[p.SenderHardwareAddr.String()] = true
				mu.Unlock()
			}
		}
	}()
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	t := time.NewTicker(interval)
	defer t.Stop()
	var sent time.Time
	for {
		// The answers to the previous request are in; report them and
		// ask again.
		mu.Lock()
		macs := slices.Sorted(maps.Keys(seen))
		clear(seen)
		mu.Unlock()
		if !sent.IsZero() {
			if len(macs) == 0 {
				fmt.Fprintf(out, "%d fail none\n", sent.UnixNano())
			} else {
				fmt.Fprintf(out, "%d ok %s\n", sent.UnixNano(), strings.Join(macs, ","))
			}
			out.Flush()
		}
		sent = time.Now()
		c.WriteTo(req, ethernet.Broadcast)
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// ARPWatch asks who has vip (IPv4) from the client every 10 ms until
// Stop. Each result is one request: OK when some host answered, Host the
// answering hardware addresses, comma-separated (MACs splits them).
func (l *Lab) ARPWatch(vip netip.Addr) *Probes {
	return l.client("arpwatch", "ELBT_TARGET="+vip.String(), "ELBT_INTERVAL=10ms")
}

// MACs returns the hardware addresses that answered an ARPWatch request.
func MACs(r ProbeResult) []string {
	if !r.OK {
		return nil
	}
	return strings.Split(r.Host, ",")
}

// slowARP answers, on eth0, every ARP request for ELBT_TARGET after
// ELBT_DELAY (a slow gateway; the kernel's own answers must be off).
func slowARP() {
	target := netip.MustParseAddr(os.Getenv("ELBT_TARGET"))
	delay, _ := time.ParseDuration(os.Getenv("ELBT_DELAY"))
	ifi, err := net.InterfaceByName("eth0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "slowarp:", err)
		os.Exit(1)
	}
	c, err := arp.Dial(ifi)
	if err != nil {
		fmt.Fprintln(os.Stderr, "slowarp:", err)
		os.Exit(1)
	}
	var mu sync.Mutex // the client writes one reply at a time
	for {
		p, _, err := c.Read()
		if err != nil {
			continue
		}
		if p.Operation != arp.OperationRequest || p.TargetIP != target {
			continue
		}
		time.AfterFunc(delay, func() {
			mu.Lock()
			defer mu.Unlock()
			c.Reply(p, ifi.HardwareAddr, target)
		})
	}
}

// SlowARP makes ns (a peer, eth0) answer ARP for ip after delay instead of
// at once, until the returned function is called.
func (l *Lab) SlowARP(ns string, ip netip.Addr, delay time.Duration) (stop func()) {
	l.Sysctl(ns, "net.ipv4.conf.eth0.arp_ignore=8")
	p := l.runIn(ns, "slowarp", "ELBT_TARGET="+ip.String(), "ELBT_DELAY="+delay.String())
	return func() {
		p.Stop()
		l.Sysctl(ns, "net.ipv4.conf.eth0.arp_ignore=0")
	}
}
