#!/usr/bin/env bash
# Make this machine able to build and run s3shim's image without a Docker engine, for the
# container test (tests/e2e/test_deploy_container.py) and for local use. Idempotent; safe to
# run twice at once (a lock serialises the slow parts).
#
#   scripts/container-setup.sh
#       1. installs podman, runc and debootstrap with apt-get (only those that are missing);
#       2. writes a containers.conf (runtime runc, ulimits this machine allows, no systemd,
#          no journald) to $S3SHIM_CONTAINER_STATE (default: <repo>/.state/container);
#       3. makes sure an image tagged docker.io/library/python:3.11-slim exists. No registry
#          is reachable here, so when it is missing a TEST-ONLY STAND-IN is built once per
#          machine with debootstrap (Debian 12 minbase + python3, pip, venv) and imported
#          under that tag. It checks the Dockerfile's steps, the install, the non-root user
#          and the entrypoint -- not the upstream python:3.11-slim image itself. A real
#          python:3.11-slim already in podman's store is used as it is.
#       Before 3, picks podman's image storage: its native overlay driver cannot keep its
#       store on overlayfs (or aufs, zfs, ecryptfs), which is where it lands inside a
#       container (CI runners often are one): "'overlay' is not supported over overlayfs, a
#       mount_program is required". There it uses fuse-overlayfs as the mount program
#       (installed with apt-get only then; needs /dev/fuse), else the vfs driver (no
#       sharing between layers: slower builds, more disk), each in a store of its own, and
#       writes the choice to storage.conf beside containers.conf. Where the native driver
#       works, no storage.conf exists (a stale one is removed) and podman's defaults apply.
#       Prints the containers.conf path on stdout (use it as CONTAINERS_CONF; when
#       storage.conf exists in the same directory, use it as CONTAINERS_STORAGE_CONF too);
#       progress goes to stderr.
#
#   scripts/container-setup.sh --storage-mode FS_TYPE HAVE_DEV_FUSE [OVERRIDE]
#   scripts/container-setup.sh --storage-conf MODE GRAPHROOT RUNROOT [MOUNT_PROGRAM]
#       The two pure decisions above, for tests (tests/unit/test_container_storage.py): print
#       the storage mode, or the storage.conf for a mode (nothing for native). No root needed,
#       nothing installed or written.
#
# Environment: S3SHIM_CONTAINER_STATE (state dir), S3SHIM_DEBIAN_MIRROR (default: the first
# Debian mirror apt already uses), S3SHIM_BASE_IMAGE (default docker.io/library/python:3.11-slim),
# S3SHIM_CONTAINER_STORAGE (native, fuse-overlayfs or vfs: force a storage mode, e.g. to try a
# fallback on a machine that does not need it; default: detected).
# Needs root (or passwordless sudo): podman runs rootful here.
set -euo pipefail

# ------------------------------------------------------------------ pure storage decisions
# storage_mode FS_TYPE HAVE_DEV_FUSE [OVERRIDE] -> native | fuse-overlayfs | vfs
#   FS_TYPE: `stat -f -c %T` of the graph root (or its nearest existing parent); coreutils
#   too old to name a file system prints "UNKNOWN (0x<magic>)", so the magics count too.
#   HAVE_DEV_FUSE: yes or no. OVERRIDE: empty (detect) or one of the three modes.
storage_mode() {
  local fs=$1 fuse=$2 override=${3:-}
  case $override in
    '') ;;
    native | fuse-overlayfs | vfs) echo "$override"; return 0 ;;
    *) echo "unknown storage mode '$override' (native, fuse-overlayfs or vfs)" >&2; return 2 ;;
  esac
  case $fs in
    # The backing file systems containers/storage refuses for native overlay (its own list:
    # overlayfs 0x794c7630, aufs 0x61756673, zfs 0x2fc12fc1, ecryptfs 0xf15f).
    overlayfs | overlay | aufs | zfs | ecryptfs | \
      *0x794c7630* | *0x61756673* | *0x2fc12fc1* | *0xf15f\)*)
      if [ "$fuse" = yes ]; then echo fuse-overlayfs; else echo vfs; fi ;;
    *) echo native ;;
  esac
}

# storage_conf MODE GRAPHROOT RUNROOT [MOUNT_PROGRAM] -> storage.conf text (none for native)
#   A fallback gets a store of its own (GRAPHROOT-MODE, RUNROOT-MODE): podman records the
#   driver in its database and refuses to open a store made with another one, and a native
#   store must stay usable by plain `podman` on the same machine.
storage_conf() {
  local mode=$1 graphroot=$2 runroot=$3 mount_program=${4:-/usr/bin/fuse-overlayfs}
  case $mode in
    native) return 0 ;;
    fuse-overlayfs | vfs) ;;
    *) echo "unknown storage mode '$mode'" >&2; return 2 ;;
  esac
  printf '# Written by scripts/container-setup.sh; use with CONTAINERS_STORAGE_CONF=<this file>\n'
  printf '[storage]\n'
  printf 'driver = "%s"\n' "$([ "$mode" = vfs ] && echo vfs || echo overlay)"
  printf 'graphroot = "%s-%s"\n' "$graphroot" "$mode"
  printf 'runroot = "%s-%s"\n' "$runroot" "$mode"
  if [ "$mode" = fuse-overlayfs ]; then
    printf '\n[storage.options.overlay]\nmount_program = "%s"\n' "$mount_program"
  fi
}

