//go:build vm

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgelb/edgelb/test/labnet"
)

// The test binary doubles as the small programs the scenario runs inside
// network namespaces (busybox wget crashes under `ip netns exec`). The
// helper is chosen by EDGELB_HELPER; its arguments come in EDGELB_ARGS.

func runHelper(name string, args []string) int {
	var err error
	switch name {
	case "serve":
		err = serve(args)
	case "http":
		err = httpClient(args)
	case "udp":
		err = udpClient(args)
	case "hold":
		err = hold(args)
	case "load":
		err = load(args)
	case "get":
		err = get(args)
	case "post":
		err = postJSON(args)
	case "flows":
		err = flows(args)
	case "probe":
		err = probe(args)
	default:
		err = fmt.Errorf("unknown helper %q", name)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	return 0
}

// serve NAME: the servers of a cluster node (labnet.Serve).
func serve(args []string) error {
	return labnet.Serve(context.Background(), args[0], os.Stdout)
}

// result of the clients: answers counted by first word, and the distinct
// remote addresses the servers saw.
type result struct {
	Counts  map[string]int `json:"counts"`
	Remotes map[string]int `json:"remotes"`
	Locals  map[string]int `json:"locals"`
	Errors  int            `json:"errors"`
	LastErr string         `json:"lastErr,omitempty"`
}

func newResult() *result {
	return &result{Counts: map[string]int{}, Remotes: map[string]int{}, Locals: map[string]int{}}
}

func (r *result) add(answer string) {
	f := strings.Fields(answer)
	if len(f) == 0 {
		return
	}
	r.Counts[f[0]]++
	if len(f) >= 3 {
		host, _, _ := net.SplitHostPort(f[1])
		r.Locals[host]++
		host, _, _ = net.SplitHostPort(f[2])
		r.Remotes[host]++
	} else if len(f) == 2 {
		host, _, _ := net.SplitHostPort(f[1])
		r.Remotes[host]++
	}
}

func (r *result) print() error { return json.NewEncoder(os.Stdout).Encode(r) }

// dialer returns a dialer from the source address src ("" for any).
func dialer(src string, timeout time.Duration) *net.Dialer {
	d := &net.Dialer{Timeout: timeout}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	return d
}

// http N URL [SRC]: N requests, each on a new connection, from the
// source address SRC if given.
func httpClient(args []string) error {
	n, _ := strconv.Atoi(args[0])
	src := ""
	if len(args) > 2 {
		src = args[2]
	}
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, DialContext: dialer(src, 3*time.Second).DialContext}}
	r := newResult()
	for range n {
		resp, err := c.Get(args[1])
		if err != nil {
			r.Errors++
			r.LastErr = err.Error()
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		r.add(string(b))
	}
	return r.print()
}

// udp N ADDR: N datagrams, each from a new socket.
func udpClient(args []string) error {
	n, _ := strconv.Atoi(args[0])
	r := newResult()
	buf := make([]byte, 1500)
	for range n {
		c, err := net.Dial("udp", args[1])
		if err != nil {
			return err
		}
		c.SetDeadline(time.Now().Add(2 * time.Second))
		c.Write([]byte("hi"))
		m, err := c.Read(buf)
		c.Close()
		if err != nil {
			r.Errors++
			r.LastErr = err.Error()
			continue
		}
		r.add(string(buf[:m]))
	}
	return r.print()
}

// hold ADDR SECONDS [SRC]: one TCP connection to an echo server, from
// SRC if given, used every 100 ms for SECONDS; any failure fails the
// helper. It prints "connected" once the connection is up.
func hold(args []string) error {
	secs, _ := strconv.Atoi(args[1])
	src := ""
	if len(args) > 2 {
		src = args[2]
	}
	c, err := dialer(src, 3*time.Second).Dial("tcp", args[0])
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Println("connected", c.LocalAddr())
	rd := bufio.NewReader(c)
	// SIGTERM ends it early, as a success if every exchange so far was.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	end := time.Now().Add(time.Duration(secs) * time.Second)
	for i := 0; time.Now().Before(end); i++ {
		select {
		case <-stop:
			fmt.Println("held")
			return nil
		default:
		}
		// TCP rides out a pause of a few seconds (a restart of a
		// single host, whose VIP manager removes the VIP while it is
		// stopped) by retransmitting; only a broken connection fails.
		c.SetDeadline(time.Now().Add(15 * time.Second))
		msg := fmt.Sprintf("ping %d\n", i)
		if _, err := io.WriteString(c, msg); err != nil {
			return fmt.Errorf("write %d: %w", i, err)
		}
		line, err := rd.ReadString('\n')
		if err != nil || line != msg {
			return fmt.Errorf("echo %d: %q, %v", i, line, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Println("held")
	return nil
}

// load URL SECONDS CONNS: keep-alive GETs on CONNS connections for SECONDS;
// prints requests per second.
func load(args []string) error {
	secs, _ := strconv.Atoi(args[1])
	conns, _ := strconv.Atoi(args[2])
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}
	c := &http.Client{Timeout: 5 * time.Second, Transport: tr}
	end := time.Now().Add(time.Duration(secs) * time.Second)
	counts := make(chan int, conns)
	start := time.Now()
	for range conns {
		go func() {
			n := 0
			for time.Now().Before(end) {
				resp, err := c.Get(args[0])
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				n++
			}
			counts <- n
		}()
	}
	total := 0
	for range conns {
		total += <-counts
	}
	fmt.Printf("{\"rps\": %.1f}\n", float64(total)/time.Since(start).Seconds())
	return nil
}

// get URL: prints the body of one GET.
func get(args []string) error {
	resp, err := http.Get(args[0])
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(os.Stdout, resp.Body)
	return err
}

// probe URL INTERVAL SECONDS: a new connection to URL every INTERVAL for
// SECONDS (labnet.Probe); prints its result.
func probe(args []string) error {
	every, err := time.ParseDuration(args[1])
	if err != nil {
		return err
	}
	secs, err := strconv.Atoi(args[2])
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs)*time.Second)
	defer cancel()
	return json.NewEncoder(os.Stdout).Encode(labnet.Probe(ctx, args[0], every))
}

