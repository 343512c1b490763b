package ipvs

import (
	"net/netip"
	"slices"

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

// Stats reads the counters of edgelb's virtual services from the kernel,
// sorted by key. It is safe to call concurrently with Run.
func (d *Dataplane) Stats() ([]ServiceStats, error) {
	d.mu.Lock()
	managed := d.managed
	d.mu.Unlock()
	kvs, err := d.o.IPVS.GetVirtualServers()
	if err != nil {
		return nil, err
	}
	var out []ServiceStats
	for _, kv := range kvs {
		if !managed[kv.Address] {
			continue
		}
		rss, err := d.o.IPVS.GetRealServers(kv)
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
