#!/usr/bin/env bash
# Runs a script inside a fresh VM with a real Debian kernel (IPVS, nftables,
# network namespaces) under QEMU TCG, prints its output and exits with its
# exit code (124 on timeout, 125 if the VM did not report one).
#
#   hack/vm/run.sh [-t SECONDS] [-m MiB] [-c CPUS] [-e KEY=VALUE]... \
#                  [-f HOSTPATH[:VMPATH]]... [-p HOSTFWD]... SCRIPT [ARG]...
#
# SCRIPT runs under bash as /job/run in /job, with ARGs, as root, with
# EDGELB_IN_VM=1 and every -e variable set. Files given with -f are copied
# to VMPATH (default /job/BASENAME); Go binaries must be static
# (CGO_ENABLED=0). The VM has busybox, bash, ip, ipvsadm, nft and kmod, and
# reaches the host's loopback at 10.0.2.2. -p forwards a host port into the
# VM, in QEMU's hostfwd syntax: tcp:127.0.0.1:9080-:9080. The scratch files
# go under $TMPDIR (default /tmp). See docs/vm.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${EDGELB_VM_CACHE:-${EDGELB_TEST_CACHE:-$HOME/.cache/edgelb-test}/vm}
timeout=600 mem=1536 cpus=${EDGELB_VM_CPUS:-1}
envs=() files=() fwds=()
while getopts "t:m:c:e:f:p:" o; do
	case $o in
	t) timeout=$OPTARG ;;
	m) mem=$OPTARG ;;
	c) cpus=$OPTARG ;;
	e) envs+=("$OPTARG") ;;
	f) files+=("$OPTARG") ;;
	p) fwds+=("$OPTARG") ;;
	*) sed -n '2,17p' "$0" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
(($# >= 1)) || { sed -n '2,17p' "$0" >&2; exit 2; }
script=$1
shift

"$here/build.sh"

job=$(mktemp -d "${TMPDIR:-/tmp}/edgelb-vm.XXXXXX")
trap 'rm -rf "$job"' EXIT
# A signal (the lab's teardown) still removes the scratch files.
trap 'exit 143' TERM
trap 'exit 130' INT
mkdir -p "$job/root/job"
{
	echo "#!/bin/bash"
	printf 'set -- '
	printf '%q ' "$@"
	echo
	cat "$script"
} >"$job/root/job/run"
for f in "${files[@]}"; do
	src=${f%%:*} dst=/job/$(basename "${f%%:*}")
	[[ $f == *:* ]] && dst=${f#*:}
	mkdir -p "$job/root/$(dirname "$dst")"
	cp -L "$src" "$job/root/$dst"
done
(cd "$job/root" && find . | cpio -o -H newc --quiet) >"$job/job.cpio"
cat "$cache/base.cpio" "$job/job.cpio" >"$job/initrd"

# EDGELB_VM_PARENT=PID (make lab): when that process dies, however it dies,
# the VM goes too. Only when run.sh leads its own process group, which is
# then signalled as a whole.
if [[ -n ${EDGELB_VM_PARENT:-} && $(cut -d' ' -f5 /proc/$$/stat) == "$$" ]]; then
	(
		while kill -0 "$EDGELB_VM_PARENT" 2>/dev/null; do sleep 1; done
		kill -TERM -- "-$$"
	) &
fi

netdev=user,id=n0
for f in "${fwds[@]}"; do netdev+=",hostfwd=$f"; done

append="console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init"
for e in "${envs[@]}"; do append+=" edgelb.env.$e"; done

set +e
timeout --foreground -k 5 "$timeout" qemu-system-x86_64 -accel tcg -cpu max -m "$mem" -smp "$cpus" \
	-kernel "$cache/vmlinuz" -initrd "$job/initrd" -append "$append" \
	-nographic -no-reboot -monitor none -serial stdio \
	-netdev "$netdev" -device virtio-net-pci,netdev=n0 </dev/null 2>&1 | tee "$job/console" |
	awk -v verbose="${EDGELB_VM_VERBOSE:-0}" '{ sub(/\r$/, "") }
		/EDGELB_VM_START$/ { on = 1; fflush(); next }
		/EDGELB_VM_EXIT=[0-9]+$/ { on = 0; next }
		on || verbose == 1 { print; fflush() }'
qrc=${PIPESTATUS[0]}
set -e
rc=$(tr -d '\r' <"$job/console" | sed -n 's/.*EDGELB_VM_EXIT=\([0-9]*\)$/\1/p' | tail -1)
if [[ -z $rc ]]; then
	if ((qrc == 124)); then echo "vm: timed out after ${timeout}s" >&2; exit 124; fi
	echo "vm: the VM exited ($qrc) without reporting an exit code" >&2
	exit 125
fi
exit "$rc"
