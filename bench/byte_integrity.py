"""bench/run.py's integrity cases: the cost of S3SHIM_VERIFY_READS, a GET of a CRC32-recorded
object through an s3shim verifying it and one that does not, beside direct and nginx."""

from __future__ import annotations

import base64
import functools
import http.client
import os
import statistics
import zlib
from collections.abc import Callable
from typing import Any

from bench.byte_cases import CaseResult, Sample, measure, verify
from bench.byte_report import case_row, fmt, mbps_ratio, measured, paired_median
from bench.common import BUCKET, GIB, MIB, log
from bench.s3client import Client, S3Error
from bench.stack import Stack

# The read-verification cost (opt-in: --integrity, or an --only word starting "integrity"):
# case -> the process whose CPU is the proxy's (None: direct). The GETs of the recorded object
# differ only in the process they pass through; two s3shims of their own serve the verify-on
# and verify-off GETs (nothing else), so neither carries the other cases' history.
INTEGRITY_PROXY: dict[str, str | None] = {
    "integrity-put-crc32": "s3shim",  # PutObject + x-amz-checksum-crc32 -> record CRC32
    "integrity-get-direct": None,
    "integrity-get-nginx": "nginx",
    "integrity-get-verify-on": "s3shim-verify-on",  # S3SHIM_VERIFY_READS=true
    "integrity-get-verify-off": "s3shim-verify-off",  # S3SHIM_VERIFY_READS=false
    "integrity-put-nosum": "s3shim",  # control: no client checksum, > 1 MiB -> no record
    "integrity-get-nosum-verify-on": "s3shim-verify-on",
}
INTEGRITY_CASES = tuple(INTEGRITY_PROXY)
INTEGRITY_RECORDED = INTEGRITY_CASES[:5]  # the cases of the recorded object
INTEGRITY_CONTROL = INTEGRITY_CASES[5:]  # the cases of the unrecorded one
INTEGRITY_SHIMS = {"s3shim-verify-on": "true", "s3shim-verify-off": "false"}
RECORD_HEADER = "x-amz-meta-s3shim-checksum"  # s3shim/integrity.py's RECORD_HEADER


PROBE_KEY = "integrity-probe"


def probe_verification(stack: Stack) -> dict[str, str]:
    """Show that the verify-on s3shim checks reads and the verify-off one does not, before
    measuring the difference: an object planted directly on RGW with a record that does not
    match its bytes (s3shim never writes one, and drops the name from every client request)
    must be cut short by the first and come whole through the second."""
    body = os.urandom(256 * 1024)
    wrong = base64.b64encode((zlib.crc32(body) ^ 1).to_bytes(4, "big")).decode()
    direct = Client(stack.rgw_port)
    direct.request(
        "PUT", f"/{BUCKET}/{PROBE_KEY}", body=body, headers={RECORD_HEADER: f"CRC32:{wrong}"}
    )
    outcome: dict[str, str] = {}
    try:
        for path, want_cut in (("s3shim-verify-on", True), ("s3shim-verify-off", False)):
            if path not in stack.extra:
                continue
            client = Client(stack.port(path))
            try:
                n = client.get_into_sink(f"/{BUCKET}/{PROBE_KEY}")
                cut, seen = n != len(body), f"{n} of {len(body)} bytes"
            except (http.client.HTTPException, OSError) as exc:
                cut, seen = True, f"cut short ({type(exc).__name__})"
            finally:
                client.close()
            if cut != want_cut:
                raise RuntimeError(
                    f"{path}: a GET of an object whose record does not match gave {seen}: "
                    f"its S3SHIM_VERIFY_READS={INTEGRITY_SHIMS[path]} is not in effect"
                )
            outcome[path] = seen
            log(f"integrity probe, mismatching record through {path}: {seen}")
    finally:
        direct.delete_object(PROBE_KEY)
        direct.close()
    return outcome


