"""bench/run.py's regular report: per-case medians, ratios to direct and nginx (of medians and
paired per round), the targets, and the table."""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from bench.byte_cases import CaseResult, Sample, proxy_of
from bench.common import GIB
from bench.s3client import CHUNK_SIZE

S = TypeVar("S")
S_co = TypeVar("S_co", covariant=True)


class Rounds(Protocol[S_co]):
    @property
    def samples(self) -> Sequence[S_co]: ...


R = TypeVar("R", bound=Rounds[object])


def paired_median(
    results: Mapping[str, Rounds[S]], case: str, other: str, fn: Callable[[S, S], float]
) -> float | None:
    """Median over rounds of ``fn`` of the two cases' samples of one round (they ran seconds
    apart): steadier on a noisy machine than the ratio of medians."""
    a, b = results.get(case), results.get(other)
    if a is None or b is None or not a.samples or len(a.samples) != len(b.samples):
        return None
    pairs = zip(a.samples, b.samples, strict=True)
    return round(statistics.median(fn(x, y) for x, y in pairs), 3)


def measured(cases: Sequence[str], results: Mapping[str, R]) -> Iterator[tuple[str, R]]:
    """(case, its result) of the cases that ran, in order."""
    for case in cases:
        if results[case].samples:
            yield case, results[case]


def mbps_ratio(x: Sample, y: Sample) -> float:
    return x.mbps / y.mbps


def case_row(r: CaseResult, proxy: str | None) -> dict[str, Any]:
    """One case's medians over its rounds (the JSON row; the table prints some of them)."""
    gib = r.samples[0].nbytes / GIB

    def per_gib(role: str, sys_only: bool = False) -> float | None:
        if role not in r.samples[0].cpu_s:
            return None
        values = (s.sys_s[role] if sys_only else s.cpu_s[role] for s in r.samples)
        return round(statistics.median(values) / gib, 3)

    hwms = [s.shim_hwm_kib for s in r.samples if s.shim_hwm_kib is not None]
    return {
        "mbps_median": round(r.median(lambda s: s.mbps), 1),
        "mbps_all": [round(s.mbps, 1) for s in r.samples],
        "seconds_all": [round(s.seconds, 3) for s in r.samples],
        "proxy": proxy,
        "proxy_cpu_s_per_gib": per_gib(proxy) if proxy else None,
        "proxy_sys_s_per_gib": per_gib(proxy, sys_only=True) if proxy else None,
        "proxy_minflt_per_gib": (
            round(statistics.median(s.minflt[proxy] for s in r.samples) / gib) if proxy else None
        ),
        "rgw_cpu_s_per_gib": per_gib("rgw"),
        "osd_cpu_s_per_gib": per_gib("osd"),
        "client_cpu_s_per_gib": per_gib("client"),
        "s3shim_peak_rss_mib": round(max(hwms) / 1024, 1) if hwms else None,
        "verified": r.verified,
    }


def build_report(
    args: argparse.Namespace,
    cases: list[str],
    results: dict[str, CaseResult],
    meta: dict[str, Any],
) -> dict[str, Any]:
    rows = {case: case_row(r, proxy_of(case)) for case, r in measured(cases, results)}

    def paired(case: str, other: str) -> float | None:
        return paired_median(results, case, other, mbps_ratio)

    for case, row in rows.items():
        op = case.split("-")[0]
        base = rows.get(f"{op}-direct")
        ngx = rows.get(f"{op}-nginx")
        row["vs_direct"] = round(row["mbps_median"] / base["mbps_median"], 3) if base else None
        row["vs_nginx"] = round(row["mbps_median"] / ngx["mbps_median"], 3) if ngx else None
        row["vs_direct_paired"] = paired(case, f"{op}-direct") if base else None
        row["vs_nginx_paired"] = paired(case, f"{op}-nginx") if ngx else None
    plain, chk = rows.get("put-plain-s3shim"), rows.get("put-chunked-s3shim")
    chunked_ratio = chunked_paired = None
    if plain is not None and chk is not None:
        chunked_ratio = round(chk["mbps_median"] / plain["mbps_median"], 3)
        chunked_paired = paired("put-chunked-s3shim", "put-plain-s3shim")
        chk["vs_plain"] = chunked_ratio
        chk["vs_plain_paired"] = chunked_paired
    for row in rows.values():
        # What the proxy alone could move with one core (no client or store on that core).
        cpu = row["proxy_cpu_s_per_gib"]
        row["proxy_one_core_ceiling_mbps"] = round(GIB / cpu / 1e6) if cpu else None
    targets = []
    for op in ("mpu", "get"):
        shim_row = rows.get(f"{op}-s3shim")
        if shim_row and shim_row["vs_direct"] is not None:
            targets.append(
                {
                    "target": f"{op}-s3shim >= 60% of {op}-direct",
                    "value": shim_row["vs_direct"],
                    "paired": shim_row["vs_direct_paired"],
                    "met": shim_row["vs_direct"] >= 0.6,
                }
            )
    rss = [r["s3shim_peak_rss_mib"] for r in rows.values() if r["s3shim_peak_rss_mib"]]
    if rss:
        targets.append(
            {"target": "s3shim peak RSS < 150 MiB", "value": max(rss), "met": max(rss) < 150}
        )
    if chunked_ratio is not None:
        targets.append(
            {
                "target": "put-chunked-s3shim >= 70% of put-plain-s3shim",
                "value": chunked_ratio,
                "paired": chunked_paired,
                "met": chunked_ratio >= 0.7,
            }
        )
    return {
        "meta": meta,
        "args": {
            "size_mib": args.size_mib,
            "part_mib": args.part_mib,
            "repeat": args.repeat,
            "only": args.only,
        },
        "cases": rows,
        "chunked_vs_plain": chunked_ratio,
        "chunked_vs_plain_paired": chunked_paired,
        "chunked_upload": (
            f"one PutObject of {args.size_mib} MiB, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, "
            f"{CHUNK_SIZE // 1024} KiB signed chunks, signed x-amz-checksum-crc32 trailer; "
            "put-plain-s3shim is the same PutObject with UNSIGNED-PAYLOAD"
        ),
        "targets": targets,
    }


