#!/usr/bin/env bash
# Sourced by the install scripts.
#   apt_install_group GROUP  installs the packages requirements/debian.txt lists for GROUP
#                            whose file is missing (nothing when all are there)
#   apt_install PKG…         installs Debian packages (root or sudo), quietly, without
#                            recommends; nothing at all when given no package
apt_install() {
  [ $# -gt 0 ] || return 0
  local sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "installing Debian packages: $*"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends \
    "$@" >/dev/null
}

apt_install_group() {
  local list group package path missing=()
  list="$(dirname "${BASH_SOURCE[0]}")/../requirements/debian.txt"
  while read -r group package path _; do
    case "$group" in '' | '#'*) continue ;; esac
    [ "$group" = "$1" ] && [ ! -e "$path" ] && missing+=("$package")
  done <"$list"
  apt_install "${missing[@]}"
}
