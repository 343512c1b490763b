// Package ipvstest provides an in-memory ipvs.Interface for tests.
package ipvstest

import (
	"fmt"
	"slices"
	"sync"

	"github.com/edgelb/edgelb/lb/ipvs"
)

// Fake is an in-memory IPVS table. Its fields may be read and modified by
// tests between calls; the methods are safe for concurrent use.
type Fake struct {
	mu sync.Mutex
	// Services holds the table: virtual server → its real servers.
	Services map[ipvs.ID]*Entry
	// Calls counts every mutating call by method name ("AddVirtualServer",
	// ...), so tests can check that a pass changed only what it had to.
	Calls map[string]int
	// Touched logs, per virtual service, every call that names it (reads
	// included), by method name in order: tests check that a pass left
	// the others alone.
	Touched map[ipvs.ID][]string
	// Fail, when it returns an error for a method name, makes that call
	// fail without changing anything.
	Fail func(method string) error
	// AfterList, when set, is called after each GetVirtualServers has
	// answered, without the lock held: a test changes the table there
	// between a listing and the reads that follow it, as another writer
	// would.
	AfterList func()
}

// Entry is one virtual server of the fake table and its real servers.
type Entry struct {
	VS  ipvs.VirtualServer
	RSs []ipvs.RealServer
}

var _ ipvs.Interface = (*Fake)(nil)

// New returns an empty table.
func New() *Fake {
	return &Fake{Services: map[ipvs.ID]*Entry{}, Calls: map[string]int{}, Touched: map[ipvs.ID][]string{}}
}

// SetFail sets Fail while the table is in use by another goroutine.
func (f *Fake) SetFail(fail func(method string) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Fail = fail
}

func (f *Fake) call(m string) error {
	f.Calls[m]++
	if f.Fail != nil {
		return f.Fail(m)
	}
	return nil
}

// callOn records a call that names virtual service v.
func (f *Fake) callOn(m string, v *ipvs.VirtualServer) error {
	if f.Touched == nil {
		f.Touched = map[ipvs.ID][]string{}
	}
	f.Touched[v.ID()] = append(f.Touched[v.ID()], m)
	f.Calls[m]++
	if f.Fail != nil {
		return f.Fail(m)
	}
	return nil
}

// ResetCalls clears the call counters.
func (f *Fake) ResetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.Calls)
	clear(f.Touched)
}

// TouchedCopy returns a copy of Touched, for a test that reads it while
// the table is in use by another goroutine.
func (f *Fake) TouchedCopy() map[ipvs.ID][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[ipvs.ID][]string, len(f.Touched))
	for id, c := range f.Touched {
		out[id] = slices.Clone(c)
	}
	return out
}

// Mutations returns the number of calls that changed the table.
func (f *Fake) Mutations() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for m, c := range f.Calls {
		if m != "GetVirtualServers" && m != "GetRealServers" {
			n += c
		}
	}
	return n
}