def run_integrity_round(
    stack: Stack,
    rnd: int,
    cases: list[str],
    results: dict[str, CaseResult],
    data: memoryview,
    expected: tuple[int, str],
    crc32_b64: str,
    label: str = "",
) -> None:
    """One round of the integrity cases: the recorded object (uploaded through s3shim with
    its CRC32 in a header, then read by every path), then the unrecorded control."""
    size = len(data)
    label = label or f"round {rnd + 1}"
    direct = Client(stack.rgw_port)
    uploader = Client(stack.shim_port)  # the regular s3shim: both GET s3shims only read

    def run(case: str, op: Callable[[], object]) -> None:
        role = INTEGRITY_PROXY[case]
        pids = stack.watched().groups.get(role, []) if role else []
        rss = stack.shim_pids(role)[0] if role and role.startswith("s3shim") else None
        s = measure(stack, case, size, op, rss_pid=rss, exact_pids=pids)
        results[case].samples.append(s)
        extra = ""
        if role and s.proxy_run_s is not None:
            extra = f", {role} {s.proxy_run_s / (size / GIB):.3f} CPU-s/GiB"
        log(f"{label} {case:29s} {s.mbps:8.1f} MB/s ({s.seconds:.2f} s{extra})")

    def record_of(key: str) -> str | None:
        """The record as RGW keeps it (boto3: head_object()["Metadata"]["s3shim-checksum"])."""
        _, headers, _ = direct.request("HEAD", f"/{BUCKET}/{key}")
        return headers.get(RECORD_HEADER)

    def get_op(client: Client, key: str) -> Callable[[], object]:
        def op() -> None:
            n = client.get_into_sink(f"/{BUCKET}/{key}")
            if n != size:
                raise S3Error(f"GET {key}: {n} bytes, expected {size}")

        return op

    def upload(case: str, key: str, headers: dict[str, str] | None) -> None:
        put = functools.partial(uploader.put_object, key, data, headers)
        if case in cases:
            run(case, put)
        else:
            put()  # untimed: the GETs need the object

    clients: dict[str, Client] = {}

    def client_of(case: str) -> Client:
        path = INTEGRITY_PROXY[case] or "direct"
        if path not in clients:
            clients[path] = Client(stack.port(path))
        return clients[path]

    if any(c in cases for c in INTEGRITY_RECORDED):
        key = f"integrity-crc32-{rnd}"
        crc = {"x-amz-checksum-crc32": crc32_b64, "x-amz-sdk-checksum-algorithm": "CRC32"}
        upload("integrity-put-crc32", key, crc)
        want = f"CRC32:{crc32_b64}"
        if (got := record_of(key)) != want:
            raise RuntimeError(f"{key}: record {got!r} on RGW, expected {want!r}")
        # direct and nginx rotate; verify-on and verify-off alternate, each beside a reference.
        refs = ["integrity-get-direct", "integrity-get-nginx"]
        shims = ["integrity-get-verify-on", "integrity-get-verify-off"]
        if rnd % 2:
            refs.reverse()
            shims.reverse()
        for case in (refs[0], shims[0], refs[1], shims[1]):
            if case in cases:
                run(case, get_op(client_of(case), key))
        for case in INTEGRITY_RECORDED:
            if case not in cases:
                continue
            results[case].record = want
            if not results[case].verified:
                reader = direct if case.startswith("integrity-put") else client_of(case)
                results[case].verified = verify(reader, key, expected)
        direct.delete_object(key)
        stack.gc()

    if any(c in cases for c in INTEGRITY_CONTROL):
        key = f"integrity-nosum-{rnd}"
        upload("integrity-put-nosum", key, None)
        if (got := record_of(key)) is not None:
            raise RuntimeError(f"{key}: record {got!r} on RGW for a PutObject without checksum")
        case = "integrity-get-nosum-verify-on"
        if case in cases:
            run(case, get_op(client_of(case), key))
        for case in INTEGRITY_CONTROL:
            if case not in cases:
                continue
            results[case].record = "none"
            if not results[case].verified:
                reader = direct if case.startswith("integrity-put") else client_of(case)
                results[case].verified = verify(reader, key, expected)
        direct.delete_object(key)
        stack.gc()
    for client in (*clients.values(), uploader, direct):
        client.close()


def build_integrity_report(
    cases: list[str], results: dict[str, CaseResult], size: int
) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for case, r in measured(cases, results):
        gib = r.samples[0].nbytes / GIB
        role = INTEGRITY_PROXY[case]
        row = case_row(r, role)
        row["proxy_run_s_per_gib"] = (
            round(statistics.median(s.proxy_run_s or 0.0 for s in r.samples) / gib, 3)
            if role
            else None
        )
        row["proxy_run_s_per_gib_all"] = (
            [round((s.proxy_run_s or 0.0) / gib, 3) for s in r.samples] if role else None
        )
        row["mbps_range"] = [min(row["mbps_all"]), max(row["mbps_all"])]
        row["record"] = r.record
        rows[case] = row

    def paired(case: str, other: str, fn: Callable[[Sample, Sample], float]) -> float | None:
        return paired_median(results, case, other, fn)

    for case, row in rows.items():
        if not case.startswith("integrity-get-"):
            continue
        for ref, name in (
            ("integrity-get-direct", "vs_direct"),
            ("integrity-get-nginx", "vs_nginx"),
        ):
            base = rows.get(ref)
            row[name] = round(row["mbps_median"] / base["mbps_median"], 3) if base else None
            row[f"{name}_paired"] = paired(case, ref, mbps_ratio) if base else None
    on, off = rows.get("integrity-get-verify-on"), rows.get("integrity-get-verify-off")
    verification: dict[str, Any] | None = None
    if on is not None and off is not None:
        gib = size / GIB

        def cost(x: Sample, y: Sample) -> float:
            return ((x.proxy_run_s or 0.0) - (y.proxy_run_s or 0.0)) / gib

        verification = {
            "what": "s3shim CPU-s/GiB of a full GET of a recorded object (CRC32), "
            "S3SHIM_VERIFY_READS=true minus =false; CPU from /proc/PID/task/*/schedstat",
            "on_cpu_s_per_gib": on["proxy_run_s_per_gib"],
            "off_cpu_s_per_gib": off["proxy_run_s_per_gib"],
            "cost_cpu_s_per_gib": round(on["proxy_run_s_per_gib"] - off["proxy_run_s_per_gib"], 3),
            "cost_cpu_s_per_gib_paired": paired(
                "integrity-get-verify-on", "integrity-get-verify-off", cost
            ),
            "on_ticks_cpu_s_per_gib": on["proxy_cpu_s_per_gib"],
            "off_ticks_cpu_s_per_gib": off["proxy_cpu_s_per_gib"],
            "on_vs_off_mbps": round(on["mbps_median"] / off["mbps_median"], 3),
            "on_vs_off_mbps_paired": paired(
                "integrity-get-verify-on", "integrity-get-verify-off", mbps_ratio
            ),
            "on_one_core_ceiling_mbps": round(GIB / on["proxy_run_s_per_gib"] / 1e6),
            "off_one_core_ceiling_mbps": round(GIB / off["proxy_run_s_per_gib"] / 1e6),
        }
        ctl = rows.get("integrity-get-nosum-verify-on")
        if ctl is not None:
            verification["unrecorded_on_cpu_s_per_gib"] = ctl["proxy_run_s_per_gib"]
    return {
        "description": (
            f"one PutObject of {size // MIB} MiB through s3shim with x-amz-checksum-crc32 "
            "(UNSIGNED-PAYLOAD), so s3shim records CRC32 with it (HEAD on RGW checked); GETs "
            "of it direct, through nginx, and through two s3shims of their own with "
            "S3SHIM_VERIFY_READS=true and =false (on/off alternate every round); control: "
            "the same PutObject without a checksum (no record) read through the verifying one"
        ),
        "cases": rows,
        "verification": verification,
    }


