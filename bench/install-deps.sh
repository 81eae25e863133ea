#!/usr/bin/env bash
# Install what `make bench` needs and the test suite does not already: wrk and hey (load),
# nginx (static upstream), Apache httpd + mod_auth_openidc (the peer), py-spy (profiler,
# into the project's venv), plus the test IdP's node modules. Idempotent: installs only
# what is missing. Debian packages need root (or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/apt-install.sh
source scripts/apt-install.sh

apt_packages=()
command -v wrk >/dev/null 2>&1 || apt_packages+=(wrk)
command -v hey >/dev/null 2>&1 || apt_packages+=(hey)
[ -x /usr/sbin/nginx ] || apt_packages+=(nginx)
[ -x /usr/sbin/apache2 ] || apt_packages+=(apache2)
[ -f /usr/lib/apache2/modules/mod_auth_openidc.so ] || apt_packages+=(libapache2-mod-auth-openidc)

apt_install "${apt_packages[@]}"
# Debian starts the system's nginx/apache2 services on install where an init system
# runs; the benchmark starts its own instances on free loopback ports and needs none.

venv=${VENV:-.venv}
[ -x "$venv/bin/py-spy" ] || "$venv/bin/pip" install --quiet 'py-spy>=0.3.14'

# The test IdP's node modules (and the other test peers) come from the test installer.
bash scripts/install-test-deps.sh
