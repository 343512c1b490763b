package app

import (
	"context"
	"log/slog"

	"golang.org/x/sync/errgroup"

	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/config"
)

// run starts every part of the daemon and returns when ctx is cancelled or
// a part fails. Parts communicate only through the lb.Store of desired
// state (and, later, ownership): each has its own loop.
func run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	log.Info("starting edgelb", "version", Version, "node", cfg.Node.Name, "config", cfg.Path,
		"dataplane", cfg.Dataplane.Backend, "mode", cfg.Dataplane.Mode, "method", cfg.Dataplane.Method)
	store := lb.NewStore()
	g, ctx := errgroup.WithContext(ctx)

	// Desired state: static services only, until Kubernetes is configured.
	if cfg.Kubernetes == nil {
		d, _ := lb.Build(lb.Snapshot{}, lb.OptionsFromConfig(cfg))
		store.Set(d)
		log.Info("desired state built", "virtualServices", len(d.Services))
	}

	g.Go(func() error {
		<-ctx.Done()
		return nil
	})
	err := g.Wait()
	log.Info("edgelb stopped")
	return err
}
