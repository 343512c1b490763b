// Command edgelb is the edgelb load-balancer appliance daemon and its tools.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/edgelb/edgelb/cmd/edgelb/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// SIGUSR2 (the unit's RestartKillSignal): a graceful restart.
	ctx, restart := context.WithCancelCause(ctx)
	usr2 := make(chan os.Signal, 1)
	signal.Notify(usr2, syscall.SIGUSR2)
	go func() {
		<-usr2
		restart(cli.ErrRestart)
	}()
	// SIGHUP (systemctl reload): take the tokens, names and certificates
	// again (edgelb run).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			select {
			case cli.ReloadRequests <- struct{}{}:
			default: // one is pending already
			}
		}
	}()
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
