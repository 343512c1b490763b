#!/bin/sh
# Print the Debian changelog of the package `make deb` builds: one entry
# for VERSION, dated EPOCH (SOURCE_DATE_EPOCH), by the maintainer named in
# packaging/nfpm.yaml, so the package version and the changelog agree.
# The project's history is its git log; this file only carries the version.
# usage: hack/deb-changelog.sh VERSION EPOCH
set -eu
version=$1
epoch=$2
maintainer=$(sed -n 's/^maintainer: *//p' "$(dirname "$0")/../packaging/nfpm.yaml")
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if ! git diff --quiet HEAD 2>/dev/null; then
	commit="$commit (with uncommitted changes)"
fi
cat <<END
edgelb ($version) stable; urgency=medium

  * Built from git commit $commit.
    The changes are in the project's git history; this entry only records
    the version of the package.

 -- $maintainer  $(LC_ALL=C date -u -R -d "@$epoch")
END
