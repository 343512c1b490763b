// Package labnet holds the pieces of the simulated network that both the
// VM end-to-end tests (test/vm/e2e) and the demo lab (test/lab) build inside
// the test VM: the bridge with its network namespaces, the small servers
// that stand in for the cluster nodes' NodePorts, a TCP forwarder, and the
// lab's router, FRR in a namespace of its own (router.go).
//
// Everything here runs inside the VM (or another throwaway machine): the
// topology changes the network of the namespace it runs in.
package labnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
)

// Topology is a bash script that builds, on a bridge br0 in the current
// namespace: client 10.0.0.2, appliances lb1..lb3 10.0.0.11..13 and cluster
// nodes node1..3 10.0.0.21..23 (and fd00::N/64 with the same last number),
// each node with a pod network 10.244.N.2/24 on a dummy interface (routed
// from the appliances). It starts no server.
const Topology = `
ip link add br0 type bridge
ip link set br0 up
add() {
	ip netns add $1
	ip link add v-$1 type veth peer name eth0 netns $1
	ip link set v-$1 master br0 up
	ip -n $1 link set lo up
	ip -n $1 link set eth0 up
	ip -n $1 addr add $2/24 dev eth0
	ip -n $1 addr add fd00::${2##*.}/64 dev eth0 nodad
}
add client 10.0.0.2
for i in 1 2 3; do add lb$i 10.0.0.1$i; done
for i in 1 2 3; do
	add node$i 10.0.0.2$i
	ip -n node$i link add pods type dummy
	ip -n node$i link set pods up
	ip -n node$i addr add 10.244.$i.2/24 dev pods
	for lb in lb1 lb2 lb3; do ip -n $lb route add 10.244.$i.0/24 via 10.0.0.2$i; done
done
`

// Uplink is a bash script, run after Topology, that gives the bridge the
// address 10.0.0.1 and routes and masquerades the appliances' traffic out
// of the VM's user-mode network (to the host's kube-apiserver at 10.0.2.2).
const Uplink = `
ip addr add 10.0.0.1/24 dev br0
sysctl -qw net.ipv4.ip_forward=1
for lb in lb1 lb2 lb3; do ip -n $lb route add default via 10.0.0.1; done
nft add table ip vmnat
nft add chain ip vmnat post '{ type nat hook postrouting priority srcnat; }'
nft add rule ip vmnat post ip saddr 10.0.0.0/24 oifname eth0 masquerade
`

// Serve stands in for a cluster node's NodePorts and pods, named name: HTTP
// on :30080-30082 and :8080 answering "NAME LOCAL REMOTE", /healthz on
// :10256 and :32000 (kube-proxy's healthz, a healthCheckNodePort), UDP on
// :30053 and :5353 answering "NAME REMOTE", TCP echo on :30090. On the HTTP
// ports, /ready answers "NAME ready" with a status that starts at 200 and
// that GET /ready/set?code=N changes (an application's health check). It
// prints "serving NAME" once every port listens, then serves until ctx ends.
func Serve(ctx context.Context, name string, out io.Writer) error {
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	var readyCode atomic.Int32
	readyCode.Store(http.StatusOK)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ready":
			w.WriteHeader(int(readyCode.Load()))
			fmt.Fprintf(w, "%s ready\n", name)
			return
		case "/ready/set":
			code, err := strconv.Atoi(r.URL.Query().Get("code"))
			if err != nil || code < 100 || code > 599 {
				http.Error(w, "bad code", http.StatusBadRequest)
				return
			}
			readyCode.Store(int32(code))
			fmt.Fprintf(w, "%s set %d\n", name, code)
			return
		}
		local := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		fmt.Fprintf(w, "%s %s %s\n", name, local, r.RemoteAddr)
	})
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	for _, p := range []struct {
		addr string
		h    http.Handler
	}{{":30080", h}, {":30081", h}, {":30082", h}, {":8080", h}, {":10256", ok}, {":32000", ok}} {
		ln, err := net.Listen("tcp", p.addr)
		if err != nil {
			return err
		}
		closers = append(closers, ln)
		go http.Serve(ln, p.h)
	}
	for _, p := range []string{":30053", ":5353"} {
		pc, err := net.ListenPacket("udp", p)
		if err != nil {
			return err
		}
		closers = append(closers, pc)
		go func() {
			buf := make([]byte, 1500)
			for {
				_, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo([]byte(name+" "+from.String()), from)
			}
		}()
	}
	echo, err := net.Listen("tcp", ":30090")
	if err != nil {
		return err
	}
	closers = append(closers, echo)
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	fmt.Fprintln(out, "serving", name)
	<-ctx.Done()
	return nil
}

// Forward accepts TCP connections on listen and splices each to target
// (dialled anew per connection) until ctx ends.
func Forward(ctx context.Context, listen, target string) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("forwarding %s: %w", listen, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			splice(ctx, c, target)
		}()
	}
}

func splice(ctx context.Context, c net.Conn, target string) {
	defer c.Close()
	var d net.Dialer
	u, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return
	}
	defer u.Close()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(u, c)
	go cp(c, u)
	select {
	case <-done:
		<-done
	case <-ctx.Done():
	}
}

// Blackhole is an nftables ruleset, for the bridge that switches port,
// that kills the data path of the host behind it while its carrier and
// its own address's traffic (gossip, heartbeats) stay up: its ARP for
// gateway, and everything it sends or receives for vip, are dropped. A
// table of that name deleted undoes it.
func Blackhole(table, port, gateway, vip string) string {
	return fmt.Sprintf(`table bridge %[1]s {
	chain data {
		type filter hook forward priority 0; policy accept;
		iifname "%[2]s" arp daddr ip %[3]s drop
		iifname "%[2]s" arp saddr ip %[4]s drop
		oifname "%[2]s" arp daddr ip %[4]s drop
		iifname "%[2]s" ip saddr %[4]s drop
		oifname "%[2]s" ip daddr %[4]s drop
	}
}
`, table, port, gateway, vip)
}
