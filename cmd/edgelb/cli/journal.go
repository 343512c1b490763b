package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"
)

// stderrIsJournal reports whether w is this process's stderr and systemd
// connected it to the journal: $JOURNAL_STREAM names the device and inode
// of that stream (systemd.exec(5)), so a redirected stderr does not count.
func stderrIsJournal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || f.Fd() != os.Stderr.Fd() {
		return false
	}
	want := os.Getenv("JOURNAL_STREAM")
	if want == "" {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return want == fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

// journalKey turns a log key (vip, service, node, err) into a journal
// field name (VIP, SERVICE, NODE, ERR): upper case letters, digits and
// underscores only.
func journalKey(k string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
			return r
		}
		return '_'
	}, strings.TrimLeft(k, "_"))
}

func journalField(_ []string, a slog.Attr) slog.Attr {
	a.Key = journalKey(a.Key)
	return a
}