case ${1:-} in
  --storage-mode) shift; storage_mode "$@"; exit ;;
  --storage-conf) shift; storage_conf "$@"; exit ;;
  '') ;;
  *) echo "usage: $0 [--storage-mode ... | --storage-conf ...]" >&2; exit 2 ;;
esac

T0=$(date +%s%N)
say() { printf '[container-setup %6dms] %s\n' $(( ($(date +%s%N) - T0) / 1000000 )) "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${S3SHIM_CONTAINER_STATE:-$REPO/.state/container}
BASE_IMAGE=${S3SHIM_BASE_IMAGE:-docker.io/library/python:3.11-slim}
SUITE=bookworm
STANDIN_LABEL=org.s3shim.test-standin

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  die "needs root or passwordless sudo (apt-get, rootful podman, debootstrap)"
fi

mkdir -p "$STATE"
CONF=$STATE/containers.conf

# ------------------------------------------------------------------------------ 1. packages
need=()
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]} (apt-get)"
  # Serialise with other apt users of this script; apt has its own lock but fails instead
  # of waiting on it.
  exec 8>"$STATE/apt.lock"
  flock 8
  export DEBIAN_FRONTEND=noninteractive
  # A fresh machine may have stale or empty package lists.
  if ! "${SUDO[@]}" apt-get install -y --no-install-recommends "${need[@]}" >&2; then
    "${SUDO[@]}" apt-get update >&2
    "${SUDO[@]}" apt-get install -y --no-install-recommends "${need[@]}" >&2
  fi
  exec 8>&-
fi

# ------------------------------------------------------------------------ 2. containers.conf
# crun fails on this machine kind ("cgroups in hybrid mode not supported"): use runc.
# podman's default ulimits exceed what an unprivileged-by-limits root may set here.
nofile=$(ulimit -Hn)
[ "$nofile" = unlimited ] && nofile=1048576
nproc=$(ulimit -Hu)
{ [ "$nproc" = unlimited ] || [ "$nproc" -gt 4096 ]; } && nproc=4096
if [ "$(cat /proc/1/comm 2>/dev/null || true)" = systemd ]; then
  cgroup_manager=systemd
else
  cgroup_manager=cgroupfs
fi
tmp=$(mktemp "$STATE/containers.conf.XXXXXX")
cat >"$tmp" <<EOF
# Written by scripts/container-setup.sh; use with CONTAINERS_CONF=$CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "$cgroup_manager"
events_logger = "file"
EOF
mv -f "$tmp" "$CONF"
export CONTAINERS_CONF=$CONF

