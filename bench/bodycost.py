#!/usr/bin/env python3
"""CPU per GiB of the pure byte path: exactly what s3shim runs on each body piece.

No sockets, no event loop: a request body is built in memory, cut into the pieces aiohttp
hands over, and fed through :class:`s3shim.body.BodyPipeline` built from the BodySpec that
:func:`s3shim.plan.body_spec` derives from a request head and a verified auth context, i.e.
the object the proxy builds. The consumer does what ``proxy._stream`` does with each result
(takes its length and lets it go). CPU is ``time.process_time()``; minor page faults are
counted too: like the deployed process, the bench first applies s3shim's startup malloc tuning
(``server.tune_malloc``; ``--default-malloc`` skips it).

Cases:

* ``signed-trailer``: PutObject, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, 64 KiB signed
  chunks (framed by :class:`s3shim.testing.ChunkSigner`), CRC32 trailer;
* ``unsigned-trailer``: STREAMING-UNSIGNED-PAYLOAD-TRAILER, 64 KiB chunks, CRC32 trailer;
* ``unsigned-crc32``: a plain UNSIGNED-PAYLOAD body with an ``x-amz-checksum-crc32`` header;
* ``sha256``: a plain body whose hex ``x-amz-content-sha256`` is signed (no flexible checksum).

Floors, on the same payload pieces in the same run: ``hashlib.sha256`` alone, isal crc32 alone,
the two together, and ``chunk-sigs`` (what the signed framing cannot avoid: one sha256 per
64 KiB chunk plus one HMAC per chunk signature, through :class:`~s3shim.chunked.SignatureChain`,
so with ``--compare`` each revision's own).

Pieces are random sizes in ``[--piece-min, --piece-max]`` KiB (fixed seed). The default is
256 KiB: what aiohttp under uvloop hands over for a streamed upload (measured on this machine
kind: 99% of readchunk() buffers were 256 KiB, the event loop's read size, with the consumer
idle and with it busy at 1.5 CPU-s/GiB). 256 KiB never lines up with the 64 KiB + framing
chunks. Each round runs every case once over ``--mib`` x ``--repeat``
MiB; rounds are interleaved so the shared machine's noise hits every case alike. Outputs are
checked once, untimed, before the rounds (bytes and checksum). Nothing is asserted.

``--compare REV[,REV...]`` runs the same cases, interleaved, against s3shim as of each git
revision (``git archive`` into a temp dir, run in a subprocess with it first on PYTHONPATH)
and against the working tree, so changes are measured against their baseline in one run.

    .venv/bin/python bench/bodycost.py                      # 256 MiB x 4 = 1 GiB per case, 2 rounds
    .venv/bin/python bench/bodycost.py --compare HEAD~1     # before/after, interleaved
    .venv/bin/python bench/bodycost.py --profile signed-trailer   # cProfile, top 25 by tottime
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import hashlib
import hmac
import json
import os
import pstats
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from s3shim import chunked, sigv4
from s3shim.auth import AuthContext
from s3shim.body import BodyPipeline, BodySpec
from s3shim.classify import Op
from s3shim.head import parse_head
from s3shim.plan import body_spec
from s3shim.testing import ChunkSigner, encode_unsigned_trailer_chunk, encode_unsigned_trailer_end

try:
    from isal.isal_zlib import crc32
except ImportError:  # pragma: no cover - the fallback s3shim.checksums uses too
    from zlib import crc32

MIB = 1024 * 1024
GIB = 1024 * MIB
CHUNK = 64 * 1024
CRC_TRAILER = "x-amz-checksum-crc32"
CASES = ("signed-trailer", "unsigned-trailer", "unsigned-crc32", "sha256")
FLOORS = ("sha256", "crc32", "sha256+crc32", "chunk-sigs")


def tune_malloc() -> None:
    """As deployed: s3shim's startup pins glibc's mmap/trim thresholds."""
    try:
        from s3shim.server import tune_malloc as tune
    except ImportError:  # server.py mid-edit in the shared tree: its values, by hand
        import ctypes
        import ctypes.util

        name = ctypes.util.find_library("c")
        if name is None:
            return
        libc = ctypes.CDLL(name)
        libc.mallopt(-3, 8 * MIB)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 256 * MIB)  # M_TRIM_THRESHOLD
        print("bodycost: s3shim.server did not import; malloc tuned by hand", file=sys.stderr)
        return
    tune()


def _signing_key() -> bytes:
    key = b"AWS4" + b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    for part in ("20261201", "us-east-1", "s3", "aws4_request"):
        key = hmac.digest(key, part.encode(), "sha256")
    return key


def _ctx(payload_hash: str) -> AuthContext:
    return AuthContext(
        access_key="AK",
        presigned=False,
        amz_date="20261201T000000Z",
        region="us-east-1",
        scope="20261201/us-east-1/s3/aws4_request",
        signing_key=_signing_key(),
        signature=hashlib.sha256(b"seed").hexdigest(),
        payload_hash=payload_hash,
        signed_headers=("host", "x-amz-content-sha256", "x-amz-date"),
    )


def _spec(payload_hash: str, headers: dict[str, str]) -> BodySpec:
    items = [("Host", "s3shim"), ("x-amz-content-sha256", payload_hash), *headers.items()]
    head = parse_head("PUT", "/bucket/key", items, True)
    return body_spec(Op.PUT_OBJECT, _ctx(payload_hash), head)


def _crc_b64(data: bytes) -> str:
    return base64.b64encode(crc32(data).to_bytes(4, "big")).decode()


def _cut(data: bytes, lo: int, hi: int, seed: int) -> list[bytes]:
    """``data`` as separate bytes objects of random sizes in [lo, hi], as a socket gives."""
    rng = random.Random(seed)
    view = memoryview(data)
    out, pos = [], 0
    while pos < len(data):
        size = rng.randint(lo, hi)
        out.append(bytes(view[pos : pos + size]))
        pos += size
    return out


@dataclass
class Case:
    name: str
    spec: BodySpec
    pieces: list[bytes]  # the raw body as the proxy receives it
    expect_checksum: str | None


def build_cases(payload: bytes, names: Sequence[str], lo: int, hi: int) -> list[Case]:
    n = len(payload)
    crc = _crc_b64(payload)
    chunks = [payload[i : i + CHUNK] for i in range(0, n, CHUNK)]
    cases = []
    for name in names:
        if name == "signed-trailer":
            value = chunked.Framing.SIGNED_TRAILER.value
            spec = _spec(value, _aws_chunked_headers(n))
            assert spec.chunk_signing is not None
            signer = ChunkSigner(spec.chunk_signing)
            framed = b"".join([*map(signer.chunk, chunks), signer.end([(CRC_TRAILER, crc)])])
            cases.append(Case(name, spec, _cut(framed, lo, hi, 1), crc))
        elif name == "unsigned-trailer":
            value = chunked.Framing.UNSIGNED_TRAILER.value
            spec = _spec(value, _aws_chunked_headers(n))
            end = encode_unsigned_trailer_end([(CRC_TRAILER, crc)])
            framed = b"".join([*map(encode_unsigned_trailer_chunk, chunks), end])
            cases.append(Case(name, spec, _cut(framed, lo, hi, 2), crc))
        elif name == "unsigned-crc32":
            headers = {"content-length": str(n), CRC_TRAILER: crc}
            spec = _spec(sigv4.UNSIGNED_PAYLOAD, headers)
            cases.append(Case(name, spec, _cut(payload, lo, hi, 3), crc))
        elif name == "sha256":
            spec = _spec(hashlib.sha256(payload).hexdigest(), {"content-length": str(n)})
            cases.append(Case(name, spec, _cut(payload, lo, hi, 3), None))
        else:
            raise SystemExit(f"unknown case {name!r}; cases: {', '.join(CASES)}")
    return cases


def _aws_chunked_headers(length: int) -> dict[str, str]:
    return {
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(length),
        "x-amz-trailer": CRC_TRAILER,
        "x-amz-sdk-checksum-algorithm": "CRC32",
        "content-length": "0",  # not read for aws-chunked bodies; the plan uses the decoded one
    }


def run_case(case: Case) -> int:
    """One body through a fresh pipeline, as proxy._stream drives it; bytes forwarded."""
    pipeline = BodyPipeline(case.spec)
    feed = pipeline.feed
    sent = 0
    for piece in case.pieces:
        sent += len(feed(piece))
    sent += len(pipeline.finish())
    return sent


def check_case(case: Case, payload: bytes) -> None:
    """Untimed: the forwarded bytes are the payload, and the checksum was computed."""
    pipeline = BodyPipeline(case.spec)
    out = [bytes(pipeline.feed(piece)) for piece in case.pieces]
    out.append(bytes(pipeline.finish()))
    if b"".join(out) != payload:
        raise SystemExit(f"{case.name}: the forwarded bytes differ from the payload")
    if pipeline.computed_checksum != case.expect_checksum:
        raise SystemExit(f"{case.name}: checksum {pipeline.computed_checksum!r}")


def floor_fn(name: str, pieces: list[bytes], payload: bytes) -> Callable[[], None]:
    def sha() -> None:
        h = hashlib.sha256()
        for p in pieces:
            h.update(p)
        h.hexdigest()

    def crc() -> None:
        c = 0
        for p in pieces:
            c = crc32(p, c)

    def both() -> None:
        h = hashlib.sha256()
        c = 0
        for p in pieces:
            h.update(p)
            c = crc32(p, c)
        h.hexdigest()

    def chunk_sigs() -> None:
        chain = chunked.SignatureChain(chunked.ChunkSigning(_signing_key(), "d", "s", "0" * 64))
        view = memoryview(payload)
        for i in range(0, len(payload), CHUNK):
            chain.next_chunk(hashlib.sha256(view[i : i + CHUNK]).hexdigest())

    return {"sha256": sha, "crc32": crc, "sha256+crc32": both, "chunk-sigs": chunk_sigs}[name]


def measure(fn: Callable[[], object], repeat: int) -> tuple[float, int]:
    """CPU seconds and minor faults of ``repeat`` calls."""
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.process_time()
    for _ in range(repeat):
        fn()
    cpu = time.process_time() - start
    return cpu, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults


def run_rounds(args: argparse.Namespace) -> dict[str, list[tuple[float, float]]]:
    """Every case and floor, ``args.rounds`` times interleaved.

    name -> one (CPU-s/GiB, minor faults/GiB) per round."""
    payload = os.urandom(args.mib * MIB)
    lo, hi = args.piece_min * 1024, args.piece_max * 1024
    cases = build_cases(payload, args.cases, lo, hi)
    for case in cases:
        check_case(case, payload)
    plain = _cut(payload, lo, hi, 3)
    work: list[tuple[str, Callable[[], object]]] = [(c.name, _bind(c)) for c in cases]
    if not args.no_floors:
        work += [(f"floor:{f}", floor_fn(f, plain, payload)) for f in FLOORS]
    gib = args.mib * args.repeat * MIB / GIB
    results: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in work}
    for _ in range(args.rounds):
        for name, fn in work:
            cpu, faults = measure(fn, args.repeat)
            results[name].append((cpu / gib, faults / gib))
    return results


def _bind(case: Case) -> Callable[[], int]:
    return lambda: run_case(case)


def print_table(results: dict[str, dict[str, list[tuple[float, float]]]]) -> None:
    """results: label (a revision or 'tree') -> name -> per-round figures.

    Per label: the minimum and median CPU-s/GiB over the rounds (on a shared machine the
    minimum is the steadiest estimate of a cost), the most minor faults per GiB in any round.
    """
    labels = list(results)
    names = list(next(iter(results.values())))
    width = 24
    print(f"{'CPU-s/GiB':20}" + "".join(f"{label[:width]:>{width}}" for label in labels))
    print(f"{'':20}" + f"{'min':>8}{'median':>8}{'flt/GiB':>8}" * len(labels))
    for name in names:
        row = f"{name:20}"
        for label in labels:
            rounds = results[label].get(name, [])
            cpu = sorted(c for c, _ in rounds)
            faults = max((f for _, f in rounds), default=0.0)
            row += f"{cpu[0]:8.3f}{statistics.median(cpu):8.3f}{faults:8.0f}"
        print(row)
    count = len(next(iter(next(iter(results.values())).values())))
    print(f"({count} rounds)")


def profile(args: argparse.Namespace) -> None:
    payload = os.urandom(args.mib * MIB)
    (case,) = build_cases(payload, [args.profile], args.piece_min * 1024, args.piece_max * 1024)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(args.repeat):
        run_case(case)
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)


def compare(args: argparse.Namespace, forwarded: list[str]) -> None:
    """Rounds go through every revision and the working tree in turn, a subprocess each."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    revisions = [r for r in args.compare.split(",") if r]
    results: dict[str, dict[str, list[tuple[float, float]]]] = {r: {} for r in revisions}
    results["tree"] = {}
    with tempfile.TemporaryDirectory(prefix="bodycost-") as tmp:
        paths: list[str] = []
        for rev in revisions:
            archive = subprocess.run(
                ["git", "-C", root, "archive", rev, "s3shim"], check=True, capture_output=True
            ).stdout
            path = os.path.join(tmp, str(len(paths)))
            os.mkdir(path)
            subprocess.run(["tar", "-x", "-C", path], input=archive, check=True)
            paths.append(path)
        for _ in range(args.rounds):
            for label, path in [*zip(revisions, paths, strict=True), ("tree", root)]:
                env = {**os.environ, "PYTHONPATH": path}
                cmd = [sys.executable, os.path.abspath(__file__), *forwarded]
                cmd += ["--rounds", "1", "--json"]
                out = subprocess.run(cmd, env=env, check=True, stdout=subprocess.PIPE, text=True)
                for name, rounds in json.loads(out.stdout).items():
                    results[label].setdefault(name, []).extend(tuple(r) for r in rounds)
    print_table(results)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=256, help="payload size (MiB)")
    parser.add_argument("--repeat", type=int, default=4, help="bodies per case and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--piece-min", type=int, default=256, help="KiB")
    parser.add_argument("--piece-max", type=int, default=256, help="KiB")
    parser.add_argument("--cases", type=lambda s: s.split(","), default=list(CASES))
    parser.add_argument("--no-floors", action="store_true")
    parser.add_argument(
        "--default-malloc",
        action="store_true",
        help="skip s3shim's startup malloc tuning (server.tune_malloc)",
    )
    parser.add_argument("--profile", choices=CASES, help="cProfile one case instead")
    parser.add_argument(
        "--compare", metavar="REV[,REV...]", help="interleave with s3shim at these revisions"
    )
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.profile:
        if not args.default_malloc:
            tune_malloc()
        profile(args)
        return
    if args.compare:
        forwarded = [
            f"--mib={args.mib}",
            f"--repeat={args.repeat}",
            "--cases=" + ",".join(args.cases),
        ]
        forwarded += [f"--piece-min={args.piece_min}", f"--piece-max={args.piece_max}"]
        forwarded += ["--no-floors"] if args.no_floors else []
        compare(args, forwarded + (["--default-malloc"] if args.default_malloc else []))
        return
    if not args.default_malloc:
        tune_malloc()
    results = run_rounds(args)
    if args.json:
        json.dump(results, sys.stdout)
        return
    print(
        f"{args.mib} MiB x {args.repeat} per case and round, pieces "
        f"{args.piece_min}-{args.piece_max} KiB, 64 KiB chunks, python {sys.version.split()[0]}"
    )
    print_table({"": results})


if __name__ == "__main__":
    main()
