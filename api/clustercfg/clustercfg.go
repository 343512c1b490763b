// Package clustercfg serves the cluster configuration to the API: it
// implements api.ClusterConfig over the versions the consensus log
// commits (consensus.Versions; cluster.LocalDocs for a host alone),
// validated over this host's keys by lb/config (the rules and messages of
// `edgelb check`). The app builds it; the api package's tests use it too.
package clustercfg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/cluster"
	"github.com/edgelb/edgelb/cluster/consensus"
	"github.com/edgelb/edgelb/lb/config"
)

// Config implements api.ClusterConfig.
type Config struct {
	Versions consensus.Versions
	Host     *config.Host
	// Unreplicated, when set, is why a version made here would reach no
	// other member (cluster.Options.Unreplicated): every change (Put,
	// SetBackendState, a rollback) is then refused with
	// api.ErrNotReplicated, so that the hosts never run different
	// configurations unknowingly.
	Unreplicated error
	// Members, when set, returns the facts of the other members (those
	// heard: a member whose facts are unknown is not checked, so that a
	// host cut off or down blocks no write; if it cannot apply the
	// version once back, it owns no VIPs and says why). A version is
	// checked against each before it is proposed: a change one member's
	// file does not fit is refused (422) naming the member and the field.
	Members func() []MemberFacts
}

// MemberFacts are one member's host-local facts, as it gossips them.
type MemberFacts struct {
	Name  string
	Facts config.Facts
}

// refused is the error of a change while c.Unreplicated is set.
func (c *Config) refused() error {
	return fmt.Errorf("%w: %w; to change it, edit the cluster-wide keys (pools, services, dataplane, healthCheck, bgp, backendStates) "+
		"in every host's config file and restart edgelb there, or set cluster.secretKeyFile (see `edgelb keygen`) on every host "+
		"to manage the cluster configuration through the API", api.ErrNotReplicated, c.Unreplicated)
}

var _ api.ClusterConfig = (*Config)(nil)

// doc is d as the API shows it: with its secrets only when secrets is
// true, and never when they cannot be hidden.
func doc(d cluster.Doc, secrets bool) (api.ConfigDoc, error) {
	spec := json.RawMessage(d.Body)
	if !secrets {
		var err error
		if spec, err = config.RedactSecrets(spec); err != nil {
			return api.ConfigDoc{}, fmt.Errorf("version %d: %w", d.Version, err)
		}
	}
	return api.ConfigDoc{Version: d.Version, UpdatedAt: d.UpdatedAt, UpdatedBy: d.UpdatedBy, Spec: spec}, nil
}

// Current is the version this host runs.
func (c *Config) Current(secrets bool) (api.ConfigDoc, error) {
	d, ok := c.Versions.Current()
	if !ok {
		return api.ConfigDoc{}, errors.New("no cluster configuration yet")
	}
	return doc(d, secrets)
}

// Invalid converts validation errors to the API's.
func Invalid(err error) *api.InvalidConfig {
	var es config.Errors
	var fe *config.FieldError
	out := &api.InvalidConfig{}
	switch {
	case errors.As(err, &es):
		for _, e := range es {
			out.Errors = append(out.Errors, field(e))
		}
	case errors.As(err, &fe):
		out.Errors = append(out.Errors, field(fe))
	default:
		out.Errors = append(out.Errors, api.FieldError{Field: "spec", Message: err.Error()})
	}
	return out
}

func field(e *config.FieldError) api.FieldError {
	f := e.Field
	if f == "" {
		f = "spec"
	}
	return api.FieldError{Field: f, Message: e.Msg, Member: e.Member}
}

// check validates spec, its secret placeholders replaced by the secrets
// of stored (the version it is made from), and returns it canonical with
// the Config it gives.
func (c *Config) check(spec, stored json.RawMessage) (json.RawMessage, *config.Config, error) {
	canon, err := config.CanonicalSpec(config.RestoreSecrets(spec, stored))
	if err != nil {
		return nil, nil, Invalid(err)
	}
	cfg, err := c.Host.Apply(canon)
	if err != nil {
		return nil, nil, Invalid(err)
	}
	// This host takes it: does every other member's file?
	if c.Members != nil {
		var errs config.Errors
		members := c.Members()
		slices.SortFunc(members, func(a, b MemberFacts) int { return strings.Compare(a.Name, b.Name) })
		for _, m := range members {
			errs = append(errs, m.Facts.Check(m.Name, canon)...)
		}
		if len(errs) > 0 {
			return nil, nil, Invalid(errs)
		}
	}
	return canon, cfg, nil
}

