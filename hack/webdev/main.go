// Command webdev serves the dashboard over the fake cluster of
// apitest.Sample, with traffic counters that grow, and a cluster
// configuration kept in memory (its forms, dry run, history and rollback
// work), for working on the web UI without a cluster:
//
//	go run ./hack/webdev -dir web/static   # edit the files, reload the page
//
// Tokens: "admin" and "viewer" unless set with the flags; -admin-token ""
// -viewer-token "" runs without tokens. lb1 is the local member.
package main

import (
	"context"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/edgelb/edgelb/api"
	"github.com/edgelb/edgelb/api/apitest"
	"github.com/edgelb/edgelb/web"
	"github.com/edgelb/edgelb/web/webtest"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9081", "address to serve on")
	dir := flag.String("dir", "", "serve the dashboard from this directory instead of the embedded files")
	admin := flag.String("admin-token", "admin", "admin token (empty: none)")
	viewer := flag.String("viewer-token", "viewer", "viewer token (empty: none)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *listen, *dir, *admin, *viewer); err != nil {
		fmt.Fprintln(os.Stderr, "webdev:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, listen, dir, admin, viewer string) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var files fs.FS = web.Files()
	if dir != "" {
		files = os.DirFS(dir)
	}
	tokens := map[string][]string{}
	if admin != "" {
		tokens[api.RoleAdmin] = []string{admin}
	}
	if viewer != "" {
		tokens[api.RoleViewer] = []string{viewer}
	}
	cc, _, err := webtest.ClusterConfig(devFile)
	if err != nil {
		return err
	}
	fake := apitest.Sample()
	fake.Bus.Publish("member", "lb1 joined", map[string]string{"member": "lb1"})
	srv := api.New(api.Options{
		Listen:    listen,
		Tokens:    tokens,
		State:     &webtest.Traffic{State: fake, Start: time.Now()},
		Bus:       fake.Bus,
		Dashboard: files,
		Config:    cc,
		Log:       log,
	})
	log.Info("dashboard on fake state", "url", "http://"+listen+"/")
	return srv.Run(ctx)
}

// devFile is the config file whose cluster-wide keys seed the cluster
// configuration: a pool, a static service and a BGP peer with a password.
const devFile = `node: {name: lb1}
cluster: {insecure: true}
bgp:
  asn: 64512
  routerID: 10.0.0.11
  peers: [{address: 10.0.0.1, asn: 64500, password: dev-md5-password}]
pools:
  - {name: default, addresses: ["192.0.2.10-192.0.2.50"], namespaces: [demo]}
services:
  - {name: dns, vip: 192.0.2.53, ports: [{port: 53, protocol: UDP}], backends: ["10.0.2.5:53"], sourceRanges: [10.0.0.0/8]}
`
