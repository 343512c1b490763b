package nslab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
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

// Saturate gives h a CPU of its own size, cpus (a CPU cgroup with that
// quota, per 10 ms period, so that the other hosts keep the rest of the
// machine), puts edgelb on h into it at the nice value nice (the packaged
// unit's Nice=) and runs workers stress-ng CPU hogs in it at nice 0, in
// h's namespace, until the returned stop is called (and at cleanup): h's
// CPU is saturated.
func (h *Host) Saturate(cpus float64, workers, nice int) (stop func()) {
	t := h.Lab.T
	t.Helper()
	bin, err := exec.LookPath("stress-ng")
	if err != nil {
		prereq.Missing(t, "stress-ng is not installed (hack/test-deps.sh)")
	}
	cg, limit, root := cpuCgroup(t, h.Lab.Prefix+"-"+h.Name)
	const period = 10000 // µs
	limit(int(cpus*period), period)
	move := func(pid int, dir string) error {
		return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
	}
	if err := move(h.Pid(), cg); err != nil {
		t.Fatalf("moving edgelb on %s into its CPU cgroup: %v", h.Name, err)
	}
	// Every thread (renice -p sets one): the Go runtime's threads are
	// the process's tasks.
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", h.Pid()))
	for _, task := range tasks {
		if out, err := exec.Command("renice", "-n", strconv.Itoa(nice), "-p", task.Name()).CombinedOutput(); err != nil {
			t.Fatalf("renice of edgelb on %s: %v: %s", h.Name, err, out)
		}
	}
	// The hogs join the cgroup before stress-ng forks them.
	cmd := exec.Command("ip", "netns", "exec", h.NS, "sh", "-c", `echo $$ > "$1/cgroup.procs" && exec "$2" --cpu "$3" --cpu-method matrixprod --quiet`,
		"sh", cg, bin, strconv.Itoa(workers))
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
			move(pid, root)
		}
		// The cgroup empties once its killed hogs are reaped.
		deadline := time.Now().Add(5 * time.Second)
		for os.Remove(cg) != nil && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Cleanup(stop)
	return stop
}

// cpuCgroup creates the CPU cgroup name (cgroup v2, or v1's cpu
// controller) and returns its directory, a function that sets its quota
// (µs per period), and the root cgroup's directory.
func cpuCgroup(t testing.TB, name string) (dir string, limit func(quota, period int), root string) {
	t.Helper()
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		root = "/sys/fs/cgroup"
		dir = filepath.Join(root, name)
		limit = func(quota, period int) { write(t, filepath.Join(dir, "cpu.max"), fmt.Sprintf("%d %d", quota, period)) }
	} else if _, err := os.Stat("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"); err == nil {
		root = "/sys/fs/cgroup/cpu"
		dir = filepath.Join(root, name)
		limit = func(quota, period int) {
			write(t, filepath.Join(dir, "cpu.cfs_period_us"), strconv.Itoa(period))
			write(t, filepath.Join(dir, "cpu.cfs_quota_us"), strconv.Itoa(quota))
		}
	} else {
		prereq.Missing(t, "no CPU cgroup controller (cgroup v2 or v1's cpu) to give a host a CPU of its own")
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		prereq.Missing(t, "cannot create a CPU cgroup: %v", err)
	}
	return dir, limit, root
}

func write(t testing.TB, path, v string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(v), 0o644); err != nil {
		t.Fatalf("writing %s: %v", path, err)
	}
}