// Put makes spec the next version. A secret given as the placeholder
// keeps the one of the current version: if that is not version ifVersion,
// Propose refuses the change anyway.
//
// The check runs here, on the host that takes the write, over its own
// host-local keys: the log's apply step checks nothing but the version.
func (c *Config) Put(ctx context.Context, spec json.RawMessage, ifVersion uint64, by string) (api.ConfigDoc, error) {
	if c.Unreplicated != nil {
		return api.ConfigDoc{}, c.refused()
	}
	cur, _ := c.Versions.Current()
	canon, _, err := c.check(spec, cur.Body)
	if err != nil {
		return api.ConfigDoc{}, err
	}
	d, err := c.Versions.Propose(ctx, canon, by, ifVersion)
	switch {
	case errors.Is(err, cluster.ErrStale):
		return api.ConfigDoc{}, api.ErrStale
	case errors.Is(err, consensus.ErrNoQuorum):
		return api.ConfigDoc{}, fmt.Errorf("%w: %w", api.ErrNoQuorum, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return api.ConfigDoc{}, fmt.Errorf("%w: %w", api.ErrUnconfirmed, err)
	case errors.Is(err, consensus.ErrStopped):
		return api.ConfigDoc{}, fmt.Errorf("%w: %w", api.ErrNoQuorum, err)
	case err != nil:
		return api.ConfigDoc{}, Invalid(err)
	}
	return doc(d, false)
}

// Validate checks spec and says what it would change.
func (c *Config) Validate(spec json.RawMessage) (api.ConfigEffect, error) {
	d, _ := c.Versions.Current()
	canon, next, err := c.check(spec, d.Body)
	if err != nil {
		return api.ConfigEffect{}, err
	}
	var cur *config.Config
	if d.Body != nil {
		cur, _ = c.Host.Apply(d.Body)
	}
	if cur == nil {
		cur = &config.Config{}
	}
	e := Effect(cur, next)
	e.SecretsChanged = config.SecretsChanged(d.Body, canon)
	return e, nil
}

// History lists the kept versions, each with the secrets that changed
// from the one listed before it.
func (c *Config) History() []api.ConfigVersion {
	cur, _ := c.Versions.Current()
	var out []api.ConfigVersion
	var prev []byte
	for _, h := range c.Versions.History() {
		v := api.ConfigVersion{Version: h.Version, UpdatedAt: h.UpdatedAt, UpdatedBy: h.UpdatedBy,
			Member: h.Member, Lost: h.Lost, Current: h.ID() == cur.ID()}
		if prev != nil {
			if ch := config.SecretsChanged(prev, h.Body); len(ch) > 0 {
				v.SecretsChanged = ch
			}
		}
		prev = h.Body
		out = append(out, v)
	}
	return out
}

// Version returns version n.
func (c *Config) Version(n uint64, secrets bool) (api.ConfigDoc, error) {
	d, err := c.Versions.Get(n)
	if err != nil {
		return api.ConfigDoc{}, fmt.Errorf("version %d: %w", n, api.ErrNotFound)
	}
	return doc(d, secrets)
}

// SetBackendState makes a version with the backend's admin state
// changed: backendStates loses the backend's entry, and gets a new one
// unless state is "enable".
func (c *Config) SetBackendState(ctx context.Context, service, backend, state, by string) (api.ConfigDoc, error) {
	if c.Unreplicated != nil {
		return api.ConfigDoc{}, c.refused()
	}
	ap, err := netip.ParseAddrPort(backend)
	if err != nil || ap.Port() == 0 {
		return api.ConfigDoc{}, &api.InvalidConfig{Errors: []api.FieldError{{Field: "backend", Message: fmt.Sprintf("%q is not an address:port", backend)}}}
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	cur, ok := c.Versions.Current()
	if !ok {
		return api.ConfigDoc{}, errors.New("no cluster configuration yet")
	}
	var spec map[string]any
	if err := json.Unmarshal(cur.Body, &spec); err != nil {
		return api.ConfigDoc{}, fmt.Errorf("decoding the current configuration: %w", err)
	}
	var states []any
	if list, ok := spec["backendStates"].([]any); ok {
		for _, e := range list {
			if m, ok := e.(map[string]any); ok && m["service"] == service {
				if b, ok := m["backend"].(string); ok {
					if p, err := netip.ParseAddrPort(b); err == nil && netip.AddrPortFrom(p.Addr().Unmap(), p.Port()) == ap {
						continue
					}
				}
			}
			states = append(states, e)
		}
	}
	if state != "enable" {
		states = append(states, map[string]any{"service": service, "backend": ap.String(), "state": state})
	}
	if len(states) == 0 {
		delete(spec, "backendStates")
	} else {
		spec["backendStates"] = states
	}
	body, err := json.Marshal(spec)
	if err != nil {
		return api.ConfigDoc{}, err
	}
	return c.Put(ctx, body, cur.Version, by)
}

// Effect is what changes from cur to next: static VIPs, services and
// pools by name, and the other keys.
func Effect(cur, next *config.Config) api.ConfigEffect {
	e := api.ConfigEffect{}
	vips := func(c *config.Config) map[string]bool {
		m := map[string]bool{}
		for _, s := range c.Services {
			if s.VIP.IsValid() {
				m[s.VIP.String()] = true
			}
		}
		return m
	}
	e.VIPsAdded, e.VIPsRemoved = diffKeys(vips(cur), vips(next))
	svcs := func(c *config.Config) map[string]config.StaticService {
		m := map[string]config.StaticService{}
		for _, s := range c.Services {
			m[s.Name] = s
		}
		return m
	}
	e.ServicesAdded, e.ServicesRemoved, e.ServicesChanged = diffMaps(svcs(cur), svcs(next))
	pools := func(c *config.Config) map[string]config.Pool {
		m := map[string]config.Pool{}
		for _, p := range c.Pools {
			m[p.Name] = p
		}
		return m
	}
	e.PoolsAdded, e.PoolsRemoved, e.PoolsChanged = diffMaps(pools(cur), pools(next))
	if !reflect.DeepEqual(cur.Dataplane, next.Dataplane) {
		e.Other = append(e.Other, "dataplane")
	}
	if !reflect.DeepEqual(cur.HealthCheck, next.HealthCheck) {
		e.Other = append(e.Other, "healthCheck")
	}
	if !reflect.DeepEqual(cur.BGP, next.BGP) {
		e.Other = append(e.Other, "bgp")
	}
	if !reflect.DeepEqual(cur.BackendStates, next.BackendStates) {
		e.Other = append(e.Other, "backendStates")
	}
	e.Other = nonNil(e.Other)
	return e
}

func diffKeys(cur, next map[string]bool) (added, removed []string) {
	added, removed = []string{}, []string{}
	for k := range next {
		if !cur[k] {
			added = append(added, k)
		}
	}
	for k := range cur {
		if !next[k] {
			removed = append(removed, k)
		}
	}
	sortAddrs(added)
	sortAddrs(removed)
	return added, removed
}

func sortAddrs(s []string) {
	slices.SortFunc(s, func(a, b string) int {
		return netip.MustParseAddr(a).Compare(netip.MustParseAddr(b))
	})
}

func diffMaps[T any](cur, next map[string]T) (added, removed, changed []string) {
	added, removed, changed = []string{}, []string{}, []string{}
	for k, v := range next {
		old, ok := cur[k]
		switch {
		case !ok:
			added = append(added, k)
		case !reflect.DeepEqual(old, v):
			changed = append(changed, k)
		}
	}
	for k := range cur {
		if _, ok := next[k]; !ok {
			removed = append(removed, k)
		}
	}
	slices.Sort(added)
	slices.Sort(removed)
	slices.Sort(changed)
	return added, removed, changed
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
