package cluster

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
)

// logWriter turns memberlist's "[LEVEL] memberlist: message" lines into
// slog records.
type logWriter struct{ log *slog.Logger }

func (w *logWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		s := string(line)
		lv := slog.LevelInfo
		for prefix, l := range map[string]slog.Level{"[DEBUG]": slog.LevelDebug, "[INFO]": slog.LevelInfo, "[WARN]": slog.LevelWarn, "[ERR]": slog.LevelError, "[ERROR]": slog.LevelError} {
			if strings.HasPrefix(s, prefix) {
				lv, s = l, strings.TrimSpace(strings.TrimPrefix(s, prefix))
				break
			}
		}
		s = strings.TrimPrefix(s, "memberlist: ")
		w.log.Log(context.Background(), lv, s, "lib", "memberlist")
	}
	return len(p), nil
}
