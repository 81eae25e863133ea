# Sourced by the image scripts. A private podman set-up: its own configuration and
# storage under $SIPGATE_PODMAN_DIR (default /var/tmp/sipgate-auth-proxy-podman, kept
# between runs so the base image and unchanged layers are reused), so nothing depends on
# or changes a system-wide podman set-up. Settings that work on these machines (see
# shared/notes/tooling.md): runc (crun fails on this cgroup layout), cgroupfs, explicit
# ulimits, overlay storage (vfs when overlay is not available).
: "${SIPGATE_PODMAN_DIR:=/var/tmp/sipgate-auth-proxy-podman}"
mkdir -p "$SIPGATE_PODMAN_DIR"
SIPGATE_PODMAN_DIR=$(cd "$SIPGATE_PODMAN_DIR" && pwd)

cat >"$SIPGATE_PODMAN_DIR/containers.conf" <<CONF
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
CONF
cat >"$SIPGATE_PODMAN_DIR/registries.conf" <<CONF
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"
CONF
if [ ! -f "$SIPGATE_PODMAN_DIR/storage.conf" ]; then
  for driver in overlay vfs; do
    cat >"$SIPGATE_PODMAN_DIR/storage.conf" <<CONF
[storage]
driver = "$driver"
graphroot = "$SIPGATE_PODMAN_DIR/storage"
runroot = "$SIPGATE_PODMAN_DIR/run"
CONF
    if CONTAINERS_CONF="$SIPGATE_PODMAN_DIR/containers.conf" \
       CONTAINERS_STORAGE_CONF="$SIPGATE_PODMAN_DIR/storage.conf" \
       podman info >/dev/null 2>&1; then
      break
    fi
    rm -rf "$SIPGATE_PODMAN_DIR/storage" "$SIPGATE_PODMAN_DIR/run"
  done
fi
export CONTAINERS_CONF="$SIPGATE_PODMAN_DIR/containers.conf"
export CONTAINERS_STORAGE_CONF="$SIPGATE_PODMAN_DIR/storage.conf"
export CONTAINERS_REGISTRIES_CONF="$SIPGATE_PODMAN_DIR/registries.conf"
