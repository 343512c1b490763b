package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/config"
	"github.com/edgelb/edgelb/lb/k8s"
)

// run starts every part of the daemon and returns when ctx is cancelled or
// a part fails. Parts communicate only through the lb.Store of desired
// state (and ownership): each has its own loop.
func run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	log.Info("starting edgelb", "version", Version, "node", cfg.Node.Name, "config", cfg.Path,
		"dataplane", cfg.Dataplane.Backend, "mode", cfg.Dataplane.Mode, "method", cfg.Dataplane.Method)
	store := lb.NewStore()
	g, ctx := errgroup.WithContext(ctx)

	if cfg.Kubernetes == nil {
		// Static services only: the desired state never changes.
		d, _ := lb.Build(lb.Snapshot{}, lb.OptionsFromConfig(cfg))
		store.Set(d)
		log.Info("desired state built from static services", "virtualServices", len(d.Services))
	} else {
		client, err := kubeClient(cfg.Kubernetes, log)
		if err != nil {
			return err
		}
		ctrl := k8s.New(client, k8s.Options{
			Identity: cfg.Node.Name,
			Config:   cfg,
			Store:    store,
			Log:      log.With("component", "kubernetes"),
		})
		g.Go(func() error { return ctrl.Run(ctx) })
	}

	startDataplane(ctx, g, cfg, store, log)

	g.Go(func() error {
		<-ctx.Done()
		return nil
	})
	err := g.Wait()
	log.Info("edgelb stopped")
	return err
}

func kubeClient(kc *config.Kubernetes, log *slog.Logger) (kubernetes.Interface, error) {
	// client-go logs through klog; send it to our slog handler.
	klog.SetLogger(logr.FromSlogHandler(log.With("component", "client-go").Handler()))
	var rc *rest.Config
	var err error
	if kc.Kubeconfig == "" {
		rc, err = rest.InClusterConfig()
	} else {
		rc, err = clientcmd.BuildConfigFromFlags("", kc.Kubeconfig)
	}
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %q: %w", kc.Kubeconfig, err)
	}
	rc.QPS, rc.Burst = kc.QPS, kc.Burst
	rc.UserAgent = "edgelb/" + Version
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	return client, nil
}
