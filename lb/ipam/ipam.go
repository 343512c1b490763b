// Package ipam hands out load-balancer IPs from the configured pools.
//
// The Allocator is an in-memory ledger: which Service holds which address,
// and which Services share an address under a sharing key. It is rebuilt
// from the statuses already written in the cluster (Claim) before anything
// new is assigned (Assign), so a restart never moves an IP; an address in
// a status it does not hold yet is not handed out (Request.Listed). It does
// no I/O; the Kubernetes controller serialises status writes around it.
//
// The pools' rules (ranges, namespaces, names) decide where a new address
// comes from, never whether a held one stays: an edit of the pools (a
// namespace left out, a pool split or renamed) leaves every Service the
// address it has, in the term that takes the edit (SetPools) as in a later
// one (Claim). Misfits says which held addresses the rules would not give
// now, so that the Service can be told.
package ipam

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"go4.org/netipx"

	"github.com/edgelb/edgelb/lb/config"
)

// Port is a port and protocol a Service listens on, for sharing checks.
type Port struct {
	Port     int32
	Protocol string
}

func (p Port) String() string { return fmt.Sprintf("%d/%s", p.Port, p.Protocol) }

// Family is an IP family.
type Family int

const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func familyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

func (f Family) String() string { return fmt.Sprintf("IPv%d", int(f)) }

// Request describes what a Service needs.
type Request struct {
	// Key identifies the Service: namespace/name.
	Key       string
	Namespace string
	// Families lists the wanted families in order; the first is required.
	Families []Family
	// RequireAll makes every family required (RequireDualStack); otherwise
	// the families after the first are given only if a pool has room.
	RequireAll bool
	// Requested are specific addresses asked for; when set they are the
	// whole answer.
	Requested []netip.Addr
	// Pool restricts automatic assignment to one pool.
	Pool string
	// SharingKey lets Services with the same key and no colliding ports
	// share an address.
	SharingKey string
	Ports      []Port
	// Listed, if set, returns the Services (keys) whose status lists an
	// address. An address listed by another Service that holds nothing
	// here (a status not claimed yet, or one that could not be) is not
	// handed out: that Service may still claim it.
	Listed func(netip.Addr) []string
}

// Error is an allocation refusal; Reason is a short CamelCase word for
// Kubernetes Events.
type Error struct {
	Reason string
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

func errorf(reason, format string, args ...any) *Error {
	return &Error{Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

type pool struct {
	config.Pool
	size uint64 // addresses in all ranges (saturated)
	used uint64
}

func (p *pool) allows(ns string) bool {
	return len(p.Namespaces) == 0 || slices.Contains(p.Namespaces, ns)
}

func (p *pool) contains(a netip.Addr) bool {
	for _, r := range p.Ranges {
		if r.Contains(a) {
			return true
		}
	}
	return false
}

// holder is one Service on an address.
type holder struct {
	key        string
	sharingKey string
	ports      []Port
}

type use struct {
	pool    *pool
	holders []holder
}

// Allocator is safe for concurrent use.
type Allocator struct {
	mu    sync.Mutex
	pools []*pool
	ips   map[netip.Addr]*use
	svcs  map[string][]netip.Addr
}

// New returns an allocator over the given pools, with nothing assigned.
func New(pools []config.Pool) *Allocator {
	a := &Allocator{ips: map[netip.Addr]*use{}, svcs: map[string][]netip.Addr{}}
	a.pools = newPools(pools)
	return a
}

func newPools(pools []config.Pool) []*pool {
	var out []*pool
	for _, p := range pools {
		pp := &pool{Pool: p}
		for _, r := range p.Ranges {
			pp.size = addSat(pp.size, rangeSize(r))
		}
		out = append(out, pp)
	}
	return out
}

// SetPools replaces the pools (a new cluster configuration) and keeps
// every address held: no Service is renumbered. It returns the held
// addresses that are now outside every pool; their Services keep them
// (Assign does not move them) until they let them go.
func (a *Allocator) SetPools(pools []config.Pool) (outside []netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pools = newPools(pools)
	for ip, u := range a.ips {
		u.pool = a.poolOf(ip)
		if u.pool == nil {
			u.pool = &pool{}
			outside = append(outside, ip)
		}
		u.pool.used++
	}
	slices.SortFunc(outside, netip.Addr.Compare)
	return outside
}

func rangeSize(r netipx.IPRange) uint64 {
	from, to := r.From().As16(), r.To().As16()
	var hiF, hiT uint64
	for i := 0; i < 8; i++ {
		hiF, hiT = hiF<<8|uint64(from[i]), hiT<<8|uint64(to[i])
	}
	if hiF != hiT {
		return ^uint64(0)
	}
	var loF, loT uint64
	for i := 8; i < 16; i++ {
		loF, loT = loF<<8|uint64(from[i]), loT<<8|uint64(to[i])
	}
	return addSat(loT-loF, 1)
}

func addSat(a, b uint64) uint64 {
	if a+b < a {
		return ^uint64(0)
	}
	return a + b
}

// Get returns the addresses held by a Service.
func (a *Allocator) Get(key string) []netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.svcs[key])
}

// Holders returns the Services holding an address, sorted.
func (a *Allocator) Holders(ip netip.Addr) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	u := a.ips[ip]
	if u == nil {
		return nil
	}
	out := make([]string, len(u.holders))
	for i, h := range u.holders {
		out[i] = h.key
	}
	slices.Sort(out)
	return out
}

