// Package innertest judges the `go test -v` output of a test run that a
// harness started somewhere else (a test binary inside the test VM, the
// suite on another host). The exit code of such a run cannot tell a pass
// from a run that skipped its tests, matched none of them, or died before
// it reported, so the harness hands the output to Check, which accepts
// only a run in which tests ran, none was skipped, none failed, and the
// run ended with its PASS (or ok) line.
package innertest

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// The ways an inner run can fall short; Check wraps them.
var (
	ErrSkipped  = errors.New("tests were skipped")
	ErrNoneRan  = errors.New("no test ran")
	ErrNoReport = errors.New("the run did not report: no closing PASS or ok line after the last test")
	ErrFailed   = errors.New("the run failed")
)

// Skip is a skipped test and the last line it logged (usually the reason).
type Skip struct {
	Name, Reason string
}

// Result is what the output of a run says.
type Result struct {
	Passed  []string
	Failed  []string
	Skipped []Skip
	// Reported: the run's closing line (PASS, ok, or FAIL) follows the
	// last test that started or finished.
	Reported bool
	// FailLines are FAIL and panic lines, which also show a failure that
	// no test was charged with (a TestMain that gave up, a timeout).
	FailLines []string
}

var (
	resultRE = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+)`)
	startRE  = regexp.MustCompile(`^=== (RUN|CONT|NAME|PAUSE)\s+(\S+)`)
	logRE    = regexp.MustCompile(`^\s+\S+\.go:\d+: (.*)$`)
)

// Parse reads the output of `go test -v` or of a test binary run with
// -test.v. Lines that are not test output (a VM's console) are ignored.
func Parse(out string) Result {
	var r Result
	current := ""                  // the test whose output follows
	lastLog := map[string]string{} // test -> the last line it logged
	reportAt, activityAt := -1, -1
	for i, line := range strings.Split(out, "\n") {
		line = strings.TrimRight(line, "\r")
		trimmed := strings.TrimSpace(line)
		if m := startRE.FindStringSubmatch(line); m != nil {
			current, activityAt = m[2], i
			continue
		}
		if m := resultRE.FindStringSubmatch(line); m != nil {
			activityAt = i
			switch m[1] {
			case "PASS":
				r.Passed = append(r.Passed, m[2])
			case "FAIL":
				r.Failed = append(r.Failed, m[2])
			case "SKIP":
				r.Skipped = append(r.Skipped, Skip{Name: m[2], Reason: lastLog[m[2]]})
			}
			continue
		}
		if m := logRE.FindStringSubmatch(line); m != nil && current != "" {
			lastLog[current] = m[1]
			continue
		}
		switch {
		case trimmed == "PASS" || strings.HasPrefix(line, "ok "):
			reportAt = i
		case trimmed == "FAIL" || strings.HasPrefix(line, "FAIL\t") || strings.HasPrefix(line, "FAIL "):
			reportAt = i
			r.FailLines = append(r.FailLines, trimmed)
		case strings.HasPrefix(line, "panic: "):
			r.FailLines = append(r.FailLines, trimmed)
		}
	}
	r.Reported = reportAt > activityAt
	return r
}

// Err says what is wrong with the run, or nil if it passed cleanly.
func (r Result) Err() error {
	var errs []error
	if len(r.Failed) > 0 {
		errs = append(errs, fmt.Errorf("%w: %s failed", ErrFailed, strings.Join(r.Failed, ", ")))
	} else if len(r.FailLines) > 0 {
		errs = append(errs, fmt.Errorf("%w: %s", ErrFailed, strings.Join(r.FailLines, "; ")))
	}
	if len(r.Skipped) > 0 {
		var s []string
		for _, sk := range r.Skipped {
			if sk.Reason != "" {
				s = append(s, fmt.Sprintf("%s (%s)", sk.Name, sk.Reason))
			} else {
				s = append(s, sk.Name)
			}
		}
		errs = append(errs, fmt.Errorf("%w: %s", ErrSkipped, strings.Join(s, ", ")))
	}
	if len(r.Passed) == 0 && len(r.Failed) == 0 {
		errs = append(errs, ErrNoneRan)
	}
	if !r.Reported {
		errs = append(errs, ErrNoReport)
	}
	return errors.Join(errs...)
}

// Check parses out and returns Err of the result.
func Check(out string) error {
	return Parse(out).Err()
}
