#!/usr/bin/env bash
# One resolution for every Python environment the project installs: uv.lock, made by uv
# from pyproject.toml (dependencies, extras, dependency groups) for every Python >= 3.11
# and platform at once, with the hashes of every file. requirements/*.txt are its exports,
# the files pip installs with --require-hashes:
#   requirements/dev.txt      make setup: runtime + tracing + test extras + build + uv
#   requirements/runtime.txt  the image: runtime + tracing (a subset of the same pins)
#   requirements/build.txt    the image's build backend (setuptools), also in dev.txt
# and [build-system] requires in pyproject.toml is set to the locked setuptools.
#
#   scripts/lock.sh            make lock:         re-lock after pyproject.toml changed,
#                                                 keeping every pin that still fits
#   scripts/lock.sh --upgrade  make lock-upgrade: the newest versions the ranges allow
#   scripts/lock.sh --check    make lock-check:   fail when pyproject.toml, uv.lock and
#                                                 requirements/ disagree (offline)
set -euo pipefail
cd "$(dirname "$0")/.."

uv=${UV:-.venv/bin/uv}
[ -x "$uv" ] || { echo "run 'make setup' first: $uv is missing" >&2; exit 1; }
export UV_NO_CONFIG=1 # only pyproject.toml's [tool.uv] counts, not a user's uv.toml

# name and the `uv export` options that select it from uv.lock
exports=(
  "dev --all-extras --all-groups"
  "runtime --extra tracing --no-default-groups"
  "build --only-group build"
)

export_to() { # DIR: write every export of uv.lock into DIR
  local entry name options
  for entry in "${exports[@]}"; do
    read -r name options <<<"$entry"
    # shellcheck disable=SC2086  # options are words
    {
      echo "# requirements/$name.txt: exported from uv.lock by 'make lock'; do not edit."
      "$uv" export --quiet --frozen --format requirements-txt --no-header \
        --no-emit-project $options
    } >"$1/$name.txt"
  done
}

locked_setuptools() {
  sed -n 's/^setuptools==\([^ ;\\]*\).*/\1/p' requirements/build.txt
}

build_system_pin() {
  python3 - <<'PY'
import tomllib
with open("pyproject.toml", "rb") as f:
    print(" ".join(tomllib.load(f)["build-system"]["requires"]))
PY
}

case "${1:-}" in
--check)
  fail() {
    echo "lock-check: $1: run 'make lock'" >&2
    exit 1
  }
  "$uv" lock --check --offline --quiet 2>/dev/null \
    || fail "uv.lock does not match pyproject.toml"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  export_to "$work"
  for entry in "${exports[@]}"; do
    name=${entry%% *}
    cmp -s "$work/$name.txt" "requirements/$name.txt" \
      || fail "requirements/$name.txt is not what uv.lock exports"
  done
  [ "$(build_system_pin)" = "setuptools==$(locked_setuptools)" ] \
    || fail "[build-system] requires '$(build_system_pin)', uv.lock has setuptools==$(locked_setuptools)"
  .venv/bin/python -m pip check >/dev/null || fail "the installed packages do not fit together"
  echo "lock-check: pyproject.toml, uv.lock and requirements/ agree"
  ;;
"" | --upgrade)
  before=$(mktemp)
  trap 'rm -f "$before"' EXIT
  cat requirements/dev.txt >"$before" 2>/dev/null || true
  "$uv" lock ${1:+--upgrade}
  export_to requirements
  pin="setuptools==$(locked_setuptools)"
  sed -i "s/^requires = \[\"setuptools[^\"]*\"\]/requires = [\"$pin\"]/" pyproject.toml
  [ "$(build_system_pin)" = "$pin" ] || { echo "could not pin [build-system] requires" >&2; exit 1; }
  for entry in "${exports[@]}"; do
    name=${entry%% *}
    echo "requirements/$name.txt: $(grep -c '^[A-Za-z0-9]' "requirements/$name.txt") packages"
  done
  # What changed, for the commit message.
  diff <(grep -o '^[A-Za-z0-9][^ ;\\]*' "$before" | sort -u) \
    <(grep -o '^[A-Za-z0-9][^ ;\\]*' requirements/dev.txt | sort -u) \
    | sed -n 's/^</  removed/p; s/^>/  now/p' || true
  ;;
*)
  echo "usage: $0 [--upgrade | --check]" >&2
  exit 2
  ;;
esac