// GetVirtualServers implements ipvs.Interface.
func (f *Fake) GetVirtualServers() ([]*ipvs.VirtualServer, error) {
	if f.AfterList != nil {
		defer f.AfterList()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("GetVirtualServers"); err != nil {
		return nil, err
	}
	var out []*ipvs.VirtualServer
	for _, e := range f.Services {
		v := e.VS
		out = append(out, &v)
	}
	return out, nil
}

// AddVirtualServer implements ipvs.Interface.
func (f *Fake) AddVirtualServer(v *ipvs.VirtualServer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.callOn("AddVirtualServer", v); err != nil {
		return err
	}
	if _, ok := f.Services[v.ID()]; ok {
		return fmt.Errorf("adding %s: file exists", v)
	}
	f.Services[v.ID()] = &Entry{VS: *v}
	return nil
}

// UpdateVirtualServer implements ipvs.Interface.
func (f *Fake) UpdateVirtualServer(v *ipvs.VirtualServer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.callOn("UpdateVirtualServer", v); err != nil {
		return err
	}
	e, ok := f.Services[v.ID()]
	if !ok {
		return fmt.Errorf("updating %s: %w", v, ipvs.ErrNoService)
	}
	e.VS = *v
	return nil
}

// DeleteVirtualServer implements ipvs.Interface.
func (f *Fake) DeleteVirtualServer(v *ipvs.VirtualServer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.callOn("DeleteVirtualServer", v); err != nil {
		return err
	}
	if _, ok := f.Services[v.ID()]; !ok {
		return fmt.Errorf("deleting %s: %w", v, ipvs.ErrNoService)
	}
	delete(f.Services, v.ID())
	return nil
}

// GetRealServers implements ipvs.Interface.
func (f *Fake) GetRealServers(v *ipvs.VirtualServer) ([]*ipvs.RealServer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.callOn("GetRealServers", v); err != nil {
		return nil, err
	}
	e, ok := f.Services[v.ID()]
	if !ok {
		return nil, fmt.Errorf("listing %s: %w", v, ipvs.ErrNoService)
	}
	out := make([]*ipvs.RealServer, 0, len(e.RSs))
	for _, r := range e.RSs {
		out = append(out, &r)
	}
	return out, nil
}

func (e *Entry) index(r *ipvs.RealServer) int {
	return slices.IndexFunc(e.RSs, func(o ipvs.RealServer) bool { return o.AddrPort() == r.AddrPort() })
}

// AddRealServer implements ipvs.Interface.
func (f *Fake) AddRealServer(v *ipvs.VirtualServer, r *ipvs.RealServer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.callOn("AddRealServer", v); err != nil {
		return err
	}
	e, ok := f.Services[v.ID()]
	if !ok {
		return fmt.Errorf("adding to %s: %w", v, ipvs.ErrNoService)
	}
	if e.index(r) >= 0 {
		return fmt.Errorf("adding %s to %s: file exists", r, v)
	}
	// The kernel puts a new destination at the head of the service's
	// list, and lists them in that order.
	e.RSs = slices.Insert(e.RSs, 0, ipvs.RealServer{Address: r.Address, Port: r.Port, Weight: r.Weight, Method: r.Method, UpperThreshold: r.UpperThreshold})
	return nil
}

// UpdateRealServer implements ipvs.Interface.
func (f *Fake) UpdateRealServer(v *ipvs.VirtualServer, r *ipvs.RealServer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.callOn("UpdateRealServer", v); err != nil {
		return err
	}
	e, ok := f.Services[v.ID()]
	if !ok {
		return fmt.Errorf("updating in %s: %w", v, ipvs.ErrNoService)
	}
	i := e.index(r)
	if i < 0 {
		return fmt.Errorf("updating %s in %s: no such destination", r, v)
	}
	e.RSs[i].Weight, e.RSs[i].Method, e.RSs[i].UpperThreshold = r.Weight, r.Method, r.UpperThreshold
	return nil
}

// DeleteRealServer implements ipvs.Interface.
func (f *Fake) DeleteRealServer(v *ipvs.VirtualServer, r *ipvs.RealServer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.callOn("DeleteRealServer", v); err != nil {
		return err
	}
	e, ok := f.Services[v.ID()]
	if !ok {
		return fmt.Errorf("deleting from %s: %w", v, ipvs.ErrNoService)
	}
	i := e.index(r)
	if i < 0 {
		return fmt.Errorf("deleting %s from %s: no such destination", r, v)
	}
	e.RSs = slices.Delete(e.RSs, i, i+1)
	return nil
}

// SetActive sets the active connection count of a real server, as traffic
// would.
func (f *Fake) SetActive(id ipvs.ID, rs ipvs.RealServer, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e, ok := f.Services[id]; ok {
		if i := e.index(&rs); i >= 0 {
			e.RSs[i].ActiveConns = n
		}
	}
}

// SetConns sets the active and inactive (FIN_WAIT, TIME_WAIT, ...)
// connection counts of a real server, as traffic would.
func (f *Fake) SetConns(id ipvs.ID, rs ipvs.RealServer, active, inactive int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e, ok := f.Services[id]; ok {
		if i := e.index(&rs); i >= 0 {
			e.RSs[i].ActiveConns, e.RSs[i].InactiveConns = active, inactive
		}
	}
}

// Snapshot returns a deep copy of the table.
func (f *Fake) Snapshot() map[ipvs.ID]Entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[ipvs.ID]Entry, len(f.Services))
	for id, e := range f.Services {
		out[id] = Entry{VS: e.VS, RSs: slices.Clone(e.RSs)}
	}
	return out
}
