package cli

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Releasing the start-up pages of the binary.
//
// Before main runs, the packages' init functions register every
// Kubernetes API type with client-go's scheme, every protobuf descriptor
// (the Kubernetes types', GoBGP's) and the rest: they touch code and
// read-only data all over the binary, and the kernel maps 64 kB around
// each page a fault reads (fault-around). An idle edgelb was 68 MB of its
// binary's pages resident for 7 MB of its own, though it uses about 8 MB
// of those pages afterwards.
//
// releaseStartupPages drops the process's mappings of those pages, once
// the node is ready: the pages stay in the page cache (no disk read
// follows), and the code and data edgelb goes on using are mapped again
// by a minor fault each. It touches only read-only mappings of the
// executable with no anonymous (copied-on-write) page, so that no
// content can change. It is the process's business, so here and not in
// node.

// fileRange is a mapping of the executable to release.
type fileRange struct {
	start, end uint64
}

// startupRanges reads /proc/self/smaps-formatted text and returns the
// mappings of path that are not writable and hold only the file's pages.
func startupRanges(smaps io.Reader, path string) ([]fileRange, error) {
	var (
		out   []fileRange
		cur   *fileRange
		clean bool
	)
	flush := func() {
		if cur != nil && clean {
			out = append(out, *cur)
		}
		cur = nil
	}
	sc := bufio.NewScanner(smaps)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if addr, ok := strings.CutSuffix(f[0], ":"); ok && !strings.Contains(addr, "-") {
			// A field of the current mapping ("Anonymous:   0 kB").
			if cur != nil && addr == "Anonymous" && (len(f) < 2 || f[1] != "0") {
				clean = false
			}
			continue
		}
		flush()
		// A mapping: "start-end perms offset dev inode path".
		if len(f) < 6 || f[5] != path || strings.Contains(f[1], "w") {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			return nil, fmt.Errorf("mapping %q", line)
		}
		s, err1 := strconv.ParseUint(lo, 16, 64)
		e, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || e <= s {
			return nil, fmt.Errorf("mapping %q", line)
		}
		cur, clean = &fileRange{start: s, end: e}, true
	}
	flush()
	return out, sc.Err()
}

// releaseStartupPages drops this process's mappings of its executable's
// clean read-only pages (see above) and returns how many bytes of
// mappings it released.
func releaseStartupPages() (uint64, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return 0, err
	}
	ranges, err := startupRanges(bytes.NewReader(smaps), exe)
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, r := range ranges {
		// unix.Madvise takes a []byte; these addresses are no Go memory.
		if _, _, e := unix.Syscall(unix.SYS_MADVISE, uintptr(r.start), uintptr(r.end-r.start), unix.MADV_DONTNEED); e != 0 {
			return n, fmt.Errorf("releasing %x-%x: %w", r.start, r.end, e)
		}
		n += r.end - r.start
	}
	return n, nil
}
