// Package testbed holds the tests that run inside the Debian test bed
// (hack/sysvm): real Debian hosts booted with systemd as PID 1, as
// systemd-nspawn containers in one QEMU VM, each with its own network
// namespace on one bridge, where edgelb is installed from its .deb with
// apt-get and run by systemd exactly as docs/operations.md tells an
// operator. test/system builds the packages and this test binary, boots
// the VM and checks that the inner run passed every test and skipped none.
//
// The tests are built with the sysvm tag only; they change the machine
// they run on.
package testbed
