#!/usr/bin/env bash
# Runs the whole Go test suite verbosely into a log, prints each package's
# result and every failure, then a closing "tests: N passed, N failed,
# N skipped" line. The unit and in-process packages (everything outside
# test/) run under the race detector; the suites under test/ drive real
# binaries, kernels and VMs, and run without it. The run fails when no test ran, and under CI=true when
# any test was skipped: the CI machine provides every prerequisite, so a
# skip there is a failure (test/prereq), never a pass.
set -uo pipefail
log=${TEST_LOG:-/tmp/edgelb-test.log}
mapfile -t unit < <(go list ./... | grep -v '/test/')
mapfile -t suites < <(go list ./... | grep '/test/')
(
	go test -race -count=1 -v -timeout 20m -p 1 "${unit[@]}"
	r1=$?
	# The suites drive the test-only kube-apiserver, etcd and kubectl:
	# this waits for the build `make test` started in the background, or
	# builds them (cached afterwards).
	"$(dirname "$0")/kube/build.sh" || echo "hack/kube/build.sh failed: the suites that need a kube-apiserver will fail"
	go test -count=1 -v -timeout 55m -p 1 "${suites[@]}"
	r2=$?
	exit $((r1 | r2))
) >"$log" 2>&1
rc=$?
grep -E '^(ok |FAIL|--- FAIL|--- SKIP|panic:|\? )|^\s+--- (FAIL|SKIP)' "$log"
if ((rc != 0)); then
	echo "--- failure output (full log: $log) ---"
	grep -B2 -A30 -E '^\s*--- FAIL' "$log" | head -300
fi
passed=$(grep -cE '^\s*--- PASS' "$log")
failed=$(grep -cE '^\s*--- FAIL' "$log")
skipped=$(grep -cE '^\s*--- SKIP' "$log")
if ((passed == 0)); then
	echo "--- no test ran (full log: $log) ---"
	rc=1
fi
if [[ ${CI:-} == true ]] && ((skipped > 0)); then
	echo "--- CI=true: these tests skipped, and a skip fails the run here ---"
	# A skipped test's reason is the last line it logged.
	awk '/^=== (RUN|CONT|NAME|PAUSE) / { cur = $3; next }
	/^[[:space:]]*--- SKIP: / {
		print "  " $3 ": " (($3 in last) ? last[$3] : "(no reason logged)"); next
	}
	/^[[:space:]]+[^[:space:]]+\.go:[0-9]+: / && cur != "" {
		l = $0; sub(/^[[:space:]]+/, "", l); last[cur] = l
	}' "$log"
	rc=1
fi
echo "tests: $passed passed, $failed failed, $skipped skipped"
exit $rc
