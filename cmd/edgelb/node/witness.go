package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/edgelb/edgelb/cluster"
	"github.com/edgelb/edgelb/cluster/consensus"
	"github.com/edgelb/edgelb/lb/config"
)

// Witness is `edgelb witness`: the third voter of a pair of hosts, on a
// third machine. It joins the gossip cluster and the cluster
// configuration's consensus log as a member like any host, so that the
// VIP quorum and the log's majority are 2 of 3, but it owns no VIP
// (cluster.Options.Witness: it gossips Meta.Witness and is never
// assigned one), programs no dataplane, serves no traffic and no API. It
// keeps the log in its state directory and votes; it never seeds a
// version of its own. Of its config file it reads node.name and the
// cluster keys (the same as the hosts': key, join list, timers).
type Witness struct {
	cfg     *config.Config
	log     *slog.Logger
	raft    *consensus.Node
	members *cluster.Cluster
	// running is members once built, for the log's transport and its
	// Existing check.
	running atomic.Pointer[cluster.Cluster]
}

// noVIPs is a witness's VIP source: it never has one to assign.
type noVIPs struct{}

func (noVIPs) VIPs() ([]netip.Addr, bool) { return nil, true }
func (noVIPs) Subscribe() <-chan struct{} { return nil }

// WitnessProblems are what makes cfg unusable for a witness: gossip in
// the clear (an insecure cluster replicates no configuration, so a
// witness has no log to vote in, and would let anyone count towards the
// quorum) and a missing state directory.
func WitnessProblems(cfg *config.Config, stateDir string) []error {
	var out []error
	if cfg.Cluster.Insecure {
		out = append(out, errors.New("cluster.insecure: a witness needs encrypted gossip (cluster.secretKeyFile, the hosts' key): an insecure cluster has no consensus log to vote in"))
	}
	if stateDir == "" {
		out = append(out, errors.New("a witness keeps the cluster configuration's log in its state directory, and none is writable: "+
			"run it as its systemd unit (edgelb-witness.service, StateDirectory=edgelb-witness) or pass --state-dir"))
	}
	if n := ClusterOptions(cfg, nil, nil).Size(); n != 3 {
		out = append(out, fmt.Errorf("cluster.join names %d members with the witness: a witness is the third voter of a pair, "+
			"list the two hosts and the witness (the same list as on the hosts)", n))
	}
	return out
}

// NewWitness builds a witness from a checked config file's Config; opts'
// Kernels, Kube and OnWatchdog are not used. It starts nothing.
func NewWitness(cfg *config.Config, opts Options) (*Witness, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if errs := WitnessProblems(cfg, opts.StateDir); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	w := &Witness{cfg: cfg, log: opts.Log}
	copts := ClusterOptions(cfg, noVIPs{}, opts.Log.With("component", "cluster"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	peers, self, err := copts.MemberAddrs(ctx, nil)
	if err != nil {
		return nil, err
	}
	w.raft, err = consensus.New(consensus.Options{
		Name:  self,
		Peers: peers,
		Dir:   opts.StateDir,
		Transport: &consensus.Memberlist{Self: self, SendFrame: func(to string, frame []byte, reliable bool) error {
			if c := w.running.Load(); c != nil {
				return c.SendTo(to, frame, reliable)
			}
			return errors.New("gossip is not running yet")
		}},
		Existing: func(ctx context.Context) (bool, error) { return clusterRuns(ctx, &w.running, self, peers) },
		Now:      opts.Now,
		Log:      opts.Log.With("component", "config", "member", self),
	})
	if err != nil {
		return nil, fmt.Errorf("the cluster configuration's log: %w", err)
	}
	copts.Witness = true
	copts.Config = configSource{w.raft}
	copts.Messages = func(b []byte) bool { return consensus.Handle(w.raft, b) }
	copts.Voters = w.raft.Members
	copts.Transport = opts.Transport
	copts.Now = opts.Now
	w.members, err = cluster.New(copts)
	if err != nil {
		return nil, err
	}
	w.running.Store(w.members)
	return w, nil
}

// Members is the witness's view of the cluster.
func (w *Witness) Members() *cluster.Cluster { return w.members }

// Log is the witness's member of the consensus log.
func (w *Witness) Log() *consensus.Node { return w.raft }

// Run gossips and votes until ctx ends, then leaves the cluster; the
// log stops last, as on a host.
func (w *Witness) Run(ctx context.Context) error {
	w.log.Info("starting edgelb witness", "node", w.cfg.Node.Name, "config", w.cfg.Path, "quorum", w.members.Quorum())
	raftCtx, stopRaft := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRaft()
	raftDone := make(chan error, 1)
	go func() { raftDone <- w.raft.Run(raftCtx) }()
	gossipCtx, stopGossip := context.WithCancel(ctx)
	defer stopGossip()
	gossipDone := make(chan error, 1)
	go func() { gossipDone <- w.members.Run(gossipCtx) }()
	var err error
	select {
	case err = <-gossipDone:
		stopRaft()
		if rerr := <-raftDone; rerr != nil {
			w.log.Error("the cluster configuration's log stopped", "err", rerr)
		}
	case err = <-raftDone:
		if err == nil {
			err = errors.New("the cluster configuration's log stopped")
		}
		stopGossip()
		<-gossipDone
	}
	w.log.Info("edgelb witness stopped")
	return err
}
