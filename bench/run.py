#!/usr/bin/env python3
"""Throughput, CPU and memory of s3shim against a direct RGW and an nginx pass-through proxy.

One run starts its own Ceph RGW (scripts/rgw.sh, in-memory OSD), nginx in front of it (the
baseline proxy, bench/nginx.conf.template) and s3shim (a subprocess, as deployed), then
measures, interleaved per round:

* ``mpu-<path>``: a multipart upload of ``--size-mib`` in ``--part-mib`` parts, sequential,
  one connection (one large file), initiate to complete;
* ``get-<path>``: a GET of the whole object into a sink that reads every byte;
* ``put-plain-s3shim`` / ``put-chunked-s3shim``: one PutObject of the same size through
  s3shim, plain (UNSIGNED-PAYLOAD) and aws-chunked (STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER,
  64 KiB signed chunks, CRC32 trailer), pre-framed in memory before the clock starts.

``<path>`` is ``direct`` (the client talks to RGW), ``nginx`` or ``s3shim``. Per case it
samples the CPU time and minor faults of every process (/proc/PID/stat) and s3shim's peak RSS
(VmHWM, reset before each case), prints a table and writes bench/results/latest.json.

Opt-in, after those rounds: the workers comparison (``--workers-compare``, or alone with
``--only workers``). ``workers-{put,get}-<path>`` with ``<path>`` ``direct``, ``s3shim-1w``
(S3SHIM_WORKERS=1) and ``s3shim-2w`` (S3SHIM_WORKERS=2, a second s3shim): 4 concurrent
UploadPart of 64 MiB, or 4 concurrent GETs of one 256 MiB object, each on a new connection;
aggregate MB/s, CPU summed over every s3shim process, peak RSS per process, and how many
connections each process accepted.

Opt-in, interleaved with the rounds: the read-verification cost (``--integrity``, or alone
with ``--only integrity``). ``integrity-put-crc32``: one PutObject of ``--size-mib`` through
s3shim with ``x-amz-checksum-crc32``, so that s3shim records ``CRC32:<b64>`` with it (checked by
a HEAD on RGW); ``integrity-get-<path>``: GETs of that object direct, through nginx, through an
s3shim with S3SHIM_VERIFY_READS=true (``verify-on``) and one with =false (``verify-off``);
the control ``integrity-put-nosum`` / ``integrity-get-nosum-verify-on``: the same without a
client checksum (no record), read through the verifying s3shim.

    .venv/bin/python bench/run.py                          # 1 GiB, 64 MiB parts, 3 rounds
    .venv/bin/python bench/run.py --size-mib 256 --repeat 1   # quick
    .venv/bin/python bench/run.py --only s3shim --profile     # + py-spy profile of s3shim
    .venv/bin/python bench/run.py --only workers              # workers comparison (~70 s)
    .venv/bin/python bench/run.py --only integrity            # read-verification cost

See bench/README.md for the columns and the traps this avoids.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

# `python bench/run.py` puts only bench/ on sys.path: the repo root goes first, so that the
# bench's modules are bench.* (as mypy and `-m` name them) and s3shim is importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.byte_cases import ALL_CASES, PATHS, WARMUP_SIZE, CaseResult, idle_cpu, run_round
from bench.byte_integrity import (
    INTEGRITY_CASES,
    INTEGRITY_PROXY,
    INTEGRITY_SHIMS,
    build_integrity_report,
    print_integrity_table,
    probe_verification,
    run_integrity_round,
)
from bench.byte_report import build_report, print_table
from bench.byte_workers import (
    GET_KEY,
    WORKER_CASES,
    WorkersConfig,
    WorkersResult,
    build_workers_report,
    print_workers_table,
    run_workers_round,
    worker_path,
)
from bench.common import ACCESS_KEY as ACCESS_KEY  # bench/perrequest.py reads these two here
from bench.common import BENCH, BUCKET, GIB, MIB, free_port, log, machine_meta
from bench.common import SECRET_KEY as SECRET_KEY
from bench.procfs import status_kib
from bench.profiles import py_spy_profiler, summarize_profile
from bench.s3client import Client
from bench.stack import Stack, start_nginx, start_rgw, start_shim, stop_all


def select_cases(
    only: Sequence[str], workers_compare: bool = False, integrity: bool = False
) -> tuple[list[str], list[str], list[str]]:
    """(regular cases, workers cases, integrity cases). Words starting with "workers" or
    "integrity" pick from those groups (and no regular cases); the others pick regular cases;
    --workers-compare and --integrity add every case of their group."""
    words = [w for item in only for w in item.split(",") if w]
    wwords = [w for w in words if w.startswith("workers")]
    iwords = [w for w in words if w.startswith("integrity")]
    rwords = [w for w in words if not w.startswith(("workers", "integrity"))]
    if not words:
        regular = list(ALL_CASES)
    else:
        regular = [c for c in ALL_CASES if any(w in c for w in rwords)]
    if workers_compare:
        workers = list(WORKER_CASES)
    else:
        workers = [c for c in WORKER_CASES if any(w in c for w in wwords)]
    if integrity:
        integ = list(INTEGRITY_CASES)
    else:
        integ = [c for c in INTEGRITY_CASES if any(w in c for w in iwords)]
    if words and not regular and not workers and not integ:
        every = ALL_CASES + WORKER_CASES + INTEGRITY_CASES
        raise SystemExit(f"--only {','.join(words)} matches none of {', '.join(every)}")
    return regular, workers, integ


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size-mib", type=int, default=1024, help="object size (default 1024)")
    p.add_argument("--part-mib", type=int, default=64, help="multipart part size (default 64)")
    p.add_argument("--repeat", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        help="run only cases whose name contains one of these words (comma-separated, "
        f"repeatable); cases: {', '.join(ALL_CASES)}; words starting with 'workers' pick "
        "from the workers comparison's cases instead (--only workers: it alone), words "
        "starting with 'integrity' from the integrity cases (--only integrity: them alone)",
    )
    p.add_argument(
        "--integrity",
        action="store_true",
        help="add the integrity cases (read verification on vs off) to every round: "
        + ", ".join(INTEGRITY_CASES),
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="after the timed rounds, one more round with py-spy attached to s3shim; "
        "collapsed stacks in bench/results/profile-<case>.txt",
    )
    g = p.add_argument_group(
        "workers comparison (opt-in)",
        "concurrent streams on new connections against RGW directly and through s3shim with "
        "S3SHIM_WORKERS=1 and =2, interleaved; cases: " + ", ".join(WORKER_CASES),
    )
    g.add_argument(
        "--workers-compare",
        action="store_true",
        help="add the workers comparison after the regular cases (alone: --only workers)",
    )
    g.add_argument("--workers-streams", type=int, default=4, help="concurrent streams (4)")
    g.add_argument("--workers-get-mib", type=int, default=256, help="object each GET reads (256)")
    g.add_argument(
        "--workers-put-mib", type=int, default=64, help="part each upload stream sends (64)"
    )
    g.add_argument(
        "--workers-repeat",
        type=int,
        default=9,
        help="interleaved rounds (9: every path in every position of the order 3 times)",
    )
    p.add_argument("--output", type=Path, default=BENCH / "results" / "latest.json")
    p.add_argument("--keep-state", action="store_true", help="keep the work dir (logs)")
    args = p.parse_args(argv)
    if args.size_mib < args.part_mib or args.part_mib < 5 or args.repeat < 1:
        p.error("need --size-mib >= --part-mib >= 5 and --repeat >= 1")
    if (
        args.workers_streams < 1
        or args.workers_repeat < 1
        or args.workers_get_mib < 1
        or args.workers_put_mib < 5
    ):
        p.error("need --workers-streams, --workers-repeat, --workers-get-mib >= 1, put >= 5")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cases, wcases, icases = select_cases(args.only, args.workers_compare, args.integrity)
    need = {p for p in PATHS if any(c.endswith(f"-{p}") for c in cases)}
    need |= {worker_path(c) for c in wcases}
    need |= {p for c in icases if (p := INTEGRITY_PROXY[c]) is not None}
    if icases:
        need.add("s3shim")  # the integrity objects are uploaded through the regular s3shim
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if args.profile and not Path(py_spy).exists():
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    size = args.size_mib * MIB if cases or icases else 0
    wcfg = WorkersConfig(
        streams=args.workers_streams,
        get_bytes=args.workers_get_mib * MIB,
        put_bytes=args.workers_put_mib * MIB,
        repeat=args.workers_repeat,
    )
    out_dir = args.output.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = machine_meta()
    log(f"cases: {', '.join(cases + icases + wcases)}")

    total = max([size, *((wcfg.get_bytes, wcfg.put_total) if wcases else ())])
    log(f"generating {total // MIB} MiB of random data")
    all_data = memoryview(os.urandom(total))
    data = all_data[:size]
    expected = (size, hashlib.sha256(data).hexdigest()) if cases or icases else (0, "")
    crc32_b64 = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode() if icases else ""

    work = Path(tempfile.mkdtemp(prefix="s3shim-bench-"))
    stack: Stack | None = None
    results = {c: CaseResult(c) for c in cases}
    wresults = {c: WorkersResult(c) for c in wcases}
    iresults = {c: CaseResult(c) for c in icases}
    probe: dict[str, str] | None = None
    t_start = time.monotonic()
    try:
        # One object lives at a time (deleted and garbage-collected after each case); the
        # margin covers RGW's multipart bookkeeping and the OSD's 95 % full ratio. The workers
        # comparison keeps its GET object and one upload.
        memstore = max(
            2 * GIB,
            2 * size + GIB,
            (wcfg.get_bytes + wcfg.put_total + GIB) if wcases else 0,
        )
        stack = start_rgw(work / "rgw", free_port(), memstore)
        if "nginx" in need:
            start_nginx(stack, work)
        if need & {"s3shim", "s3shim-1w"} or any(c.startswith("put-") for c in cases):
            start_shim(stack, work)
        if "s3shim-2w" in need:
            start_shim(stack, work, workers=2)
        for name, verify_reads in INTEGRITY_SHIMS.items():
            if name in need:
                start_shim(stack, work, name=name, env_extra={"S3SHIM_VERIFY_READS": verify_reads})
        assert stack.shim is None or stack.shim.pid
        Client(stack.rgw_port).request("PUT", f"/{BUCKET}")
        if stack.shim is not None:
            meta["s3shim_idle_rss_mib"] = round(status_kib(stack.shim.pid, "VmRSS") / 1024, 1)
        # Warm-up, untimed: a fresh cluster is still settling (placement groups, first
        # allocations in the memstore), and every process's first request pays for imports
        # and connection set-up. Smaller objects, same code paths, results thrown away.
        if cases or icases:
            warm = data[: min(size, WARMUP_SIZE)]
            warm_expected = (len(warm), hashlib.sha256(warm).hexdigest())
            if cases:
                warm_results = {c: CaseResult(c) for c in cases}
                part = min(args.part_mib * MIB, len(warm))
                run_round(stack, 0, cases, warm_results, warm, warm_expected, part, label="warm-up")
            if icases:
                if stack.extra:
                    probe = probe_verification(stack)
                    meta["integrity_probe"] = probe
                warm_crc = base64.b64encode(zlib.crc32(warm).to_bytes(4, "big")).decode()
                warm_i = {c: CaseResult(c) for c in icases}
                run_integrity_round(
                    stack, 0, icases, warm_i, warm, warm_expected, warm_crc, label="warm-up"
                )
            meta["idle_cpu_per_s"] = idle_cpu(stack)
            for rnd in range(args.repeat):
                if cases:
                    run_round(stack, rnd, cases, results, data, expected, args.part_mib * MIB)
                if icases:
                    run_integrity_round(stack, rnd, icases, iresults, data, expected, crc32_b64)
            meta["timed_seconds"] = round(time.monotonic() - t_start, 1)
        if wcases:
            # After the regular rounds, so that they run exactly as without the comparison
            # (its concurrent streams leave the shared 1-worker s3shim with a larger heap).
            t_workers = time.monotonic()
            log(f"workers comparison: uploading its {args.workers_get_mib} MiB GET object")
            Client(stack.rgw_port).multipart_upload(
                GET_KEY, all_data[: wcfg.get_bytes], min(64 * MIB, wcfg.get_bytes)
            )
            # Full size: the forked worker's first requests pay for its first allocations too.
            warm_w = {c: WorkersResult(c) for c in wcases}
            run_workers_round(stack, 0, wcases, warm_w, all_data, wcfg, label="workers warm-up")
            if stack.shim2_pids:
                meta["s3shim_2w_idle_rss_mib"] = [
                    round(status_kib(p, "VmRSS") / 1024, 1) for p in stack.shim2_pids
                ]
            if not cases and not icases:
                meta["idle_cpu_per_s"] = idle_cpu(stack)
            for rnd in range(wcfg.repeat):
                run_workers_round(stack, rnd, wcases, wresults, all_data, wcfg)
            meta["workers_seconds"] = round(time.monotonic() - t_workers, 1)
        if args.profile and cases:
            log("profiling round (untimed, py-spy attached to s3shim)")
            profiler = py_spy_profiler(stack, out_dir, py_spy)
            run_round(stack, 0, cases, results, data, expected, args.part_mib * MIB, profiler)
        meta["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
        for proc in (stack.shim, stack.shim2, *(e.proc for e in stack.extra.values())):
            if proc is not None and proc.poll() is not None:
                raise RuntimeError("s3shim exited during the run")
    finally:
        stop_all(stack, args.keep_state, work)

    report = build_report(args, cases, results, meta)
    if icases:
        report["integrity"] = build_integrity_report(icases, iresults, size)
    if wcases:
        report["workers"] = build_workers_report(wcases, wresults, wcfg)
    if args.profile:
        report["profiles"] = {}
        for case in cases:
            raw = out_dir / f"profile-{case}.txt"
            if raw.exists():
                report["profiles"][case] = summarize_profile(raw)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    if cases:
        print_table(report)
    if icases:
        print_integrity_table(report["integrity"], probe)
    if wcases:
        print_workers_table(report["workers"])
    if (icases or wcases) and not cases:
        idle = report["meta"].get("idle_cpu_per_s")
        print("idle CPU-s per second: " + ", ".join(f"{k} {v}" for k, v in idle.items()))
        print(
            "load average: "
            + " -> ".join(" ".join(meta[k]) for k in ("loadavg_start", "loadavg_end") if k in meta)
        )
    for case, prof in report.get("profiles", {}).items():
        print(f"\npy-spy {case} ({prof['samples']} samples), self time %:")
        for frame, share in prof["self"][:10]:
            print(f"  {share:5.1f}  {frame}")
    print(f"\nwritten: {args.output} ({time.monotonic() - t_start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
