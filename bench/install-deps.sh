#!/usr/bin/env bash
# Install what `make bench` needs and the test suite does not already: wrk and hey (load),
# nginx (static upstream), Apache httpd + mod_auth_openidc (the peer), plus the test IdP's
# node modules. Idempotent: installs only what is missing. Debian packages need root (or
# sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/apt-install.sh
source scripts/apt-install.sh

apt_install_group bench # requirements/debian.txt
# Debian starts the system's nginx/apache2 services on install where an init system
# runs; the benchmark starts its own instances on free loopback ports and needs none.
# py-spy (the profiler) is in the lock (dependency group bench): make setup installs it.

# The test IdP's node modules (and the other test peers) come from the test installer.
bash scripts/install-test-deps.sh
