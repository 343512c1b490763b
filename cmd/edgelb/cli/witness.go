package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/edgelb/edgelb/cmd/edgelb/node"
	"github.com/edgelb/edgelb/lb/config"
)

const defaultWitnessConfig = "/etc/edgelb/witness.yaml"

type witnessOptions struct {
	config, stateDir, logLevel, logFormat string
}

func witnessFlags(stderr io.Writer) (*flag.FlagSet, *witnessOptions) {
	fs := newFlags("witness", "witness --config FILE [--state-dir DIR] [--log-level info] [--log-format auto|text|json|journal]", stderr)
	o := &witnessOptions{}
	fs.StringVar(&o.config, "config", defaultWitnessConfig, "config file: node.name and the cluster keys (the hosts' key, join list and timers); other keys are ignored")
	fs.StringVar(&o.stateDir, "state-dir", "", "where the consensus log is kept (default: $STATE_DIRECTORY, else /var/lib/edgelb)")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "auto", "log format: text, json, journal or auto (journal under systemd, else text)")
	return fs, o
}

// witnessCmd runs `edgelb witness`: the third voter of a pair of hosts,
// owning no VIP (node.Witness).
func witnessCmd(ctx context.Context, args []string, stderr io.Writer) error {
	fs, o := witnessFlags(stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(stderr, o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	cfg, err := config.Load(o.config)
	if err != nil {
		return fmt.Errorf("refusing to start: %w", err)
	}
	stateDir := o.stateDir
	if stateDir == "" {
		stateDir = node.DefaultStateDir()
	}
	w, err := node.NewWitness(cfg, node.Options{StateDir: stateDir, Log: log, Version: Version})
	if err != nil {
		return fmt.Errorf("refusing to start: %s: %w", o.config, err)
	}
	_, _ = daemon.SdNotify(false, daemon.SdNotifyReady)
	err = w.Run(ctx)
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
