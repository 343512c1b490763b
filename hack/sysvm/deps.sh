#!/usr/bin/env bash
# Installs the Debian packages the test bed needs on this machine, only
# those missing: the VM's (hack/vm/deps.sh), debootstrap and mkfs.ext4.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/../vm/deps.sh"
want=(debootstrap e2fsprogs busybox-static cpio tar)
missing=()
for p in "${want[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if ((${#missing[@]})); then
	echo "sysvm: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
