#!/usr/bin/env bash
# Installs the Debian packages the test bed needs on this machine, only
# those missing: the VM's (hack/vm/deps.sh) plus debootstrap and mkfs.ext4.
set -euo pipefail
exec "$(cd "$(dirname "$0")" && pwd)/../vm/deps.sh" debootstrap e2fsprogs tar
