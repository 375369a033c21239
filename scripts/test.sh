#!/usr/bin/env bash
# Installs everything, builds, lints, and runs every test: unit/scenario tests and the network-namespace e2e suite.
# Needs root for the namespaces (CI runs as root); without root the e2e tests are skipped with a message.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run --silent lint
npm run --silent test:unit
npm run --silent test:e2e
