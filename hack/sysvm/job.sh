#!/bin/bash
# /usr/local/sbin/edgelb-testbed-job: the test bed VM's job (run.sh). It
# unpacks the job from the second disk into /job, mounts the image's
# read-only twin (third disk) at /srv/base for the containers, runs
# /job/run with its output on the console between two marker lines, and
# powers off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mkdir -p /job /srv/base
tar -xf /dev/vdb -C /job
mount -o ro,noload /dev/vdc /srv/base
for kv in $(cat /proc/cmdline); do
	case $kv in edgelb.env.*) kv=${kv#edgelb.env.}; export "$kv" ;; esac
done
export EDGELB_IN_VM=1
cd /job
echo "EDGELB_VM_START"
/bin/bash /job/run </dev/null 2>&1
rc=$?
echo "EDGELB_VM_EXIT=$rc"
sync
systemctl poweroff -ff
