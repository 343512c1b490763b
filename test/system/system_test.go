// TestDebianHosts tests edgelb as users run it: its .deb installed with
// apt-get on real Debian hosts and run by systemd, with the shipped unit
// unmodified. It builds two versions of the package and the testbed test
// binary, boots the Debian test bed (hack/sysvm: a QEMU VM whose systemd
// boots three systemd-nspawn hosts) and runs test/system/testbed in it.

package system

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/edgelb/edgelb/test/innertest"
	"github.com/edgelb/edgelb/test/prereq"
	"github.com/edgelb/edgelb/test/testenv"
)

func run(t *testing.T, dir string, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// deb builds the package at the given version and copies it to dst.
func deb(t *testing.T, root, version, dst string) {
	t.Helper()
	run(t, root, nil, "make", "--no-print-directory", "deb", "DEB_VERSION="+version, "VERSION=v"+strings.ReplaceAll(version, "~", "-"))
	debs, _ := filepath.Glob(filepath.Join(root, "dist", "edgelb_"+version+"_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb DEB_VERSION=%s made %v", version, debs)
	}
	run(t, root, nil, "cp", debs[0], dst)
}

func TestDebianHosts(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		prereq.Missing(t, "the test bed needs linux/amd64")
	}
	if os.Geteuid() != 0 {
		prereq.Missing(t, "the test bed needs root (debootstrap, QEMU)")
	}
	root := testenv.RepoRoot()
	if out, err := exec.Command(filepath.Join(root, "hack/sysvm/deps.sh")).CombinedOutput(); err != nil {
		prereq.Missing(t, "cannot install the test bed's tools (hack/sysvm/deps.sh): %v\n%s", err, out)
	}
	if out, err := exec.Command(filepath.Join(root, "hack/sysvm/build.sh")).CombinedOutput(); err != nil {
		t.Fatalf("building the test bed image (hack/sysvm/build.sh): %v\n%s", err, out)
	}
	// The cluster's control plane runs in the VM beside the hosts: the
	// test-only etcd and kube-apiserver, and the operator's kubectl, all
	// built by hack/kube/build.sh.
	if out, err := exec.Command(filepath.Join(root, "hack/kube/build.sh")).CombinedOutput(); err != nil {
		t.Fatalf("building etcd, kube-apiserver and kubectl (hack/kube/build.sh): %v\n%s", err, out)
	}
	bin, err := testenv.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	kubectl := filepath.Join(bin, "kubectl")
	dir := t.TempDir()
	const oldV, newV = "1.0.0~tb1", "1.0.0~tb2"
	deb(t, root, oldV, filepath.Join(dir, "edgelb-old.deb"))
	deb(t, root, newV, filepath.Join(dir, "edgelb-new.deb"))
	run(t, root, []string{"CGO_ENABLED=0"}, "go", "test", "-c", "-tags", "sysvm", "-o", filepath.Join(dir, "testbed.test"), "./test/system/testbed")
	job := filepath.Join(dir, "job.sh")
	// 20 minutes on CI's machine; a slower one (the same 2 cores, busier)
	// ran the rolling upgrade alone for 23 minutes, apt-get taking 5-8 of
	// them a host, and the test bed past the 35 minutes it had.
	args := "-test.v -test.timeout 48m"
	if r := os.Getenv("EDGELB_TESTBED_RUN"); r != "" {
		args += " -test.run '" + r + "'" // by hand: some steps only
	}
	if err := os.WriteFile(job, []byte("/job/testbed.test "+args+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(root, "hack/sysvm/run.sh"), "-t", "3000", "-m", "4096",
		"-e", "EDGELB_OLD_DEB=edgelb-old.deb", "-e", "EDGELB_NEW_DEB=edgelb-new.deb", "-e", "EDGELB_NEW_VERSION="+newV,
		"-f", filepath.Join(dir, "edgelb-old.deb"), "-f", filepath.Join(dir, "edgelb-new.deb"),
		"-f", filepath.Join(dir, "testbed.test"), "-f", filepath.Join(root, "packaging/modules-load.conf"),
		"-f", filepath.Join(root, "docs/operations.md"), "-f", kubectl+":bin/kubectl",
		"-f", filepath.Join(bin, "etcd")+":k8s/etcd", "-f", filepath.Join(bin, "kube-apiserver")+":k8s/kube-apiserver",
		// testenv, which runs the control plane in the VM, wants its kubectl beside them.
		"-f", kubectl+":k8s/kubectl", job)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			if testing.Verbose() {
				fmt.Println("testbed| " + sc.Text())
			}
		}
	}()
	err = cmd.Wait()
	pw.Close()
	<-done
	out := all.String()
	for _, l := range strings.Split(out, "\n") {
		if i := strings.Index(l, "FIGURE "); i >= 0 {
			t.Log(strings.TrimSpace(l[i:]))
		}
	}
	if err != nil {
		t.Fatalf("the test bed run failed (%v):\n%s", err, out)
	}
	if err := innertest.Check(out); err != nil {
		t.Fatalf("the test bed run: %v\n%s", err, out)
	}
	if !strings.Contains(out, "--- PASS: TestTestbed ") {
		t.Fatalf("TestTestbed did not pass inside the test bed:\n%s", out)
	}
}