// post URL...: a POST with an empty JSON body to each URL in turn; a
// status other than 2xx fails.
func postJSON(args []string) error {
	for _, u := range args {
		resp, err := http.Post(u, "application/json", nil)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("POST %s: %s %s", u, resp.Status, b)
		}
		fmt.Printf("%s\n", b)
	}
	return nil
}

// holdConnection opens a long-lived connection from the client namespace
// to target that stays open for the given seconds (the hold helper), and
// returns once it is connected; the reader yields "held" at the end if no
// byte was lost.
func holdConnection(t *testing.T, target string, seconds int) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	return holdConnectionFrom(t, target, seconds, "")
}

// holdConnectionFrom is holdConnection from the client's source address
// src ("" for the default).
func holdConnectionFrom(t *testing.T, target string, seconds int, src string) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	self, _ := os.Executable()
	hold := exec.Command("ip", "netns", "exec", "client", self)
	hold.Env = append(os.Environ(), "EDGELB_HELPER=hold", fmt.Sprintf("EDGELB_ARGS=%s %d %s", target, seconds, src))
	out, _ := hold.StdoutPipe()
	hold.Stderr = os.Stderr
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(out)
	if line, err := rd.ReadString('\n'); err != nil || !strings.HasPrefix(line, "connected") {
		t.Fatalf("long-lived connection: %q %v", line, err)
	}
	return hold, rd
}

// flows N ADDR...: N TCP connections to each echo server ADDR. It prints
// one JSON line, {"conns": [{"target", "local"}...]}, once all are up;
// then, for each line "probe" on its standard input, it sends a line on
// every connection still working, reads the echo (40 s for each: TCP's
// retransmissions, backing off, ride out a failover in that) and prints
// {"failed": {"LOCAL TARGET": ERROR}} for the ones that broke (a local
// port may serve connections to several targets); those are not tried
// again. It ends at the end of its input.
func flows(args []string) error {
	n, _ := strconv.Atoi(args[0])
	type conn struct {
		Target string `json:"target"`
		Local  string `json:"local"`
		c      net.Conn
		rd     *bufio.Reader
		broken bool
	}
	var conns []*conn
	// Every connection has its own client port. The kernel picks ports
	// per destination and may give two VIPs the same one; IPVS finds a
	// nat connection's replies by client and real server alone (not by
	// VIP), so two nat connections from one client port to one real
	// server through two VIPs get each other's replies
	// (docs/dataplane.md, "Known limits"). The ports are below the
	// ephemeral range; one still in use from an earlier run is skipped.
	port := 20000
	for _, target := range args[1:] {
		for range n {
			var c net.Conn
			var err error
			for ; port < 32000; port++ {
				d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{Port: port}}
				if c, err = d.Dial("tcp", target); err == nil || !errors.Is(err, syscall.EADDRINUSE) {
					break
				}
			}
			port++
			if err != nil {
				return fmt.Errorf("connecting to %s: %w", target, err)
			}
			defer c.Close()
			conns = append(conns, &conn{Target: target, Local: c.LocalAddr().String(), c: c, rd: bufio.NewReader(c)})
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(map[string]any{"conns": conns}); err != nil {
		return err
	}
	in := bufio.NewScanner(os.Stdin)
	for round := 0; in.Scan(); round++ {
		failed := map[string]string{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, c := range conns {
			if c.broken {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.c.SetDeadline(time.Now().Add(40 * time.Second))
				msg := fmt.Sprintf("probe %d %s\n", round, c.Local)
				_, err := io.WriteString(c.c, msg)
				line := ""
				if err == nil {
					line, err = c.rd.ReadString('\n')
				}
				if err == nil && line != msg {
					err = fmt.Errorf("echo %q, want %q", line, msg)
				}
				if err != nil {
					mu.Lock()
					c.broken, failed[c.Local+" "+c.Target] = true, err.Error()
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if err := json.NewEncoder(os.Stdout).Encode(map[string]any{"failed": failed}); err != nil {
			return err
		}
	}
	return nil
}
