#!/usr/bin/env bash
# Runs the whole Go test suite verbosely into a log, prints each package's
# result and every failure, then a closing "N passed, N failed" line.
set -uo pipefail
log=${TEST_LOG:-/tmp/edgelb-test.log}
go test -count=1 -v -timeout 40m -p 1 ./... >"$log" 2>&1
rc=$?
grep -E '^(ok |FAIL|--- FAIL|--- SKIP|panic:|\? )|^\s+--- (FAIL|SKIP)' "$log"
if ((rc != 0)); then
	echo "--- failure output (full log: $log) ---"
	grep -B2 -A30 -E '^\s*--- FAIL' "$log" | head -300
fi
passed=$(grep -cE '^\s*--- PASS' "$log")
failed=$(grep -cE '^\s*--- FAIL' "$log")
skipped=$(grep -cE '^\s*--- SKIP' "$log")
echo "tests: $passed passed, $failed failed, $skipped skipped"
exit $rc
