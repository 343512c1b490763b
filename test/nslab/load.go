package nslab

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"

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

// Saturate pins every thread of edgelb on h to cpu, sets its nice value
// (the packaged unit's Nice=), and runs workers stress-ng CPU hogs
// pinned to the same CPU in h's namespace at nice 0, until the returned
// stop is called (and at cleanup): h's CPU is saturated while the other
// hosts keep the rest of the machine.
func (h *Host) Saturate(cpu, workers, nice int) (stop func()) {
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
	// Every thread (renice -p sets one): the Go runtime's threads are
	// the process's tasks.
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", h.Pid()))
	for _, task := range tasks {
		if out, err := exec.Command("renice", "-n", strconv.Itoa(nice), "-p", task.Name()).CombinedOutput(); err != nil {
			t.Fatalf("renice of edgelb on %s: %v: %s", h.Name, err, out)
		}
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
