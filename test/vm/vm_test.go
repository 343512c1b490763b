package vm_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/edgelb/edgelb/test/innertest"
	"github.com/edgelb/edgelb/test/prereq"
	"github.com/edgelb/edgelb/test/testenv"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

func build(t *testing.T, root, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// runVM boots the VM with edgelb and the e2e test binary and runs args of
// the test binary; it returns the output. The test fails unless the VM
// exits 0 and the output shows tests that ran and passed, none skipped
// (test/innertest).
func runVM(t *testing.T, timeoutSecs int, testArgs string, extra ...string) string {
	t.Helper()
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		prereq.Missing(t, "the test VM needs linux/amd64")
	}
	prereq.NotShort(t, "the VM tests")
	root := repoRoot(t)
	// build.sh installs qemu & co. when missing (needs root and apt).
	if out, err := exec.Command(filepath.Join(root, "hack/vm/build.sh")).CombinedOutput(); err != nil {
		prereq.Missing(t, "cannot prepare the test VM (hack/vm/build.sh): %v\n%s", err, out)
	}
	dir := t.TempDir()
	build(t, root, dir, "build", "-tags", testenv.BuildTags, "-o", filepath.Join(dir, "edgelb"), "./cmd/edgelb")
	build(t, root, dir, "test", "-c", "-tags", "vm", "-o", filepath.Join(dir, "e2e.test"), "./test/vm/e2e")
	job := filepath.Join(dir, "job.sh")
	os.WriteFile(job, []byte("/job/e2e.test "+testArgs+"\n"), 0o644)
	args := []string{"-t", fmt.Sprint(timeoutSecs), "-m", "2048",
		"-f", filepath.Join(dir, "edgelb") + ":/usr/local/bin/edgelb", "-f", filepath.Join(dir, "e2e.test")}
	args = append(append(args, extra...), job)
	cmd := exec.Command(filepath.Join(root, "hack/vm/run.sh"), args...)
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
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			if testing.Verbose() {
				fmt.Println("vm| " + sc.Text())
			}
		}
		// A line too long for the scanner must not block run.sh: the
		// rest is dropped, and the check below reports the gap.
		if err := sc.Err(); err != nil {
			fmt.Fprintf(&all, "vm_test: reading the VM output: %v\n", err)
			io.Copy(io.Discard, pr)
		}
	}()
	werr := cmd.Wait()
	pw.Close()
	<-done
	out := all.String()
	// The exit code alone passes a run that skipped tests, matched none or
	// died before it reported; the output must show a clean pass.
	if err := innertest.Check(out); werr != nil || err != nil {
		if werr != nil {
			err = errors.Join(fmt.Errorf("hack/vm/run.sh: %w", werr), err)
		}
		t.Fatalf("the tests inside the VM (e2e.test %s) did not pass cleanly:\n%v\n--- VM output:\n%s", testArgs, err, out)
	}
	return out
}

// TestVM runs the end-to-end dataplane tests inside the VM. EDGELB_VM_RUN
// narrows them (a -test.run pattern).
func TestVM(t *testing.T) {
	args := "-test.v -test.timeout 600s -test.run '^(TestDataplane|TestDirectRoutingAndTunnel|TestFailover|TestSourceRanges|TestContinuity|TestBackendAdminStates|TestBGPDrainNat)$'"
	if r := os.Getenv("EDGELB_VM_RUN"); r != "" {
		args += " -test.run '" + r + "'"
	}
	out := runVM(t, 680, args)
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "--- ") || strings.Contains(l, "e2e_test.go") {
			t.Log(strings.TrimSpace(l))
		}
	}
}

// TestVMKubernetes runs a real kube-apiserver on the host and the
// Kubernetes-driven end-to-end tests inside the VM, which reach the API
// server at 10.0.2.2 and drive it with the kubectl of `make test-bins`. EDGELB_VM_RUN
// narrows them (a -test.run pattern).
func TestVMKubernetes(t *testing.T) {
	if _, err := testenv.BinDir(); err != nil {
		prereq.Missing(t, "%v", err)
	}
	kubectl, err := testenv.KubectlPath()
	if err != nil {
		prereq.Missing(t, "%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	env, err := testenv.Start(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer env.Stop()
	// The VM reaches the host's loopback at 10.0.2.2.
	vmKubeconfig := func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "vm-"+filepath.Base(path))
		os.WriteFile(out, []byte(strings.ReplaceAll(string(b), "https://127.0.0.1:", "https://10.0.2.2:")), 0o600)
		return out
	}
	admin, edgelb := vmKubeconfig(env.AdminKubeconfig), vmKubeconfig(env.EdgelbKubeconfig)
	args := "-test.v -test.timeout 600s -test.run '^(TestKubernetes|TestKubernetesChoices)$'"
	if r := os.Getenv("EDGELB_VM_RUN"); r != "" {
		args += " -test.run '" + r + "'"
	}
	out := runVM(t, 660, args,
		"-f", kubectl+":/job/kubectl",
		"-f", admin+":/job/admin.kubeconfig", "-f", edgelb+":/job/edgelb.kubeconfig",
		"-e", "EDGELB_ADMIN_KUBECONFIG=/job/admin.kubeconfig", "-e", "EDGELB_KUBECONFIG=/job/edgelb.kubeconfig")
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "--- ") || strings.Contains(l, "kubernetes_test.go") || strings.Contains(l, "choices_test.go") {
			t.Log(strings.TrimSpace(l))
		}
	}
	if !strings.Contains(out, "--- PASS: TestKubernetes") || strings.Contains(out, "--- FAIL") || strings.Contains(out, "--- SKIP") {
		t.Fatalf("the Kubernetes tests did not all pass inside the VM:\n%s", out)
	}
}
