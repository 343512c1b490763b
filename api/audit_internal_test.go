package api

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The audit file survives a crash that tore its last line (only that
// line is lost, and the next entry is a line of its own), is rotated at
// its size limit into FILE.1, and both are read back at start.
func TestAuditFileTornLineAndRotation(t *testing.T) {
	file := filepath.Join(t.TempDir(), "audit.log")
	open := func(limit int64) *auditLog {
		a := &auditLog{file: file, maxBytes: limit, log: slog.New(slog.DiscardHandler)}
		a.load()
		return a
	}
	entry := func(what string) AuditEntry {
		return AuditEntry{Time: time.Unix(1, 0).UTC(), Who: "alice", From: "127.0.0.1", What: what, Result: 200}
	}
	a := open(0)
	for _, w := range []string{"one", "two"} {
		if err := a.add(entry(w)); err != nil {
			t.Fatal(err)
		}
	}
	// A crash in the middle of the third line.
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"time":"1970-01-01T00:00:01Z","who":"al`)
	f.Close()
	a = open(0)
	if err := a.add(entry("four")); err != nil {
		t.Fatal(err)
	}
	a = open(0)
	var got []string
	for _, e := range a.list() {
		got = append(got, e.What)
	}
	if strings.Join(got, ",") != "one,two,four" {
		t.Fatalf("after a torn line: %v, want one,two,four", got)
	}
	// Rotation: a limit just above one line moves the file aside.
	a = open(150)
	if err := a.add(entry("five")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file + ".1"); err != nil {
		t.Fatalf("not rotated: %v", err)
	}
	if b, _ := os.ReadFile(file); strings.Count(string(b), "\n") != 1 {
		t.Fatalf("the new file holds %q, want one line", b)
	}
	got = nil
	for _, e := range open(150).list() {
		got = append(got, e.What)
	}
	if strings.Join(got, ",") != "one,two,four,five" {
		t.Fatalf("after rotation: %v", got)
	}
}