// Release frees every address a Service holds and reports whether it held any.
func (a *Allocator) Release(key string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.release(key)
}

func (a *Allocator) release(key string) bool {
	ips, ok := a.svcs[key]
	for _, ip := range ips {
		u := a.ips[ip]
		if u == nil {
			continue
		}
		u.holders = slices.DeleteFunc(u.holders, func(h holder) bool { return h.key == key })
		if len(u.holders) == 0 {
			u.pool.used--
			delete(a.ips, ip)
		}
	}
	delete(a.svcs, key)
	return ok
}

// Claim records addresses a Service already has (from its status) without
// choosing new ones. It fails, changing nothing, only if another Service
// holds an address and may not share it. An address the pools' rules would
// not give the Service now (outside every pool, in a pool its namespace may
// not use or that is not the one it asks for) is held all the same, as
// SetPools keeps it in the term that made the edit: a new term must not
// renumber what the last one kept, nor hand it to another Service.
// Misfits reports such addresses.
func (a *Allocator) Claim(req Request, ips []netip.Addr) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.try(req, func() ([]netip.Addr, error) {
		for _, ip := range ips {
			if err := a.checkShared(req, ip); err != nil {
				return nil, err
			}
		}
		return ips, nil
	})
}

// Misfit is an address a Service holds that the pools' rules would not
// give it now: the pools were edited under it, or it asks for another
// pool. It stays with the Service all the same.
type Misfit struct {
	Addr netip.Addr
	// Pool is the pool the address is in; "" when it is in none, and so
	// not announced (lb.Build leaves it out).
	Pool string
	// Why says which rule it breaks, in words for a Warning Event.
	Why string
}

// Misfits returns the addresses the Service holds that its request would
// not be given now, in the order it holds them.
func (a *Allocator) Misfits(req Request) []Misfit {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []Misfit
	for _, ip := range a.svcs[req.Key] {
		if err := a.checkRules(req, ip); err != nil {
			m := Misfit{Addr: ip, Why: err.Msg}
			if p := a.poolOf(ip); p != nil {
				m.Pool = p.Name
			}
			out = append(out, m)
		}
	}
	return out
}

// Assign returns the addresses for a Service, choosing them if needed.
// It is idempotent: a Service whose current addresses still fit the
// request keeps them. On error nothing changes: the Service keeps what it
// had.
func (a *Allocator) Assign(req Request) ([]netip.Addr, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if cur := a.svcs[req.Key]; len(cur) > 0 && a.fits(req, cur) {
		return slices.Clone(cur), nil
	}
	var out []netip.Addr
	err := a.try(req, func() ([]netip.Addr, error) {
		ips, err := a.choose(req)
		out = ips
		return ips, err
	})
	if err != nil {
		return nil, err
	}
	return slices.Clone(out), nil
}

// try releases the Service's addresses, runs pick, and records its answer;
// on error it restores the previous holdings.
func (a *Allocator) try(req Request, pick func() ([]netip.Addr, error)) error {
	prev := slices.Clone(a.svcs[req.Key])
	a.release(req.Key)
	ips, err := pick()
	if err == nil {
		a.hold(req, ips)
		return nil
	}
	if len(prev) > 0 {
		a.hold(req, prev)
	}
	return err
}

func (a *Allocator) hold(req Request, ips []netip.Addr) {
	for _, ip := range ips {
		u := a.ips[ip]
		if u == nil {
			u = &use{pool: a.poolOf(ip)}
			if u.pool == nil {
				// Not in any pool (config changed under a claim): hold it
				// in a detached pool so accounting stays consistent.
				u.pool = &pool{}
			}
			u.pool.used++
			a.ips[ip] = u
		}
		u.holders = append(u.holders, holder{key: req.Key, sharingKey: req.SharingKey, ports: slices.Clone(req.Ports)})
	}
	a.svcs[req.Key] = slices.Clone(ips)
}

