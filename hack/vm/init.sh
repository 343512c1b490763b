#!/bin/busybox sh
# /init of the test VM: mounts, loads modules, brings up the user-mode
# network (10.0.2.15, host at 10.0.2.2), runs /job/run and powers off. The
# job's output goes to the console; its exit code follows a marker line the
# host-side run.sh looks for.
export PATH=/sbin:/usr/sbin:/bin:/usr/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm /run/netns
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /run/netns
for m in crc32c_generic libcrc32c virtio_pci virtio_net af_packet veth bridge dummy ipip \
	nf_conntrack nf_nat nf_tables nft_ct nft_masq nft_nat nft_chain_nat ip_vs ip_vs_rr ip_vs_wrr ip_vs_sh ip_vs_mh ip_vs_wlc ip_vs_lc; do
	/sbin/modprobe "$m" 2>/dev/null
done
/sbin/ip link set lo up
if /sbin/ip link show eth0 >/dev/null 2>&1; then
	/sbin/ip link set eth0 up
	/sbin/ip addr add 10.0.2.15/24 dev eth0
	/sbin/ip route add default via 10.0.2.2
fi
hostname edgelb-vm
export EDGELB_IN_VM=1
for kv in $(cat /proc/cmdline); do
	case $kv in edgelb.env.*) kv=${kv#edgelb.env.}; export "$kv" ;; esac
done
cd /job
echo "EDGELB_VM_START" >/dev/console
/bin/bash /job/run </dev/console >/dev/console 2>&1
rc=$?
echo "EDGELB_VM_EXIT=$rc" >/dev/console
sync
poweroff -f
