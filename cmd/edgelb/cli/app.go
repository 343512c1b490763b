// Package cli implements edgelb's subcommands: the daemon's command
// (run, which builds a node.Node from the real kernels and runs it;
// witness, a node.Witness) and
// the tools (check, status, config, members, keygen, cleanup, version), which
// reach the local API through one client (client.go). main calls Main;
// nothing here exits the process. Each subcommand declares its flags in one
// function (checkFlags, runFlags, ...) that both the subcommand and the
// edgelb(8) man page (manpage.go, WriteManPage) use, so --help and the man
// page cannot disagree.
package cli

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	slogjournal "github.com/systemd/slog-journal"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/cmd/edgelb/node"
	"github.com/edgelb/edgelb/lb/config"
)

// Version is set at build time with -ldflags "-X ...cli.Version=v1.2.3".
var Version = "dev"

const defaultConfig = "/etc/edgelb/config.yaml"

// DefaultGCPercent is the garbage collector's target of `edgelb run`
// unless GOGC is set: at 10,000 Services it keeps about 35–60 MB of
// resident memory that Go's 100 would hold, for no measured loss of
// latency (docs/architecture.md, "Memory at scale").
const DefaultGCPercent = 50

const usage = `edgelb — a bare-metal load-balancer appliance for Kubernetes.

Usage:
  edgelb run     --config FILE   run the daemon
  edgelb check   --config FILE   validate a config file (exit 1 if it is bad)
  edgelb status  [--api URL] [--token T] [--output text|json]
                                 summary read from the local API
  edgelb config  get|apply -f FILE|diff -f FILE|history|rollback N
                                 the cluster configuration, through the local API
  edgelb members list|add ADDRESS|remove NAME
                                 the configured members, through the local API
  edgelb witness --config FILE [--state-dir DIR]
                                 run a witness: the third voter of a pair of
                                 hosts, on a third machine; it owns no VIP
  edgelb keygen                  print a new gossip encryption key
  edgelb cleanup --config FILE [--vips-only] [--after-crash]
                                 remove edgelb's VIPs, IPVS services and nftables
                                 table from this host (the package's removal);
                                 only the VIPs after a crash (as the unit's ExecStopPost)
  edgelb version                 print the version

Run "edgelb COMMAND --help" for a command's flags.
`

// Main runs the subcommand named by args[0] and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "run":
		err = runCmd(ctx, rest, stderr)
	case "check":
		err = checkCmd(rest, stdout, stderr)
	case "status":
		err = statusCmd(ctx, rest, stdout, stderr)
	case "config":
		err = configCmd(ctx, rest, stdout, stderr)
	case "members":
		err = membersCmd(ctx, rest, stdout, stderr)
	case "witness":
		err = witnessCmd(ctx, rest, stderr)
	case "keygen":
		err = keygenCmd(rest, stdout, stderr)
	case "cleanup":
		err = cleanupCmd(rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "edgelb", versionString())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "edgelb: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintln(stderr, err)
		return 1
	}
}

var errUsage = errors.New("usage")

// ErrRestart is the cause main cancels Main's context with on SIGUSR2,
// the signal systemd sends for `systemctl restart` (RestartKillSignal= in
// the unit): a graceful restart (node.ErrRestart).
var ErrRestart = node.ErrRestart

func versionString() string {
	v := Version
	// The commit make stamps (api.Revision), else the go command's record.
	rev, goVersion := api.Revision, ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && rev == "" {
				rev = s.Value
			}
		}
		goVersion = " " + bi.GoVersion
	}
	if len(rev) >= 12 {
		v += " (" + rev[:12] + ")"
	}
	return v + goVersion
}

func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("edgelb "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: edgelb %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return errUsage
	}
	return nil
}

func checkFlags(stderr io.Writer) (*flag.FlagSet, *string) {
	fs := newFlags("check", "check --config FILE", stderr)
	return fs, fs.String("config", defaultConfig, "config file to validate")
}

func checkCmd(args []string, stdout, stderr io.Writer) error {
	fs, path := checkFlags(stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	if errs := node.CheckFiles(cfg); len(errs) > 0 {
		for i, e := range errs {
			errs[i] = fmt.Errorf("%s: %w", *path, e)
		}
		return errors.Join(errs...)
	}
	fmt.Fprintf(stdout, "%s: ok (node %s, %d pools, %d static services, dataplane %s/%s/%s)\n",
		*path, cfg.Node.Name, len(cfg.Pools), len(cfg.Services),
		cfg.Dataplane.Backend, cfg.Dataplane.Mode, cfg.Dataplane.Method)
	warnings := cfg.Warnings()
	co := node.ClusterOptions(cfg, nil, nil)
	for _, w := range []string{co.QuorumWarning(), co.InsecureWarning()} {
		if w != "" {
			warnings = append(warnings, w)
		}
	}
	for _, w := range warnings {
		fmt.Fprintf(stderr, "%s: warning: %s\n", *path, w)
	}
	return nil
}

func keygenFlags(stderr io.Writer) *flag.FlagSet {
	return newFlags("keygen", "keygen", stderr)
}

func keygenCmd(args []string, stdout, stderr io.Writer) error {
	fs := keygenFlags(stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("reading random bytes: %w", err)
	}
	fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(key))
	return nil
}

