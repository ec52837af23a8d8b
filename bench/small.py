#!/usr/bin/env python3
"""Small requests: s3shim against nginx ``proxy_pass``, req/s, latency and CPU per request.

bench/run.py measures bytes (1 GiB transfers); this measures what a request costs when the
body is nothing: 1 KiB objects, 16 concurrent keep-alive connections, a C load generator.
One run starts its own stack, every port a free one:

* two upstreams: INSTANT, an nginx that serves a static 1 KiB file for GET/HEAD and answers
  PUT with 200 at once (bench/nginx-instant.conf.template), so the proxy is all that costs;
  and a real Ceph RGW (scripts/rgw.sh, memstore), so the store's cost is in the figures too;
* in front of each: s3shim (1 worker; in front of INSTANT also a 2-worker s3shim) and nginx
  proxy_pass (bench/nginx.conf.template, the byte-path bench's baseline), plus, unless
  ``--no-direct``, the load generator talking to the upstream itself;
* per upstream and operation the paths run back to back (order rotated per operation):
  ``get`` (header-signed GET of 1 KiB), ``head``, ``put`` (1 KiB, hex sha256 payload hash
  and an ``x-amz-checksum-crc32`` header, as boto3 sends it) and ``presigned`` (GET).

Each case: the request is signed once with s3shim's signer and checked once (status, body
size), then replayed by the load generator for ``--warmup`` seconds (untimed) and for
``--duration`` seconds (measured). wrk (bench/lua/replay.lua) sends GET, PUT and presigned;
HEAD goes through ApacheBench (``ab -i -k``) because wrk 4.1 waits for a HEAD response's
Content-Length worth of body that never comes. Over the measured interval, from
/proc/PID/stat: the proxy's CPU (every s3shim process; nginx master + worker), the
upstream's (instant nginx; radosgw + OSD), the machine's; the load generator's from its
rusage. Nothing is asserted; the exit status only says whether the run itself worked.

    .venv/bin/python bench/small.py                      # everything, 5 s a case (~3 min)
    .venv/bin/python bench/small.py --only instant       # INSTANT upstream only (~90 s)
    .venv/bin/python bench/small.py --profile            # + py-spy of s3shim (presigned, 10 s)
    .venv/bin/python bench/small.py --json out.json      # also write every figure as JSON

Needs wrk, ab (apache2-utils), nginx, Ceph and the venv; ``--profile`` needs
``.venv/bin/pip install py-spy``. See bench/SMALL.md for a run's figures and how to read them.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
# `python bench/small.py` puts only bench/ on sys.path: with the repo root first, bench/run.py
# is imported as bench.run, the name mypy (explicit_package_bases) and `-m bench.small` use.
sys.path.insert(0, str(BENCH.parent))

from bench import run as byte_bench  # noqa: E402  (stack, process accounting, signer setup)
from s3shim import sigv4  # noqa: E402

OBJECT_SIZE = 1024
GET_KEY = "small-1k"
PUT_KEY = "small-put"  # PUTs go to their own key: the GET object stays what was checked
BUCKET = byte_bench.BUCKET
OPS = ("get", "head", "put", "presigned")
UPSTREAMS = ("instant", "rgw")
PRESIGN_EXPIRES = 3600
LUA = BENCH / "lua" / "replay.lua"
PROFILE_CASE = "presigned-instant-s3shim"
FLOOR_MODES = ("answer", "relay-aiohttp", "relay-lean")  # bench/floor.py, INSTANT get only
PERF_SECONDS = 5


# --------------------------------------------------------------------------- the requests
@dataclass(frozen=True)
class Rendered:
    """One request exactly as the load generator sends it, every time."""

    method: str
    target: str  # path and query, as on the request line
    headers: tuple[tuple[str, str], ...]  # Host first; Content-Length when there is a body
    body: bytes

    def raw(self) -> bytes:
        head = f"{self.method} {self.target} HTTP/1.1\r\n"
        head += "".join(f"{n}: {v}\r\n" for n, v in self.headers) + "\r\n"
        return head.encode() + self.body


def render(op: str, host: str, body: bytes, amz_date: str | None = None) -> Rendered:
    """Sign ``op`` for ``host`` with s3shim's own signer (sigv4.sign_headers / its parts)."""
    amz_date = amz_date or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    creds = sigv4.Credentials(byte_bench.ACCESS_KEY, byte_bench.SECRET_KEY)
    region = byte_bench.REGION
    if op == "presigned":
        path = f"/{BUCKET}/{GET_KEY}"
        cred_scope = sigv4.scope(amz_date[:8], region)
        query = [
            ("X-Amz-Algorithm", sigv4.ALGORITHM),
            ("X-Amz-Credential", f"{creds.access_key}/{cred_scope}"),
            ("X-Amz-Date", amz_date),
            ("X-Amz-Expires", str(PRESIGN_EXPIRES)),
            ("X-Amz-SignedHeaders", "host"),
        ]
        canon = sigv4.canonical_request(
            "GET",
            sigv4.canonical_uri(path),
            sigv4.canonical_query(query),
            {"host": [host]},
            ["host"],
            sigv4.UNSIGNED_PAYLOAD,
        )
        key = sigv4.signing_key(creds.secret_key, amz_date[:8], region)
        sig = sigv4.signature(key, sigv4.string_to_sign(amz_date, cred_scope, canon))
        # The signature last, as botocore's presigner writes it.
        target = f"{path}?{sigv4.canonical_query(query)}&X-Amz-Signature={sig}"
        return Rendered("GET", target, (("Host", host),), b"")
    method = {"get": "GET", "head": "HEAD", "put": "PUT"}[op]
    path = f"/{BUCKET}/{PUT_KEY if op == 'put' else GET_KEY}"
    extra: dict[str, str] = {}
    payload_hash = sigv4.EMPTY_SHA256
    if op == "put":
        # boto3's PutObject over http at its defaults: the body's sha256 in hex and a CRC32
        # flexible checksum in a header (not a trailer: the body is not streamed).
        payload_hash = hashlib.sha256(body).hexdigest()
        crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
        extra = {"x-amz-checksum-crc32": crc, "x-amz-sdk-checksum-algorithm": "CRC32"}
    signed = sigv4.sign_headers(
        method=method,
        raw_path=path,
        query=(),
        host=host,
        headers=extra,
        payload_hash=payload_hash,
        creds=creds,
        region=region,
        amz_date=amz_date,
    )
    headers = [("Host", host)]
    headers += [(n, v) for n, v in {**extra, **signed.headers}.items() if n != "host"]
    if op == "put":
        headers.append(("Content-Length", str(len(body))))
        return Rendered(method, path, tuple(headers), body)
    return Rendered(method, path, tuple(headers), b"")


