#!/usr/bin/env bash
# Make this machine able to build and run s3shim's image without a Docker engine, for the
# container test (tests/test_container.py) and for local use. Idempotent; safe to run twice
# at once (a lock serialises the slow parts).
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
#       Prints the containers.conf path on stdout (use it as CONTAINERS_CONF); progress goes
#       to stderr.
#
# Environment: S3SHIM_CONTAINER_STATE (state dir), S3SHIM_DEBIAN_MIRROR (default: the first
# Debian mirror apt already uses), S3SHIM_BASE_IMAGE (default docker.io/library/python:3.11-slim).
# Needs root (or passwordless sudo): podman runs rootful here.
set -euo pipefail

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

podman_() { "${SUDO[@]}" env CONTAINERS_CONF="$CONF" podman "$@"; }

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
cleanup() { "${SUDO[@]}" rm -rf --one-file-system "$rootfs"; }
trap cleanup EXIT
"${SUDO[@]}" debootstrap --variant=minbase \
  --include=python3,python3-pip,python3-venv,python-is-python3,ca-certificates \
  "$SUITE" "$rootfs" "$mirror" >"$STATE/debootstrap.log" 2>&1 \
  || { tail -n 30 "$STATE/debootstrap.log" >&2; die "debootstrap failed (log: $STATE/debootstrap.log)"; }
say "debootstrap done; adapting the rootfs"

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
"${SUDO[@]}" tar -C "$rootfs" --numeric-owner -c . | podman_ import \
  --change 'CMD ["python3"]' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change "LABEL $STANDIN_LABEL=true" \
  - "$BASE_IMAGE" >/dev/null
say "stand-in base ready"
echo "$CONF"