const runSignals = `
Signals:
  SIGTERM, SIGINT  stop: hand the VIPs over to the other members, then leave
  SIGHUP           reload (systemctl reload): take the API's tokens, names
                   and TLS certificate and the kubeconfig's token from the
                   config file again, without a restart
  SIGUSR2          graceful restart (systemd's RestartKillSignal for
                   "systemctl restart"): keep the VIPs, IPVS and nftables
                   state on this host for the next process, which must
                   start within cluster.restartHold; then leave and exit 0
`

type runOptions struct {
	config, logLevel, logFormat string
}

func runFlags(stderr io.Writer) (*flag.FlagSet, *runOptions) {
	fs := newFlags("run", "run --config FILE [--log-level info] [--log-format auto|text|json|journal]", stderr)
	flagsUsage := fs.Usage
	fs.Usage = func() {
		flagsUsage()
		fmt.Fprint(stderr, runSignals)
	}
	o := &runOptions{}
	fs.StringVar(&o.config, "config", defaultConfig, "config file")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "auto", "log format: text, json, or journal (native systemd journal fields: VIP, SERVICE, NODE, ...); auto is journal when stderr is connected to the journal (under systemd), else text")
	return fs, o
}

func runCmd(ctx context.Context, args []string, stderr io.Writer) error {
	fs, o := runFlags(stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(stderr, o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	// A bad file is refused here, before anything on the host changes.
	cfg, err := config.Load(o.config)
	if err != nil {
		return fmt.Errorf("refusing to start: %w", err)
	}
	if os.Getenv("GOGC") == "" {
		// The collector's headroom: the heap grows to 1.5 times what is
		// live instead of Go's twice (docs/architecture.md, "Memory at
		// scale"). GOGC in the environment wins.
		debug.SetGCPercent(DefaultGCPercent)
	}
	if cfg.Node.MemoryLimit > 0 {
		// The process's, so here and not in node (a library several of
		// which may share a process).
		debug.SetMemoryLimit(cfg.Node.MemoryLimit)
		log.Info("soft memory limit", "bytes", cfg.Node.MemoryLimit)
	}
	stateDir := node.DefaultStateDir()
	n, err := node.New(cfg, node.Options{
		Kernels:  node.RealKernels(cfg.Node.Interface, stateDir),
		StateDir: stateDir,
		Log:      log,
		Version:  Version,
		OnReady: func() {
			_, _ = daemon.SdNotify(false, daemon.SdNotifyReady)
		},
		OnWatchdog: watchdog(),
	})
	if err != nil {
		return err
	}
	go reloads(ctx, o.config, n, log)
	err = n.Run(ctx)
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
	return err
}

// ReloadRequests receives a value for each reload asked (SIGHUP: the
// unit's ExecReload); main sends to it.
var ReloadRequests = make(chan struct{}, 1)

// reloads reads the config file again at each request and hands it to
// the node's Reload, telling systemd (RELOADING=1, then READY=1). A file
// that does not load, or that the node refuses, changes nothing.
func reloads(ctx context.Context, path string, n *node.Node, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-ReloadRequests:
		}
		_, _ = daemon.SdNotify(false, daemon.SdNotifyReloading)
		cfg, err := config.Load(path)
		if err == nil {
			err = n.Reload(cfg)
		}
		if err != nil {
			log.Error("reload refused: nothing changed", "config", path, "err", err)
		} else {
			log.Info("reloaded", "config", path)
		}
		_, _ = daemon.SdNotify(false, daemon.SdNotifyReady)
	}
}

// watchdog pings systemd's watchdog at half its interval, when the unit
// has one (WatchdogSec=); the node calls it at every pass of its
// observer loop.
func watchdog() func() {
	interval, _ := daemon.SdWatchdogEnabled(false)
	if interval <= 0 {
		return nil
	}
	var last time.Time
	return func() {
		if time.Since(last) >= interval/2 {
			_, _ = daemon.SdNotify(false, daemon.SdNotifyWatchdog)
			last = time.Now()
		}
	}
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	if format == "auto" {
		format = "text"
		if stderrIsJournal(w) {
			format = "journal"
		}
	}
	switch format {
	case "journal":
		h, err := slogjournal.NewHandler(&slogjournal.Options{Level: lv, ReplaceAttr: journalField, ReplaceGroup: journalKey})
		if err != nil {
			return nil, fmt.Errorf("--log-format journal: %w", err)
		}
		return slog.New(h), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want auto, text, json or journal", format)
}
