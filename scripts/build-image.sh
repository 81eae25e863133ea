#!/usr/bin/env bash
# Build the container image with podman on this machine, without a container registry.
#
#   scripts/build-image.sh [TAG]          (default: sipgate-auth-proxy:dev; make image)
#
# The Dockerfile's base (FROM python:3.12-slim) cannot be pulled here, so when it is not
# in the private podman storage (scripts/podman-env.sh) a stand-in is made with
# debootstrap (Debian bookworm, minbase, python3 + python3-venv + ca-certificates, as the
# real slim image has) and tagged with that name. Debian bookworm's python3 is 3.11: the
# Dockerfile does not depend on the minor version. Prints how long each step took.
#
# Needs root (debootstrap, rootful podman) and scripts/install-packaging-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/podman-env.sh
source scripts/podman-env.sh

tag=${1:-sipgate-auth-proxy:dev}
base=$(awk 'toupper($1) == "FROM" { print $2; exit }' Dockerfile)
case "$base" in
  */*) ;;
  *) base="docker.io/library/$base" ;;
esac
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

# One build at a time per storage.
exec 9>"$SIPGATE_PODMAN_DIR/build.lock"
flock 9

if podman image exists "$base"; then
  echo "base image $base: present"
else
  started=$SECONDS
  rootfs=$(mktemp -d "$SIPGATE_PODMAN_DIR/rootfs.XXXXXX")
  # mktemp makes the directory 0700, and it becomes the image's "/": the image's user
  # (uid 10001) could then reach nothing ("executable file not found in $PATH").
  chmod 0755 "$rootfs"
  trap 'rm -rf "$rootfs"' EXIT
  echo "base image $base: debootstrap bookworm from $mirror"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$SIPGATE_PODMAN_DIR/debootstrap.log" 2>&1 \
    || { tail -20 "$SIPGATE_PODMAN_DIR/debootstrap.log" >&2; exit 1; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | podman import --quiet - "$base" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
  echo "base image made in $((SECONDS - started)) s"
fi

build_args=()
host_ca=/etc/ssl/certs/ca-certificates.crt
if [ -f "$host_ca" ]; then
  # pip inside the build trusts what the host trusts (this machine reaches PyPI through
  # a TLS-inspecting proxy); a no-op where pip's own CA bundle suffices.
  build_args+=(-v "$host_ca:/run/host-ca.crt:ro" --build-arg PIP_CERT_FILE=/run/host-ca.crt)
fi

started=$SECONDS
podman build --pull=never --isolation chroot --network host "${build_args[@]}" \
  --tag "$tag" . >"$SIPGATE_PODMAN_DIR/build.log" 2>&1 \
  || { tail -40 "$SIPGATE_PODMAN_DIR/build.log" >&2; exit 1; }
# Untagged images older than a day go; newer ones are the layer cache of the next build.
podman image prune --force --filter until=24h >/dev/null
echo "image $tag built in $((SECONDS - started)) s ($(podman image inspect --format '{{.Size}}' "$tag" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
