package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"golang.org/x/sync/errgroup"

	"github.com/edgelb/edgelb/cluster"
	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/config"
	"github.com/edgelb/edgelb/vip"
)

// run starts every part of the daemon and returns when ctx is cancelled or
// a part fails. Parts communicate only through the lb.Store of desired
// state and the cluster's ownership: each has its own loop.
func run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	log.Info("starting edgelb", "version", Version, "node", cfg.Node.Name, "config", cfg.Path,
		"dataplane", cfg.Dataplane.Backend, "mode", cfg.Dataplane.Mode, "method", cfg.Dataplane.Method)
	store := lb.NewStore()

	// Desired state: static services only, until Kubernetes is configured.
	if cfg.Kubernetes == nil {
		d, _ := lb.Build(lb.Snapshot{}, lb.OptionsFromConfig(cfg))
		store.Set(d)
		log.Info("desired state built", "virtualServices", len(d.Services), "vips", len(d.VIPs()))
	}

	// Membership -> ownership -> the VIP manager.
	members, err := cluster.New(cluster.OptionsFromConfig(cfg, store, log.With("component", "cluster")))
	if err != nil {
		return err
	}
	if cfg.Dataplane.Backend == config.BackendNone {
		members.SetHealth("dataplane", nil) // announce-only: nothing to program
	}
	announcer := &vip.Announcers{}
	defer announcer.Close()
	vips, err := vip.NewManager(vip.Options{
		Kernel:    &vip.Netlink{Interface: cfg.Node.Interface},
		Announcer: announcer,
		Ownership: members,
		Reporter:  members,
		Refresh:   cfg.Cluster.AnnounceRefresh,
		Log:       log.With("component", "vip"),
	})
	if err != nil {
		return err
	}
	if cfg.Node.Interface == "" {
		log.Warn("node.interface is not set: this host joins the cluster but owns and announces no VIPs")
		members.SetHealth("link", errors.New("node.interface is not set"))
		vips = nil
	}

	g, gctx := errgroup.WithContext(ctx)
	// The VIP manager outlives the cluster's Run: on shutdown the cluster
	// first hands the VIPs over (the manager keeps them meanwhile), and
	// only then does the manager stop and remove what is left.
	vipCtx, stopVIPs := context.WithCancel(context.WithoutCancel(gctx))
	defer stopVIPs()
	g.Go(func() error {
		defer stopVIPs()
		return members.Run(gctx)
	})
	if vips != nil {
		g.Go(func() error {
			err := vips.Run(vipCtx)
			if err == nil && gctx.Err() == nil {
				return fmt.Errorf("the VIP manager stopped")
			}
			return err
		})
	}
	err = g.Wait()
	log.Info("edgelb stopped")
	return err
}
