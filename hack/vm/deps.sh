#!/usr/bin/env bash
# Installs the Debian packages the VM harness needs, and any named as
# arguments (hack/sysvm/deps.sh), only those missing.
set -euo pipefail
want=(qemu-system-x86 busybox-static ipvsadm kmod nftables iproute2 cpio frr "$@")
missing=()
for p in "${want[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if ((${#missing[@]})); then
	echo "vm: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