def check_once(port: int, req: Rendered, expect_body: bytes) -> dict[str, Any]:
    """Send the request once, as it will be replayed; refuse to measure a wrong answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(req.raw())
        resp = http.client.HTTPResponse(sock, method=req.method)
        resp.begin()
        body = resp.read()
        headers = {k.lower(): v for k, v in resp.getheaders()}
    want_len = str(len(expect_body)) if req.method in ("GET", "HEAD") else None
    ok = resp.status == 200 and (
        (req.method == "GET" and body == expect_body)
        or (req.method == "HEAD" and headers.get("content-length") == want_len and not body)
        or req.method == "PUT"
    )
    if not ok:
        raise RuntimeError(
            f"{req.method} {req.target} on :{port} -> {resp.status} {headers} {body[:400]!r}"
        )
    return {"status": resp.status, "response_headers": sorted(headers)}


# ------------------------------------------------------------------------------ the stack
@dataclass
class Target:
    """Where the load generator connects, and whose CPU is the proxy's there."""

    path: str  # s3shim, s3shim-2w, nginx, direct, floor-<mode> (bench/floor.py)
    port: int
    proxy_pids: list[int]


@dataclass
class Upstream:
    name: str
    port: int
    pids: list[int]  # its CPU: instant nginx master + worker, or radosgw + OSD
    stack: byte_bench.Stack  # the byte bench's: holds this upstream's nginx and s3shims
    work: Path
    targets: dict[str, Target] = field(default_factory=dict)
    instant: subprocess.Popen[bytes] | None = None
    floors: list[subprocess.Popen[bytes]] = field(default_factory=list)


def start_instant(work: Path) -> tuple[subprocess.Popen[bytes], int, list[int]]:
    """The INSTANT upstream: nginx with a static 1 KiB object, PUT answered at once."""
    prefix, root = work / "upstream", work / "www"
    prefix.mkdir(parents=True)
    (root / BUCKET).mkdir(parents=True)
    proc, port = byte_bench.launch_nginx(
        prefix, "nginx-instant.conf.template", {"@ROOT@": str(root)}, "instant nginx"
    )
    pids = [proc.pid, *byte_bench.children_of(proc.pid)]
    byte_bench.log(f"instant upstream (nginx) on 127.0.0.1:{port}, pids {pids}")
    return proc, port, pids


def build_upstream(
    name: str,
    work: Path,
    data: bytes,
    with_2w: bool,
    floors: Sequence[str],
    ups: dict[str, Upstream],
) -> None:
    """The upstream, then nginx and s3shim in front of it (bench/run.py's own starters).

    It goes into ``ups`` as soon as it runs, so that a failure further on still stops it.
    """
    work.mkdir(parents=True)
    if name == "instant":
        proc, port, pids = start_instant(work)
        (work / "www" / BUCKET / GET_KEY).write_bytes(data)
        # bench/run.py's starters take the store from a Stack; this one has no Ceph to stop.
        stack = byte_bench.Stack(state=work, rgw_port=port, rgw_pids=[], osd_pids=[])
        up = Upstream(name, port, pids, stack, work, instant=proc)
        ups[name] = up
    else:
        # memstore: 1 KiB objects; the 1 GiB floor is the OSD's, not the data's.
        stack = byte_bench.start_rgw(work / "rgw", byte_bench.free_port(), 1024 * 1024 * 1024)
        up = Upstream(name, stack.rgw_port, stack.rgw_pids + stack.osd_pids, stack, work)
        ups[name] = up
        client = byte_bench.Client(stack.rgw_port)
        client.request("PUT", f"/{BUCKET}")
        client.request("PUT", f"/{BUCKET}/{GET_KEY}", body=data)
        client.close()
    byte_bench.start_nginx(stack, work)
    byte_bench.start_shim(stack, work)
    assert stack.shim is not None
    up.targets["s3shim"] = Target("s3shim", stack.shim_port, [stack.shim.pid])
    up.targets["nginx"] = Target("nginx", stack.nginx_port, stack.nginx_pids)
    up.targets["direct"] = Target("direct", up.port, [])
    if with_2w:
        byte_bench.start_shim(stack, work, workers=2)
        up.targets["s3shim-2w"] = Target("s3shim-2w", stack.shim2_port, stack.shim2_pids)
    for mode in floors:
        proc, port = start_floor(mode, up.port, work)
        up.floors.append(proc)
        up.targets[f"floor-{mode}"] = Target(f"floor-{mode}", port, [proc.pid])


