// Package nstest gives a test a network namespace of its own, for code
// that programs the kernel (nftables) through a namespace's file
// descriptor. It needs root and the ip and nft commands; without them the
// test is skipped (or fails under CI=true, see test/prereq).
package nstest

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/edgelb/edgelb/test/prereq"
)

// Require skips (or, with CI=true, fails) t when it cannot create network
// namespaces or use nftables.
func Require(t testing.TB) {
	t.Helper()
	prereq.RootWith(t, "nft (package nftables)", "ip (package iproute2)")
}

// New creates the namespace edgelb-NAME-PID, removed when t ends, and
// returns its name and an open file descriptor of it.
func New(t testing.TB, name string) (string, int) {
	t.Helper()
	Require(t)
	ns := fmt.Sprintf("edgelb-%s-%d", name, os.Getpid())
	Run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	f, err := os.Open("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return ns, int(f.Fd())
}

// Run runs a command and returns its output; it fails t if the command
// fails.
func Run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
