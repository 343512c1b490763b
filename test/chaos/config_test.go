package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/vishvananda/netns"

	"github.com/edgelb/edgelb/cluster/consensus/consensustest"
	"github.com/edgelb/edgelb/test/nslab"
)

// hostAPI is an HTTP client of one host's API, which listens on the
// loopback of the host's namespace: each connection is made from a
// thread that entered that namespace, so partitions of the LAN never cut
// the test from a host.
func hostAPI(t *testing.T, h *nslab.Host) *http.Client {
	t.Helper()
	ns, err := netns.GetFromName(h.NS)
	if err != nil {
		t.Fatalf("%s: %v", h.Name, err)
	}
	t.Cleanup(func() { ns.Close() })
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		type res struct {
			c   net.Conn
			err error
		}
		ch := make(chan res, 1)
		go func() {
			runtime.LockOSThread() // left locked: the thread ends with the goroutine
			if err := netns.Set(ns); err != nil {
				ch <- res{nil, err}
				return
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			ch <- res{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
}

const apiBase = "http://127.0.0.1:9080/api/v1"

// regValue is the register's content in a configuration spec: the one
// backend of backendStates (a static service that does not exist, so no
// traffic changes), "" without one.
func regValue(spec map[string]any) string {
	bs, _ := spec["backendStates"].([]any)
	if len(bs) == 0 {
		return ""
	}
	m, _ := bs[0].(map[string]any)
	s, _ := m["backend"].(string)
	return s
}

// getConfig reads the version a host runs.
func getConfig(c *http.Client) (uint64, map[string]any, error) {
	resp, err := c.Get(apiBase + "/config")
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var doc struct {
		Version uint64         `json:"version"`
		Spec    map[string]any `json:"spec"`
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return 0, nil, fmt.Errorf("GET config: %s: %s", resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return 0, nil, err
	}
	return doc.Version, doc.Spec, nil
}

// history reads a host's kept versions: number → register content.
func history(c *http.Client) (map[uint64]string, error) {
	resp, err := c.Get(apiBase + "/config/history")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var hs []struct {
		Version uint64 `json:"version"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&hs); err != nil {
		return nil, err
	}
	out := map[uint64]string{}
	for _, h := range hs {
		r, err := c.Get(fmt.Sprintf("%s/config/history/%d", apiBase, h.Version))
		if err != nil {
			return nil, err
		}
		var doc struct {
			Spec map[string]any `json:"spec"`
		}
		err = json.NewDecoder(r.Body).Decode(&doc)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
		out[h.Version] = regValue(doc.Spec)
	}
	return out, nil
}

// errNotSent: the request never reached the host (nothing listens, the
// process is down); the write did not happen.
var errNotSent = errors.New("not sent")

// errUnknown: no answer, or 503 — the write may have been committed or
// not.
var errUnknown = errors.New("unknown outcome")

// putConfig makes spec, with value as the register's content, the
// version after from. It returns the new version (200), stale (409/412),
// or unknown (no answer, 503: it may commit later).
func putConfig(c *http.Client, from uint64, spec map[string]any, value string) (v uint64, stale bool, err error) {
	next := map[string]any{}
	for k, x := range spec {
		next[k] = x
	}
	next["backendStates"] = []any{map[string]any{"service": "_static/register", "backend": value, "state": "drain"}}
	body, _ := json.Marshal(map[string]any{"spec": next})
	req, _ := http.NewRequest(http.MethodPut, apiBase+"/config", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("If-Match", fmt.Sprintf("%q", fmt.Sprint(from)))
	resp, err := c.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return 0, false, errNotSent
		}
		return 0, false, fmt.Errorf("%w: %w", errUnknown, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	switch resp.StatusCode {
	case http.StatusOK:
		var doc struct {
			Version uint64 `json:"version"`
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			return 0, false, err
		}
		return doc.Version, false, nil
	case http.StatusConflict, http.StatusPreconditionFailed:
		return 0, true, nil
	case http.StatusServiceUnavailable:
		return 0, false, fmt.Errorf("%w: PUT config: %s: %s", errUnknown, resp.Status, b)
	default:
		return 0, false, fmt.Errorf("PUT config: %s: %s", resp.Status, b)
	}
}

// The cluster configuration on the real binary, as a register with
// compare-and-set, checked by porcupine: writers on every host PUT from
// the version they read while hosts are partitioned away, SIGKILLed and
// restarted. Every acknowledged write must be linearizable, present at
// its version on every host afterwards, and no content a host showed
// for a version may differ from what that version has at the end (seen,
// then lost).
func TestConfigurationLinearizable(t *testing.T) {
	sizes := count([]int{3, 5}, []int{3})
	for _, n := range sizes {
		t.Run(fmt.Sprintf("%d hosts", n), func(t *testing.T) { configurationLinearizable(t, n) })
	}
}

func configurationLinearizable(t *testing.T, n int) {
	scenario := fmt.Sprintf("configuration linearizable, %d hosts", n)
	l := startLab(t, n)
	if !l.Configured(nslab.Converge) {
		t.Fatal("the hosts run no committed version")
	}
	clients := make([]*http.Client, n)
	for i, h := range l.Hosts {
		clients[i] = hostAPI(t, h)
	}
	v0, spec0, err := getConfig(clients[0])
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var (
		mu  sync.Mutex
		ops []porcupine.Operation
		// seen: what each read showed for a version.
		seen              = map[uint64]map[string]string{} // version → content → host
		acked             = map[uint64]string{}
		stop              = make(chan struct{})
		seq               atomic.Int64
		nOK, nStale, nUnk atomic.Int64
	)
	ops = append(ops, porcupine.Operation{ClientId: 0, Input: consensustest.RegInput{}, Call: 0, Output: consensustest.RegOutput{V: v0, B: regValue(spec0)}, Return: 1})
	now := func() int64 { return int64(time.Since(start)) + 2 }
	var wg sync.WaitGroup
	for w := range 2 * n {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(w), 7))
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := rnd.IntN(n)
				v, spec, err := getConfig(clients[i])
				if err != nil {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				mu.Lock()
				if seen[v] == nil {
					seen[v] = map[string]string{}
				}
				seen[v][regValue(spec)] = l.Hosts[i].Name
				mu.Unlock()
				value := fmt.Sprintf("10.1.%d.%d:1", w, seq.Add(1)%250+1)
				j := rnd.IntN(n) // the write goes through any host
				call := now()
				got, stale, err := putConfig(clients[j], v, spec, value)
				ret := now()
				in := consensustest.RegInput{Write: true, If: v, B: value}
				var out consensustest.RegOutput
				switch {
				case errors.Is(err, errNotSent):
					continue
				case errors.Is(err, errUnknown):
					out.Unknown, ret = true, math.MaxInt64
					nUnk.Add(1)
				case err != nil:
					t.Errorf("write through %s: %v", l.Hosts[j].Name, err)
					continue
				case stale:
					out.Stale = true
					nStale.Add(1)
				default:
					out.OK, out.V = true, got
					nOK.Add(1)
				}
				mu.Lock()
				ops = append(ops, porcupine.Operation{ClientId: w + 1, Input: in, Call: call, Output: out, Return: ret})
				if out.OK {
					if prev, ok := acked[got]; ok {
						t.Errorf("version %d acknowledged twice: %s and %s", got, prev, value)
					}
					acked[got] = value
				}
				mu.Unlock()
				time.Sleep(time.Duration(rnd.IntN(200)) * time.Millisecond)
			}
		})
	}

	// The faults, in turn: a minority partitioned away, a host SIGKILLed
	// and started again, a graceful restart.
	rounds := count(4, 1)
	rnd := rand.New(rand.NewPCG(uint64(n), 11))
	for r := range rounds {
		minority := make([]*nslab.Host, 0, n/2)
		for _, k := range rnd.Perm(n)[:n/2] {
			minority = append(minority, l.Hosts[k])
		}
		t.Logf("round %d: partition %v", r, nslab.Names(minority))
		l.Partition(minority...)
		time.Sleep(4 * time.Second)
		l.Heal()
		time.Sleep(3 * time.Second)
		victim := l.Hosts[rnd.IntN(n)]
		t.Logf("round %d: SIGKILL %s", r, victim.Name)
		victim.Kill()
		time.Sleep(3 * time.Second)
		victim.Start()
		time.Sleep(3 * time.Second)
		victim = l.Hosts[rnd.IntN(n)]
		t.Logf("round %d: restart %s", r, victim.Name)
		if _, err := victim.Restart(20 * time.Second); err != nil {
			t.Errorf("restart of %s: %v", victim.Name, err)
		}
		time.Sleep(3 * time.Second)
	}
	close(stop)
	wg.Wait()

	// Afterwards every host has the same history, with every
	// acknowledged write at its version.
	var final map[uint64]string
	var last uint64
	if !nslab.Poll(nslab.Converge, func() bool {
		final, last = nil, 0
		for _, c := range clients {
			h, err := history(c)
			if err != nil {
				return false
			}
			if final == nil {
				final = h
			} else if !maps.Equal(final, h) {
				return false
			}
		}
		for v := range final {
			last = max(last, v)
		}
		return true
	}) {
		t.Fatalf("the hosts' histories did not agree within %v", nslab.Converge)
	}
	end := now()
	for i, c := range clients {
		v, spec, err := getConfig(c)
		if err != nil {
			t.Fatalf("%s: %v", l.Hosts[i].Name, err)
		}
		ops = append(ops, porcupine.Operation{ClientId: 1000 + i, Input: consensustest.RegInput{}, Call: end, Output: consensustest.RegOutput{V: v, B: regValue(spec)}, Return: end + 1})
	}
	oldest := last
	for v := range final {
		oldest = min(oldest, v)
	}
	for v, value := range acked {
		if got, ok := final[v]; v >= oldest && (!ok || got != value) {
			t.Errorf("acknowledged version %d (%s) is %q afterwards", v, value, got)
		}
	}
	var lost []string
	for v, by := range seen {
		for value, host := range by {
			if got, ok := final[v]; v >= oldest && ok && got != value {
				lost = append(lost, fmt.Sprintf("%s showed version %d as %q, which is %q afterwards", host, v, value, got))
			}
		}
	}
	sort.Strings(lost)
	for _, s := range lost {
		t.Error(s)
	}
	res, info := porcupine.CheckOperationsVerbose(consensustest.RegisterModel(consensustest.RegState{V: v0, B: regValue(spec0)}), ops, time.Minute)
	if res != porcupine.Ok {
		_ = info
		var b strings.Builder
		for _, op := range ops {
			fmt.Fprintf(&b, "\n%d [%d,%d] %+v -> %+v", op.ClientId, op.Call, op.Return, op.Input, op.Output)
		}
		t.Errorf("porcupine: %v over %d operations:%s", res, len(ops), b.String())
	}
	figure(t, scenario, "writes", fmt.Sprintf("%d acknowledged, %d stale, %d unknown over %d rounds of faults; versions %d..%d on every host", nOK.Load(), nStale.Load(), nUnk.Load(), rounds, v0, last))
	if nOK.Load() == 0 {
		t.Error("no write was acknowledged: the check saw nothing")
	}
}