def start_floor(mode: str, upstream_port: int, work: Path) -> tuple[subprocess.Popen[bytes], int]:
    """One of bench/floor.py's servers: the framework's own cost, without s3shim's work."""
    port = byte_bench.free_port()
    out = (work / f"floor-{mode}.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.floor",
            mode,
            str(port),
            str(upstream_port),
            str(work / "www" / BUCKET / GET_KEY),
        ],
        cwd=BENCH.parent,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out.close()
    byte_bench.wait_port(port, lambda: proc.poll() is None, f"floor {mode}")
    byte_bench.log(f"floor {mode} on 127.0.0.1:{port}, pid {proc.pid}")
    return proc, port


def stop_upstream(up: Upstream, keep: bool) -> None:
    for proc in up.floors:
        proc.kill()
        proc.wait()
    if up.instant is not None and up.instant.poll() is None:
        up.instant.send_signal(signal.SIGQUIT)
        try:
            up.instant.wait(15)
        except subprocess.TimeoutExpired:
            up.instant.kill()
            up.instant.wait()
    byte_bench.stop_all(up.stack, keep, up.work)


# -------------------------------------------------------------------------- load generator
@dataclass
class LoadResult:
    tool: str
    requests: int
    seconds: float
    p50_us: float
    p90_us: float
    p99_us: float
    errors: dict[str, int]
    client_cpu_s: float
    extra: dict[str, Any] = field(default_factory=dict)