func (a *Allocator) poolOf(ip netip.Addr) *pool {
	for _, p := range a.pools {
		if p.contains(ip) {
			return p
		}
	}
	return nil
}

// fits reports whether current addresses still satisfy a changed request.
// Only what the Service itself asks decides: the addresses it names, its
// families and whom it shares with. The pools' rules do not (see Misfits):
// a pool edited under a Service, or an edgelb.io/pool changed on one that
// has its address, cannot be told apart in a new term, which sees only
// the status; the one answer that holds in every term is to keep it.
func (a *Allocator) fits(req Request, cur []netip.Addr) bool {
	if len(req.Requested) > 0 {
		return sameSet(req.Requested, cur)
	}
	fams := map[Family]bool{}
	for _, ip := range cur {
		if !slices.Contains(req.Families, familyOf(ip)) {
			return false
		}
		// Sharing must still be compatible with the other holders.
		for _, h := range a.ips[ip].holders {
			if h.key != req.Key && !compatible(h, req) {
				return false
			}
		}
		fams[familyOf(ip)] = true
	}
	if len(req.Families) > 0 && !fams[req.Families[0]] {
		return false
	}
	if req.RequireAll {
		for _, f := range req.Families {
			if !fams[f] {
				return false
			}
		}
	}
	return true
}

