#!/usr/bin/env bash
# Installs everything cyphonic needs on Debian 12 with Node 20 (run as root): Debian packages, npm packages, build.
# Idempotent and quick when everything is already there; used by demo.sh, test.sh and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

# iproute2/nftables/iputils-ping/procps: the network-namespace testbed; python3/make/g++: node-gyp (better-sqlite3);
# iperf3/wireguard-go/wireguard-tools/nebula (nebula, nebula-cert)/tcpdump/bind9-dnsutils (dig): the data-plane
# benchmark (its wireguard-go and Nebula reference rows) and overlay DNS checks; isc-dhcp-client (dhclient)/dhcpcd-base
# (dhcpcd)/ndisc6 (rdisc6, ndisc6): the real LAN clients of the adapter e2e suite and bench/adapter.ts; ethtool: the
# adapter e2e suite switches on GRO and UDP GRO forwarding on the adapter's LAN interface, as on a subnet router's NIC.
# postgresql (initdb, pg_ctl, the postgres user): the throwaway cluster of test/harness/postgres.ts behind the
# PostgreSQL store compliance suite and the several-instances e2e suite (no cluster of its own is used or started).
PKGS="iproute2 nftables iputils-ping procps python3 make g++ iperf3 wireguard-go wireguard-tools nebula tcpdump bind9-dnsutils isc-dhcp-client dhcpcd-base ndisc6 ethtool postgresql chromium"

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  missing=""
  for p in $PKGS; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    echo "setup: installing Debian packages:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
else
  echo "setup: not root or no apt-get; assuming system packages are present ($PKGS)" >&2
fi

# Build native modules against the local Node headers (no header download).
if [ -d /usr/include/node ]; then export npm_config_nodedir=/usr; fi

if [ ! -f node_modules/.package-lock.json ] || ! cmp -s package-lock.json node_modules/.cyphonic-lock; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund
  cp package-lock.json node_modules/.cyphonic-lock
fi

npm run --silent build
