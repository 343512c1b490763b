// Command kubectl is the upstream kubectl, built from the Go module proxy
// at the test-only kube-apiserver's minor version so that `make test` and
// `make lab` need no kubectl on PATH. It is never shipped.
package main

import (
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	if err := cli.RunNoErrOutput(cmd.NewDefaultKubectlCommand()); err != nil {
		util.CheckErr(err)
	}
}
