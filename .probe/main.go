// Probe: page out a process's mappings of its own binary (process_madvise MADV_PAGEOUT).
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	pid, _ := strconv.Atoi(os.Args[1])
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	f, _ := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		panic(err)
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 6 || fs[5] != exe {
			continue
		}
		r := strings.Split(fs[0], "-")
		a, _ := strconv.ParseUint(r[0], 16, 64)
		b, _ := strconv.ParseUint(r[1], 16, 64)
		iov := unix.Iovec{Base: (*byte)(unsafe.Pointer(uintptr(a))), Len: b - a}
		n, _, e := unix.Syscall6(unix.SYS_PROCESS_MADVISE, uintptr(fd), uintptr(unsafe.Pointer(&iov)), 1, unix.MADV_PAGEOUT, 0, 0)
		fmt.Println(fs[0], fs[1], n, e)
	}
}
