"""bench/small.py's load generators (wrk with bench/lua/replay.lua; ab for HEAD) and one case
measured: req/s and latency from the generator, CPU per request of every process from /proc."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import BENCH, log
from bench.procfs import connections_by_process, cpu_of, host_cpu, schedstat
from bench.small_requests import Case, Rendered, check_once, render
from bench.small_stack import Upstream

LUA = BENCH / "lua" / "replay.lua"


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
    proxy0, up0, host0 = cpu_of(target.proxy_pids), cpu_of(up.pids), host_cpu()
    t0 = time.perf_counter()
    load = run_load(req, target.port, args.duration, conns, threads, req_file, sample_split)
    wall = time.perf_counter() - t0
    proxy1, up1, host1 = cpu_of(target.proxy_pids), cpu_of(up.pids), host_cpu()
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
    log(
        f"{case.name}: {result['rps']:.0f} req/s, p50 {result['p50_ms']} ms, p99 "
        f"{result['p99_ms']} ms, proxy {result['proxy_cpu_us_per_req']} us/req, "
        f"{load.tool} {result['client_cpu_us_per_req']} us/req, errors {load.errors}"
    )
    return result
