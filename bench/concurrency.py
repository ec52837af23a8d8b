#!/usr/bin/env python3
"""How service bends with the number of clients: s3shim against nginx proxy_pass, same run.

In front of the INSTANT upstream (bench/small.py's: nginx serving 1 KiB from memory, PUT
answered at once), so the proxy is all that costs:

* ``get``: presigned GETs of 1 KiB from a C load generator (wrk) on 1, 16, 256 and 1,024
  concurrent keep-alive connections (``--connections``), each a fresh wrk run (so every run
  also opens its connections: a proxy that starves new connections shows it in p99);
* ``slow``: 64 uploads at once (``--slow-uploads``), each 1 MiB sent over ~4 s, while wrk
  sends presigned GETs on 16 connections: what slow clients cost the others.

For each: req/s, p50/p99 (wrk's), errors and timeouts, the proxy's CPU per request (/proc),
its peak RSS (VmHWM, reset before the case) and RSS per connection ((peak - before) / clients).
Nothing is asserted; README's "Where it bends" quotes a run.

    .venv/bin/python bench/concurrency.py                  # ~2 min
    .venv/bin/python bench/concurrency.py --connections 16,256 --duration 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# `python bench/concurrency.py` puts only bench/ on sys.path: the repo root goes first.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import log
from bench.procfs import cpu_of, reset_peak_rss, status_kib
from bench.small_load import run_load
from bench.small_requests import OBJECT_SIZE, Rendered, render
from bench.small_stack import Upstream, build_upstream, stop_upstream

PATHS = ("nginx", "s3shim")


def _rss_kib(pids: Sequence[int], key: str) -> int:
    return sum(status_kib(p, key) for p in pids)


async def _slow_upload(port: int, req: Rendered, seconds: float, pieces: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = req.raw()[: -len(req.body)] if req.body else req.raw()
        writer.write(head)
        step = -(-len(req.body) // pieces)
        for i in range(0, len(req.body), step):
            writer.write(req.body[i : i + step])
            await writer.drain()
            await asyncio.sleep(seconds / pieces)
        status_line = await reader.readline()
        return int(status_line.split()[1])
    except (OSError, asyncio.IncompleteReadError, IndexError, ValueError):
        return 0
    finally:
        writer.close()


def _slow_uploads(port: int, n: int, size: int, seconds: float, out: list[int]) -> None:
    async def all_of() -> None:
        reqs = [render("put", f"127.0.0.1:{port}", bytes([i % 256]) * size) for i in range(n)]
        out.extend(await asyncio.gather(*(_slow_upload(port, r, seconds, 64) for r in reqs)))

    asyncio.run(all_of())


def measure(
    up: Upstream,
    path: str,
    connections: int,
    args: argparse.Namespace,
    work: Path,
    slow: int = 0,
) -> dict[str, Any]:
    target = up.targets[path]
    pids = target.proxy_pids
    req = render("presigned", f"127.0.0.1:{target.port}", b"")
    threads = min(2, connections)
    req_file = work / f"{path}-{connections}-{slow}.req"
    if args.warmup > 0:
        run_load(req, target.port, args.warmup, connections, threads, req_file)
    for p in pids:
        reset_peak_rss(p)
    before = _rss_kib(pids, "VmRSS")
    cpu0 = sum(cpu_of(pids).values())
    statuses: list[int] = []
    uploader: threading.Thread | None = None
    if slow:
        uploader = threading.Thread(
            target=_slow_uploads,
            args=(target.port, slow, args.upload_kib * 1024, args.duration * 0.8, statuses),
        )

    def during() -> None:
        if uploader is not None:
            uploader.start()

    res = run_load(req, target.port, args.duration, connections, threads, req_file, during)
    if uploader is not None:
        uploader.join()
    cpu = sum(cpu_of(pids).values()) - cpu0
    peak = _rss_kib(pids, "VmHWM")
    clients = connections + slow
    row = {
        "path": path,
        "connections": connections,
        "slow_uploads": slow,
        "req_s": res.requests / res.seconds,
        "p50_ms": res.p50_us / 1000,
        "p99_ms": res.p99_us / 1000,
        "errors": {k: v for k, v in res.errors.items() if v},
        "cpu_us_per_req": cpu / max(1, res.requests) * 1e6,
        "rss_before_mib": before / 1024,
        "rss_peak_mib": peak / 1024,
        "rss_per_client_kib": max(0, peak - before) / clients,
    }
    if slow:
        row["upload_statuses"] = {str(s): statuses.count(s) for s in sorted(set(statuses))}
    log(
        f"{path} c={connections} slow={slow}: {row['req_s']:.0f} req/s, p50 {row['p50_ms']:.1f}"
        f" ms, p99 {row['p99_ms']:.1f} ms, errors {row['errors']}, peak RSS"
        f" {row['rss_peak_mib']:.0f} MiB"
    )
    return row


def print_report(rows: list[dict[str, Any]]) -> None:
    print(
        f"{'case':<26}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'p99/p50':>8}{'CPU us':>8}"
        f"{'RSS MiB':>9}{'KiB/cl':>8}  errors"
    )
    for r in rows:
        name = f"{r['path']} c={r['connections']}" + (
            f" +{r['slow_uploads']} slow" if r["slow_uploads"] else ""
        )
        extra = f" uploads {r['upload_statuses']}" if "upload_statuses" in r else ""
        print(
            f"{name:<26}{r['req_s']:>8.0f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}"
            f"{r['p99_ms'] / max(r['p50_ms'], 1e-9):>8.1f}{r['cpu_us_per_req']:>8.0f}"
            f"{r['rss_peak_mib']:>9.0f}{r['rss_per_client_kib']:>8.1f}  {r['errors'] or '-'}{extra}"
        )
    print("\nratio s3shim / nginx (same run)      req/s   p99   RSS peak")
    by = {(r["path"], r["connections"], r["slow_uploads"]): r for r in rows}
    for (path, c, s), r in by.items():
        base = by.get(("nginx", c, s))
        if path != "s3shim" or base is None:
            continue
        label = f"c={c}" + (f" +{s} slow" if s else "")
        print(
            f"  {label:<32}{r['req_s'] / base['req_s']:>7.2f}{r['p99_ms'] / base['p99_ms']:>7.1f}"
            f"{r['rss_peak_mib'] / base['rss_peak_mib']:>9.1f}"
        )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--connections", default="1,16,256,1024", help="comma-separated (1,16,256,1024)")
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per case (5)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of load before each (1)")
    p.add_argument("--slow-uploads", type=int, default=64, help="uploads at once (64; 0: skip)")
    p.add_argument("--upload-kib", type=int, default=1024, help="size of each slow upload (1024)")
    p.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    counts = [int(c) for c in args.connections.split(",") if c.strip()]
    work = Path(tempfile.mkdtemp(prefix="s3shim-concurrency-"))
    work.chmod(0o755)  # nginx's workers (user nobody) read the instant upstream's file
    ups: dict[str, Upstream] = {}
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        build_upstream("instant", work / "instant", b"x" * OBJECT_SIZE, False, [], ups)
        up = ups["instant"]
        for c in counts:
            for path in PATHS:
                rows.append(measure(up, path, c, args, work))
        if args.slow_uploads:
            for path in PATHS:
                rows.append(measure(up, path, 16, args, work, slow=args.slow_uploads))
    finally:
        for u in ups.values():
            stop_upstream(u, keep=False)
    print_report(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(f"({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
