#!/usr/bin/env bash
# Builds the test-only kube-apiserver, etcd and kubectl from the Go module
# proxy and caches them in $EDGELB_TEST_CACHE/bin (default ~/.cache/edgelb-test/bin).
# A cached binary is reused while its module's files and flags are unchanged.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${EDGELB_TEST_CACHE:-$HOME/.cache/edgelb-test}
mkdir -p "$cache/bin"
# One build at a time: `make test` starts one in the background and
# hack/test.sh runs this again before the suites that need the binaries,
# which waits here for it and then finds them cached.
exec 9>"$cache/bin/.lock"
flock 9
# Some k8s.io staging modules are missing from the checksum database; the
# committed go.sum pins them instead.
export GONOSUMDB=k8s.io,sigs.k8s.io GOFLAGS=-mod=mod
build() { # name dir ldflags
	local name=$1 dir=$2 ldflags=$3
	# The files' contents and the flags, not their paths: every checkout
	# of the same sources shares the cached binary.
	local stamp; stamp=$(cat "$dir/go.mod" "$dir/go.sum" "$dir/main.go" <(echo "$ldflags") | sha256sum | cut -c1-16)
	if [[ -x $cache/bin/$name && -f $cache/bin/$name.stamp && $(cat "$cache/bin/$name.stamp") == "$stamp" ]]; then
		echo "$name: cached in $cache/bin"
		return
	fi
	echo "$name: building (a cold build takes several minutes)"
	(cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$cache/bin/$name.tmp" .)
	mv "$cache/bin/$name.tmp" "$cache/bin/$name"
	echo "$stamp" >"$cache/bin/$name.stamp"
}
build etcd "$here/etcd" ""
build kube-apiserver "$here/apiserver" "-X k8s.io/component-base/version.gitVersion=v1.32.4 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=32"
build kubectl "$here/kubectl" "-X k8s.io/client-go/pkg/version.gitVersion=v1.32.4 -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=32 -X k8s.io/component-base/version.gitVersion=v1.32.4 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=32"
