package datapath

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// HealthSource is the source under which the Checker reports to
// Reporter.SetHealth.
const HealthSource = "datapath"

// Prober sends one address-resolution probe.
type Prober interface {
	// Probe asks target for its link-layer address on the interface
	// (ARP for IPv4, a Neighbor Solicitation for IPv6) and returns nil
	// once it answers, or an error when it does not before ctx ends.
	Probe(ctx context.Context, target netip.Addr) error
}

// Targets names what to probe.
type Targets interface {
	// Targets returns the addresses to probe now: the configured ones,
	// or the gateways of the interface's routes. None means there is
	// nothing to probe: the path is taken as good (link state alone).
	Targets() ([]netip.Addr, error)
}

// Peers tells whether giving the VIPs up helps.
type Peers interface {
	// PeerServes reports whether another live member may own VIPs (it
	// is healthy and not draining) and its data path does not fail.
	PeerServes() bool
}

// Reporter receives the checker's verdicts; the cluster implements it.
//
// Concurrency: both methods are called from the goroutine that runs Run
// and must not block.
type Reporter interface {
	// SetHealth reports nil or why this host must not own VIPs.
	SetHealth(source string, err error)
	// SetDataPathFailing gossips whether this host's data path fails.
	SetDataPathFailing(bool)
}

// Options configure a Checker.
type Options struct {
	Interface string // for messages
	Prober    Prober
	Targets   Targets
	Peers     Peers
	Reporter  Reporter
	// Interval between rounds, Timeout of each round's probes (shorter
	// than Interval), Fall bad rounds to fail, Rise good ones to recover.
	Interval, Timeout time.Duration
	Fall, Rise        int
	Log               *slog.Logger
}

// Checker probes the data path and reports it.
type Checker struct {
	o Options

	mu        sync.Mutex
	failing   bool
	bad, good int    // consecutive rounds
	lastErr   error  // why the last bad round was bad
	gaveUp    bool   // SetHealth was last told an error
	kept      bool   // logged that the VIPs stay (no peer serves)
	confirms  int    // rounds in a row failing with a peer serving
	targets   string // last logged targets
	rounds    uint64
	badRounds uint64
}

// New returns a Checker; it starts nothing.
func New(o Options) *Checker {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Checker{o: o}
}

// Run probes every Interval until ctx ends.
func (c *Checker) Run(ctx context.Context) error {
	t := time.NewTicker(c.o.Interval)
	defer t.Stop()
	for {
		c.Round(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Round runs one round: it probes the targets, updates the state and
// reports it. Run calls it; tests step it.
func (c *Checker) Round(ctx context.Context) {
	err := c.probe(ctx)
	if ctx.Err() != nil {
		return
	}
	c.record(err)
	c.report()
}

// probe probes every target at once and returns nil when one answers.
func (c *Checker) probe(ctx context.Context) error {
	ts, err := c.o.Targets.Targets()
	if err != nil {
		return fmt.Errorf("finding the gateways of %s: %w", c.o.Interface, err)
	}
	c.logTargets(ts)
	if len(ts) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	errs := make(chan error, len(ts))
	for _, t := range ts {
		go func() {
			if err := c.o.Prober.Probe(ctx, t); err != nil {
				errs <- fmt.Errorf("%s: %w", t, err)
				return
			}
			errs <- nil
		}()
	}
	var all []error
	for range ts {
		if err := <-errs; err == nil {
			return nil
		} else {
			all = append(all, err)
		}
	}
	return fmt.Errorf("no answer on %s within %s from %w", c.o.Interface, c.o.Timeout, errors.Join(all...))
}

func (c *Checker) logTargets(ts []netip.Addr) {
	s := fmt.Sprint(ts)
	c.mu.Lock()
	changed := s != c.targets
	c.targets = s
	c.mu.Unlock()
	if !changed {
		return
	}
	if len(ts) == 0 {
		c.o.Log.Warn("no data-path target: no gateway on the interface's routes and no node.dataPath.targets; the data path is checked by link state alone", "interface", c.o.Interface)
		return
	}
	c.o.Log.Info("checking the data path", "interface", c.o.Interface, "targets", s)
}

// record counts a round's result and moves between good and failing.
func (c *Checker) record(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rounds++
	if err != nil {
		c.badRounds++
		c.lastErr = err
		c.bad, c.good = c.bad+1, 0
		if !c.failing && c.bad >= c.o.Fall {
			c.failing = true
			c.o.Log.Warn("data path failing", "interface", c.o.Interface, "rounds", c.bad, "err", err)
		}
		return
	}
	c.good, c.bad = c.good+1, 0
	if c.failing && c.good >= c.o.Rise {
		c.failing = false
		c.o.Log.Info("data path good again", "interface", c.o.Interface, "rounds", c.good)
	}
}

// report tells the Reporter the state. It gossips the path as failing
// from its first bad round on (not only after Fall), so that when one
// gateway fails for every host, each learns that the others' paths fail
// too before it would give its VIPs up. It gives them up (an error under
// HealthSource) once the path is failing and a peer's path worked at two
// rounds in a row since: the peers' own first bad round has had a round
// to reach it.
func (c *Checker) report() {
	c.mu.Lock()
	failing, suspect := c.failing, c.bad > 0
	c.mu.Unlock()
	c.o.Reporter.SetDataPathFailing(failing || suspect)
	var err error
	serves := failing && c.o.Peers.PeerServes()
	c.mu.Lock()
	switch {
	case !failing:
		c.confirms, c.kept = 0, false
	case serves:
		c.confirms++
		c.kept = false
		if c.confirms >= 2 || c.gaveUp {
			err = fmt.Errorf("data path on %s failing: %w", c.o.Interface, c.lastErr)
		}
	default:
		c.confirms = 0
		if !c.kept {
			c.o.Log.Warn("data path failing, but no other member has a working one: keeping the VIPs", "interface", c.o.Interface)
			c.kept = true
		}
	}
	c.gaveUp = err != nil
	c.mu.Unlock()
	// Cheap and idempotent: the cluster acts only when it changes.
	c.o.Reporter.SetHealth(HealthSource, err)
}

// Status is the checker's state for the API and metrics.
type Status struct {
	// OK: the path is not failing (it may be failing with the VIPs
	// kept, see GaveUp).
	OK bool
	// GaveUp: the host gives its VIPs up because of its data path.
	GaveUp bool
	// Problem says why the path fails ("" when OK).
	Problem string
	// Targets is what was probed last.
	Targets string
	// Rounds and BadRounds count rounds since start.
	Rounds, BadRounds uint64
}

// Status returns the checker's state.
func (c *Checker) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Status{OK: !c.failing, GaveUp: c.gaveUp, Targets: strings.Trim(c.targets, "[]"), Rounds: c.rounds, BadRounds: c.badRounds}
	if c.failing && c.lastErr != nil {
		s.Problem = c.lastErr.Error()
	}
	return s
}
