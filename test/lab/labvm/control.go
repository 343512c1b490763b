package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/edgelb/edgelb/test/labnet"
)

// controller is the lab's control endpoint, forwarded to the host's
// loopback: what a user of `make lab` would otherwise have to type inside
// the VM.
//
//	GET  /route           the router's `show ip route VIP` (vtysh)
//	GET  /hosts           per appliance: up or killed, and how many
//	                      connections its IPVS took for the bgp Service
//	POST /kill?host=lbN   SIGKILL lbN's edgelb, then cut its link
type controller struct {
	frr *labnet.FRR
	svc netip.AddrPort // the bgp demo Service's VIP and port

	routeMu sync.Mutex // one vtysh for /route at a time

	mu     sync.Mutex
	hosts  map[string]*exec.Cmd // lbN's edgelb
	killed map[string]bool
}

func (c *controller) serve(ctx context.Context, listen string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /route", func(w http.ResponseWriter, r *http.Request) {
		// One vtysh at a time: under the VM's CPU emulation one takes
		// seconds, and a client that gave up and asked again must not
		// start a second beside the first (each slowing the other).
		c.routeMu.Lock()
		defer c.routeMu.Unlock()
		if r.Context().Err() != nil {
			return // the client is gone
		}
		out, err := c.frr.Vtysh("show ip route " + c.svc.Addr().String())
		if err != nil {
			http.Error(w, fmt.Sprintf("vtysh: %v\n%s", err, out), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, out)
	})
	mux.HandleFunc("GET /hosts", func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		names := make([]string, 0, len(c.hosts))
		for n := range c.hosts {
			names = append(names, n)
		}
		killed := c.killed
		c.mu.Unlock()
		slices.Sort(names)
		for _, n := range names {
			state := "up"
			if killed[n] {
				state = "killed"
			}
			fmt.Fprintf(w, "%s %s conns=%s\n", n, state, c.conns(n))
		}
	})
	mux.HandleFunc("POST /kill", func(w http.ResponseWriter, r *http.Request) {
		msg, err := c.kill(r.URL.Query().Get("host"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintln(w, msg)
	})
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// conns is the number of connections lbN's IPVS scheduled for the bgp
// Service since it started ("?" if ipvsadm cannot tell).
func (c *controller) conns(lb string) string {
	out, err := exec.Command("ip", "netns", "exec", lb, "ipvsadm", "-Ln", "--stats", "-t", c.svc.String()).Output()
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 2 && f[0] == "TCP" {
			return f[2]
		}
	}
	return "?"
}

// kill makes lb a lost host: its edgelb is SIGKILLed (the kernel closes
// its BGP session, so the router drops its routes at once) and its link
// to the bridge goes down (what it still holds in the kernel — the VIP,
// IPVS — is cut off with it).
func (c *controller) kill(lb string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cmd, ok := c.hosts[lb]
	switch {
	case !ok:
		return "", fmt.Errorf("no host %q (lb1, lb2 or lb3)", lb)
	case c.killed[lb]:
		return "", fmt.Errorf("%s is already killed", lb)
	}
	pid := cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return "", fmt.Errorf("killing %s's edgelb (pid %d): %w", lb, pid, err)
	}
	// Dead once a zombie (its sockets closed); up's teardown reaps it.
	for end := time.Now().Add(10 * time.Second); !zombie(pid); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			return "", fmt.Errorf("%s's edgelb (pid %d) did not die", lb, pid)
		}
	}
	if out, err := exec.Command("ip", "link", "set", "v-"+lb, "down").CombinedOutput(); err != nil {
		return "", fmt.Errorf("cutting %s's link: %v: %s", lb, err, out)
	}
	killed := map[string]bool{lb: true}
	for n := range c.killed {
		killed[n] = true
	}
	c.killed = killed // a new map: /hosts reads the old one unlocked
	say("%s killed: edgelb (pid %d) SIGKILLed, link v-%s down", lb, pid, lb)
	return fmt.Sprintf("%s: edgelb (pid %d) SIGKILLed, its link cut", lb, pid), nil
}

func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// pid (comm) STATE ...: comm may hold spaces, the state follows the last ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}
