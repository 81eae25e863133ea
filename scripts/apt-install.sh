#!/usr/bin/env bash
# Sourced by the install scripts: apt_install PKG… installs Debian packages (root or
# sudo), quietly, without recommends; nothing at all when given no package.
apt_install() {
  [ $# -gt 0 ] || return 0
  local sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "installing Debian packages: $*"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends \
    "$@" >/dev/null
}
