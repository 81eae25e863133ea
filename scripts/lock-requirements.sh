#!/usr/bin/env bash
# Regenerate the pinned, hash-checked requirement files the container image installs:
#   requirements/runtime.txt  the runtime dependencies from pyproject.toml with the
#                             tracing extra (not the test extras), pinned to the versions
#                             in .venv, i.e. what the test suite ran against;
#   requirements/build.txt    what building the proxy's own wheel needs (pyproject's
#                             [build-system] requires).
# Each pin carries the hashes of every file PyPI has for it, so `pip install
# --require-hashes` installs exactly these bits on any Python version the base image has.
#
#   make lock          (or: bash scripts/lock-requirements.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

venv_python=.venv/bin/python
[ -x "$venv_python" ] || { echo "run 'make setup' first: .venv is missing" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 -m venv "$work/tools"
"$work/tools/bin/pip" install --quiet pip-tools

"$venv_python" - "$work" <<'PY'
import sys
import tomllib
from pathlib import Path

work = Path(sys.argv[1])
with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)
# pip-compile resolves for the Python running it; the base image may have another
# (Debian bookworm: 3.11.2, python:3.12-slim: 3.12). Dependencies that only apply to other
# versions are pinned unconditionally here: `pip check` in the Dockerfile finds any
# that are missing (redis needs async-timeout on Python < 3.11.3).
OTHER_PYTHONS = ["async-timeout>=4.0.3"]
# The image carries the tracing extra, so a deployment turns traces on by configuration
# alone (no OpenTelemetry module is imported while tracing is off).
tracing = project["project"]["optional-dependencies"]["tracing"]
runtime = ["-c constraints.txt", *project["project"]["dependencies"], *tracing, *OTHER_PYTHONS]
(work / "runtime.in").write_text("\n".join(runtime) + "\n")
(work / "build.in").write_text("\n".join(project["build-system"]["requires"]) + "\n")
PY
"$venv_python" -m pip freeze --exclude-editable >"$work/constraints.txt"

for name in runtime build; do
  (
    cd "$work"
    CUSTOM_COMPILE_COMMAND="make lock" "$work/tools/bin/pip-compile" --quiet \
      --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
      --no-emit-find-links --output-file "$name.txt" "$name.in"
  )
  # The constraints file is an input of the lock, not part of it.
  grep -v -e '^    #   -c constraints.txt$' "$work/$name.txt" >"requirements/$name.txt"
  echo "wrote requirements/$name.txt ($(grep -c '^[A-Za-z]' "requirements/$name.txt") packages)"
done
