// Command kube-apiserver is the upstream Kubernetes API server, built from the
// Go module proxy for edgelb's integration tests. It is never shipped.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
