#!/usr/bin/env bash
# Builds (once) the cached Debian test bed of test/system in
# $EDGELB_SYSVM_CACHE (default ~/.cache/edgelb-test/sysvm):
#   debian.img  an ext4 image of a Debian root made with debootstrap from
#               Debian's packages: systemd as PID 1, the packages below, the
#               VM kernel's network and filesystem modules, and a unit that
#               runs the test job from the second disk (see run.sh)
#   initrd      a busybox initramfs that loads virtio_blk and ext4, mounts
#               /dev/vda and hands over to systemd
# The kernel is the test VM's (hack/vm/build.sh). Rebuilt when this script,
# its package list or the kernel change.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tcache=${EDGELB_TEST_CACHE:-$HOME/.cache/edgelb-test}
vmcache=${EDGELB_VM_CACHE:-$tcache/vm}
cache=${EDGELB_SYSVM_CACHE:-$tcache/sysvm}
mkdir -p "$cache"

# What every appliance host, client and backend of the test bed has: a
# minimal Debian with systemd, and what edgelb's package depends on and
# recommends, so that `apt-get install ./edgelb_*.deb` needs no network.
packages=(systemd systemd-sysv udev dbus systemd-container iproute2 ipvsadm nftables
	adduser init-system-helpers kmod procps)

"$here/../vm/build.sh"
want=$( (cat "$here/build.sh" "$here/job.sh"; echo "${packages[*]}"; cat "$vmcache/base.stamp") | sha256sum | cut -c1-16)
if [[ -f $cache/debian.img && -f $cache/initrd && "$(cat "$cache/stamp" 2>/dev/null)" == "$want" ]]; then
	exit 0
fi
exec 9>"$cache/.lock"
flock 9
if [[ -f $cache/debian.img && "$(cat "$cache/stamp" 2>/dev/null)" == "$want" ]]; then
	exit 0
fi
for t in debootstrap mkfs.ext4 busybox; do
	command -v "$t" >/dev/null || { echo "sysvm: $t is missing (hack/sysvm/deps.sh)" >&2; exit 1; }
done
echo "sysvm: building the Debian test bed image in $cache (a cold build takes a few minutes)" >&2

# The mirror and release this machine uses.
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[[ -n $mirror ]] || mirror=$(awk '$1=="deb" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
. /etc/os-release
suite=${EDGELB_SYSVM_SUITE:-${VERSION_CODENAME:-bookworm}}

root=$cache/root
rm -rf "$root" "$cache/debian.img" "$cache/stamp"
debootstrap --variant=minbase --include="$(IFS=,; echo "${packages[*]}")" "$suite" "$root" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
	{ tail -20 "$cache/debootstrap.log" >&2; exit 1; }
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*_Packages

# The kernel's modules: networking (IPVS, netfilter, bridge, veth,
# tunnels), the filesystems (ext4, overlay for the containers) and virtio.
kdir=$vmcache/kernel
kver=$(ls "$kdir/lib/modules")
msrc=$kdir/lib/modules/$kver
mdst=$root/lib/modules/$kver
rm -rf "$mdst"
mkdir -p "$mdst/kernel/drivers"
cp -a "$msrc/kernel/net" "$msrc/kernel/fs" "$msrc/kernel/lib" "$msrc/kernel/crypto" "$msrc/kernel/arch" "$mdst/kernel/"
for d in net block virtio char; do
	[[ -d $msrc/kernel/drivers/$d ]] && cp -a "$msrc/kernel/drivers/$d" "$mdst/kernel/drivers/"
done
rm -rf "$mdst/kernel/drivers/net/wireless" "$mdst/kernel/drivers/net/ethernet" "$mdst/kernel/net/wireless" "$mdst/kernel/net/mac80211" "$mdst/kernel/net/bluetooth"
cp "$msrc"/modules.{order,builtin,builtin.modinfo} "$mdst/" 2>/dev/null || true
depmod -b "$root" "$kver"

# The machine: a hostname, no gettys (the console carries the job's
# output), no timers that would touch the network, and the job unit.
echo edgelb-testbed >"$root/etc/hostname"
: >"$root/etc/machine-id"
printf '127.0.0.1 localhost\n::1 localhost\n' >"$root/etc/hosts"
for u in getty@tty1.service serial-getty@ttyS0.service console-getty.service apt-daily.timer apt-daily-upgrade.timer \
	e2scrub_all.timer fstrim.timer systemd-networkd-wait-online.service; do
	ln -sf /dev/null "$root/etc/systemd/system/$u"
done
install -m 0755 "$here/job.sh" "$root/usr/local/sbin/edgelb-testbed-job"
cat >"$root/etc/systemd/system/edgelb-testbed-job.service" <<'UNIT'
[Unit]
Description=edgelb test bed job (hack/sysvm)
After=multi-user.target
ConditionVirtualization=vm

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/edgelb-testbed-job
StandardInput=null
StandardOutput=tty
StandardError=inherit
TTYPath=/dev/ttyS0

[Install]
WantedBy=multi-user.target
UNIT
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
ln -sf ../edgelb-testbed-job.service "$root/etc/systemd/system/multi-user.target.wants/edgelb-testbed-job.service"
# Containers booted from this image share it read-only (nspawn
# --volatile=overlay); /srv/base is where the VM mounts it for them.
mkdir -p "$root/srv/base" "$root/job"

# The image: the tree plus room for what the tests install.
size=$(( $(du -sm "$root" | cut -f1) * 13 / 10 + 512 ))
mkfs.ext4 -q -F -L edgelb-root -d "$root" "$cache/debian.img.tmp" "${size}M"
mv "$cache/debian.img.tmp" "$cache/debian.img"

# The initramfs: busybox, the modules to reach the root disk, /init.
ird=$cache/initrd.d
rm -rf "$ird"
mkdir -p "$ird"/{bin,dev,proc,sys,newroot,lib/modules}
cp "$(command -v busybox)" "$ird/bin/busybox"
order=$(for m in virtio_pci virtio_blk ext4; do
	modprobe -d "$kdir" -S "$kver" --show-depends "$m" 2>/dev/null | awk '$1=="insmod" {print $2}'
done | awk '!seen[$0]++')
i=0
for ko in $order; do
	i=$((i + 1))
	cp "$ko" "$ird/lib/modules/$(printf %02d $i)-$(basename "$ko")"
done
cat >"$ird/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mkdir -p /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for ko in /lib/modules/*.ko; do insmod "$ko" 2>/dev/null; done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
mount -t ext4 -o rw /dev/vda /newroot || { echo "initrd: cannot mount /dev/vda"; poweroff -f; }
umount /proc /sys
mount --move /dev /newroot/dev 2>/dev/null || umount /dev
exec switch_root /newroot /lib/systemd/systemd
INIT
chmod 0755 "$ird/init"
(cd "$ird" && find . | cpio -o -H newc --quiet) >"$cache/initrd"
rm -rf "$root" "$ird"
echo "$want" >"$cache/stamp"
echo "sysvm: image $(du -h --apparent-size "$cache/debian.img" | cut -f1), kernel $kver" >&2
