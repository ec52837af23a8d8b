#!/usr/bin/env bash
# s3shim's own throw-away Ceph RGW: one monitor, one in-memory OSD, no manager, and radosgw
# (beast) on loopback. Used by the tests (testkit/backends.py) and the demo.
#
#   scripts/rgw.sh start STATE_DIR PORT ACCESS SECRET [--mon-v2-port N] [--mon-v1-port N]
#                                                    [--memstore-bytes N]
#                                                    [--tenant-user TENANT:ACCESS:SECRET]
#                                                    [--tls-port N --tls-cert PEM --tls-key PEM]
#       Wipes STATE_DIR (only if it is empty or was made by this script), builds a fresh
#       cluster in it, creates an S3 user with ACCESS/SECRET (and, with --tenant-user, a
#       second one in an RGW tenant of its own), waits until a SigV4-signed
#       ListBuckets answers 200 and prints the endpoint (http://127.0.0.1:PORT) on stdout.
#       With --tls-port, radosgw also serves HTTPS there with the given certificate chain and
#       key (SSE of any kind needs it: RGW refuses SSE over plain HTTP); the HTTPS endpoint
#       is written to STATE_DIR/https-endpoint (stdout stays the one http endpoint line).
#   scripts/rgw.sh stop STATE_DIR
#       Stops radosgw, then the OSD, then the monitor, by their pid files (never by name).
#       Keeps STATE_DIR (logs) for post-mortem.
#
# Options may also come from the environment: RGW_MON_V2_PORT (default 3300),
# RGW_MON_V1_PORT (default 6789), RGW_MEMSTORE_BYTES (default 3 GiB). A port given as
# "auto" (or 0) is replaced by a free one, so a second cluster can run beside another one;
# PORT may be "auto" too (the printed endpoint then tells which port radosgw listens on).
# Progress goes to stderr; on failure the tails of the daemons' logs are printed there too.
#
# Needs (Debian 12): ceph-mon ceph-osd radosgw ceph-common curl python3 (scripts/bootstrap.sh).
set -euo pipefail

MARKER=.s3shim-rgw            # file that says "this directory is ours to wipe"
T0=$(date +%s%N)

say() { printf '[rgw.sh %5dms] %s\n' $(( ($(date +%s%N) - T0) / 1000000 )) "$*" >&2; }
usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
  exit 2
}

# A process is alive when /proc has it and it is not a zombie (Ceph daemons double-fork and are
# re-parented, so a plain `kill -0` can be fooled by a zombie that nobody reaps).
alive() { [ -r "/proc/$1/stat" ] && [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]; }

# The system Python starts in ~10 ms; a pyenv shim on PATH can take ~250 ms per call.
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

# resolve_ports P... : print each port, a free one in place of "auto" or 0; fail (exit 1, with a
# message) when a given port cannot be bound on 127.0.0.1 right now.
resolve_ports() {
  "$PY" - "$@" <<'PY'
import socket, sys
held, out = [], []
for p in sys.argv[1:]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", 0 if p in ("auto", "0") else int(p)))
    except OSError as e:
        sys.exit(f"127.0.0.1:{p} is not free ({e.strerror}); choose other ports")
    held.append(s)
    out.append(str(s.getsockname()[1]))
print(" ".join(out))
PY
}

# ---------------------------------------------------------------------------------------- stop
# Stop the daemons named in $@ (pid-file basenames) in parallel: SIGTERM, wait up to GRACE s,
# then SIGKILL. A pid is only signalled when its command line mentions our ceph.conf, so a pid
# recycled by an unrelated process is never touched.
stop_group() {
  local state=$1; shift
  local grace=${RGW_STOP_GRACE:-5} name pf pid
  local -a pids=() names=()
  for name in "$@"; do
    pf=$state/run/$name.pid
    [ -f "$pf" ] || continue
    pid=$(cat "$pf")
    if ! [[ $pid =~ ^[0-9]+$ ]] || ! alive "$pid"; then rm -f "$pf"; continue; fi
    if ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$state/ceph.conf"; then
      say "$name: pid $pid does not run with $state/ceph.conf; not touching it"
      continue
    fi
    kill -TERM "$pid" 2>/dev/null || true
    pids+=("$pid") names+=("$name")
  done
  local deadline=$(( $(date +%s%N) + grace * 1000000000 )) i
  for i in "${!pids[@]}"; do
    pid=${pids[$i]}
    while alive "$pid" && [ "$(date +%s%N)" -lt "$deadline" ]; do sleep 0.05; done
    if alive "$pid"; then
      say "${names[$i]}: no exit after ${grace}s, SIGKILL $pid"
      kill -KILL "$pid" 2>/dev/null || true
      while alive "$pid"; do sleep 0.05; done
    fi
    rm -f "$state/run/${names[$i]}.pid"
  done
}

