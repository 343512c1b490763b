package cli

import (
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

const smapsSample = `00400000-00402000 r--p 00000000 00:2a 123 /usr/bin/edgelb
Size:                  8 kB
Rss:                   8 kB
Anonymous:             0 kB
VmFlags: rd mr mw me sd
00402000-02513000 r-xp 00002000 00:2a 123 /usr/bin/edgelb
Size:              34012 kB
Rss:               31812 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me sd
02513000-04a94000 r--p 02113000 00:2a 123 /usr/bin/edgelb
Anonymous:             0 kB
04a94000-04a95000 r--p 04694000 00:2a 123 /usr/bin/edgelb
Anonymous:             4 kB
04a95000-04b77000 rw-p 04695000 00:2a 123 /usr/bin/edgelb
Anonymous:           120 kB
04b77000-06000000 rw-p 00000000 00:00 0
Anonymous:          4000 kB
7fa7fa1c3000-7fa7fa319000 r-xp 00028000 00:2a 99 /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
`

// Only the executable's read-only mappings that hold none but the file's
// pages are released: not its written (relocated) page, its data, the
// heap or a library.
func TestStartupRanges(t *testing.T) {
	got, err := startupRanges(strings.NewReader(smapsSample), "/usr/bin/edgelb")
	if err != nil {
		t.Fatal(err)
	}
	want := []fileRange{{0x400000, 0x402000}, {0x402000, 0x2513000}, {0x2513000, 0x4a94000}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ranges %x, want %x", got, want)
	}
	if _, err := startupRanges(strings.NewReader("zz-yy r--p 0 0 1 /usr/bin/edgelb\n"), "/usr/bin/edgelb"); err == nil {
		t.Errorf("a malformed mapping was accepted")
	}
}

// Released in this very process, the pages leave its resident set and the
// code still runs: it is mapped again as it is used.
func TestReleaseStartupPages(t *testing.T) {
	if _, err := os.Stat("/proc/self/smaps"); err != nil {
		t.Skip("no /proc/self/smaps here:", err)
	}
	before := rssFile(t)
	n, err := releaseStartupPages()
	if err != nil {
		t.Fatal(err)
	}
	after := rssFile(t)
	if n == 0 || after >= before {
		t.Errorf("released %d bytes of mappings; file-backed resident memory %d kB before, %d kB after", n, before, after)
	}
	// Still works: parse again (code and tables mapped anew).
	if got, err := startupRanges(strings.NewReader(smapsSample), "/usr/bin/edgelb"); err != nil || len(got) != 3 {
		t.Errorf("after the release: %v, %v", got, err)
	}
}

func rssFile(t *testing.T) int {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "RssFile:" {
			kb, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatal(err)
			}
			return kb
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}
