"""What encryption at rest kept costs, and who pays: CPU per GiB of s3shim with a keys file
(every write SSE-C, S3SHIM_SSE_DEFAULT) and without, and of RGW (radosgw and its OSD) storing
and serving the same bytes with SSE-C and without, in one run.

One RGW serving HTTPS (``scripts/rgw.sh --tls-port``, a test CA: RGW refuses SSE over plain
HTTP), two 1-worker s3shims in front of it over TLS, one with keys and one without; the same
objects PUT then GET through each, the cases alternated round by round so a drift of the
shared machine falls on both. CPU is the scheduler's runtime of every thread of each process
(/proc/PID/task/*/schedstat, bench/procfs.py). Both paths pay the same TLS to the store, so
what differs is the key: s3shim derives it (one HKDF per request, expected ~0 per GiB) and
RGW encrypts and decrypts (AES-256).

    .venv/bin/python bench/sse.py [--object-mib 64] [--objects 8] [--rounds 2] [--json F]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# `python bench/sse.py` puts only bench/ on sys.path: the repo root goes first, so that this
# bench's modules are bench.* (as mypy and `-m bench.sse` name them).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BUCKET, GIB, MIB, free_port, log, machine_meta
from bench.procfs import run_ns
from bench.s3client import Client, S3Error
from bench.stack import Stack, rgw_gc, start_rgw, start_shim, stop_all
from testkit.tls import make_tls

CASES = ("plain", "keys")  # the s3shim without keys, the one with
OPS = ("PUT", "GET")
ROLES = ("s3shim", "rgw", "osd")


@dataclass
class Tally:
    """CPU ns and bytes of one (case, op), summed over the rounds."""

    ns: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROLES, 0))
    nbytes: int = 0

    def per_gib(self, role: str) -> float:
        return self.ns[role] / 1e9 / (self.nbytes / GIB) if self.nbytes else 0.0


def _pids(stack: Stack, case: str) -> dict[str, list[int]]:
    return {"s3shim": stack.shim_pids(case), "rgw": stack.rgw_pids, "osd": stack.osd_pids}


def _measure(
    stack: Stack, case: str, op: str, keys: Sequence[str], data: memoryview, tally: Tally
) -> None:
    client = Client(stack.port(case))
    pids = _pids(stack, case)
    before = {role: run_ns(p) for role, p in pids.items()}
    for key in keys:
        if op == "PUT":
            client.put_object(key, data)
        elif client.get_into_sink(f"/{BUCKET}/{key}") != len(data):
            raise RuntimeError(f"GET {key}: short body")
    for role, p in pids.items():
        tally.ns[role] += run_ns(p) - before[role]
    tally.nbytes += len(data) * len(keys)
    client.close()


def _check_encrypted(stack: Stack, key: str) -> None:
    """The keys case really stored SSE-C: the s3shim without keys cannot read it (RGW's 400)."""
    try:
        Client(stack.port("plain")).request("HEAD", f"/{BUCKET}/{key}")
    except S3Error as exc:
        if "-> 400" in str(exc):
            return
        raise
    raise RuntimeError(f"{key} written with keys reads without them: not encrypted")


def run(args: argparse.Namespace, work: Path) -> dict[str, dict[str, Tally]]:
    size = args.object_mib * MIB
    memstore = max(3 * GIB, 3 * size * args.objects)
    tls = make_tls(work)
    stack = start_rgw(work / "rgw", free_port(), memstore, tls=tls)
    https, ca = (stack.state / "https-endpoint").read_text().strip(), tls.ca
    try:
        keys_file = work / "sse-keys.json"
        secret = base64.b64encode(os.urandom(32)).decode()
        keys_file.write_text(json.dumps({"keys": [{"id": "bench", "key": secret}]}))
        upstream = {"S3SHIM_UPSTREAM_URL": https, "S3SHIM_UPSTREAM_CA_BUNDLE": ca}
        start_shim(stack, work, name="plain", env_extra=upstream)
        start_shim(
            stack,
            work,
            name="keys",
            env_extra={
                **upstream,
                "S3SHIM_SSE_KEYS_FILE": str(keys_file),
                "S3SHIM_SSE_DEFAULT": "true",
            },
        )
        Client(stack.port("plain")).request("PUT", f"/{BUCKET}")
        data = memoryview(os.urandom(size))
        tallies = {case: {op: Tally() for op in OPS} for case in CASES}
        for rnd in range(args.rounds):
            order = CASES if rnd % 2 == 0 else CASES[::-1]
            for case in order:
                names = [f"{case}-{rnd}-{i}" for i in range(args.objects)]
                for op in OPS:
                    log(f"round {rnd + 1}: {case} {op} {args.objects} x {args.object_mib} MiB")
                    _measure(stack, case, op, names, data, tallies[case][op])
                if case == "keys":
                    _check_encrypted(stack, names[0])
                client = Client(stack.port("plain"))
                for name in names:
                    client.request("DELETE", f"/{BUCKET}/{name}")
                client.close()
                rgw_gc(stack.state, check=False)
        return tallies
    finally:
        stop_all(stack, args.keep, work)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 else "-"


def report(tallies: dict[str, dict[str, Tally]]) -> list[str]:
    lines = ["CPU-s per GiB      s3shim     rgw     osd   rgw+osd"]
    for case in CASES:
        for op in OPS:
            t = tallies[case][op]
            store = t.per_gib("rgw") + t.per_gib("osd")
            lines.append(
                f"{case:5} {op:4}       {t.per_gib('s3shim'):7.3f} {t.per_gib('rgw'):7.3f} "
                f"{t.per_gib('osd'):7.3f} {store:9.3f}"
            )
    lines.append("keys / plain       s3shim     rgw   rgw+osd   (s3shim keys - plain, CPU-s/GiB)")
    for op in OPS:
        k, p = tallies["keys"][op], tallies["plain"][op]
        ks, ps = k.per_gib("rgw") + k.per_gib("osd"), p.per_gib("rgw") + p.per_gib("osd")
        lines.append(
            f"{op:4}               {_ratio(k.per_gib('s3shim'), p.per_gib('s3shim')):>6} "
            f"{_ratio(k.per_gib('rgw'), p.per_gib('rgw')):>7} {_ratio(ks, ps):>9}   "
            f"({k.per_gib('s3shim') - p.per_gib('s3shim'):+.3f})"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.sse", description=__doc__.split("\n\n")[0])
    p.add_argument("--object-mib", type=int, default=64, help="object size [default: 64]")
    p.add_argument("--objects", type=int, default=8, help="objects per case and round [8]")
    p.add_argument("--rounds", type=int, default=2, help="rounds, cases alternated [2]")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="s3shim-bench-sse-"))
    meta = machine_meta()  # before the run: its load average is the machine's, not the run's
    tallies = run(args, work)
    lines = report(tallies)
    print("\n".join(lines))
    if args.json:
        figures = {
            case: {
                op: {
                    "bytes": t.nbytes,
                    **{f"{role}_cpu_s_per_gib": round(t.per_gib(role), 4) for role in ROLES},
                }
                for op, t in ops.items()
            }
            for case, ops in tallies.items()
        }
        args.json.write_text(json.dumps({"machine": meta, "figures": figures}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
