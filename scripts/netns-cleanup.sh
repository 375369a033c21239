#!/bin/sh
# Deletes every cyphonic testbed network namespace (cy????-*), its processes, stray root-namespace
# veths and the marker files in /run/cyphonic-testbed. Manual use and CI safety net; needs root.
set -u

if [ "$(id -u)" -ne 0 ]; then
  echo "netns-cleanup: must run as root" >&2
  exit 1
fi

count=0
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^cy[0-9a-z]{4}-' || true); do
  # Kill whatever still runs inside, then drop the namespace.
  for pid in $(ip netns pids "$ns" 2>/dev/null); do
    kill -9 "$pid" 2>/dev/null || true
  done
  ip netns del "$ns" 2>/dev/null && count=$((count + 1))
done

for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E '^cy[0-9a-z]{4}v[0-9]+[ab]$' || true); do
  ip link del "$link" 2>/dev/null || true
done

rm -f /run/cyphonic-testbed/*.pid 2>/dev/null || true
echo "netns-cleanup: removed $count namespace(s)"
