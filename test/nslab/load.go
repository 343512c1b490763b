package nslab

import (
	"fmt"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/edgelb/edgelb/test/prereq"
)

// Pid is the process ID of edgelb on h (`ip netns exec` runs it in its
// own place), 0 when it is not running.
func (h *Host) Pid() int {
	if h.proc == nil || h.proc.Process == nil {
		return 0
	}
	return h.proc.Process.Pid
}

// Delay delays everything h sends on eth0 by d (netem on its root
// qdisc) until the returned undo is called (and at cleanup).
func (h *Host) Delay(d time.Duration) (undo func()) {
	h.Lab.T.Helper()
	ms := strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	if out, err := exec.Command("tc", "-n", h.NS, "qdisc", "replace", "dev", "eth0", "root", "netem", "delay", ms).CombinedOutput(); err != nil {
		prereq.Missing(h.Lab.T, "netem (tc qdisc ... netem) in a namespace: %v: %s", err, out)
	}
	done := false
	undo = func() {
		if !done {
			done = true
			exec.Command("tc", "-n", h.NS, "qdisc", "del", "dev", "eth0", "root").Run()
		}
	}
	h.Lab.T.Cleanup(undo)
	return undo
}

// Saturate pins every thread of edgelb on h to cpu and runs workers
// stress-ng CPU hogs pinned to the same CPU in h's namespace, at
// edgelb's own priority, until the returned stop is called (and at
// cleanup): h's CPU is saturated while the other hosts keep the rest of
// the machine.
func (h *Host) Saturate(cpu, workers int) (stop func()) {
	t := h.Lab.T
	t.Helper()
	bin, err := exec.LookPath("stress-ng")
	if err != nil {
		prereq.Missing(t, "stress-ng is not installed (hack/test-deps.sh)")
	}
	c := strconv.Itoa(cpu)
	if out, err := exec.Command("taskset", "-a", "-p", "-c", c, strconv.Itoa(h.Pid())).CombinedOutput(); err != nil {
		t.Fatalf("pinning edgelb on %s to CPU %d: %v: %s", h.Name, cpu, err, out)
	}
	cmd := exec.Command("ip", "netns", "exec", h.NS, bin, "--cpu", strconv.Itoa(workers), "--taskset", c, "--cpu-method", "matrixprod", "--quiet")
	// Its own process group, so that its workers end with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		if pid := h.Pid(); pid != 0 {
			exec.Command("taskset", "-a", "-p", "-c", fmt.Sprintf("0-%d", runtime.NumCPU()-1), strconv.Itoa(pid)).Run()
		}
	}
	t.Cleanup(stop)
	return stop
}