func sameSet(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// compatible reports whether a request may share an address with h.
func compatible(h holder, req Request) bool {
	if h.sharingKey == "" || h.sharingKey != req.SharingKey {
		return false
	}
	for _, p := range req.Ports {
		if slices.Contains(h.ports, p) {
			return false
		}
	}
	return true
}

// checkSpecific reports why ip may not be given to the request: the pools'
// rules, then the other holders.
func (a *Allocator) checkSpecific(req Request, ip netip.Addr) error {
	if err := a.checkRules(req, ip); err != nil {
		return err
	}
	return a.checkShared(req, ip)
}

// checkRules reports which of the pools' rules forbids giving ip to the
// request: in a pool, one its namespace may use, the one it asks for.
func (a *Allocator) checkRules(req Request, ip netip.Addr) *Error {
	p := a.poolOf(ip)
	if p == nil {
		return errorf("AddressNotInPool", "%s is not in any address pool", ip)
	}
	if !p.allows(req.Namespace) {
		return errorf("PoolNotAllowed", "%s is in pool %q, which namespace %q may not use", ip, p.Name, req.Namespace)
	}
	if req.Pool != "" && p.Name != req.Pool {
		if !a.poolNamed(req.Pool) {
			return errorf("NoSuchPool", "the requested pool %q does not exist (%s is in pool %q)", req.Pool, ip, p.Name)
		}
		return errorf("AddressNotInPool", "%s is in pool %q, not in the requested pool %q", ip, p.Name, req.Pool)
	}
	return nil
}

func (a *Allocator) poolNamed(name string) bool {
	return slices.ContainsFunc(a.pools, func(p *pool) bool { return p.Name == name })
}

// checkShared reports why ip, held by other Services, may not be shared
// with the request.
func (a *Allocator) checkShared(req Request, ip netip.Addr) error {
	if u := a.ips[ip]; u != nil {
		for _, h := range u.holders {
			if compatible(h, req) {
				continue
			}
			if h.sharingKey != "" && h.sharingKey == req.SharingKey {
				return errorf("PortsCollide", "%s is shared by %s under key %q, and their ports collide with %s", ip, h.key, h.sharingKey, portList(req.Ports))
			}
			return errorf("AddressInUse", "%s is already used by %s", ip, h.key)
		}
	}
	return nil
}

// listedElsewhere returns a Service other than the requester that lists
// ip in its status but holds nothing here, or "".
func (a *Allocator) listedElsewhere(req Request, ip netip.Addr) string {
	if req.Listed == nil {
		return ""
	}
	for _, k := range req.Listed(ip) {
		if k != req.Key && len(a.svcs[k]) == 0 {
			return k
		}
	}
	return ""
}

func portList(ps []Port) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func (a *Allocator) choose(req Request) ([]netip.Addr, error) {
	if len(req.Requested) > 0 {
		for _, ip := range req.Requested {
			if len(req.Families) > 0 && !slices.Contains(req.Families, familyOf(ip)) {
				return nil, errorf("WrongFamily", "%s is %s, but the Service's ipFamilies are %v", ip, familyOf(ip), req.Families)
			}
			if err := a.checkSpecific(req, ip); err != nil {
				return nil, err
			}
			if other := a.listedElsewhere(req, ip); other != "" {
				return nil, errorf("AddressInUse", "%s is already used by %s", ip, other)
			}
		}
		return slices.Clone(req.Requested), nil
	}
	fams := req.Families
	if len(fams) == 0 {
		fams = []Family{IPv4}
	}
	var out []netip.Addr
	for i, f := range fams {
		ip, err := a.chooseOne(req, f)
		if err != nil {
			if i == 0 || req.RequireAll {
				return nil, err
			}
			continue // PreferDualStack: the secondary family is optional
		}
		out = append(out, ip)
	}
	return out, nil
}

func (a *Allocator) candidatePools(req Request, f Family) ([]*pool, error) {
	var out []*pool
	for _, p := range a.pools {
		if req.Pool != "" {
			if p.Name != req.Pool {
				continue
			}
		} else if !p.AutoAssign {
			continue
		}
		if !p.allows(req.Namespace) {
			continue
		}
		out = append(out, p)
	}
	if req.Pool != "" && len(out) == 0 {
		for _, p := range a.pools {
			if p.Name == req.Pool {
				return nil, errorf("PoolNotAllowed", "pool %q may not be used from namespace %q", req.Pool, req.Namespace)
			}
		}
		return nil, errorf("NoSuchPool", "pool %q does not exist", req.Pool)
	}
	if len(out) == 0 {
		return nil, errorf("NoPool", "no auto-assign pool is available to namespace %q", req.Namespace)
	}
	return out, nil
}

func (a *Allocator) chooseOne(req Request, f Family) (netip.Addr, error) {
	pools, err := a.candidatePools(req, f)
	if err != nil {
		return netip.Addr{}, err
	}
	// An address already shared under the same key comes first, so that
	// Services meant to share do share.
	if req.SharingKey != "" {
		var shared []netip.Addr
		for ip, u := range a.ips {
			if familyOf(ip) == f && slices.Contains(pools, u.pool) && len(u.holders) > 0 && u.holders[0].sharingKey == req.SharingKey {
				shared = append(shared, ip)
			}
		}
		slices.SortFunc(shared, netip.Addr.Compare)
		var collide error
		for _, ip := range shared {
			if err := a.checkSpecific(req, ip); err == nil {
				return ip, nil
			} else if collide == nil {
				collide = err
			}
		}
		if collide != nil {
			// Sharing was asked for but the ports collide: refuse rather
			// than silently hand out a different address.
			return netip.Addr{}, collide
		}
	}
	hasFamily := false
	for _, p := range pools {
		for _, r := range p.Ranges {
			if familyOf(r.From()) != f {
				continue
			}
			hasFamily = true
			if p.used >= p.size {
				continue
			}
			for ip := r.From(); ip.IsValid() && ip.Compare(r.To()) <= 0; ip = ip.Next() {
				if _, taken := a.ips[ip]; !taken && a.listedElsewhere(req, ip) == "" {
					return ip, nil
				}
			}
		}
	}
	if !hasFamily {
		return netip.Addr{}, errorf("NoPool", "no pool available to this Service has %s addresses", f)
	}
	names := make([]string, len(pools))
	for i, p := range pools {
		names[i] = p.Name
	}
	return netip.Addr{}, errorf("PoolExhausted", "no free %s address left in pool %s", f, strings.Join(names, ", "))
}

// PoolUsage is how full one pool is.
type PoolUsage struct {
	Name string
	Size uint64 // saturates at 2^64-1 for large IPv6 pools
	Used uint64
}

// Usage returns every pool's usage, in config order.
func (a *Allocator) Usage() []PoolUsage {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]PoolUsage, len(a.pools))
	for i, p := range a.pools {
		out[i] = PoolUsage{Name: p.Name, Size: p.size, Used: p.used}
	}
	return out
}

// UsageOf returns every pool's usage, in config order, when ips are the
// addresses in use: each counts once, in the first pool that has it, as
// an Allocator holding them would count it.
func UsageOf(pools []config.Pool, ips []netip.Addr) []PoolUsage {
	ps := newPools(pools)
	seen := map[netip.Addr]bool{}
	for _, ip := range ips {
		if seen[ip] {
			continue
		}
		seen[ip] = true
		for _, p := range ps {
			if p.contains(ip) {
				p.used++
				break
			}
		}
	}
	out := make([]PoolUsage, len(ps))
	for i, p := range ps {
		out[i] = PoolUsage{Name: p.Name, Size: p.size, Used: p.used}
	}
	return out
}
