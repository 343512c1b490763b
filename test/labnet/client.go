package labnet

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"time"
)

// ProbeResult is what a Probe saw: requests answered and failed, the
// answers counted by the backend's name (the first word of the body), and
// the first few errors.
type ProbeResult struct {
	OK     int `json:"ok"`
	Failed int `json:"failed"`
	// InFlight counts the failed requests whose connection had been
	// established (reset or left unanswered afterwards): in flight when
	// the client's neighbour entry for the VIP moved to a host that did
	// not know the connection.
	InFlight int `json:"inFlight"`
	// Slowest is the longest answered request, in milliseconds.
	Slowest int64 `json:"slowestMs"`
	// LongestGap is the longest time between the ends of two answered
	// requests, in milliseconds: how long the client went without an
	// answer (at least the interval).
	LongestGap int64          `json:"longestGapMs"`
	Answers    map[string]int `json:"answers"`
	Errors     []string       `json:"errors,omitempty"`
	// Stalled is, of the failed requests, how many the probing process
	// itself ran a second late or more during (runningDeadline); their
	// errors say so.
	Stalled int `json:"stalled,omitempty"`
	// LongestStall is how late the probing process ran at most during a
	// request, in milliseconds.
	LongestStall int64 `json:"longestStallMs"`
}

// probeTimeout is how long a probe's request may go unanswered, counted
// in time the probing process ran (runningDeadline).
const probeTimeout = 5 * time.Second

// stallTick is how often runningDeadline looks at the clock, and
// stallLate how late a look must come for the process to count as
// stalled.
const stallTick, stallLate = 100 * time.Millisecond, time.Second

// runningDeadline returns a context that ends once the process has run
// for d since the call: it looks at the clock every stallTick and counts
// each look at most twice that, so that a stall of the whole process (on
// an emulated machine whose CPUs or disk are saturated, the client itself
// may not run for seconds, and then cannot tell whether an answer came)
// is not counted as waiting for the answer. stop ends it and says how
// late the latest look came and whether the deadline passed.
func runningDeadline(parent context.Context, d time.Duration) (ctx context.Context, stop func() (late time.Duration, expired bool)) {
	ctx, cancel := context.WithCancel(parent)
	done, finished := make(chan struct{}), make(chan struct{})
	var late time.Duration
	var expired bool
	go func() {
		defer close(finished)
		t := time.NewTicker(stallTick)
		defer t.Stop()
		last, ran := time.Now(), time.Duration(0)
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			now := time.Now()
			gap := now.Sub(last)
			last = now
			late = max(late, gap-stallTick)
			ran += min(gap, 2*stallTick)
			if ran >= d {
				expired = true
				cancel()
				return
			}
		}
	}()
	return ctx, func() (time.Duration, bool) {
		close(done)
		<-finished
		cancel()
		return late, expired
	}
}

// Probe sends a GET to url every interval, each on a new connection, until
// ctx ends: a client that notices any outage. A request fails when it is
// refused or reset, or unanswered for five seconds of the probing
// process's own running time (runningDeadline; TCP's retransmissions
// after a lost SYN at 1 s and 3 s show as a slow request, and Slowest
// reports them).
func Probe(ctx context.Context, url string, every time.Duration) ProbeResult {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	r := ProbeResult{Answers: map[string]int{}}
	t := time.NewTicker(every)
	defer t.Stop()
	var lastOK time.Time
	for {
		select {
		case <-ctx.Done():
			return r
		case <-t.C:
		}
		var connected bool
		var local string
		reqCtx, stop := runningDeadline(ctx, probeTimeout)
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(reqCtx, &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { connected, local = true, i.Conn.LocalAddr().String() },
		}), http.MethodGet, url, nil)
		sent := time.Now()
		resp, err := c.Do(req)
		var body []byte
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("HTTP %d", resp.StatusCode)
			}
		}
		late, expired := stop()
		r.LongestStall = max(r.LongestStall, late.Milliseconds())
		if expired && err != nil {
			err = fmt.Errorf("no answer in %v of the probe's running time (%w)", probeTimeout, err)
		}
		if err != nil {
			if ctx.Err() != nil {
				return r // cut off by the end, not an outage
			}
			r.Failed++
			if connected {
				r.InFlight++
			}
			note := ""
			if connected {
				note += " (connected from " + local + ")"
			}
			if late >= stallLate {
				r.Stalled++
				note += fmt.Sprintf(" (the probing process itself ran %v late meanwhile)", late.Round(time.Millisecond))
			}
			if len(r.Errors) < 5 {
				r.Errors = append(r.Errors, sent.Format("15:04:05.000")+"–"+time.Now().Format("15:04:05.000")+" "+err.Error()+note)
			}
			continue
		}
		r.OK++
		now := time.Now()
		r.Slowest = max(r.Slowest, now.Sub(sent).Milliseconds())
		if !lastOK.IsZero() {
			r.LongestGap = max(r.LongestGap, now.Sub(lastOK).Milliseconds())
		}
		lastOK = now
		if f := strings.Fields(string(body)); len(f) > 0 {
			r.Answers[f[0]]++
		}
	}
}

// HoldResult is what a Hold saw on its one connection.
type HoldResult struct {
	Local      string `json:"local"`
	RoundTrips int    `json:"roundTrips"`
	Err        string `json:"err,omitempty"`
}

// Hold opens one TCP connection to the echo server at addr, calls
// connected once it is up, and exchanges a line every interval until ctx
// ends; any error ends it. TCP rides out a short silence by
// retransmitting, so only a connection that breaks (a reset, a timeout of
// 10 s) is an error.
func Hold(ctx context.Context, addr string, every time.Duration, connected func(local string)) HoldResult {
	var r HoldResult
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		r.Err = err.Error()
		return r
	}
	defer c.Close()
	r.Local = c.LocalAddr().String()
	connected(r.Local)
	rd := bufio.NewReader(c)
	t := time.NewTicker(every)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return r
		case <-t.C:
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		msg := fmt.Sprintf("ping %d\n", i)
		if _, err := io.WriteString(c, msg); err != nil {
			r.Err = fmt.Sprintf("write %d: %v", i, err)
			return r
		}
		line, err := rd.ReadString('\n')
		if err != nil || line != msg {
			r.Err = fmt.Sprintf("echo %d: %q, %v", i, line, err)
			return r
		}
		r.RoundTrips++
	}
}
