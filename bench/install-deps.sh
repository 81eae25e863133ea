#!/usr/bin/env bash
# Install what `make bench` needs and the test suite does not already: wrk and hey (load),
# nginx (static upstream), Apache httpd + mod_auth_openidc (the peer), py-spy (profiler,
# into the project's venv), plus the test IdP's node modules. Idempotent: installs only
# what is missing. Debian packages need root (or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=()
command -v wrk >/dev/null 2>&1 || apt_packages+=(wrk)
command -v hey >/dev/null 2>&1 || apt_packages+=(hey)
[ -x /usr/sbin/nginx ] || apt_packages+=(nginx)
[ -x /usr/sbin/apache2 ] || apt_packages+=(apache2)
[ -f /usr/lib/apache2/modules/mod_auth_openidc.so ] || apt_packages+=(libapache2-mod-auth-openidc)

if [ ${#apt_packages[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "installing Debian packages: ${apt_packages[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends \
    "${apt_packages[@]}" >/dev/null
  # Debian starts the system's nginx/apache2 services on install where an init system
  # runs; the benchmark starts its own instances on free loopback ports and needs none.
fi

venv=${VENV:-.venv}
[ -x "$venv/bin/py-spy" ] || "$venv/bin/pip" install --quiet 'py-spy>=0.3.14'

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "Node.js >= 20 is needed for the test IdP (found: ${node_major})" >&2
  exit 1
fi
stamp=tests/idp/node_modules/.installed-from-lock
if [ ! -f "$stamp" ] || [ tests/idp/package-lock.json -nt "$stamp" ]; then
  npm ci --prefix tests/idp --no-audit --no-fund --loglevel=error
  touch "$stamp"
fi
