"""bench/small.py's report: the table, the same-run ratios, what the s3shims logged and the
profile's groups."""

from __future__ import annotations

import collections
import contextlib
import json
from pathlib import Path
from typing import Any

from bench.common import tool_version
from bench.small_requests import COMPARED, FLOOR_MODES, OPS, UPSTREAMS


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
    for op in OPS:
        s, r = by.get(f"{op}-instant-s3shim"), by.get(f"{op}-instant-{COMPARED}")
        if s is not None and r is not None:
            out.append(_pair(f"{op}-instant: s3shim / {COMPARED}", s, r))
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
        "wrk": tool_version(["wrk", "-v"]),
        "ab": tool_version(["ab", "-V"]),
    }
