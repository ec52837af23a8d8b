#!/usr/bin/env bash
# The demo in one command: installs what it needs, starts a throw-away Ceph RGW and s3shim
# in front of it on loopback, runs the Convex call sequence direct (fails with the store's
# error) and through s3shim (passes), then stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh

STATE=$(mktemp -d /tmp/s3shim-demo.XXXXXX)
export AWS_ACCESS_KEY_ID=demoaccess AWS_SECRET_ACCESS_KEY=demosecret1234567890
PORT=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
SHIM_PORT=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
SHIM_PID=
cleanup() {
  [ -n "$SHIM_PID" ] && kill "$SHIM_PID" 2>/dev/null && wait "$SHIM_PID" 2>/dev/null
  scripts/rgw.sh stop "$STATE/rgw" >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "Starting Ceph RGW (1 mon, 1 in-memory OSD) on 127.0.0.1:$PORT ..."
STORE_URL=$(RGW_MON_V2_PORT=auto RGW_MON_V1_PORT=auto scripts/rgw.sh start "$STATE/rgw" "$PORT" \
  "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" 2>"$STATE/rgw-start.log") || {
  cat "$STATE/rgw-start.log" >&2; exit 1; }

echo "Starting s3shim on 127.0.0.1:$SHIM_PORT in front of it (log: $STATE/s3shim.log) ..."
S3SHIM_UPSTREAM_URL=$STORE_URL S3SHIM_LISTEN_PORT=$SHIM_PORT S3SHIM_ADMIN_PORT=0 \
  AWS_S3_DISABLE_SSE=true AWS_S3_DISABLE_CHECKSUMS=true S3SHIM_LOG_FORMAT=json \
  .venv/bin/s3shim >"$STATE/s3shim.log" 2>&1 &
SHIM_PID=$!
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$SHIM_PORT") 2>/dev/null && break
  sleep 0.1
done

DEMO_STORE_URL=$STORE_URL DEMO_SHIM_URL=http://127.0.0.1:$SHIM_PORT .venv/bin/python scripts/demo.py
echo
echo "s3shim's request log (one JSON line per request): $STATE/s3shim.log"
