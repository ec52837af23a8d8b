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
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# `python bench/small.py` puts only bench/ on sys.path: with the repo root first, this bench's
# modules are bench.*, the names mypy (explicit_package_bases) and `-m bench.small` use.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BENCH, log, machine_meta
from bench.procfs import autogroup_nice, set_autogroup_nice, status_kib
from bench.small_load import measure_case, run_load
from bench.small_owners import owners, print_owners, pure_steps
from bench.small_profile import PROFILE_CASE, profile_shim
from bench.small_report import print_report, ratios, shim_log_summary, tool_versions
from bench.small_requests import COMPARED, FLOOR_MODES, UPSTREAMS, all_cases, select

# bench/perrequest.py reads these as bench.small's.
from bench.small_requests import OBJECT_SIZE as OBJECT_SIZE
from bench.small_requests import OPS as OPS
from bench.small_requests import Rendered as Rendered
from bench.small_requests import render as render
from bench.small_stack import Upstream, build_upstream, stop_upstream


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
    p.add_argument(
        "--compare",
        metavar="REV",
        help="also run s3shim at git revision REV (a worktree) on INSTANT beside this checkout's, "
        "each op's two cases seconds apart, and print their ratios",
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


def git_describe(repo: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
    ).stdout.strip()


def compared_checkout(rev: str, work: Path) -> Path:
    """A detached worktree of ``rev`` under the work dir: its s3shim is the one compared."""
    path = work / "compared"
    subprocess.run(
        ["git", "-C", str(BENCH.parent), "worktree", "add", "--detach", str(path), rev],
        check=True,
        capture_output=True,
    )
    log(f"compared: {rev} ({git_describe(path)}) in {path}")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("wrk", "ab", "nginx"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install -y wrk apache2-utils)")
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if args.profile and not Path(py_spy).exists():
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    cases = select(all_cases(not args.no_direct, args.compare is not None), args.only)
    needed = {c.upstream for c in cases} | ({"instant"} if args.profile else set())
    meta: dict[str, Any] = {**machine_meta(), **tool_versions()}
    meta["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    meta["git"] = git_describe(BENCH.parent)
    log(f"cases: {', '.join(c.name for c in cases)}")
    data = os.urandom(OBJECT_SIZE)
    work = Path(tempfile.mkdtemp(prefix="s3shim-small-"))
    work.chmod(0o755)  # nginx's workers (user nobody) read the instant upstream's file
    ups: dict[str, Upstream] = {}
    compared = compared_checkout(args.compare, work) if args.compare else None
    if compared is not None:
        meta["compare"] = {"rev": args.compare, "git": git_describe(compared)}
    results: list[dict[str, Any]] = []
    report: dict[str, Any] = {"meta": meta}
    t_start = time.monotonic()
    own_nice = autogroup_nice(os.getpid())
    try:
        for name in UPSTREAMS:
            if name in needed:
                paths = {c.path for c in cases if c.upstream == name}
                floors = [m for m in FLOOR_MODES if f"floor-{m}" in paths]
                build_upstream(
                    name,
                    work / name,
                    data,
                    "s3shim-2w" in paths,
                    floors,
                    ups,
                    compared if COMPARED in paths else None,
                )
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
            f"{up.name}/{t.path}": [round(status_kib(p, "VmRSS") / 1024, 1) for p in t.proxy_pids]
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
        if compared is not None:
            subprocess.run(
                ["git", "-C", str(BENCH.parent), "worktree", "remove", "--force", str(compared)],
                check=False,
            )
        if args.keep_state:
            log(f"state kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    report["cases"] = results
    report["ratios"] = ratios(results)
    if any(r["case"].endswith("-instant-s3shim") for r in results):
        report["owners"] = owners(results, pure_steps())
    meta["total_seconds"] = round(time.monotonic() - t_start, 1)
    print_report(report)
    print_owners(report.get("owners", []))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwritten: {args.json}")
    print(f"({meta['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
