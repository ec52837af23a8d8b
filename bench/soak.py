"""Soak: N randomized, concurrent operations through s3shim to a real Ceph RGW, with faults.

Every operation writes (or reads) a fresh key through s3shim, then this reads the store
**directly** (boto3 to RGW, never through s3shim) and classifies what happened:

==============  ===========================================================================
IDENTICAL       acknowledged (2xx) and the store holds exactly the bytes sent
ABSENT          refused or cut, and the store holds nothing (or the earlier good version)
READ-OK         a read through s3shim returned exactly the stored bytes
READ-CUT        a read broken by an injected fault, and the client saw it broken
LOST            acknowledged, but the store lacks the object (or kept the earlier version),
                or an earlier acknowledged version vanished
CORRUPT         the store (or a complete-looking read) holds other bytes
HALF-STORED     refused or cut, but the new object (or a refused part) exists
WRONG-STATUS    the answer is wrong: a good request refused, a forged one not 403, a wrong
                checksum not BadDigest, a vouched checksum that is not the data's
ERROR           the soak itself failed on this operation (a harness bug, or the store)
==============  ===========================================================================

Operations: PutObject (boto3 defaults over http, i.e. a CRC32 header; hand-signed plain
UNSIGNED-PAYLOAD and hex-sha256 bodies; aws-chunked STREAMING-AWS4-HMAC-SHA256-PAYLOAD,
-PAYLOAD-TRAILER and STREAMING-UNSIGNED-PAYLOAD-TRAILER, with Content-Length or HTTP chunked
transfer coding), multipart uploads (boto3 and hand-framed parts), Range GETs, and overwrites
of an existing good version. Faults: client cut mid-body, store connection reset mid-body
(request or response, by bench/faultrelay.py between s3shim and RGW), slow client, slow store,
wrong checksums, wrong sha256, forged signatures and SIGTERM of s3shim mid-upload (a new
s3shim is started at once; the old one drains).

    .venv/bin/python -m bench.soak --ops 10000 --seed 1 --json bench/results/soak.json

Exit status: 0 clean; 1 any LOST, CORRUPT or HALF-STORED; 3 WRONG-STATUS (and nothing
worse); 4 the run is not complete (deadline, ERROR). bench/SOAK.md explains the rest.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.faultrelay import running_relay
from bench.soak_plan import (
    FAULT_KINDS,
    FRAMINGS,
    MIB,
    PART_MIN,
    Plan,
    checksum,
    checksum_b64,
    plan_op,
)
from bench.soak_reads import Reads
from bench.soak_shim import ShimRunner
from bench.soak_state import Config, Outcome, Summary
from bench.soak_verdicts import (
    CLASSES,
    COMPLETE,
    DEFECTS,
    FINDINGS,
    RANK,
    Digest,
    Expect,
    classify_read,
    classify_write,
    expectation,
    judge_leftover,
    worst,
)
from bench.soak_wire import HTTP_TIMEOUT
from bench.soak_writes import Writes
from bench.stack import rgw_gc, rgw_state_for
from testkit.backends import Store, start_rgw

# What tests/e2e/test_soak_smoke.py (and a reader) uses as bench.soak's.
__all__ = [
    "COMPLETE",
    "DEFECTS",
    "FAULT_KINDS",
    "FRAMINGS",
    "MIB",
    "PART_MIN",
    "Config",
    "Digest",
    "Expect",
    "Summary",
    "checksum",
    "checksum_b64",
    "classify_read",
    "classify_write",
    "expectation",
    "judge_leftover",
    "main",
    "plan_op",
    "rgw_state_for",
    "run",
    "table",
    "trail_lines",
    "worst",
]


class Soak(Writes, Reads):
    # -- the run ----------------------------------------------------------------------
    def run(self) -> Summary:
        self.direct().create_bucket(Bucket=self.bucket)
        host, port = urlsplit(self.store.endpoint).hostname, urlsplit(self.store.endpoint).port
        assert host is not None and port is not None
        env = {"S3SHIM_SHUTDOWN_GRACE_SECONDS": str(int(self.cfg.grace))}
        with (
            running_relay(host, port) as relay,
            ShimRunner(relay.endpoint, self.store, self.workdir / "shim", env) as runner,
        ):
            self.relay, self.runner = relay, runner
            threads = [
                threading.Thread(target=self._worker, name=f"soak-{i}", daemon=True)
                for i in range(max(1, min(self.cfg.workers, len(self.indices))))
            ]
            side = [
                threading.Thread(target=self._progress, daemon=True),
                threading.Thread(target=self._gc_loop, daemon=True),
            ]
            for t in threads + side:
                t.start()
            for t in threads:
                # Workers stop taking operations at the deadline; one in flight is bounded
                # by its requests' timeouts.
                t.join(self.cfg.deadline + 15 * HTTP_TIMEOUT)
            self.stop.set()
            for t in side:
                t.join(5)
            stray = self._final_sweep()
        return self._summary(stray)

    def _take(self) -> int | None:
        with self.lock:
            if self.next_index >= len(self.indices):
                return None
            if time.monotonic() - self.started > self.cfg.deadline:
                return None
            i = self.indices[self.next_index]
            self.next_index += 1
            return i

    def _worker(self) -> None:
        while (index := self._take()) is not None:
            plan = plan_op(self.cfg.seed, index, self.cfg.max_size, self.cfg.faults)
            t0 = time.monotonic()
            trail = self.start_trail()
            try:
                out = self._run_op(plan)
            except Exception:  # the harness (or the store) failed: count it, never hide it
                out = Outcome.of(plan, ("ERROR", traceback.format_exc(limit=6)[-1500:]))
            out.seconds = round(time.monotonic() - t0, 3)
            out.trail = trail
            with self.lock:
                self.outcomes.append(out)
            if out.cls in FINDINGS and self.cfg.progress:
                # At once, not only in the final table: a long run may be worth stopping.
                last = (out.detail.strip().splitlines() or [""])[-1]
                print(
                    f"\n[soak] op {out.index} {out.kind}/{out.fault}/{out.framing} "
                    f"{out.size} B: {out.cls} {last}",
                    file=sys.stderr,
                    flush=True,
                )

    def _run_op(self, plan: Plan) -> Outcome:
        if plan.kind == "get":
            return self._op_get(plan)
        if plan.kind == "multipart":
            return self._op_multipart(plan)
        return self._op_put(plan)

    # -- side threads and the end -----------------------------------------------------
    def _gc_loop(self) -> None:
        while not self.stop.is_set():
            if not self.gc_wanted.wait(0.5):
                continue
            self.gc_wanted.clear()
            if self.rgw_state is not None:
                rgw_gc(self.rgw_state, check=False)

    def _progress(self) -> None:
        tty = sys.stderr.isatty()
        last_line = 0.0
        while not self.stop.wait(1.0 if tty else 0.5):
            if not self.cfg.progress:
                continue
            if not tty and time.monotonic() - last_line < 10:
                continue
            last_line = time.monotonic()
            line = self._progress_line()
            print(
                ("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True
            )
        if self.cfg.progress:
            print(("\r" if tty else "") + self._progress_line(), file=sys.stderr, flush=True)

    def _progress_line(self) -> str:
        with self.lock:
            done = len(self.outcomes)
            counts = Counter(o.cls for o in self.outcomes)
        total = len(self.indices)
        width = 30
        filled = width * done // max(1, total)
        elapsed = time.monotonic() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else 0.0
        shown = " ".join(
            f"{c}={counts.get(c, 0)}"
            for c in CLASSES
            if counts.get(c, 0) or c in DEFECTS or c == "WRONG-STATUS"
        )
        return (
            f"[soak] {done}/{total} [{'#' * filled}{'.' * (width - filled)}] "
            f"{rate:.1f} op/s eta {eta:.0f}s  {shown}"
        )

    def _final_sweep(self) -> list[tuple[str, Digest]]:
        """What is still in the bucket: every operation removed its key after checking it,
        so each object here was committed after that check (or left by an operation that
        failed). Read (to judge by its bytes) and removed."""
        time.sleep(1.0)
        keys: list[str] = []
        paginator = self.direct().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket):
            keys += [o["Key"] for o in page.get("Contents", [])]
        found = []
        for key in keys:
            digest = self.stored(key)
            if digest is not None:
                found.append((key, digest))
            self.delete(key)
        return found

    def _summary(self, found: list[tuple[str, Digest]]) -> Summary:
        outcomes = sorted(self.outcomes, key=lambda o: o.index)
        by_index = {o.index: o for o in outcomes}
        stray = []
        for key, digest in found:
            m = re.match(r"soak/(\d+)-", key)
            o = by_index.get(int(m.group(1))) if m else None
            new, old = self.sent.get(key, (None, None))
            good = o is not None and (o.kind == "multipart" or expectation(o.fault).good)
            verdict = judge_leftover(
                o.cls if o else None, digest, new, old, seen=key in self.seen_new, good=good
            )
            stray.append(
                {"key": key, "size": digest.size, "verdict": verdict[0], "detail": verdict[1]}
            )
            if o is not None and RANK[verdict[0]] < RANK[o.cls]:
                o.cls, o.detail = verdict[0], f"{verdict[1]} ({key})"
        classes = Counter(o.cls for o in outcomes)
        faults: dict[str, dict[str, Any]] = {}
        for kind in self.cfg.faults:
            mine = [o for o in outcomes if o.fault == kind]
            faults[kind] = {
                "planned": len(mine),
                "fired": sum(o.fired for o in mine) if kind != "none" else len(mine),
                "classes": dict(Counter(o.cls for o in mine)),
                "statuses": dict(sorted(Counter(str(o.status) for o in mine).items())),
                "variants": dict(Counter(o.variant for o in mine if o.variant)),
            }
        findings = [asdict(o) for o in outcomes if o.cls in FINDINGS]
        return Summary(
            config={k: v for k, v in asdict(self.cfg).items() if k != "progress"},
            planned=len(self.indices),
            completed=len(outcomes),
            seconds=round(time.monotonic() - self.started, 1),
            classes={c: classes.get(c, 0) for c in CLASSES},
            faults=faults,
            kinds=dict(Counter(o.kind for o in outcomes)),
            framings=dict(Counter(f"{o.kind}:{o.framing}" for o in outcomes)),
            drains=dict(self.runner.drains),
            restarts=self.runner.generation,
            findings=findings,
            stray=stray,
            stopped_by_deadline=len(outcomes) < len(self.indices),
            outcomes=[asdict(o) for o in outcomes],
            slow_starts=self.runner.slow_starts,
        )


def run(store: Store, cfg: Config, workdir: Path, rgw_state: Path | None = None) -> Summary:
    """Run a soak against ``store`` (RGW); ``rgw_state`` enables garbage collection."""
    return Soak(store, cfg, workdir, rgw_state).run()


# ----------------------------------------------------------------------------- reporting
def table(summary: Summary) -> str:
    lines = [f"{'class':<14}{'count':>8}"]
    lines += [f"{c:<14}{summary.classes[c]:>8}" for c in CLASSES]
    lines.append("")
    lines.append(f"{'fault':<18}{'ops':>6}{'fired':>7}  classes / statuses")
    for kind, f in summary.faults.items():
        classes = ", ".join(f"{k} {v}" for k, v in sorted(f["classes"].items()))
        statuses = ", ".join(f"{k}:{v}" for k, v in f["statuses"].items())
        lines.append(f"{kind:<18}{f['planned']:>6}{f['fired']:>7}  {classes}  [{statuses}]")
    lines.append("")
    lines.append("operations: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.kinds.items())))
    lines.append("framings: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.framings.items())))
    lines.append(
        f"s3shim SIGTERMs: {summary.restarts}; old processes: "
        + (", ".join(f"{k} {v}" for k, v in summary.drains.items()) or "-")
    )
    lines.append(
        f"{summary.completed}/{summary.planned} operations in {summary.seconds} s"
        + (" (stopped by the deadline)" if summary.stopped_by_deadline else "")
    )
    if summary.stray:
        verdicts = Counter(f"{s['verdict']}: {s['detail']}" for s in summary.stray)
        lines.append(f"objects left in the bucket at the end: {len(summary.stray)}")
        lines += [f"  {n} x {v}" for v, n in sorted(verdicts.items())]
    if summary.slow_starts:
        lines.append(f"s3shim starts retried (not listening within 15 s): {summary.slow_starts}")
    for f in summary.findings[:20]:
        lines.append(
            f"  op {f['index']} {f['kind']}/{f['fault']}/{f['framing']} {f['size']} B "
            f"{f['variant']}: {f['cls']} {f['detail'].strip().splitlines()[-1:]}"
            f" (status {f['status']} {f['code'] or ''})"
        )
        lines += trail_lines(f.get("trail") or [])
    if len(summary.findings) > 20:
        lines.append(f"  ... {len(summary.findings) - 20} more in the JSON summary")
    return "\n".join(lines)


def trail_lines(trail: list[dict[str, Any]]) -> list[str]:
    """An operation's trail as indented lines: seconds since its first step, the step, the
    answer, and the ids that find it in s3shim's log and RGW's access log."""
    if not trail:
        return []
    t0 = trail[0]["t"]
    out = []
    for e in trail:
        rest = {k: v for k, v in e.items() if k not in ("t", "step", "status", "code")}
        answer = f" -> {e['status']} {e.get('code') or ''}".rstrip() if "status" in e else ""
        extra = " ".join(f"{k}={v}" for k, v in rest.items())
        out.append(f"      +{e['t'] - t0:7.3f}s {e['step']}{answer}  {extra}".rstrip())
    return out


def _commit() -> str:
    """The commit measured: git's, or SOAK_COMMIT for a tree exported with git archive."""
    if os.environ.get("SOAK_COMMIT"):
        return os.environ["SOAK_COMMIT"]

    def git(*args: str) -> str:
        res = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, check=False)
        return res.stdout.strip()

    with contextlib.suppress(OSError, subprocess.SubprocessError):
        dirty = "+dirty" if git("status", "--porcelain", "s3shim") else ""
        return git("rev-parse", "--short", "HEAD") + dirty
    return "unknown"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--ops", type=int, default=1000, help="operations to run (default 1000)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    p.add_argument("--workers", type=int, default=8, help="concurrent workers (default 8)")
    p.add_argument("--max-size-mib", type=float, default=20, help="largest object (default 20)")
    p.add_argument(
        "--deadline",
        type=float,
        default=None,
        help="stop taking operations after this many seconds (default 120 + 1 s/op)",
    )
    p.add_argument(
        "--faults",
        default=",".join(FAULT_KINDS),
        help="comma-separated fault kinds to inject (default: all)",
    )
    p.add_argument("--only", default="", help="comma-separated operation indices (reproduce)")
    p.add_argument("--json", type=Path, default=None, help="write a JSON summary here")
    p.add_argument("--memstore-gib", type=float, default=4, help="RGW memstore size (default 4)")
    p.add_argument("--keep-state", action="store_true", help="keep RGW and s3shim logs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    unknown = set(args.faults.split(",")) - set(FAULT_KINDS)
    if unknown:
        p.error(f"unknown fault kinds: {', '.join(sorted(unknown))}")
    if args.ops < 1 or args.workers < 1:
        p.error("--ops and --workers must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    cfg = Config(
        ops=args.ops,
        seed=seed,
        workers=args.workers,
        max_size=int(args.max_size_mib * MIB),
        deadline=args.deadline if args.deadline is not None else 120.0 + args.ops,
        faults=tuple(f for f in FAULT_KINDS if f in args.faults.split(",")),
        only=tuple(int(x) for x in args.only.split(",") if x.strip()),
        progress=not args.quiet,
    )
    command = "python -m bench.soak " + " ".join(sys.argv[1:] if argv is None else argv)
    print(
        f"[soak] seed {seed}; {cfg.ops} operations, {cfg.workers} workers; starting Ceph RGW",
        file=sys.stderr,
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="s3shim-soak-"))
    started = datetime.now(UTC)
    try:
        with start_rgw(workdir, memstore_bytes=int(args.memstore_gib * 1024 * MIB)) as store:
            summary = run(store, cfg, workdir, rgw_state=workdir / "rgw")
    finally:
        if args.keep_state:
            print(f"[soak] state kept in {workdir}", file=sys.stderr)
        else:
            subprocess.run(["rm", "-rf", "--", str(workdir)], check=False)
    print(table(summary))
    if args.json is not None:
        doc = asdict(summary)
        doc.update(
            command=command,
            started=started.isoformat(timespec="seconds"),
            commit=_commit(),
            machine={
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
            },
            exit_status=summary.exit_status(),
        )
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return summary.exit_status()


if __name__ == "__main__":
    sys.exit(main())
