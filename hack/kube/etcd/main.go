// Command etcd is upstream etcd, built from the Go module proxy for edgelb's
// integration tests. It is never shipped.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
