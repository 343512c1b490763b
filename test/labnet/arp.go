package labnet

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/mdlayher/arp"
)

// ARPSpan is a stretch of time during which one host kept answering ARP
// requests for the address: its replies came no more than the watch's gap
// apart. From and To are Unix milliseconds; To is its last reply plus the
// sampling interval.
type ARPSpan struct {
	MAC  string `json:"mac"`
	From int64  `json:"from"`
	To   int64  `json:"to"`
}

// ARPResult is what an ARPWatch saw.
type ARPResult struct {
	Requests int       `json:"requests"`
	Spans    []ARPSpan `json:"spans"`
	// Stalls counts the intervals the watcher itself fell behind by more
	// than the gap (a loaded machine): a gap in Spans there may not be one.
	Stalls int      `json:"stalls,omitempty"`
	Errors []string `json:"errors,omitempty"`
}

// ARPWatch asks the LAN of the interface ifname who has target every
// interval, as a client's neighbour resolution would, until ctx ends, and
// records which hosts answer when. Replies of one host no more than gap
// apart make one span, so that a reply delayed by a busy machine does not
// count as a moment without an answer; the measure is as fine as gap.
// ready is called once the socket is open.
func ARPWatch(ctx context.Context, ifname string, target netip.Addr, every, gap time.Duration, ready func()) ARPResult {
	var r ARPResult
	fail := func(err error) {
		if len(r.Errors) < 5 {
			r.Errors = append(r.Errors, err.Error())
		}
	}
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		fail(err)
		return r
	}
	c, err := arp.Dial(ifi)
	if err != nil {
		fail(err)
		return r
	}
	defer c.Close()
	ready()
	open := map[string]int{} // MAC -> index of its latest span
	next := time.Now()
	for ctx.Err() == nil {
		next = next.Add(every)
		if err := c.Request(target); err != nil {
			fail(err)
		}
		r.Requests++
		for {
			if err := c.SetReadDeadline(next); err != nil {
				fail(err)
				break
			}
			p, _, err := c.Read()
			if err != nil {
				break // the deadline: time for the next request
			}
			if p.Operation != arp.OperationReply || p.SenderIP != target {
				continue
			}
			now, mac := time.Now().UnixMilli(), p.SenderHardwareAddr.String()
			if i, ok := open[mac]; ok && now-r.Spans[i].To <= gap.Milliseconds() {
				r.Spans[i].To = max(r.Spans[i].To, now+every.Milliseconds())
				continue
			}
			open[mac] = len(r.Spans)
			r.Spans = append(r.Spans, ARPSpan{MAC: mac, From: now, To: now + every.Milliseconds()})
		}
		if behind := time.Since(next); behind > 0 {
			if behind > gap {
				r.Stalls++
			}
			next = time.Now() // no burst to catch up
		}
	}
	return r
}

// Answered sums the time between from and to during which exactly n hosts
// answered (n < 0: two or more).
func (r ARPResult) Answered(n int, from, to time.Time) time.Duration {
	type edge struct {
		at    int64
		delta int
	}
	lo, hi := from.UnixMilli(), to.UnixMilli()
	edges := []edge{{lo, 0}, {hi, 0}}
	for _, s := range r.Spans {
		if s.To > lo && s.From < hi {
			edges = append(edges, edge{max(s.From, lo), 1}, edge{min(s.To, hi), -1})
		}
	}
	slices.SortFunc(edges, func(a, b edge) int { return int(a.at - b.at) })
	var ms int64
	active := 0
	for i, e := range edges {
		if i > 0 && (active == n || (n < 0 && active >= 2)) {
			ms += e.at - edges[i-1].at
		}
		active += e.delta
	}
	return time.Duration(ms) * time.Millisecond
}

// LastAnswer returns when mac last answered before t (zero: not at all).
func (r ARPResult) LastAnswer(mac string, t time.Time) time.Time {
	var last int64
	for _, s := range r.Spans {
		if s.MAC == mac && s.From < t.UnixMilli() {
			last = max(last, min(s.To, t.UnixMilli()))
		}
	}
	if last == 0 {
		return time.Time{}
	}
	return time.UnixMilli(last)
}

// FirstAnswer returns who answered first after t other than mac, and when.
func (r ARPResult) FirstAnswer(t time.Time, mac string) (string, time.Time) {
	who, at := "", int64(0)
	for _, s := range r.Spans {
		if s.MAC != mac && s.From >= t.UnixMilli() && (who == "" || s.From < at) {
			who, at = s.MAC, s.From
		}
	}
	if who == "" {
		return "", time.Time{}
	}
	return who, time.UnixMilli(at)
}
