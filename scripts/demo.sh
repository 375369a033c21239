#!/usr/bin/env bash
# Installs everything, builds, and runs the demo: a cloud and nodes in network namespaces (needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node dist/scripts/demo.js "$@"
