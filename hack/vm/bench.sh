#!/usr/bin/env bash
# Runs the dataplane benchmarks of test/vm/e2e inside the test VM and prints
# the figures (make bench-ipvs).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d /tmp/edgelb-bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cd "$root"
CGO_ENABLED=0 go build -tags nomsgpack -o "$tmp/edgelb" ./cmd/edgelb # the Makefile's TAGS
CGO_ENABLED=0 go test -c -tags vm -o "$tmp/e2e.test" ./test/vm/e2e
echo "/job/e2e.test -test.run '^\$' -test.bench '${BENCH:-.}' -test.benchtime 1x -test.timeout 900s" >"$tmp/job.sh"
"$root/hack/vm/run.sh" -t 960 -m 2048 -c "${EDGELB_VM_CPUS:-2}" -f "$tmp/edgelb:/usr/local/bin/edgelb" -f "$tmp/e2e.test" "$tmp/job.sh"
