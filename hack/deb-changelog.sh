#!/bin/sh
# Print the Debian changelog of the package `make deb` builds: one entry
# for VERSION, dated EPOCH (SOURCE_DATE_EPOCH), by the maintainer named in
# packaging/nfpm.yaml, whose text is the section of CHANGELOG.md that the
# version was built from, so the package's changelog follows the project's:
#   a release (1.2.3)        -> the section "## [1.2.3] ..." (required)
#   any other build (+git..) -> the top section, "## [Unreleased]"
# Markdown links keep their text; lines are wrapped for dpkg and lintian.
# usage: hack/deb-changelog.sh VERSION EPOCH
set -eu
version=$1
epoch=$2
root=$(dirname "$0")/..
maintainer=$(sed -n 's/^maintainer: *//p' "$root/packaging/nfpm.yaml")
if commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null); then
	git -C "$root" diff --quiet HEAD || commit="$commit (with uncommitted changes)"
else
	commit=unknown
fi
case $version in
*[!0-9.]*) want= ;;         # a build between releases: the top section
*) want="[$version]" ;;     # a release: its own section
esac

# The section's bullets as "  * text" wrapped at 78 columns, each "### Kind"
# heading as a line of its own; nothing if the section is missing.
body=$(awk -v want="$want" '
function flush(   n, i, w, line, words) {
	if (item == "") return
	while (match(item, /\[[^]]*\]\([^)]*\)/)) {
		link = substr(item, RSTART, RLENGTH)
		sub(/\]\(.*/, "", link); sub(/^\[/, "", link)
		item = substr(item, 1, RSTART - 1) link substr(item, RSTART + RLENGTH)
	}
	n = split(item, words, /[ \t]+/)
	line = "  *"
	for (i = 1; i <= n; i++) {
		if (words[i] == "") continue
		if (length(line) + 1 + length(words[i]) > 78 && line != "  *" && line != "   ") {
			print line
			line = "   "
		}
		line = line " " words[i]
	}
	print line
	item = ""
}
/^## / {
	if (in_section) { flush(); exit }
	if (want == "" || index($0, "## " want) == 1) { in_section = 1; found = 1 }
	next
}
!in_section { next }
/^### / { flush(); sub(/^### */, ""); print "  " $0 ":"; next }
/^- / { flush(); item = substr($0, 3); next }
/^[ \t]+[^ \t]/ { if (item != "") { sub(/^[ \t]+/, ""); item = item " " $0 }; next }
{ flush() }
END { flush(); if (!found) exit 3 }
' "$root/CHANGELOG.md") || {
	echo "hack/deb-changelog.sh: CHANGELOG.md has no section \"## ${want:-[Unreleased]}\" for version $version: move the Unreleased entries under \"## $want - $(date -u +%F)\" before tagging v$version" >&2
	exit 1
}

cat <<END
edgelb ($version) stable; urgency=medium

  * Built from git commit $commit.
  * The project's whole history is in /usr/share/doc/edgelb/CHANGELOG.md.
$body

 -- $maintainer  $(LC_ALL=C date -u -R -d "@$epoch")
END
