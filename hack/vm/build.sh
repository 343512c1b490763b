#!/usr/bin/env bash
# Builds (once) the cached pieces of the test VM in $EDGELB_VM_CACHE
# (default ~/.cache/edgelb-test/vm):
#   vmlinuz     Debian's linux-image-*-amd64 kernel (it has IPVS as modules)
#   base.cpio   an initramfs with busybox, bash, kmod, iproute2, ipvsadm, nft,
#               FRR's zebra, bgpd, bfdd and vtysh (the lab's router), the
#               kernel modules the tests need, and /init
# Rebuilt when this script, init.sh or the kernel package change.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${EDGELB_VM_CACHE:-${EDGELB_TEST_CACHE:-$HOME/.cache/edgelb-test}/vm}
mkdir -p "$cache"
"$here/deps.sh"

stamp=$(cat "$here/build.sh" "$here/init.sh" | sha256sum | cut -c1-16)
if [[ -f $cache/base.cpio && -f $cache/vmlinuz && "$(cat "$cache/base.stamp" 2>/dev/null)" == "$stamp" ]]; then
	exit 0
fi
exec 9>"$cache/.lock"
flock 9
echo "vm: building kernel and base initramfs in $cache" >&2

# The kernel: Debian's metapackage names the current image package.
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[[ -n $pkg ]] || { echo "vm: cannot resolve linux-image-amd64 (apt-get update?)" >&2; exit 1; }
mkdir -p "$cache/deb"
if ! ls "$cache/deb/$pkg"_*.deb >/dev/null 2>&1; then
	(cd "$cache/deb" && apt-get download "$pkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true)
fi
deb=$(ls "$cache/deb/$pkg"_*.deb | head -1)
rm -rf "$cache/kernel"
mkdir -p "$cache/kernel"
dpkg-deb -x "$deb" "$cache/kernel"
kver=$(ls "$cache/kernel/lib/modules")
cp "$cache/kernel/boot/vmlinuz-$kver" "$cache/vmlinuz"

root=$cache/root
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,proc,sys,dev,tmp,run,etc,var/run,root,mnt}
cp /bin/busybox "$root/bin/busybox"
for app in $("$root/bin/busybox" --list); do
	[[ -e $root/bin/$app ]] || ln -s busybox "$root/bin/$app"
done

# Dynamic binaries with their libraries.
copy_bin() { # path-on-host dest-dir
	local src=$1 dst=$2
	cp -L "$src" "$root/$dst/"
	ldd "$src" | awk '/=>/ {print $3} $1 ~ /^\// {print $1}' | while read -r lib; do
		[[ -n $lib && -e $lib ]] || continue
		mkdir -p "$root/$(dirname "$lib")"
		cp -Ln "$lib" "$root/$lib" 2>/dev/null || true
	done
}
rm -f "$root/bin/sh" "$root/bin/ip" "$root/bin/modprobe" "$root/sbin/modprobe"
copy_bin /usr/bin/bash bin
copy_bin /usr/sbin/ip sbin
copy_bin /usr/sbin/ipvsadm sbin
copy_bin /usr/sbin/nft sbin
copy_bin /usr/bin/kmod sbin
for t in modprobe insmod rmmod lsmod depmod modinfo; do rm -f "$root/sbin/$t" "$root/bin/$t"; ln -s kmod "$root/sbin/$t"; done
ln -sf bash "$root/bin/sh"
# FRR (the lab's router, test/lab): the daemons run as root (-u root -g
# root) with their files in a directory of their own, but look up the frrvty
# group; vtysh skips PAM for root; the YANG modules are read at start.
mkdir -p "$root/usr/lib/frr" "$root/etc/frr" "$root/var/run/frr" "$root/var/tmp" "$root/usr/share"
for d in zebra bgpd bfdd; do copy_bin "/usr/lib/frr/$d" usr/lib/frr; done
copy_bin /usr/bin/vtysh usr/bin
cp -r /usr/share/yang "$root/usr/share/yang"
echo "username root nopassword" >"$root/etc/frr/vtysh.conf"
# ip must win over busybox's applet, also in $PATH order.
rm -f "$root/bin/ip"
ln -s /sbin/ip "$root/bin/ip"
# Name resolution files for Go and friends.
echo "127.0.0.1 localhost" >"$root/etc/hosts"
printf 'root:x:0:0:root:/root:/bin/bash\nfrr:x:100:101:FRR:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nfrr:x:101:\nfrrvty:x:102:root\n' >"$root/etc/group"
echo "hosts: files dns" >"$root/etc/nsswitch.conf"

# Kernel modules: the closure of what the tests use.
mods=(ip_vs ip_vs_rr ip_vs_wrr ip_vs_lc ip_vs_wlc ip_vs_lblc ip_vs_lblcr ip_vs_dh ip_vs_sh ip_vs_sed ip_vs_nq ip_vs_mh
	nf_conntrack nf_nat nf_tables nft_ct nft_masq nft_nat nft_chain_nat nft_reject_inet nf_conntrack_netlink
	veth bridge dummy ipip ip6_tunnel tunnel4 virtio_net virtio_pci crc32c_generic libcrc32c af_packet)
mdir=$cache/kernel/lib/modules/$kver
depmod -b "$cache/kernel" "$kver"
for m in "${mods[@]}"; do
	modprobe -d "$cache/kernel" -S "$kver" --show-depends "$m" 2>/dev/null | awk '$1=="insmod" {print $2}'
done | sort -u | while read -r ko; do
	rel=${ko#"$cache/kernel"}
	mkdir -p "$root/$(dirname "$rel")"
	cp "$ko" "$root/$rel"
done
cp "$mdir"/modules.{order,builtin,builtin.modinfo} "$root/lib/modules/$kver/" 2>/dev/null || true
depmod -b "$root" "$kver"

install -m 0755 "$here/init.sh" "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet) >"$cache/base.cpio.tmp"
mv "$cache/base.cpio.tmp" "$cache/base.cpio"
echo "$stamp" >"$cache/base.stamp"
echo "vm: kernel $kver, base initramfs $(du -h "$cache/base.cpio" | cut -f1)" >&2