do_stop() {
  local state=$1
  [ -d "$state/run" ] || return 0
  # Order matters: radosgw unregisters its watches on the OSD while it shuts down (it hangs if
  # the OSD is gone), and the OSD tells the monitor it is going down and waits for an answer.
  stop_group "$state" client.rgw.a
  stop_group "$state" osd.0
  stop_group "$state" mon.a
  say "stopped (state kept in $state)"
}

# --------------------------------------------------------------------------------------- start
fail() {
  say "ERROR: $*"
  local f
  for f in "$STATE"/log/*.log; do
    [ -s "$f" ] || continue
    printf '==== last lines of %s\n' "$f" >&2
    tail -n 25 "$f" >&2
  done
  do_stop "$STATE" || true
  exit 1
}

do_start() {
  STATE=$1 RGW_PORT=$2 ACCESS=$3 SECRET=$4
  shift 4
  local mon2=${RGW_MON_V2_PORT:-3300} mon1=${RGW_MON_V1_PORT:-6789}
  local mem=${RGW_MEMSTORE_BYTES:-3221225472} tenant_user= tls_port= tls_cert= tls_key=
  while [ $# -gt 0 ]; do
    case $1 in
      --mon-v2-port) mon2=$2; shift 2 ;;
      --mon-v1-port) mon1=$2; shift 2 ;;
      --memstore-bytes) mem=$2; shift 2 ;;
      --tenant-user) tenant_user=$2; shift 2 ;;
      --tls-port) tls_port=$2; shift 2 ;;
      --tls-cert) tls_cert=$2; shift 2 ;;
      --tls-key) tls_key=$2; shift 2 ;;
      *) usage ;;
    esac
  done
  [[ $RGW_PORT =~ ^([0-9]+|auto)$ ]] || usage
  [[ $mem =~ ^[0-9]+$ ]] || usage
  [[ -z $tenant_user || $tenant_user =~ ^[a-z0-9]+:[^:]+:[^:]+$ ]] || usage
  [ ${#SECRET} -ge 1 ] && [ ${#ACCESS} -ge 1 ] || usage
  if [ -n "$tls_port$tls_cert$tls_key" ]; then
    [[ $tls_port =~ ^([0-9]+|auto)$ && -n $tls_cert && -n $tls_key ]] || usage
    [ -r "$tls_cert" ] && [ -r "$tls_key" ] || { say "ERROR: cannot read $tls_cert or $tls_key"; exit 1; }
    tls_cert=$(cd "$(dirname "$tls_cert")" && pwd -P)/$(basename "$tls_cert")
    tls_key=$(cd "$(dirname "$tls_key")" && pwd -P)/$(basename "$tls_key")
  fi

  local b
  for b in ceph-authtool monmaptool ceph-mon ceph-osd radosgw radosgw-admin ceph curl "$PY"; do
    command -v "$b" >/dev/null || { say "ERROR: $b not found (run scripts/bootstrap.sh)"; exit 1; }
  done

  mkdir -p "$STATE"
  STATE=$(cd "$STATE" && pwd -P)
  # Refuse to wipe a directory this script did not make (a typo must not cost someone's files).
  if [ -n "$(ls -A "$STATE")" ] && [ ! -e "$STATE/$MARKER" ]; then
    say "ERROR: $STATE is not empty and was not made by rgw.sh; refusing to wipe it"
    exit 1
  fi
  do_stop "$STATE" >/dev/null 2>&1 || true      # leftovers of an earlier start
  find "$STATE" -mindepth 1 -delete
  touch "$STATE/$MARKER"
  mkdir -p "$STATE"/{run,log,crash,mon.a,osd.0,rgw.a}

  local ports
  ports=$(resolve_ports "$mon2" "$mon1" "$RGW_PORT" ${tls_port:+"$tls_port"}) \
    || fail "a port is taken (give other ports, or: --mon-v2-port auto --mon-v1-port auto)"
  read -r mon2 mon1 RGW_PORT tls_port <<<"$ports"
  local frontends="beast endpoint=127.0.0.1:$RGW_PORT"
  [ -n "$tls_port" ] && frontends+=" ssl_endpoint=127.0.0.1:$tls_port ssl_certificate=$tls_cert ssl_private_key=$tls_key"

  local conf=$STATE/ceph.conf keyring=$STATE/keyring
  local fsid osd_uuid mon_addrs
  fsid=$(cat /proc/sys/kernel/random/uuid)
  osd_uuid=$(cat /proc/sys/kernel/random/uuid)
  mon_addrs="[v2:127.0.0.1:$mon2,v1:127.0.0.1:$mon1]"

  # Every path a daemon or a client would otherwise take from /var/lib/ceph, /var/run/ceph,
  # /var/log/ceph or /etc/ceph points into STATE, so nothing outside it needs to exist.
  cat >"$conf" <<EOF
[global]
fsid = $fsid
mon host = $mon_addrs
mon initial members = a
# loopback only, IPv4 only
public addr = 127.0.0.1
cluster addr = 127.0.0.1
public network = 127.0.0.1/32
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
keyring = $keyring
run dir = $STATE/run
pid file = $STATE/run/\$name.pid
admin socket = $STATE/run/\$name.asok
log file = $STATE/log/\$name.log
log to stderr = false
err to stderr = false
mon cluster log file = $STATE/log/cluster.log
crash dir = $STATE/crash
# one OSD: every pool keeps a single replica, and CRUSH may place it on that one host
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000

[mon]
mon data = $STATE/mon.\$id
# the monitor must not shut itself down because the disk under STATE is nearly full
mon data avail warn = 1
mon data avail crit = 0
# Each map change waits for the propose interval (1 s by default); radosgw's first start makes
# a dozen of them (pools, zone), so a short interval brings its start from ~10 s to ~1 s.
paxos propose interval = 0.05
paxos min wait = 0.01

[osd]
osd data = $STATE/osd.\$id
# objects live in RAM, up to this many bytes (the OSD reports itself full beyond ~95 %)
osd objectstore = memstore
memstore device bytes = $mem
osd crush update on start = true
osd crush initial weight = 1
# a small thread budget for a 2-core machine
osd op num shards = 1
osd op num threads per shard = 2

[client]
# short-lived clients (ceph, radosgw-admin) need no admin socket of their own
admin socket =

[client.rgw.a]
admin socket = $STATE/run/\$name.asok
rgw data = $STATE/rgw.a
rgw frontends = $frontends
rgw thread pool size = 64
# Ceph's default, spelled out: SSE headers over plain http are refused (400 InvalidRequest),
# as on a stock RGW; s3shim's tests rely on that behaviour.
rgw crypt require ssl = true
# the lifecycle worker only delays shutdown by up to ~5 s; nothing here expires objects
rgw enable lc threads = false
EOF

  # One keyring for all entities. ceph-mon --mkfs copies every key in it, with its caps, into
  # the monitor's auth database; the daemons and the admin client read their key from it.
  {
    ceph-authtool --create-keyring "$keyring" --gen-key -n mon. --cap mon 'allow *' &&
    ceph-authtool "$keyring" --gen-key -n client.admin \
      --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' &&
    ceph-authtool "$keyring" --gen-key -n osd.0 \
      --cap mon 'allow profile osd' --cap osd 'allow *' --cap mgr 'allow profile osd' &&
    ceph-authtool "$keyring" --gen-key -n client.rgw.a \
      --cap mon 'allow rw' --cap osd 'allow rwx' --cap mgr 'allow rw'
  } >"$STATE/log/keyring.log" 2>&1 || fail "ceph-authtool failed"

  monmaptool --create --fsid "$fsid" --addv a "$mon_addrs" "$STATE/monmap" >"$STATE/log/monmap.log" 2>&1 \
    || fail "monmaptool failed"
  ceph-mon -c "$conf" -i a --mkfs --monmap "$STATE/monmap" --keyring "$keyring" \
    >"$STATE/log/mon.a.mkfs.log" 2>&1 || fail "ceph-mon --mkfs failed"
  ceph-mon -c "$conf" -i a >>"$STATE/log/mon.a.mkfs.log" 2>&1 || fail "ceph-mon did not start"
  say "mon.a up on 127.0.0.1:$mon2 (v2) / :$mon1 (v1)"

  # Register osd.0 in the OSD map (its key is already in the auth database), then make its
  # in-memory store and start it. radosgw waits by itself for the OSD's placement groups.
  timeout 60 ceph -c "$conf" --connect-timeout 30 osd new "$osd_uuid" 0 \
    >"$STATE/log/osd-new.log" 2>&1 || fail "ceph osd new failed"
  ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$osd_uuid" >"$STATE/log/osd.0.mkfs.log" 2>&1 \
    || fail "ceph-osd --mkfs failed"
  ceph-osd -c "$conf" -i 0 >>"$STATE/log/osd.0.mkfs.log" 2>&1 || fail "ceph-osd did not start"
  say "osd.0 started (memstore, $mem bytes)"

  radosgw -c "$conf" -n client.rgw.a >"$STATE/log/radosgw.start.log" 2>&1 \
    || fail "radosgw did not start"
  local endpoint=http://127.0.0.1:$RGW_PORT i
  for i in $(seq 1 600); do
    curl -fs -o /dev/null --max-time 2 "$endpoint/" && break
    [ -f "$STATE/run/client.rgw.a.pid" ] && ! alive "$(cat "$STATE/run/client.rgw.a.pid")" \
      && fail "radosgw exited"
    [ "$i" = 600 ] && fail "radosgw did not answer on $endpoint within 60 s"
    sleep 0.1
  done
  say "radosgw answers on $endpoint"

  timeout 60 radosgw-admin -c "$conf" -n client.admin user create --uid=s3shim \
    --display-name="s3shim tests" --access-key="$ACCESS" --secret-key="$SECRET" \
    >"$STATE/user.json" 2>"$STATE/log/radosgw-admin.log" || fail "radosgw-admin user create failed"
  if [ -n "$tenant_user" ]; then
    IFS=: read -r t_name t_access t_secret <<<"$tenant_user"
    timeout 60 radosgw-admin -c "$conf" -n client.admin user create --tenant="$t_name" \
      --uid=s3shim --display-name="s3shim tests ($t_name)" --access-key="$t_access" \
      --secret-key="$t_secret" >"$STATE/tenant-user.json" 2>>"$STATE/log/radosgw-admin.log" \
      || fail "radosgw-admin user create --tenant failed"
  fi

  # Ready means: the new keys are accepted. curl 7.88 signs with SigV4 but does not send
  # x-amz-content-sha256, which RGW requires, so send the empty body's hash ourselves.
  local empty=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 code=
  for i in $(seq 1 300); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 \
      --aws-sigv4 "aws:amz:us-east-1:s3" --user "$ACCESS:$SECRET" \
      -H "x-amz-content-sha256: $empty" "$endpoint/" || true)
    [ "$code" = 200 ] && break
    [ "$i" = 300 ] && fail "signed ListBuckets never answered 200 (last: $code)"
    sleep 0.1
  done
  if [ -n "$tls_port" ]; then
    # Liveness of the TLS listener only (-k): the tests check the chain themselves.
    for i in $(seq 1 100); do
      curl -ks -o /dev/null --max-time 2 "https://127.0.0.1:$tls_port/" && break
      [ "$i" = 100 ] && fail "radosgw did not answer on https://127.0.0.1:$tls_port"
      sleep 0.1
    done
    echo "https://127.0.0.1:$tls_port" >"$STATE/https-endpoint"
    say "radosgw answers on https://127.0.0.1:$tls_port too"
  fi
  say "signed ListBuckets 200 as $ACCESS; ready"
  echo "$endpoint"
}

[ $# -ge 1 ] || usage
case $1 in
  start) [ $# -ge 5 ] || usage; shift; do_start "$@" ;;
  stop)
    [ $# -eq 2 ] || usage
    [ -d "$2" ] || exit 0
    do_stop "$(cd "$2" && pwd -P)"
    ;;
  -h|--help|help) usage ;;
  *) usage ;;
esac