def _wait_rusage(proc: subprocess.Popen[bytes]) -> float:
    """Reap the child ourselves to get its rusage: the load generator's own CPU seconds."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return float(usage.ru_utime + usage.ru_stime)


def load_command(
    req: Rendered, port: int, seconds: float, connections: int, threads: int, req_file: Path
) -> tuple[str, list[str]]:
    url = f"http://127.0.0.1:{port}"
    secs = max(1, round(seconds))
    if req.method == "HEAD":
        # ab sends its own request line (HTTP/1.0 + Connection: Keep-Alive), its own Host
        # (host:port, what was signed), User-Agent and Accept; the signed headers are added.
        hdrs = [a for n, v in req.headers if n != "Host" for a in ("-H", f"{n}: {v}")]
        # -t stops it; -n only sizes its per-request table (it allocates one slot a request).
        n = str(200_000 * secs + 10_000)
        argv = ["ab", "-i", "-k", "-c", str(connections), "-t", str(secs), "-n", n]
        argv += ["-e", str(req_file.with_suffix(".csv")), *hdrs, url + req.target]
        return "ab", argv
    req_file.write_bytes(req.raw())
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{secs}s"]
    argv += ["--latency", "--timeout", "10s", "-s", str(LUA), url + "/"]
    return "wrk", argv


def parse_wrk(out: str) -> tuple[int, float, dict[str, float], dict[str, int]]:
    line = next((ln for ln in out.splitlines() if ln.startswith("SMALL-RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{out[-2000:]}")
    r = json.loads(line.removeprefix("SMALL-RESULT "))
    lat = {k: float(v) for k, v in r["latency_us"].items()}
    return int(r["requests"]), r["duration_us"] / 1e6, lat, dict(r["errors"])


def parse_ab(out: str, csv: Path) -> tuple[int, float, dict[str, float], dict[str, int], int]:
    def field_of(label: str, default: str | None = None) -> str:
        m = re.search(rf"^{re.escape(label)}:\s+([\d.]+)", out, re.M)
        if m is None:
            if default is None:
                raise RuntimeError(f"ab printed no '{label}':\n{out[-2000:]}")
            return default
        return m.group(1)

    pct = {}
    for line in csv.read_text().splitlines()[1:]:
        p, _, ms = line.partition(",")
        pct[int(p)] = float(ms) * 1000
    errors = {
        "failed": int(field_of("Failed requests")),
        "non_2xx": int(field_of("Non-2xx responses", "0")),
    }
    lat = {"p50": pct[50], "p90": pct[90], "p99": pct[99]}
    keepalive = int(field_of("Keep-Alive requests", "0"))
    return (
        int(field_of("Complete requests")),
        float(field_of("Time taken for tests")),
        lat,
        errors,
        keepalive,
    )


def run_load(
    req: Rendered,
    port: int,
    seconds: float,
    connections: int,
    threads: int,
    req_file: Path,
    during: Callable[[], None] | None = None,
) -> LoadResult:
    tool, argv = load_command(req, port, seconds, connections, threads, req_file)
    out_file = req_file.with_suffix(f".{tool}.out")
    with out_file.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "SMALL_REQUEST": str(req_file)},
        )
    try:
        if during is not None:
            during()
    finally:
        cpu = _wait_rusage(proc)
    text = out_file.read_text(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:8])} ... exited {proc.returncode}:\n{text[-2000:]}")
    extra: dict[str, Any] = {}
    if tool == "wrk":
        n, secs, lat, errors = parse_wrk(text)
    else:
        n, secs, lat, errors, keepalive = parse_ab(text, req_file.with_suffix(".csv"))
        extra["keepalive_requests"] = keepalive
    return LoadResult(tool, n, secs, lat["p50"], lat["p90"], lat["p99"], errors, cpu, extra)


# ------------------------------------------------------------------------------- the cases
@dataclass
class Case:
    name: str  # <op>-<upstream>-<path>
    op: str
    upstream: str
    path: str


def all_cases(direct: bool) -> list[Case]:
    """Per upstream and op, the paths back to back; s3shim/nginx order rotates per op."""
    cases = []
    for upstream in UPSTREAMS:
        for i, op in enumerate(OPS):
            paths = ["s3shim", "nginx"] if i % 2 == 0 else ["nginx", "s3shim"]
            if upstream == "instant" and op == "get":
                paths.insert(paths.index("s3shim") + 1, "s3shim-2w")
                paths += [f"floor-{mode}" for mode in FLOOR_MODES]
            if direct:
                paths.append("direct")
            cases += [Case(f"{op}-{upstream}-{p}", op, upstream, p) for p in paths]
    return cases


def select(cases: list[Case], only: Sequence[str]) -> list[Case]:
    words = [w for item in only for w in item.split(",") if w]
    if not words:
        return cases
    picked = [c for c in cases if any(w in c.name for w in words)]
    if not picked:
        raise SystemExit(f"--only {','.join(words)} matches none of {[c.name for c in cases]}")
    return picked


def set_autogroup_nice(pids: Sequence[int], nice: int) -> None:
    """Set the scheduling weight of each process's autogroup (its session) among sessions.

    With autogroups on (the kernel default here), CPU time is shared between sessions first,
    so a process's own nice only ranks it inside its session; s3shim and nginx run in
    sessions of their own (start_new_session), so on a machine shared with other tenants
    each gets one session's share however busy the rest is. This weight is what changes it.
    """
    for pid in pids:
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/autogroup").write_text(str(nice))


def autogroup_nice(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/autogroup").read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


def cpu_of(pids: Sequence[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            out[pid] = byte_bench.read_counters(pid).cpu_s
    return out


def connections_by_process(port: int, pids: Sequence[int]) -> list[int]:
    """Established client connections each s3shim process holds (the SO_REUSEPORT split)."""
    inodes = {ino for state, _, ino in byte_bench.tcp_sockets(port) if state == "01"}
    return [len(inodes & byte_bench.socket_inodes(pid)) for pid in pids]


def measure_case(
    case: Case, up: Upstream, data: bytes, args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    target = up.targets[case.path]
    host = f"127.0.0.1:{target.port}"
    req = render(case.op, host, data)
    check = check_once(target.port, req, data)
    req_file = work / f"{case.name}.req"
    conns, threads = args.connections, args.threads
    run_load(req, target.port, args.warmup, conns, threads, req_file)  # untimed
    split: list[int] = []

    def sample_split() -> None:
        # Mid-run, while all connections are open: which process accepted which.
        time.sleep(min(1.0, args.duration / 3))
        if case.path.startswith("s3shim") and len(target.proxy_pids) > 1:
            split[:] = connections_by_process(target.port, target.proxy_pids)

    wait0 = sum(schedstat(p)[1] for p in target.proxy_pids)
    proxy0, up0, host0 = cpu_of(target.proxy_pids), cpu_of(up.pids), byte_bench.host_cpu()
    t0 = time.perf_counter()
    load = run_load(req, target.port, args.duration, conns, threads, req_file, sample_split)
    wall = time.perf_counter() - t0
    proxy1, up1, host1 = cpu_of(target.proxy_pids), cpu_of(up.pids), byte_bench.host_cpu()
    wait1 = sum(schedstat(p)[1] for p in target.proxy_pids)
    n = max(load.requests, 1)
    per_proc = {pid: proxy1[pid] - proxy0[pid] for pid in proxy1 if pid in proxy0}
    proxy_s = sum(per_proc.values()) if target.proxy_pids else None
    upstream_s = sum(up1[p] - up0[p] for p in up1 if p in up0)
    result: dict[str, Any] = {
        "case": case.name,
        "op": case.op,
        "upstream": case.upstream,
        "path": case.path,
        "tool": load.tool,
        "requests": load.requests,
        "seconds": round(load.seconds, 3),
        "wall_seconds": round(wall, 3),
        "rps": round(load.requests / load.seconds, 1),
        "p50_ms": round(load.p50_us / 1000, 3),
        "p90_ms": round(load.p90_us / 1000, 3),
        "p99_ms": round(load.p99_us / 1000, 3),
        "errors": load.errors,
        "errors_total": sum(load.errors.values()),
        "proxy_cpu_us_per_req": None if proxy_s is None else round(proxy_s / n * 1e6, 1),
        "proxy_cores": None if proxy_s is None else round(proxy_s / wall, 2),
        # Runnable but not running: the proxy waited this many cores' worth for a CPU (the
        # machine is shared); req/s is bounded by it, CPU per request much less so.
        "proxy_wait_cores": round((wait1 - wait0) / wall, 2) if target.proxy_pids else None,
        "proxy_cores_per_process": [round(per_proc[p] / wall, 2) for p in per_proc],
        "connections_per_process": split,
        "upstream_cpu_us_per_req": round(upstream_s / n * 1e6, 1),
        "client_cpu_us_per_req": round(load.client_cpu_s / n * 1e6, 1),
        "client_cores": round(load.client_cpu_s / wall, 2),
        "host_busy_cores": round((host1[0] - host0[0]) / wall, 2),
        "request_bytes": len(req.raw()),
        "check": check,
        **load.extra,
    }
    byte_bench.log(
        f"{case.name}: {result['rps']:.0f} req/s, p50 {result['p50_ms']} ms, p99 "
        f"{result['p99_ms']} ms, proxy {result['proxy_cpu_us_per_req']} us/req, "
        f"{load.tool} {result['client_cpu_us_per_req']} us/req, errors {load.errors}"
    )
    return result


# -------------------------------------------------------------------------------- profile
# Categories for s3shim's py-spy samples. First, in this order, a rule claims a sample when its
# pattern occurs in any frame of the stack: these are steps that run inside the handler and
# call into aiohttp or the stdlib (logging inside _record, writes inside the client request).
PROFILE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("logging/metrics (Proxy._record)", ("_record (s3shim/proxy.py", "structlog", "prometheus")),
    ("SigV4 verify (auth.verify)", ("(s3shim/auth.py", "(s3shim/sigv2.py")),
    ("SigV4 re-sign for the store (sigv4.sign_headers)", ("sign_headers (s3shim/sigv4.py",)),
    (
        "plan/head parsing (head, classify, plan, rewrite)",
        ("(s3shim/head.py", "(s3shim/classify.py", "(s3shim/plan.py", "(s3shim/rewrite.py"),
    ),
    ("socket writes (aiohttp StreamWriter)", ("(aiohttp/http_writer.py",)),
    ("store client (s3shim/upstream.py, httptools)", ("(s3shim/upstream.py",)),
    (
        "aiohttp client request (session.request, response parsing)",
        (
            "(aiohttp/client.py",
            "(aiohttp/client_reqrep.py",
            "(aiohttp/connector.py",
            "(aiohttp/client_proto.py",
        ),
    ),
)
# What no rule claimed belongs to the innermost frame, leaf first, of a known owner: a stdlib
# or multidict call made by s3shim is s3shim's, and a leaf in the loop itself (Runner.run:
# uvloop's C code, epoll and callbacks, has no Python frame of its own) is the loop's.
GLUE = "s3shim proxy glue (proxy.py, listener.py)"
SERVER = "aiohttp server (request parsing, handler, response object)"
LOOP = "event loop (uvloop, asyncio)"
LEAF_OWNERS: tuple[tuple[str, str], ...] = (
    ("(s3shim/", GLUE),
    ("(aiohttp/", SERVER),
    ("(asyncio/", LOOP),
    ("(uvloop/", LOOP),
)


def classify_stack(frames: Sequence[str]) -> tuple[str, str | None]:
    """(category, the innermost s3shim frame when the category is the glue)."""
    for group, patterns in PROFILE_GROUPS:
        if any(p in f for f in frames for p in patterns):
            return group, None
    for frame in reversed(frames):
        for pattern, owner in LEAF_OWNERS:
            if pattern in frame:
                return owner, (frame if owner == GLUE else None)
    return "other", None


def group_profile(raw: Path) -> dict[str, Any]:
    """Share of s3shim's samples per category, and the top leaf frames, from py-spy's raw
    (collapsed) stacks."""
    groups: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    writes: collections.Counter[str] = collections.Counter()
    glue: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        frames = [f for f in stack_text.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        count = int(count_text)
        total += count
        group, glue_frame = classify_stack(frames)
        groups[group] += count
        if glue_frame is not None:
            glue[re.sub(r":\d+\)$", ")", glue_frame)] += count
        leaves[re.sub(r":\d+\)$", ")", frames[-1])] += count
        if "(aiohttp/http_writer.py" in frames[-1]:
            # Which write: the writer's entry point and who called it.
            i = len(frames) - 1
            while i > 0 and "(aiohttp/http_writer.py" in frames[i - 1]:
                i -= 1
            caller = frames[i - 1].split(" (")[0] if i > 0 else "?"
            writes[f"{caller} -> {frames[i].split(' (')[0]}"] += count
    pct = 100.0 / total if total else 0.0
    return {
        "samples": total,
        "groups": [(g, round(c * pct, 1)) for g, c in groups.most_common()],
        "top_leaf_frames": [(f, round(c * pct, 1)) for f, c in leaves.most_common(20)],
        "socket_write_callers": [(f, round(c * pct, 1)) for f, c in writes.most_common(8)],
        "glue_by_function": [(f, round(c * pct, 1)) for f, c in glue.most_common(10)],
    }


def schedstat(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of a process's main thread."""
    run_ns, wait_ns, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
    return int(run_ns) / 1e9, int(wait_ns) / 1e9


