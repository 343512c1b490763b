#!/bin/sh
# Print the Debian version of the package `make deb` builds, from git, so
# that every later build sorts after every earlier one (dpkg --compare-versions):
#   HEAD tagged v1.2.3              -> 1.2.3
#   4 commits after v1.2.3 (abc123) -> 1.2.3+git4.abc123  (after 1.2.3, before 1.2.4)
#   no v* tag, 412 commits          -> 0.0.0+git412.abc123
# The count of commits, compared as a number, orders builds of one branch;
# "+" (not "~") keeps a build after its tag, so a rolling upgrade is never
# a downgrade. Outside a git checkout: 0.0.0.
set -eu
cd "$(dirname "$0")/.."
hash=$(git rev-parse --short=7 HEAD 2>/dev/null) || { echo 0.0.0; exit 0; }
if tag=$(git describe --tags --abbrev=0 --match 'v[0-9]*' 2>/dev/null); then
	base=${tag#v}
	n=$(git rev-list --count "$tag..HEAD")
	if [ "$n" -eq 0 ]; then
		echo "$base"
	else
		echo "$base+git$n.$hash"
	fi
else
	echo "0.0.0+git$(git rev-list --count HEAD).$hash"
fi