def fmt(value: float | None, spec: str) -> str:
    width = int(spec.split(".")[0] or 0)
    return "-".rjust(width) if value is None else format(value, spec)


def print_table(report: dict[str, Any]) -> None:
    head = (
        f"{'case':20s} {'MB/s':>7s} {'xdirect':>7s} {'xnginx':>7s} {'proxyCPU':>8s} "
        f"{'minflt':>8s} {'shimRSS':>7s} {'rgwCPU':>6s} {'osdCPU':>6s} {'cliCPU':>6s}"
    )
    print()
    a = report["args"]
    print(f"size {a['size_mib']} MiB, parts {a['part_mib']} MiB, {a['repeat']} interleaved rounds")
    print("MB/s = 10^6 B/s, median of rounds; *CPU = CPU-s per GiB moved, median of rounds;")
    print("minflt = proxy minor faults/GiB; shimRSS = s3shim peak RSS MiB (max over rounds)")
    print("xdirect/xnginx = ratio of the median MB/s to the same operation's direct/nginx one")
    print(head)
    print("-" * len(head))
    for case, r in report["cases"].items():
        print(
            f"{case:20s} {r['mbps_median']:7.0f} {fmt(r['vs_direct'], '7.2f')} "
            f"{fmt(r['vs_nginx'], '7.2f')} {fmt(r['proxy_cpu_s_per_gib'], '8.2f')} "
            f"{fmt(r['proxy_minflt_per_gib'], '8.0f')} {fmt(r['s3shim_peak_rss_mib'], '7.1f')} "
            f"{fmt(r['rgw_cpu_s_per_gib'], '6.2f')} {fmt(r['osd_cpu_s_per_gib'], '6.2f')} "
            f"{fmt(r['client_cpu_s_per_gib'], '6.2f')}"
        )
    if report["chunked_vs_plain"] is not None:
        chk, plain = report["cases"]["put-chunked-s3shim"], report["cases"]["put-plain-s3shim"]
        print(
            f"\nput-chunked-s3shim / put-plain-s3shim = {report['chunked_vs_plain']:.2f}, "
            f"paired per round {fmt(report['chunked_vs_plain_paired'], '.2f')}\n"
            f"  (s3shim {chk['proxy_cpu_s_per_gib']:.2f} vs {plain['proxy_cpu_s_per_gib']:.2f} "
            "CPU-s/GiB; one-core ceiling "
            f"{chk['proxy_one_core_ceiling_mbps']} vs {plain['proxy_one_core_ceiling_mbps']} MB/s)"
        )
    idle = report["meta"].get("idle_cpu_per_s")
    if idle:
        print("idle CPU-s per second: " + ", ".join(f"{k} {v}" for k, v in idle.items()))
    print("\ntargets (reported, not asserted):")
    for t in report["targets"]:
        paired = f" (paired per round: {t['paired']})" if t.get("paired") is not None else ""
        print(f"  {'MET ' if t['met'] else 'MISS'} {t['target']}: {t['value']}{paired}")
