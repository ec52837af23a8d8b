"""bench/small.py --profile: py-spy (then perf, when installed) on the 1-worker s3shim under
one case, its samples grouped by the step of a request they fall in."""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import log
from bench.procfs import schedstat, set_autogroup_nice
from bench.profiles import read_collapsed, summarize_profile, without_line
from bench.small_load import run_load
from bench.small_requests import check_once, render
from bench.small_stack import Upstream

PROFILE_CASE = "presigned-instant-s3shim"
PERF_SECONDS = 5


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
    for frames, count in read_collapsed(raw):
        total += count
        group, glue_frame = classify_stack(frames)
        groups[group] += count
        if glue_frame is not None:
            glue[without_line(glue_frame)] += count
        leaves[without_line(frames[-1])] += count
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

    log(
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
    summary["self"] = summarize_profile(raw, top=20)["self"]
    sched = summary["schedstat"]
    busy = sched["on_cpu_cores"] + sched["waiting_for_cpu_cores"]
    summary["samples_waiting_for_cpu_pct"] = (
        round(100 * sched["waiting_for_cpu_cores"] / busy, 1) if busy else None
    )
    summary["raw"] = str(raw)
    return summary
