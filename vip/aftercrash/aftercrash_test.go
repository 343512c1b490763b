package aftercrash

import "testing"

// The cleanup after a crash acts only when the main process did not exit with
// status 0: SIGTERM (stop) and SIGUSR2 (graceful restart) make edgelb
// exit 0 after it released or kept its VIPs itself.
func TestAfterCrash(t *testing.T) {
	for _, tc := range []struct {
		result, code, status string
		crashed              bool
		err                  bool
	}{
		{"success", "exited", "0", false, false},     // systemctl stop or restart, handled by edgelb
		{"success", "killed", "TERM", true, false},   // SIGTERM before edgelb could handle it
		{"signal", "killed", "KILL", true, false},    // systemctl kill -s KILL, the OOM killer
		{"core-dump", "dumped", "ABRT", true, false}, // the watchdog (WatchdogSignal=SIGABRT)
		{"watchdog", "dumped", "ABRT", true, false},
		{"timeout", "killed", "KILL", true, false}, // TimeoutStopSec ran out
		{"exit-code", "exited", "1", true, false},  // an error, or a Go panic (2)
		{"exit-code", "exited", "2", true, false},
		{"exit-code", "", "", true, false}, // never started: ExecStartPre failed after a graceful stop
		{"success", "", "", false, false},
		{"", "", "", false, true}, // not run by systemd
	} {
		env := map[string]string{"SERVICE_RESULT": tc.result, "EXIT_CODE": tc.code, "EXIT_STATUS": tc.status}
		crashed, why, err := Crashed(func(k string) string { return env[k] })
		if crashed != tc.crashed || (err != nil) != tc.err {
			t.Errorf("SERVICE_RESULT=%q EXIT_CODE=%q EXIT_STATUS=%q: crashed %v (%s), err %v; want crashed %v, err %v",
				tc.result, tc.code, tc.status, crashed, why, err, tc.crashed, tc.err)
		}
	}
}