# ------------------------------------------------------------------------- 2b. storage.conf
# Rootful podman's store: storage.conf's graphroot/runroot (the admin's, else the package's),
# else containers/storage's defaults.
conf_value() {   # conf_value KEY: the first `KEY = "..."` of the system storage.conf
  local f
  for f in /etc/containers/storage.conf /usr/share/containers/storage.conf; do
    if [ -r "$f" ]; then
      sed -nE "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"([^\"]*)\".*/\1/p" "$f" | head -n1
      return 0
    fi
  done
}
graphroot=$(conf_value graphroot)
graphroot=${graphroot:-/var/lib/containers/storage}
runroot=$(conf_value runroot)
runroot=${runroot:-/run/containers/storage}
probe=$graphroot
while [ ! -e "$probe" ]; do probe=$(dirname "$probe"); done
fs_type=$(stat -f -c %T "$probe")
have_fuse=no
[ -c /dev/fuse ] && have_fuse=yes
mode=$(storage_mode "$fs_type" "$have_fuse" "${S3SHIM_CONTAINER_STORAGE:-}") || die "bad S3SHIM_CONTAINER_STORAGE"
if [ "$mode" = fuse-overlayfs ] && ! command -v fuse-overlayfs >/dev/null; then
  say "installing fuse-overlayfs (apt-get): podman's store $graphroot is on $fs_type"
  exec 8>"$STATE/apt.lock"
  flock 8
  export DEBIAN_FRONTEND=noninteractive
  if ! "${SUDO[@]}" apt-get install -y --no-install-recommends fuse-overlayfs >&2; then
    "${SUDO[@]}" apt-get update >&2 || true
    "${SUDO[@]}" apt-get install -y --no-install-recommends fuse-overlayfs >&2 || true
  fi
  exec 8>&-
  if ! command -v fuse-overlayfs >/dev/null; then
    say "fuse-overlayfs could not be installed: using the vfs storage driver"
    mode=vfs
  fi
fi
STORAGE_CONF=$STATE/storage.conf
if [ "$mode" = native ]; then
  rm -f "$STORAGE_CONF"
  podman_env=(CONTAINERS_CONF="$CONF")
else
  say "podman storage: $mode (graph root $graphroot is on $fs_type; /dev/fuse: $have_fuse)"
  tmp=$(mktemp "$STATE/storage.conf.XXXXXX")
  storage_conf "$mode" "$graphroot" "$runroot" "$(command -v fuse-overlayfs || true)" >"$tmp"
  mv -f "$tmp" "$STORAGE_CONF"
  podman_env=(CONTAINERS_CONF="$CONF" CONTAINERS_STORAGE_CONF="$STORAGE_CONF")
fi

podman_() { "${SUDO[@]}" env "${podman_env[@]}" podman "$@"; }

# ---------------------------------------------------------------------------- 3. base image
if podman_ image exists "$BASE_IMAGE"; then
  if [ "$(podman_ image inspect --format "{{ index .Labels \"$STANDIN_LABEL\" }}" "$BASE_IMAGE" 2>/dev/null)" = true ]; then
    say "base $BASE_IMAGE: test-only stand-in already built"
  else
    say "base $BASE_IMAGE: present"
  fi
  echo "$CONF"
  exit 0
fi

exec 9>"$STATE/base.lock"
flock 9
if podman_ image exists "$BASE_IMAGE"; then   # built by a concurrent run meanwhile
  say "base $BASE_IMAGE: built by a concurrent run"
  echo "$CONF"
  exit 0
fi

mirror=${S3SHIM_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$( { grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}';
              grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}'; } \
            | grep -E '/debian/?$' | head -n1 || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}

say "base $BASE_IMAGE missing: building the TEST-ONLY stand-in with debootstrap ($SUITE, $mirror)"
rootfs=$(mktemp -d "$STATE/rootfs.XXXXXX")
# debootstrap mounts /proc (and more) inside the rootfs and may leave it mounted: measured on a
# sandboxed VM (/.dockerenv), its own unmount failed silently, and the tar below then packed
# the live /proc of the machine into the image. Unmount whatever is below the rootfs, deepest
# first (lazily if busy), before packing and before removing.
unmount_below() {
  local m
  awk -v root="$1" '$2 == root || index($2, root "/") == 1 { print $2 }' /proc/mounts \
    | sort -r | while read -r m; do
        "${SUDO[@]}" umount "$m" 2>/dev/null || "${SUDO[@]}" umount -l "$m"
      done
}
cleanup() {
  unmount_below "$rootfs" || true
  "${SUDO[@]}" rm -rf --one-file-system "$rootfs"
}
trap cleanup EXIT
"${SUDO[@]}" debootstrap --variant=minbase \
  --include=python3,python3-pip,python3-venv,python-is-python3,ca-certificates \
  "$SUITE" "$rootfs" "$mirror" >"$STATE/debootstrap.log" 2>&1 \
  || { tail -n 30 "$STATE/debootstrap.log" >&2; die "debootstrap failed (log: $STATE/debootstrap.log)"; }
unmount_below "$rootfs"
if awk -v root="$rootfs" 'index($2, root "/") == 1 { found = 1 } END { exit !found }' /proc/mounts; then
  die "file systems still mounted below $rootfs"
fi
say "debootstrap done; adapting the rootfs"
# mktemp -d made the rootfs 0700, and tar records "." with that mode: the image's / would be
# 0700. The overlay driver hides it (its merged root has its own mode); vfs keeps it, and then
# the image's non-root user cannot reach its entrypoint ("stat /opt/venv/bin/s3shim:
# permission denied", measured). python:3.11-slim's / is 0755.
"${SUDO[@]}" chmod 0755 "$rootfs"

# Make it behave like python:3.11-slim where the Dockerfile relies on it: pip may install
# outside a venv (the official image has no PEP 668 marker), pip is on /usr/local/bin.
"${SUDO[@]}" rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
"${SUDO[@]}" ln -sf /usr/bin/pip3 "$rootfs/usr/local/bin/pip"
# Extra CAs of this machine (a TLS-intercepting egress proxy): pip inside a build needs them.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  "${SUDO[@]}" cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
  "${SUDO[@]}" chroot "$rootfs" update-ca-certificates >/dev/null 2>&1 \
    || die "update-ca-certificates failed in the stand-in rootfs"
fi
"${SUDO[@]}" rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
  "$rootfs"/var/log/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*

say "importing as $BASE_IMAGE"
# Imported under a name of its own and tagged only once tar and import both succeeded, so a
# failed pack never leaves a half-made base under the real name (the check above would then
# take it as built). --one-file-system: nothing mounted below the rootfs gets in.
building=localhost/s3shim-standin-building:$$
if ! "${SUDO[@]}" tar -C "$rootfs" --one-file-system --numeric-owner -c . | podman_ import \
  --change 'CMD ["python3"]' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change "LABEL $STANDIN_LABEL=true" \
  - "$building" >/dev/null; then
  podman_ rmi --force "$building" >/dev/null 2>&1 || true
  die "packing or importing the stand-in rootfs failed"
fi
podman_ tag "$building" "$BASE_IMAGE"
podman_ untag "$building" "$building"
say "stand-in base ready"
echo "$CONF"
