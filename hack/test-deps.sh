#!/usr/bin/env bash
# Installs the Debian packages edgelb's tests need, only those missing.
set -euo pipefail
want=(iproute2 procps kmod curl ca-certificates systemd dpkg)
missing=()
want+=(chromium) # the dashboard's browser tests (web, test/browser)
want+=(frr)      # the BGP peer of test/bgp (zebra, bgpd, vtysh)
want+=(lintian)  # the package's Debian checks (test/packaging)
want+=(nftables) # nft: test/e2e's GARP-ignoring client and source-range checks
want+=(git dpkg-dev) # test/packaging: versions of scratch commits, dpkg-parsechangelog
want+=(stress-ng)  # test/chaos: a saturated host (TestLoadedOwnerKeepsVIPs)
for p in "${want[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if ((${#missing[@]})); then
	echo "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
