package ipvs

import (
	"errors"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/edgelb/edgelb/lb"
)

// ServiceStats are the IPVS counters of one virtual service and its
// backends, as the API and metrics show them.
type ServiceStats struct {
	Key      lb.Key
	Stats    Stats
	Backends []BackendStats
}

// BackendStats are the counters and state of one real server.
type BackendStats struct {
	Addr          netip.AddrPort
	Weight        int
	ActiveConns   int
	InactiveConns int
	Stats         Stats
}

// StatsReader is what the API and metrics need from the dataplane.
type StatsReader interface {
	Stats() ([]ServiceStats, error)
}

var _ StatsReader = (*Dataplane)(nil)

// DefaultStatsInterval is how long Stats serves the counters it read
// before it reads the kernel again.
const DefaultStatsInterval = time.Second

// statsCache holds the last read of the counters. Its mutex is held
// during a read, so that readers arriving meanwhile wait for it and share
// it instead of reading again; it is not the mutex of the pass.
type statsCache struct {
	mu  sync.Mutex
	at  time.Time // zero: never read
	val []ServiceStats
	err error
}

// Stats returns the counters of edgelb's virtual services, sorted by key,
// at most StatsInterval old: it reads the kernel (through StatsIPVS, a
// handle of its own) at most once per interval, however many API
// requests and scrapes ask. It is safe to call concurrently with Run.
// The caller must not modify the result.
func (d *Dataplane) Stats() ([]ServiceStats, error) {
	c := &d.stats
	c.mu.Lock()
	defer c.mu.Unlock()
	now := d.o.Now()
	if !c.at.IsZero() && now.Sub(c.at) < d.o.StatsInterval && !now.Before(c.at) {
		return c.val, c.err
	}
	c.val, c.err = d.readStats()
	c.at = now
	return c.val, c.err
}

// readStats reads the counters from the kernel. A virtual service that
// goes away between the listing and the read of its real servers (deleted
// by a pass meanwhile) is left out.
func (d *Dataplane) readStats() ([]ServiceStats, error) {
	d.mu.Lock()
	managed := d.managed
	d.mu.Unlock()
	kvs, err := d.o.StatsIPVS.GetVirtualServers()
	if err != nil {
		return nil, err
	}
	var out []ServiceStats
	for _, kv := range kvs {
		if !managed[kv.Address] {
			continue
		}
		rss, err := d.o.StatsIPVS.GetRealServers(kv)
		if errors.Is(err, ErrNoService) {
			continue
		}
		if err != nil {
			return nil, err
		}
		s := ServiceStats{Key: keyOf(kv), Stats: kv.Stats}
		for _, r := range rss {
			s.Backends = append(s.Backends, BackendStats{Addr: r.AddrPort(), Weight: r.Weight,
				ActiveConns: r.ActiveConns, InactiveConns: r.InactiveConns, Stats: r.Stats})
		}
		slices.SortFunc(s.Backends, func(a, b BackendStats) int { return a.Addr.Compare(b.Addr) })
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b ServiceStats) int { return a.Key.Compare(b.Key) })
	return out, nil
}