def perf_dso_split(data: Path) -> list[tuple[str, float]]:
    """On-CPU samples per binary (kernel, libpython, ...) from a perf cpu-clock recording."""
    res = subprocess.run(
        ["perf", "report", "-i", str(data), "--sort", "dso", "--stdio", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = []
    for line in res.stdout.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S.*?)\s*$", line)
        if m:
            out.append((m.group(2), float(m.group(1))))
    return out


def profile_shim(
    up: Upstream, data: bytes, args: argparse.Namespace, work: Path, out_dir: Path
) -> dict[str, Any]:
    """py-spy, then perf (when installed), on the 1-worker s3shim under the profiled case.

    py-spy counts a sample whenever the thread is runnable, and on a shared machine that
    includes the time it waits for a CPU (mostly right after a send() woke the receiver):
    schedstat over the same window says how much of it that was. perf's cpu-clock samples,
    taken only while on a CPU, give the on-CPU split by binary (kernel, interpreter, C
    extensions); it runs in a window of its own, since py-spy's pauses cost the kernel time.
    Each window is its own wrk run of the case, so each has its own req/s.
    """
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    perf = shutil.which("perf") if args.perf else None
    op = args.profile_case.split("-", 1)[0]
    target = up.targets["s3shim"]
    pid = target.proxy_pids[0]
    req = render(op, f"127.0.0.1:{target.port}", data)
    check_once(target.port, req, data)
    raw = out_dir / f"small-profile-{args.profile_case}.txt"
    perf_data = work / "perf.data"
    secs = args.profile_seconds
    window: dict[str, float] = {}

    def sampled(argv: list[str]) -> Callable[[], None]:
        def during() -> None:
            time.sleep(1.0)  # past wrk's connection set-up
            run0, wait0 = schedstat(pid)
            t0 = time.perf_counter()
            subprocess.run(
                argv,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=True,
                timeout=secs + 60,
            )
            run1, wait1 = schedstat(pid)
            wall = time.perf_counter() - t0
            window.update(
                on_cpu_cores=round((run1 - run0) / wall, 2),
                waiting_for_cpu_cores=round((wait1 - wait0) / wall, 2),
            )

        return during

    byte_bench.log(
        f"profiling s3shim (pid {pid}) for {secs} s under {args.profile_case}, its autogroup "
        f"at nice {args.profile_boost}"
    )
    summary: dict[str, Any] = {"case": args.profile_case, "autogroup_nice": args.profile_boost}
    set_autogroup_nice([pid], args.profile_boost)
    try:
        py_spy_argv = [
            *(py_spy, "record", "--pid", str(pid), "--rate", "250", "--duration", str(secs)),
            *("--format", "raw", "--output", str(raw)),
        ]
        load = run_load(
            req,
            target.port,
            secs + 2,
            args.connections,
            args.threads,
            work / "profile.req",
            sampled(py_spy_argv),
        )
        summary["rps_while_profiled"] = round(load.requests / load.seconds, 1)
        summary["schedstat"] = dict(window)
        if perf is not None:
            perf_argv = [
                *(perf, "record", "-e", "cpu-clock", "-F", "499", "-p", str(pid)),
                *("-o", str(perf_data), "--", "sleep", str(PERF_SECONDS)),
            ]
            load = run_load(
                req,
                target.port,
                PERF_SECONDS + 2,
                args.connections,
                args.threads,
                work / "perf.req",
                sampled(perf_argv),
            )
            summary["perf"] = {
                "seconds": PERF_SECONDS,
                "rps": round(load.requests / load.seconds, 1),
                "schedstat": dict(window),
                "on_cpu_by_binary": perf_dso_split(perf_data),
            }
    finally:
        set_autogroup_nice([pid], args.boost)
    summary.update(group_profile(raw))
    summary["self"] = byte_bench.summarize_profile(raw, top=20)["self"]
    sched = summary["schedstat"]
    busy = sched["on_cpu_cores"] + sched["waiting_for_cpu_cores"]
    summary["samples_waiting_for_cpu_pct"] = (
        round(100 * sched["waiting_for_cpu_cores"] / busy, 1) if busy else None
    )
    summary["raw"] = str(raw)
    return summary


# --------------------------------------------------------------------------------- report
def shim_log_summary(work: Path) -> dict[str, Any]:
    """What the s3shims logged: JSON lines per status and level, bytes per request."""
    out: dict[str, Any] = {}
    for log in sorted(work.glob("*/s3shim*.log")):
        statuses: collections.Counter[str] = collections.Counter()
        levels: collections.Counter[str] = collections.Counter()
        requests = 0
        with log.open("rb") as f:
            for line in f:
                with contextlib.suppress(ValueError):
                    rec = json.loads(line)
                    levels[str(rec.get("level"))] += 1
                    if rec.get("event") == "request":
                        requests += 1
                        statuses[str(rec.get("status"))] += 1
        size = log.stat().st_size
        out[f"{log.parent.name}/{log.name}"] = {
            "request_lines": requests,
            "statuses": dict(statuses),
            "levels": dict(levels),
            "bytes": size,
            "bytes_per_request": round(size / requests, 1) if requests else None,
        }
    return out


def _pair(label: str, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Case ``a`` over case ``b``: req/s, latency and proxy CPU per request."""
    return {
        "pair": label,
        "rps": _ratio(a["rps"], b["rps"]),
        "p50": _ratio(a["p50_ms"], b["p50_ms"]),
        "p99": _ratio(a["p99_ms"], b["p99_ms"]),
        "proxy_cpu_per_req": _ratio(a["proxy_cpu_us_per_req"], b["proxy_cpu_us_per_req"]),
    }


def ratios(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {r["case"]: r for r in results}
    out = []
    for upstream in UPSTREAMS:
        for op in OPS:
            for shim in ("s3shim", "s3shim-2w"):
                s, n = by.get(f"{op}-{upstream}-{shim}"), by.get(f"{op}-{upstream}-nginx")
                if s is not None and n is not None:
                    out.append(_pair(f"{op}-{upstream}: {shim} / nginx", s, n))
    one = by.get("get-instant-s3shim")
    for mode in FLOOR_MODES:
        f = by.get(f"get-instant-floor-{mode}")
        if one is not None and f is not None:
            out.append(_pair(f"get-instant: s3shim / floor-{mode}", one, f))
    two = by.get("get-instant-s3shim-2w")
    if one is not None and two is not None:
        out.append(_pair("get-instant: s3shim 2 workers / 1 worker", two, one))
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def _f(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_report(report: dict[str, Any]) -> None:
    cols = (
        f"{'case':<26} {'tool':>4} {'req/s':>7} {'p50ms':>7} {'p99ms':>7} {'proxy':>6} "
        f"{'pxCor':>5} {'pxWait':>6} {'upstr':>6} {'client':>6} {'clCor':>5} {'host':>5} "
        f"{'err':>4}"
    )
    print(cols)
    print("-" * len(cols))
    for r in report["cases"]:
        line = (
            f"{r['case']:<26} {r['tool']:>4} {r['rps']:>7.0f} {r['p50_ms']:>7.2f} "
            f"{r['p99_ms']:>7.2f} {_f(r['proxy_cpu_us_per_req'], '6.0f'):>6} "
            f"{_f(r['proxy_cores'], '5.2f'):>5} {_f(r['proxy_wait_cores'], '6.2f'):>6} "
            f"{r['upstream_cpu_us_per_req']:>6.0f} {r['client_cpu_us_per_req']:>6.0f} "
            f"{r['client_cores']:>5.2f} {r['host_busy_cores']:>5.2f} {r['errors_total']:>4}"
        )
        if r["connections_per_process"]:
            per = "/".join(f"{c:.2f}" for c in r["proxy_cores_per_process"])
            line += f"  conns {'+'.join(map(str, r['connections_per_process']))}, cores {per}"
        print(line)
    print(
        "\nproxy / upstr / client: CPU us per request of the proxy (every s3shim process; nginx "
        "master + worker),\nthe upstream (instant nginx; radosgw + OSD) and the load generator. "
        "pxCor / clCor / host: cores busy\n(host: the whole machine, other tenants included). "
        "pxWait: cores' worth of time the proxy\nwas runnable but waiting for a CPU."
    )
    if report["ratios"]:
        print(f"\n{'ratio (same run)':<44} {'req/s':>6} {'p50':>6} {'p99':>6} {'CPU/req':>8}")
        for q in report["ratios"]:
            print(
                f"{q['pair']:<44} {_f(q['rps'], '6.2f'):>6} {_f(q['p50'], '6.2f'):>6} "
                f"{_f(q['p99'], '6.2f'):>6} {_f(q['proxy_cpu_per_req'], '8.2f'):>8}"
            )
    logs = report["meta"].get("s3shim_logs", {})
    if logs:
        print()
    for name, s in logs.items():
        print(
            f"s3shim log {name}: {s['request_lines']} request lines, statuses {s['statuses']}, "
            f"levels {s['levels']}, {s['bytes_per_request']} B/request"
        )
    prof = report.get("profile")
    if prof:
        sched = prof["schedstat"]
        print(
            f"\npy-spy of s3shim under {prof['case']}: {prof['samples']} samples, "
            f"{prof['rps_while_profiled']:.0f} req/s while sampled; s3shim on a CPU "
            f"{sched['on_cpu_cores']} cores, waiting for one {sched['waiting_for_cpu_cores']}"
            f"\n(so ~{prof['samples_waiting_for_cpu_pct']} % of the samples are waits, counted "
            "where the process was preempted). Share of samples %:"
        )
        for g, share in prof["groups"]:
            print(f"  {share:5.1f}  {g}")
        print("s3shim proxy glue by function (innermost s3shim frame) %:")
        for frame, share in prof["glue_by_function"]:
            print(f"  {share:5.1f}  {frame}")
        print("socket writes by caller %:")
        for frame, share in prof["socket_write_callers"]:
            print(f"  {share:5.1f}  {frame}")
        print("top leaf frames %:")
        for frame, share in prof["top_leaf_frames"][:12]:
            print(f"  {share:5.1f}  {frame}")
        if prof.get("perf"):
            pf = prof["perf"]
            print(
                f"perf cpu-clock, {pf['seconds']} s without py-spy ({pf['rps']:.0f} req/s; on a "
                f"CPU {pf['schedstat']['on_cpu_cores']} cores, waiting "
                f"{pf['schedstat']['waiting_for_cpu_cores']}), on-CPU share by binary %:"
            )
            for dso, share in pf["on_cpu_by_binary"][:8]:
                print(f"  {share:5.1f}  {dso}")


def tool_versions() -> dict[str, str]:
    return {
        "wrk": byte_bench.tool_version(["wrk", "-v"]),
        "ab": byte_bench.tool_version(["ab", "-V"]),
    }


# ----------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per case (5)")
    p.add_argument("--warmup", type=float, default=1.0, help="untimed seconds before each (1)")
    p.add_argument("--connections", type=int, default=16, help="concurrent connections (16)")
    p.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        help="run only cases whose name contains one of these words (comma-separated, "
        "repeatable), e.g. instant, rgw, get, presigned, s3shim; names are "
        "<op>-<upstream>-<path>, see the table",
    )
    p.add_argument(
        "--no-direct",
        action="store_true",
        help="skip the reference cases that talk to the upstream itself",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help=f"after the cases, py-spy on s3shim under --profile-case ({PROFILE_CASE})",
    )
    p.add_argument("--profile-case", default=PROFILE_CASE, help=argparse.SUPPRESS)
    p.add_argument("--profile-seconds", type=int, default=10, help="py-spy duration (10)")
    p.add_argument(
        "--profile-boost",
        type=int,
        default=-10,
        metavar="NICE",
        help="autogroup nice of s3shim while profiled (-10): on a shared machine it would\n"
        "otherwise spend most of its runnable time waiting for a CPU, and py-spy counts\n"
        "those waits as samples where it was preempted; 0 = no change",
    )
    p.add_argument(
        "--boost",
        type=int,
        default=0,
        metavar="NICE",
        help="autogroup nice, for the whole run, of every process the bench starts and of\n"
        "its own session (the load generator's), e.g. -10 to measure as if the machine\n"
        "were ours; 0 (default) = share it as it is",
    )
    p.add_argument(
        "--no-perf",
        dest="perf",
        action="store_false",
        help="with --profile: do not also record perf cpu-clock samples (on-CPU split)",
    )
    p.add_argument("--json", type=Path, help="also write the report as JSON to this file")
    p.add_argument("--keep-state", action="store_true", help="keep the work dir (logs, requests)")
    args = p.parse_args(argv)
    if args.duration < 1 or args.warmup < 1 or args.connections < args.threads or args.threads < 1:
        p.error("need --duration, --warmup >= 1 and --connections >= --threads >= 1")
    op, _, rest = args.profile_case.partition("-")
    if op not in OPS or not rest.startswith("instant-s3shim"):
        p.error("--profile-case must be <op>-instant-s3shim")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("wrk", "ab", "nginx"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install -y wrk apache2-utils)")
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if args.profile and not Path(py_spy).exists():
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    cases = select(all_cases(not args.no_direct), args.only)
    needed = {c.upstream for c in cases} | ({"instant"} if args.profile else set())
    meta: dict[str, Any] = {**byte_bench.machine_meta(), **tool_versions()}
    meta["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    meta["git"] = subprocess.run(
        ["git", "-C", str(BENCH.parent), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    byte_bench.log(f"cases: {', '.join(c.name for c in cases)}")
    data = os.urandom(OBJECT_SIZE)
    work = Path(tempfile.mkdtemp(prefix="s3shim-small-"))
    work.chmod(0o755)  # nginx's workers (user nobody) read the instant upstream's file
    ups: dict[str, Upstream] = {}
    results: list[dict[str, Any]] = []
    report: dict[str, Any] = {"meta": meta}
    t_start = time.monotonic()
    own_nice = autogroup_nice(os.getpid())
    try:
        for name in UPSTREAMS:
            if name in needed:
                paths = {c.path for c in cases if c.upstream == name}
                floors = [m for m in FLOOR_MODES if f"floor-{m}" in paths]
                build_upstream(name, work / name, data, "s3shim-2w" in paths, floors, ups)
        meta["autogroup_nice"] = {"boost": args.boost, "bench_session_before": own_nice}
        if args.boost:
            pids = [os.getpid()]
            for up in ups.values():
                pids += up.pids + [p for t in up.targets.values() for p in t.proxy_pids]
            set_autogroup_nice(pids, args.boost)
        for up in ups.values():
            # A fresh store and first requests in every process (imports, first allocations,
            # RGW settling): 2 s of direct GETs per upstream, thrown away, before any case.
            req = render("get", f"127.0.0.1:{up.port}", data)
            run_load(req, up.port, 2, args.connections, args.threads, work / f"warm-{up.name}.req")
        meta["s3shim_idle_rss_mib"] = {
            f"{up.name}/{t.path}": [
                round(byte_bench.status_kib(p, "VmRSS") / 1024, 1) for p in t.proxy_pids
            ]
            for up in ups.values()
            for t in up.targets.values()
            if t.path.startswith("s3shim")
        }
        for case in cases:
            results.append(measure_case(case, ups[case.upstream], data, args, work))
        meta["cases_seconds"] = round(time.monotonic() - t_start, 1)
        if args.profile:
            out_dir = BENCH / "results"
            out_dir.mkdir(exist_ok=True)
            report["profile"] = profile_shim(ups["instant"], data, args, work, out_dir)
        meta["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
        for up in ups.values():
            for proc in (up.stack.shim, up.stack.shim2):
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(f"s3shim in front of {up.name} exited during the run")
        meta["s3shim_logs"] = shim_log_summary(work)
    finally:
        if args.boost:
            set_autogroup_nice([os.getpid()], own_nice or 0)
        for up in ups.values():
            stop_upstream(up, args.keep_state)
        if args.keep_state:
            byte_bench.log(f"state kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    report["cases"] = results
    report["ratios"] = ratios(results)
    meta["total_seconds"] = round(time.monotonic() - t_start, 1)
    print_report(report)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwritten: {args.json}")
    print(f"({meta['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
