// Command edgelb is the edgelb load-balancer appliance daemon and its tools.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/edgelb/edgelb/cmd/edgelb/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := app.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
