#!/usr/bin/env bash
# What `make demo` needs beyond the Python package: Node.js >= 20 and the demo IdP's
# node modules (tests/idp, from its lock file). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "make demo needs Node.js >= 20 for its stand-in login (found: ${node_major})" >&2
  exit 1
fi
stamp=tests/idp/node_modules/.installed-from-lock
if [ ! -f "$stamp" ] || [ tests/idp/package-lock.json -nt "$stamp" ]; then
  npm ci --prefix tests/idp --no-audit --no-fund --loglevel=error
  touch "$stamp"
fi
