#!/usr/bin/env bash
# Boots the Debian test bed (hack/sysvm/build.sh) under QEMU TCG with
# systemd as PID 1, runs a script in it once the machine is up, prints its
# output and exits with its exit code (124 on timeout, 125 if the VM did
# not report one).
#
#   hack/sysvm/run.sh [-t SECONDS] [-m MiB] [-c CPUS] [-e KEY=VALUE]... \
#                     [-f HOSTPATH[:VMPATH]]... SCRIPT [ARG]...
#
# SCRIPT runs under bash as /job/run in /job, as root, with EDGELB_IN_VM=1
# and every -e variable set; files given with -f land in /job (or VMPATH
# under /job). The machine's root is a throwaway copy of the image; its
# read-only twin is mounted at /srv/base for systemd-nspawn containers
# (--volatile=overlay). See docs/testbed.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tcache=${EDGELB_TEST_CACHE:-$HOME/.cache/edgelb-test}
vmcache=${EDGELB_VM_CACHE:-$tcache/vm}
cache=${EDGELB_SYSVM_CACHE:-$tcache/sysvm}
timeout=900 mem=3072 cpus=${EDGELB_VM_CPUS:-2}
envs=() files=()
while getopts "t:m:c:e:f:" o; do
	case $o in
	t) timeout=$OPTARG ;;
	m) mem=$OPTARG ;;
	c) cpus=$OPTARG ;;
	e) envs+=("$OPTARG") ;;
	f) files+=("$OPTARG") ;;
	*) sed -n '2,15p' "$0" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
(($# >= 1)) || { sed -n '2,15p' "$0" >&2; exit 2; }
script=$1
shift

"$here/build.sh"

job=$(mktemp -d "${TMPDIR:-/tmp}/edgelb-sysvm.XXXXXX")
trap 'rm -rf "$job"' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
mkdir -p "$job/root"
{
	printf 'set -- '
	printf '%q ' "$@"
	echo
	cat "$script"
} >"$job/root/run"
for f in "${files[@]}"; do
	src=${f%%:*} dst=$(basename "${f%%:*}")
	[[ $f == *:* ]] && dst=${f#*:}
	mkdir -p "$job/root/$(dirname "$dst")"
	cp -L "$src" "$job/root/$dst"
done
tar -C "$job/root" -cf "$job/job.tar" .
truncate -s %1M "$job/job.tar"

append="console=ttyS0 quiet loglevel=3 panic=-1 systemd.show_status=0 rdinit=/init"
for e in "${envs[@]}"; do append+=" edgelb.env.$e"; done

set +e
timeout --foreground -k 5 "$timeout" qemu-system-x86_64 -accel tcg -cpu max -m "$mem" -smp "$cpus" \
	-kernel "$vmcache/vmlinuz" -initrd "$cache/initrd" -append "$append" \
	-drive "file=$cache/debian.img,format=raw,if=virtio,snapshot=on" \
	-drive "file=$job/job.tar,format=raw,if=virtio,readonly=on" \
	-drive "file=$cache/debian.img,format=raw,if=virtio,readonly=on,file.locking=off" \
	-nographic -no-reboot -monitor none -serial stdio -nic none </dev/null 2>&1 | tee "$job/console" |
	awk -v verbose="${EDGELB_VM_VERBOSE:-0}" '{ sub(/\r$/, "") }
		/EDGELB_VM_START$/ { on = 1; fflush(); next }
		/EDGELB_VM_EXIT=[0-9]+$/ { on = 0; next }
		on || verbose == 1 { print; fflush() }'
qrc=${PIPESTATUS[0]}
set -e
rc=$(tr -d '\r' <"$job/console" | sed -n 's/.*EDGELB_VM_EXIT=\([0-9]*\)$/\1/p' | tail -1)
if [[ -z $rc ]]; then
	if ((qrc == 124)); then echo "sysvm: timed out after ${timeout}s" >&2; else echo "sysvm: the VM exited ($qrc) without reporting an exit code" >&2; fi
	echo "--- last console lines ---" >&2
	tr -d '\r' <"$job/console" | tail -30 >&2
	((qrc == 124)) && exit 124
	exit 125
fi
exit "$rc"
