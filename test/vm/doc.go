// Package vm runs edgelb's end-to-end tests inside a VM with a real Debian
// kernel (IPVS, nftables), booted by hack/vm/run.sh under QEMU TCG. The
// tests themselves are in test/vm/e2e (built with -tags vm); this package
// builds them and edgelb, boots the VM, streams the output and fails
// unless the output shows that tests ran and passed and none was skipped
// (test/innertest); the VM's exit code alone is not trusted. It is part of
// `go test ./...`.
package vm
