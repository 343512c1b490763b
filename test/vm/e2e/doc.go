// Package e2e holds the end-to-end tests of the IPVS dataplane. They run
// inside the test VM (hack/vm), built with `-tags vm` and started by
// test/vm, because they need a kernel with IPVS and change the network of
// the machine they run on.
package e2e
