#!/usr/bin/env bash
# Install the real peers the test suite talks to: Chromium (browser tests), nginx
# (auth_request in front of the proxy), redis-server and redis-sentinel (the Redis store:
# standalone, Sentinel and Cluster), the oidc-provider IdP's node modules and sipgate's
# Node.js library (tests/sipgateio).
# Safe to run again: it only installs what is missing.
# Debian packages need root (or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/apt-install.sh
source scripts/apt-install.sh

apt_install_group test # requirements/debian.txt

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "Node.js >= 20 is needed for the test IdP (found: ${node_major})" >&2
  exit 1
fi
for package in tests/idp tests/sipgateio; do
  stamp=$package/node_modules/.installed-from-lock
  if [ ! -f "$stamp" ] || [ $package/package-lock.json -nt "$stamp" ]; then
    npm ci --prefix $package --no-audit --no-fund --loglevel=error
    touch "$stamp"
  fi
done