def print_integrity_table(report: dict[str, Any], probe: dict[str, str] | None) -> None:
    print(f"\nintegrity: {report['description']}")
    print(
        "MB/s = median of rounds (range); xdirect/xnginx = ratio of the median MB/s to the same "
        "object's direct/nginx GET;\nproxyCPU = CPU-s/GiB of the proxy (10 ms ticks, as above), "
        "runCPU = the same from schedstat (ns); record = what RGW keeps"
    )
    head = (
        f"{'case':29s} {'MB/s':>5s} {'(range)':>11s} {'xdirect':>7s} {'xnginx':>7s} "
        f"{'proxyCPU':>8s} {'runCPU':>6s} {'minflt':>6s} {'shimRSS':>7s} {'rgwCPU':>6s} "
        f"{'osdCPU':>6s} {'cliCPU':>6s}  record"
    )
    print(head)
    print("-" * len(head))
    for case, r in report["cases"].items():
        rng = f"({r['mbps_range'][0]:.0f}-{r['mbps_range'][1]:.0f})"
        print(
            f"{case:29s} {r['mbps_median']:5.0f} {rng:>11s} {fmt(r.get('vs_direct'), '7.2f')} "
            f"{fmt(r.get('vs_nginx'), '7.2f')} {fmt(r['proxy_cpu_s_per_gib'], '8.2f')} "
            f"{fmt(r['proxy_run_s_per_gib'], '6.3f')} {fmt(r['proxy_minflt_per_gib'], '6.0f')} "
            f"{fmt(r['s3shim_peak_rss_mib'], '7.1f')} {fmt(r['rgw_cpu_s_per_gib'], '6.2f')} "
            f"{fmt(r['osd_cpu_s_per_gib'], '6.2f')} {fmt(r['client_cpu_s_per_gib'], '6.2f')}  "
            f"{r['record'].split(':')[0]}"
        )
    v = report["verification"]
    if v is not None:
        paired_cost = v["cost_cpu_s_per_gib_paired"]
        print(
            "\nverification cost, S3SHIM_VERIFY_READS on - off (same object, same rounds):\n"
            f"  s3shim {v['on_cpu_s_per_gib']:.3f} - {v['off_cpu_s_per_gib']:.3f} = "
            f"{v['cost_cpu_s_per_gib']:+.3f} CPU-s/GiB (paired per round "
            f"{'-' if paired_cost is None else format(paired_cost, '+.3f')}); in ticks "
            f"{fmt(v['on_ticks_cpu_s_per_gib'], '.2f')} vs "
            f"{fmt(v['off_ticks_cpu_s_per_gib'], '.2f')}\n"
            f"  MB/s on / off = {v['on_vs_off_mbps']:.2f}, paired per round "
            f"{fmt(v['on_vs_off_mbps_paired'], '.2f')}; one-core ceiling "
            f"{v['on_one_core_ceiling_mbps']} vs {v['off_one_core_ceiling_mbps']} MB/s"
        )
        if "unrecorded_on_cpu_s_per_gib" in v:
            print(
                "  control, the unrecorded object through the verifying s3shim: "
                f"{v['unrecorded_on_cpu_s_per_gib']:.3f} CPU-s/GiB (nothing to verify)"
            )
    if probe:
        print(
            "probe, an object on RGW whose record does not match: "
            + "; ".join(f"{k} {v}" for k, v in probe.items())
        )
