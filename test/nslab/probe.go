package nslab

import (
	"bufio"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Probes is a running prober or holder in the client namespace.
type Probes struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	res  []ProbeResult
	done chan struct{}
}

// ProbeResult is one probe: when it started, whether it was answered, and
// by which host (or the error).
type ProbeResult struct {
	Start time.Time
	OK    bool
	Host  string
}

// Probe starts probing target's port 8080 every 10 ms, each probe on a
// new connection with the given timeout, until Stop.
func (l *Lab) Probe(target netip.Addr, timeout time.Duration) *Probes {
	return l.client("prober", "ELBT_TARGET="+netip.AddrPortFrom(target, 8080).String(),
		"ELBT_INTERVAL=10ms", "ELBT_TIMEOUT="+timeout.String())
}

// ProbeFrom is Probe from the namespace ns (a router's, say) instead of
// the client's.
func (l *Lab) ProbeFrom(ns string, target netip.Addr, timeout time.Duration) *Probes {
	return l.runIn(ns, "prober", "ELBT_TARGET="+netip.AddrPortFrom(target, 8080).String(),
		"ELBT_INTERVAL=10ms", "ELBT_TIMEOUT="+timeout.String())
}

// Hold opens one long-lived TCP connection from the client to target's
// echo port (8081) that exchanges a line every 100 ms until Stop; the
// results have the prober's form.
func (l *Lab) Hold(target netip.Addr) *Probes {
	return l.client("holder", "ELBT_TARGET="+netip.AddrPortFrom(target, 8081).String(), "ELBT_INTERVAL=100ms")
}

// client runs this test binary in a role in the client namespace and
// reads its result lines.
func (l *Lab) client(role string, env ...string) *Probes {
	return l.runIn(l.Client, role, env...)
}

// runIn runs this test binary in a role in the namespace ns and reads its
// result lines.
func (l *Lab) runIn(ns, role string, env ...string) *Probes {
	cmd := exec.Command("ip", "netns", "exec", ns, selfBin)
	cmd.Env = append(append(os.Environ(), "ELBT_ROLE="+role), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		l.T.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		l.T.Fatal(err)
	}
	p := &Probes{cmd: cmd, done: make(chan struct{})}
	go p.read(out)
	l.T.Cleanup(func() { p.Stop() })
	return p
}

func (p *Probes) read(r io.Reader) {
	defer close(p.done)
	s := bufio.NewScanner(r)
	for s.Scan() {
		f := strings.SplitN(s.Text(), " ", 3)
		if len(f) != 3 {
			continue
		}
		ns, _ := strconv.ParseInt(f[0], 10, 64)
		p.mu.Lock()
		p.res = append(p.res, ProbeResult{Start: time.Unix(0, ns), OK: f[1] == "ok", Host: f[2]})
		p.mu.Unlock()
	}
}

// Stop ends the prober, waiting for probes in flight, and returns all
// results in start order.
func (p *Probes) Stop() []ProbeResult {
	if p.cmd.Process != nil {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	<-p.done
	p.cmd.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	slices.SortFunc(p.res, func(a, b ProbeResult) int { return a.Start.Compare(b.Start) })
	return slices.Clone(p.res)
}

// Last returns the newest result, or the zero ProbeResult.
func (p *Probes) Last() ProbeResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.res) == 0 {
		return ProbeResult{}
	}
	return p.res[len(p.res)-1]
}

// Outage summarises probe results: the number of failed probes and the
// time from the first failed probe to the first successful one after the
// last failure (0 without failures).
func Outage(res []ProbeResult) (failed int, d time.Duration) {
	first, last := -1, -1
	for i, r := range res {
		if !r.OK {
			failed++
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return 0, 0
	}
	for _, r := range res[last+1:] {
		if r.OK {
			return failed, r.Start.Sub(res[first].Start)
		}
	}
	return failed, res[len(res)-1].Start.Sub(res[first].Start)
}
