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
import base64
import contextlib
import hashlib
import http.client
import json
import os
import platform
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from awscrt import checksums as crt

from bench.faultrelay import Fault, RunningRelay, running_relay
from s3shim import sigv4
from s3shim.chunked import ChunkSigning
from s3shim.testing import ChunkSigner
from testkit.backends import Store, start_rgw
from testkit.backends import s3_client as store_client
from testkit.rawclient import Reply, send, sign
from testkit.shim import Shim, run_shim
from testkit.shim import s3_client as shim_client

KIB = 1024
MIB = 1024 * KIB
PART_MIN = 5 * MIB  # RGW's rgw_multipart_min_part_size: every part but the last
SMALL_BODY = MIB  # s3shim reads bodies up to this whole, larger ones stream: test both sides
REGION = "us-east-1"
HTTP_TIMEOUT = 60.0

FAULT_KINDS = (
    "none",
    "client_cut",
    "store_reset",
    "store_reset_read",
    "slow_client",
    "slow_store",
    "wrong_checksum",
    "wrong_sha256",
    "forged_signature",
    "sigterm",
)
FAULT_WEIGHTS = {
    "none": 0.40,
    "client_cut": 0.08,
    "store_reset": 0.08,
    "store_reset_read": 0.06,
    "slow_client": 0.07,
    "slow_store": 0.07,
    "wrong_checksum": 0.085,
    "wrong_sha256": 0.06,
    "forged_signature": 0.08,
    "sigterm": 0.015,
}
RAW_FRAMINGS = ("plain-unsigned", "plain-sha256", "signed", "signed-trailer", "unsigned-trailer")
FRAMINGS = ("boto3", *RAW_FRAMINGS)
STREAMING = {
    "signed": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    "signed-trailer": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
    "unsigned-trailer": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
}
CLASSES = (
    "IDENTICAL",
    "ABSENT",
    "READ-OK",
    "READ-CUT",
    "LOST",
    "CORRUPT",
    "HALF-STORED",
    "WRONG-STATUS",
    "ERROR",
)
DEFECTS = ("LOST", "CORRUPT", "HALF-STORED")
# Worst first: an operation with several findings is reported by its worst one (and a read
# that was cut by its fault is reported as cut even when the other reads were fine).
RANK = {
    c: i
    for i, c in enumerate(
        (
            "LOST",
            "CORRUPT",
            "HALF-STORED",
            "WRONG-STATUS",
            "ERROR",
            "READ-CUT",
            "ABSENT",
            "READ-OK",
            "IDENTICAL",
        )
    )
}
FINDINGS = (*DEFECTS, "WRONG-STATUS", "ERROR")
ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")


def checksum(alg: str, data: bytes) -> bytes:
    """The digest S3 puts in x-amz-checksum-<alg>, computed without s3shim's code."""
    if alg == "CRC32":
        return zlib.crc32(data).to_bytes(4, "big")
    if alg == "CRC32C":
        return int(crt.crc32c(data)).to_bytes(4, "big")
    if alg == "CRC64NVME":
        return int(crt.crc64nvme(data)).to_bytes(8, "big")
    if alg == "SHA1":
        return hashlib.sha1(data).digest()
    if alg == "SHA256":
        return hashlib.sha256(data).digest()
    raise ValueError(alg)


def checksum_b64(alg: str, data: bytes) -> str:
    return base64.b64encode(checksum(alg, data)).decode()


# ------------------------------------------------------------------------------ planning
@dataclass(frozen=True)
class Plan:
    """What operation ``index`` does; a pure function of (seed, index, settings)."""

    index: int
    kind: str  # put | multipart | get
    fault: str
    framing: str  # put: its framing; multipart: the faulty part's; get: "boto3" or "raw"
    size: int  # bytes of the object (multipart: total)
    overwrite: bool  # a good version exists before the operation
    part_sizes: tuple[int, ...] = ()


def draw_size(rng: random.Random, max_size: int) -> int:
    """0 B .. max_size, skewed small, with the edges s3shim's code paths turn on."""
    r = rng.random()
    if r < 0.12:
        edges = [
            0,
            1,
            2,
            255,
            256 * KIB - 1,
            256 * KIB,
            256 * KIB + 1,
            SMALL_BODY - 1,
            SMALL_BODY,
            SMALL_BODY + 1,
            2 * MIB - 1,
            5 * MIB,
            8 * MIB + 3,
        ]
        return rng.choice([e for e in edges if e <= max_size])
    bands = [
        (0.40, 0, 4 * KIB),
        (0.70, 4 * KIB, 256 * KIB),
        (0.88, 256 * KIB, 2 * MIB),
        (0.97, 2 * MIB, 8 * MIB),
        (1.01, 8 * MIB, 20 * MIB),
    ]
    for upto, low, high in bands:
        if r < upto:
            return rng.randint(min(low, max_size), min(high, max_size))
    raise AssertionError("unreachable")


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    names = list(weights)
    return rng.choices(names, [weights[n] for n in names])[0]


def plan_op(seed: int, index: int, max_size: int, faults: tuple[str, ...] = FAULT_KINDS) -> Plan:
    rng = random.Random(f"{seed}:{index}:plan")
    # The first operations go round the fault kinds, so even a short run exercises each.
    if index < 2 * len(faults):
        fault = faults[index % len(faults)]
    else:
        fault = _pick(rng, {f: FAULT_WEIGHTS[f] for f in faults})
    kinds = {
        "none": {"put": 0.6, "multipart": 0.15, "get": 0.25},
        "store_reset": {"put": 0.75, "multipart": 0.25},
        "slow_store": {"put": 0.5, "multipart": 0.15, "get": 0.35},
        "store_reset_read": {"get": 1.0},
        "sigterm": {"put": 1.0},
    }.get(fault, {"put": 0.8, "multipart": 0.2})
    kind = _pick(rng, kinds)
    if max_size < PART_MIN and kind == "multipart":
        kind = "put"
    if fault == "wrong_sha256":
        framing = "plain-sha256"
    elif fault in ("client_cut", "slow_client", "forged_signature", "sigterm"):
        framing = rng.choice(RAW_FRAMINGS)
    elif kind == "get":
        framing = rng.choice(("boto3", "raw"))
    else:
        framing = _pick(rng, {"boto3": 0.3, **{f: 0.14 for f in RAW_FRAMINGS}})
    part_sizes: tuple[int, ...] = ()
    if kind == "multipart":
        n = rng.choices([1, 2, 3, 4], [0.45, 0.35, 0.15, 0.05])[0]
        # Every part but the last is RGW's minimum (plus a little, sometimes); the whole
        # upload stays within max_size.
        n = max(1, min(n, 1 + (max_size - 1) // PART_MIN))
        firsts = [PART_MIN + rng.choice((0, 0, rng.randint(1, 64 * KIB))) for _ in range(n - 1)]
        room = max_size - sum(firsts)
        if room < 1:  # the little extras did not fit: plain minimum parts
            firsts = [PART_MIN] * (n - 1)
            room = max_size - sum(firsts)
        part_sizes = (*firsts, rng.randint(1, max(1, min(3 * MIB, room))))
        size = sum(part_sizes)
    else:
        size = draw_size(rng, max_size)
    if fault == "sigterm":
        size = max(size, 64 * KIB)  # something to be in the middle of
    if fault == "client_cut":
        size = max(size, 1)  # an empty plain body cannot be cut: the request would be complete
    overwrite = kind == "put" and rng.random() < 0.2
    return Plan(index, kind, fault, framing, size, overwrite, part_sizes)


# -------------------------------------------------------------------------- classification
@dataclass(frozen=True)
class Digest:
    size: int
    sha256: str
    encoding: str | None = None  # the stored Content-Encoding

    @classmethod
    def of(cls, data: bytes, encoding: str | None = None) -> Digest:
        return cls(len(data), hashlib.sha256(data).hexdigest(), encoding)

    def same_bytes(self, other: Digest | None) -> bool:
        return other is not None and (self.size, self.sha256) == (other.size, other.sha256)


@dataclass(frozen=True)
class Expect:
    """What an operation's fault allows: store it, refuse it (with this status and code),
    or either (an interrupted request: acknowledged and stored, or not and absent)."""

    mode: str  # store | refuse | either
    status: int = 0
    codes: frozenset[str] = frozenset()


def expectation(fault: str, variant: str = "") -> Expect:
    if fault in ("none", "slow_client", "slow_store"):
        return Expect("store")
    if fault == "wrong_checksum":
        return Expect("refuse", 400, frozenset({"BadDigest"}))
    if fault == "wrong_sha256":
        return Expect("refuse", 400, frozenset({"XAmzContentSHA256Mismatch"}))
    if fault == "forged_signature":
        code = "InvalidAccessKeyId" if variant == "unknown-key" else "SignatureDoesNotMatch"
        return Expect("refuse", 403, frozenset({code}))
    return Expect("either")  # client_cut, store_reset, sigterm


def classify_write(
    expect: Expect,
    status: int,
    code: str | None,
    found: Digest | None,
    new: Digest,
    old: Digest | None,
    disturbed: bool = False,
) -> tuple[str, str]:
    """(class, detail) of one write, from the answer and what the store holds afterwards.

    ``old`` is the good version the key held before (overwrites), ``disturbed`` says that
    s3shim was restarted while the operation ran (then a refusal of a good request is no
    wrong status: the client saw a connection error).
    """
    acked = 200 <= status < 300
    if found is not None and new.same_bytes(found):
        if found.encoding and "aws-chunked" in found.encoding.lower():
            return "CORRUPT", f"stored with Content-Encoding {found.encoding!r}"
        if not acked:
            return "HALF-STORED", f"answered {status} {code or ''} but the new object is stored"
        data_class = "IDENTICAL"
    elif found is None:
        if acked:
            return "LOST", f"answered {status} but the store has no object"
        if old is not None:
            return "LOST", "the earlier acknowledged version vanished"
        data_class = "ABSENT"
    elif old is not None and old.same_bytes(found):
        if acked:
            return "LOST", f"answered {status} but the store kept the earlier version"
        data_class = "ABSENT"
    else:
        return "CORRUPT", (
            f"stored {found.size} B sha256 {found.sha256[:16]}, sent {new.size} B "
            f"sha256 {new.sha256[:16]}"
        )
    if expect.mode == "store" and not acked and not (disturbed and status in (0, 502, 503)):
        return "WRONG-STATUS", f"a good request answered {status} {code or ''}"
    if expect.mode == "refuse":
        wanted = f"{expect.status} {'/'.join(sorted(expect.codes))}"
        if acked:
            return "WRONG-STATUS", f"accepted ({status}) what must be refused with {wanted}"
        right = status == expect.status and code in expect.codes
        if not right and not (disturbed and status in (0, 502, 503)):
            return "WRONG-STATUS", f"answered {status} {code or ''}, expected {wanted}"
    return data_class, ""


def classify_read(
    *,
    expected_status: int,
    expected_range: str | None,
    expected: bytes,
    status: int,
    content_range: str | None,
    body: bytes | None,
    faulted: bool,
) -> tuple[str, str]:
    """(class, detail) of one read through s3shim; ``body`` None = the read was cut."""
    if body is None:
        if faulted:
            return "READ-CUT", ""
        return "WRONG-STATUS", f"read cut without an injected fault (status {status})"
    if status != expected_status:
        if faulted and status >= 500:
            return "READ-CUT", ""
        return "WRONG-STATUS", f"read answered {status}, expected {expected_status}"
    if body != expected:
        return "CORRUPT", f"read {len(body)} B, expected {len(expected)} B, bytes differ"
    if expected_range is not None and content_range != expected_range:
        return "WRONG-STATUS", f"Content-Range {content_range!r}, expected {expected_range!r}"
    return "READ-OK", ""


def judge_leftover(
    cls: str | None, found: Digest, new: Digest | None, old: Digest | None
) -> tuple[str, str]:
    """An object still there at the end of the run, after its operation (class ``cls``)
    had checked and removed its key: what it means, by its bytes."""
    if cls is None:
        return "ERROR", "an object no operation wrote"
    if cls == "ERROR":
        return "ERROR", "left by an operation that failed"
    if new is not None and new.same_bytes(found):
        if cls == "IDENTICAL":
            return "HALF-STORED", "the object came back after it was checked and removed"
        return "HALF-STORED", "the refused or cut object was committed after its check"
    if old is not None and old.same_bytes(found):
        return "ERROR", "the earlier version was not removed (a harness fault)"
    return "CORRUPT", f"{found.size} B of other bytes present at the end"


def worst(a: tuple[str, str], b: tuple[str, str]) -> tuple[str, str]:
    return a if RANK[a[0]] <= RANK[b[0]] else b


# --------------------------------------------------------------------------- s3shim runner
class ShimRunner:
    """s3shim via tests.shim.run_shim, which can be SIGTERMed mid-request and replaced.

    As in a rolling restart, the replacement (on a new port, as a new pod would be) is started
    first; then requests that have not started yet go to it, and the old s3shim is SIGTERMed:
    it drains (its listener closes, requests in flight get the grace period) and exits.
    """

    def __init__(self, upstream: str, store: Store, log_dir: Path, env: dict[str, str]) -> None:
        self.upstream, self.store, self.log_dir, self.env = upstream, store, log_dir, env
        self._cond = threading.Condition()
        self._shim: Shim | None = None
        self._stack: contextlib.ExitStack | None = None
        self._draining: list[tuple[Shim, contextlib.ExitStack]] = []
        self.generation = 0  # SIGTERMs so far
        self.sigterm_lock = threading.Lock()  # one SIGTERM operation at a time
        self.drains: Counter[str] = Counter()
        self.slow_starts = 0  # s3shim starts that did not listen in time and were retried

    def __enter__(self) -> ShimRunner:
        self._shim, self._stack = self.spare()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            stacks = [s for _, s in self._draining] + ([self._stack] if self._stack else [])
            self._draining, self._stack, self._shim = [], None, None
        for stack in stacks:
            stack.close()

    def spare(self, attempts: int = 3) -> tuple[Shim, contextlib.ExitStack]:
        """A new s3shim, ready, not yet used (close the stack to stop it).

        run_shim waits 15 s for the port; on a loaded 2-core machine a start can take longer
        (measured: 3 s at load average 10, over 15 s at times at 15), so try again.
        """
        for attempt in range(attempts):
            stack = contextlib.ExitStack()
            try:
                shim = stack.enter_context(
                    run_shim(
                        self.upstream,
                        self.store.access_key,
                        self.store.secret_key,
                        self.log_dir,
                        env=self.env,
                    )
                )
            except RuntimeError:
                stack.close()
                if attempt == attempts - 1:
                    raise
                self.slow_starts += 1
                continue
            return shim, stack
        raise AssertionError("unreachable")

    def current(self, timeout: float = 120.0) -> tuple[int, Shim]:
        """(generation, the s3shim to use now), waiting while a replacement starts."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._shim is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError("no s3shim came up")
                self._cond.wait(left)
            return self.generation, self._shim

    def sigterm(self, spare: tuple[Shim, contextlib.ExitStack]) -> Shim:
        """Make ``spare`` the s3shim to use, then SIGTERM the one running (it drains)."""
        with self._cond:
            old, stack = self._shim, self._stack
            assert old is not None and stack is not None
            self.generation += 1
            self._shim, self._stack = spare
            self._draining.append((old, stack))
            self._cond.notify_all()
        os.kill(old.pid, signal.SIGTERM)
        return old

    def reap(self, old: Shim, timeout: float) -> None:
        """Wait (bounded) for a SIGTERMed s3shim to exit by itself, then note how it ended."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(old.pid):
            time.sleep(0.05)
        exited = not _alive(old.pid)
        with self._cond:
            stacks = [s for shim, s in self._draining if shim is old]
            self._draining = [(shim, s) for shim, s in self._draining if shim is not old]
        for stack in stacks:
            stack.close()  # reaps it (or, had it not exited, stops it)
        log = old.log_text()
        if not exited:
            self.drains["did not exit in time"] += 1
        elif '"grace_period_over"' in log:
            self.drains["grace period over (requests cut)"] += 1
        elif '"stopped"' in log:
            self.drains["drained and stopped"] += 1
        else:
            self.drains["exited without 'stopped'"] += 1


def _alive(pid: int) -> bool:
    """True while pid runs (a zombie waiting for its parent counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"


# ------------------------------------------------------------------------------ requests
@dataclass
class Answer:
    status: int  # 0 = no answer (connection error, or the client cut)
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _reply_answer(reply: Reply) -> Answer:
    if reply.status == 0:  # no answer: say why (ConnectionRefusedError, ...)
        return Answer(0, reply.headers.get("error"), reply.headers)
    return Answer(reply.status, reply.code, reply.headers)


def _boto_call(fn: Callable[..., Any], **kwargs: Any) -> tuple[Answer, Any]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        resp = fn(**kwargs)
    except ClientError as e:
        meta = e.response.get("ResponseMetadata", {})
        return Answer(
            int(meta.get("HTTPStatusCode", 0)),
            e.response.get("Error", {}).get("Code"),
            dict(meta.get("HTTPHeaders", {})),
        ), None
    except (BotoCoreError, OSError, http.client.HTTPException) as exc:
        return Answer(0, type(exc).__name__), None
    meta = resp.get("ResponseMetadata", {})
    return Answer(int(meta.get("HTTPStatusCode", 0)), None, dict(meta.get("HTTPHeaders", {}))), resp


def split_randomly(data: bytes, rng: random.Random, low: int, high: int) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        n = rng.randint(low, high)
        out.append(data[i : i + n])
        i += n
    return out


def http_chunked(body: bytes, rng: random.Random) -> bytes:
    """HTTP/1.1 chunked transfer coding around body (as boto3 over https and the JS SDK)."""
    parts = split_randomly(body, rng, 1, 512 * KIB)
    return b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def _flip_after(body: bytes, marker: bytes, last: bool = False) -> bytes:
    i = (body.rfind(marker) if last else body.find(marker)) + len(marker)
    return body[:i] + (b"0" if body[i : i + 1] != b"0" else b"1") + body[i + 1 :]


@dataclass
class RawPut:
    headers: dict[str, str]
    body: bytes  # as sent on the wire


def build_put(
    endpoint: str,
    path: str,
    query: list[tuple[str, str]],
    data: bytes,
    framing: str,
    *,
    access_key: str,
    secret_key: str,
    rng: random.Random,
    alg: str | None,
    wrong_checksum: bool = False,
    wrong_sha256: bool = False,
    forgery: str | None = None,
    te_chunked: bool = False,
) -> RawPut:
    """A hand-signed PutObject/UploadPart in one of the raw framings (maybe spoiled)."""
    value = None
    if alg is not None:
        value = checksum_b64(alg, data + b"\0" if wrong_checksum else data)
    headers: dict[str, str] = {"x-amz-meta-soak": "1"}
    trailer = framing in ("signed-trailer", "unsigned-trailer")
    if framing in STREAMING:
        headers["content-encoding"] = "aws-chunked"
        headers["x-amz-decoded-content-length"] = str(len(data))
    if alg is not None and trailer:
        headers["x-amz-trailer"] = f"x-amz-checksum-{alg.lower()}"
        headers["x-amz-sdk-checksum-algorithm"] = alg
    elif alg is not None:
        headers[f"x-amz-checksum-{alg.lower()}"] = value or ""
        headers["x-amz-sdk-checksum-algorithm"] = alg
    if framing == "plain-unsigned":
        payload_hash = sigv4.UNSIGNED_PAYLOAD
    elif framing == "plain-sha256":
        payload_hash = hashlib.sha256(data + b"\0" if wrong_sha256 else data).hexdigest()
    else:
        payload_hash = STREAMING[framing]
    ak = "SOAKUNKNOWNKEY000000" if forgery == "unknown-key" else access_key
    sk = secret_key + "x" if forgery == "wrong-secret" else secret_key
    signed = sign(
        "PUT",
        endpoint,
        path,
        access_key=ak,
        secret_key=sk,
        query=query,
        headers=headers,
        payload_hash=payload_hash,
        region=REGION,
    )
    chunk_size = rng.choice((8 * KIB, 64 * KIB, 64 * KIB, 256 * KIB, MIB, 0))
    pieces = (
        split_randomly(data, rng, 1, 2 * MIB)
        if chunk_size == 0
        else [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)]
    )
    trailers = [(f"x-amz-checksum-{alg.lower()}", value or "")] if trailer and alg else []
    if framing in ("plain-unsigned", "plain-sha256"):
        body = data
    elif framing == "unsigned-trailer":
        body = b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in pieces if p) + b"0\r\n"
        body += "".join(f"{n}:{v}\r\n" for n, v in trailers).encode() + b"\r\n"
    else:
        seed = re.search(r"Signature=([0-9a-f]{64})", signed["authorization"])
        assert seed is not None
        amz_date = signed["x-amz-date"]
        signer = ChunkSigner(
            ChunkSigning(
                signing_key=sigv4.signing_key(sk, amz_date[:8], REGION),
                amz_date=amz_date,
                scope=sigv4.scope(amz_date[:8], REGION),
                seed_signature=seed.group(1),
            )
        )
        body = b"".join(signer.chunk(p) for p in pieces)
        body += signer.end(trailers if framing == "signed-trailer" else None)
    if forgery == "tampered-header":
        signed["x-amz-meta-soak"] = "2"
    elif forgery == "chunk-signature":
        body = _flip_after(body, b"chunk-signature=", last=rng.random() < 0.5)
    elif forgery == "trailer-signature":
        body = _flip_after(body, b"x-amz-trailer-signature:")
    elif forgery == "data-after-signing":
        i = body.find(b"\r\n") + 2
        body = body[:i] + bytes([body[i] ^ 1]) + body[i + 1 :]
    if te_chunked:
        signed["transfer-encoding"] = "chunked"
        body = http_chunked(body, rng)
    else:
        signed["content-length"] = str(len(body))
    return RawPut(signed, body)


def forgeries_for(framing: str, size: int, alg: str | None) -> list[str]:
    out = ["wrong-secret", "unknown-key", "tampered-header"]
    if framing in ("signed", "signed-trailer"):
        out.append("chunk-signature")
        if size > 0:
            out.append("data-after-signing")
        if framing == "signed-trailer" and alg is not None:
            out.append("trailer-signature")
    return out


def request_target(path: str, query: list[tuple[str, str]]) -> str:
    qs = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in query)
    return path + ("?" + qs if qs else "")


def send_cut(
    endpoint: str, path: str, query: list[tuple[str, str]], req: RawPut, cut_at: int, rst: bool
) -> str | None:
    """Send the head and ``cut_at`` bytes of the body, then hang up (RST or FIN).

    Returns None once cut (s3shim may also have hung up first, answering early), or why
    no connection was made (an s3shim that was just replaced).
    """
    parts = urlsplit(endpoint)
    assert parts.hostname is not None and parts.port is not None
    head = f"PUT {request_target(path, query)} HTTP/1.1\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in req.headers.items()) + "\r\n"
    try:
        sock = socket.create_connection((parts.hostname, parts.port), timeout=HTTP_TIMEOUT)
    except OSError as exc:
        return type(exc).__name__
    with sock:
        try:
            sock.sendall(head.encode() + req.body[:cut_at])
        except OSError:
            return None
        if rst:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return None


def raw_get(
    endpoint: str, path: str, rng_header: str | None, *, access_key: str, secret_key: str
) -> tuple[int, str | None, bytes | None, str]:
    """(status, Content-Range, body or None when the read was cut, how it was cut)."""
    headers = sign(
        "GET",
        endpoint,
        path,
        access_key=access_key,
        secret_key=secret_key,
        payload_hash=sigv4.UNSIGNED_PAYLOAD,
    )
    if rng_header:
        headers["range"] = rng_header
    parts = urlsplit(endpoint)
    assert parts.hostname is not None
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=HTTP_TIMEOUT)
    status = 0
    try:
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        status = resp.status
        body = resp.read()  # http.client raises IncompleteRead on a short body
        return status, resp.getheader("content-range"), body, ""
    except (OSError, http.client.HTTPException) as exc:
        return status, None, None, _cut_how(status, exc)
    finally:
        conn.close()


def _cut_how(status: int, exc: BaseException) -> str:
    """'no answer: X' (nothing served) or 'cut after 206: X' (a response broken mid-body)."""
    where = f"cut after {status}" if status else "no answer"
    return f"{where}: {type(exc).__name__}"


# ----------------------------------------------------------------------------- the soak
@dataclass
class Config:
    ops: int = 1000
    seed: int = 1
    workers: int = 8
    max_size: int = 20 * MIB
    deadline: float = 3600.0
    faults: tuple[str, ...] = FAULT_KINDS
    grace: float = 10.0  # S3SHIM_SHUTDOWN_GRACE_SECONDS
    gc_every: int = 768 * MIB  # run RGW's garbage collection after this many bytes written
    only: tuple[int, ...] = ()  # run just these operation indices (reproduce one)
    progress: bool = True


@dataclass
class Outcome:
    index: int
    kind: str
    fault: str
    framing: str
    size: int
    overwrite: bool
    cls: str
    detail: str = ""
    status: int = 0
    code: str | None = None
    fired: bool = False
    disturbed: bool = False
    variant: str = ""
    seconds: float = 0.0


@dataclass
class Summary:
    config: dict[str, Any]
    planned: int
    completed: int
    seconds: float
    classes: dict[str, int]
    faults: dict[str, dict[str, Any]]
    kinds: dict[str, int]
    framings: dict[str, int]
    drains: dict[str, int]
    restarts: int
    findings: list[dict[str, Any]]
    stray: list[dict[str, Any]]
    stopped_by_deadline: bool
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    slow_starts: int = 0

    def exit_status(self) -> int:
        if any(self.classes.get(c, 0) for c in DEFECTS):
            return 1
        if self.classes.get("WRONG-STATUS", 0):
            return 3
        if self.classes.get("ERROR", 0) or self.completed < self.planned:
            return 4
        return 0

    def fired(self, kind: str) -> int:
        return int(self.faults.get(kind, {}).get("fired", 0))


class Soak:
    def __init__(self, store: Store, cfg: Config, workdir: Path, rgw_state: Path | None) -> None:
        self.store, self.cfg, self.workdir, self.rgw_state = store, cfg, workdir, rgw_state
        self.bucket = f"soak-{uuid.uuid4().hex[:12]}"
        self.lock = threading.Lock()
        self.outcomes: list[Outcome] = []
        self.next_index = 0
        self.local = threading.local()
        self.client_lock = threading.Lock()  # boto3 client creation is not thread-safe
        self.written = 0
        self.gc_wanted = threading.Event()
        self.stop = threading.Event()
        self.relay: RunningRelay
        self.runner: ShimRunner
        self.started = time.monotonic()
        self.indices = list(cfg.only) if cfg.only else list(range(cfg.ops))
        # Per key: the bytes its operation sent (None for reads) and the good version it held
        # before (overwrites, and the objects reads read), for the end-of-run sweep.
        self.sent: dict[str, tuple[Digest | None, Digest | None]] = {}

    # -- clients ----------------------------------------------------------------------
    def direct(self) -> Any:
        c = getattr(self.local, "direct", None)
        if c is None:
            from botocore.config import Config as BotoConfig

            with self.client_lock:
                c = store_client(self.store, BotoConfig(retries={"max_attempts": 5}))
            self.local.direct = c
        return c

    def shim_boto(self, gen: int, shim: Shim) -> Any:
        cache: dict[tuple[int, str], Any] = getattr(self.local, "shims", None) or {}
        self.local.shims = cache
        key = (gen, shim.endpoint)
        if key not in cache:
            with self.client_lock:
                cache.clear()  # an older s3shim's pooled connections are of no use
                cache[key] = shim_client(shim.endpoint, shim.access_key, shim.secret_key)
        return cache[key]

    # -- store checks -----------------------------------------------------------------
    def stored(self, key: str) -> Digest | None:
        from botocore.exceptions import ClientError

        try:
            r = self.direct().get_object(Bucket=self.bucket, Key=key)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        return Digest.of(r["Body"].read(), r.get("ContentEncoding"))

    def delete(self, key: str) -> None:
        self.direct().delete_object(Bucket=self.bucket, Key=key)

    def put_direct(self, key: str, data: bytes) -> None:
        self.direct().put_object(Bucket=self.bucket, Key=key, Body=data)

    def count_written(self, n: int) -> None:
        with self.lock:
            self.written += n
            if self.rgw_state is not None and self.written >= self.cfg.gc_every:
                self.written = 0
                self.gc_wanted.set()

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
            try:
                out = self._run_op(plan)
            except Exception:  # the harness (or the store) failed: count it, never hide it
                out = Outcome(
                    plan.index,
                    plan.kind,
                    plan.fault,
                    plan.framing,
                    plan.size,
                    plan.overwrite,
                    "ERROR",
                    traceback.format_exc(limit=6)[-1500:],
                )
            out.seconds = round(time.monotonic() - t0, 3)
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

    def _key(self, plan: Plan) -> tuple[str, str]:
        token = uuid.uuid4().hex
        return f"soak/{plan.index:06d}-{plan.kind}-{plan.fault}-{token}", token

    def _register(self, key: str, new: Digest | None, old: Digest | None) -> None:
        with self.lock:
            self.sent[key] = (new, old)

    def _relay_fault(
        self, plan: Plan, token: str, rng: random.Random, body: int, reading: bool = False
    ) -> Fault | None:
        """The store-side fault of this operation, armed on the request naming ``token``."""
        match = token.encode()
        if plan.fault in ("store_reset", "store_reset_read"):
            if reading:  # cut the answer: after K bytes of it, K below the body's length
                k = rng.randint(0, max(0, body - 1)) if body else rng.randint(0, 40)
                return self.relay.add(Fault(match=match, reset_after=k, direction="down"))
            # Cut the request: K bytes after the key in the request line (head + body).
            k = (
                rng.randint(0, 200)
                if rng.random() < 0.3 or body == 0
                else rng.randint(200, 200 + body * 9 // 10)
            )
            return self.relay.add(Fault(match=match, reset_after=k, direction="up"))
        if plan.fault == "slow_store":
            budget = body + 4 * KIB
            # At most ~100 pauses: a slow store, not one that outlasts every timeout.
            piece = max(rng.choice((4 * KIB, 16 * KIB, 64 * KIB)), budget // 100 + 1)
            pieces = max(1, budget // piece)
            delay = min(rng.uniform(0.001, 0.02), 1.5 / pieces)
            return self.relay.add(Fault(match=match, delay=delay, delay_bytes=budget, piece=piece))
        return None

    def _fired(self, fault: Fault | None) -> bool:
        if fault is None:
            return False
        self.relay.remove(fault)
        return fault.fired

    # -- PutObject --------------------------------------------------------------------
    def _op_put(self, plan: Plan) -> Outcome:
        rng = random.Random(f"{self.cfg.seed}:{plan.index}:run")
        key, token = self._key(plan)
        data = rng.randbytes(plan.size)
        new = Digest.of(data)
        old: Digest | None = None
        if plan.overwrite:
            old_data = rng.randbytes(plan.size + 1 + rng.randint(0, 64 * KIB))
            old = Digest.of(old_data)
            self._register(key, new, old)  # before the write: it may fail half-way
            self.put_direct(key, old_data)
            self.count_written(len(old_data))
        else:
            self._register(key, new, None)
        with self.runner.sigterm_lock if plan.fault == "sigterm" else contextlib.nullcontext():
            gen0, _ = self.runner.current()
            fault = self._relay_fault(plan, token, rng, plan.size)
            ans, fired, variant = self._upload(
                plan, rng, f"/{self.bucket}/{key}", [], data, key=key
            )
            fired = self._fired(fault) or fired
        disturbed = self.runner.generation != gen0
        self.count_written(plan.size)
        if plan.fault == "client_cut":
            time.sleep(0.2)  # let s3shim see the hang-up; the final sweep checks again
        found = self.stored(key)
        cls = classify_write(
            expectation(plan.fault, variant), ans.status, ans.code, found, new, old, disturbed
        )
        cls = worst(cls, self._vouched(ans, data))
        if found is not None or old is not None:
            self.delete(key)
        return Outcome(
            plan.index,
            "put",
            plan.fault,
            plan.framing,
            plan.size,
            plan.overwrite,
            cls[0],
            cls[1],
            ans.status,
            ans.code,
            fired,
            disturbed,
            variant,
        )

    @staticmethod
    def _vouched(ans: Answer, data: bytes) -> tuple[str, str]:
        """A checksum s3shim returns on a 2xx must be the data's own."""
        if not 200 <= ans.status < 300:
            return ("IDENTICAL", "")
        for alg in ALGORITHMS:
            got = ans.headers.get(f"x-amz-checksum-{alg.lower()}")
            if got is not None and got != checksum_b64(alg, data):
                return (
                    "WRONG-STATUS",
                    f"answered x-amz-checksum-{alg.lower()} {got}, "
                    f"the data's is {checksum_b64(alg, data)}",
                )
        return ("IDENTICAL", "")

    def _upload(
        self,
        plan: Plan,
        rng: random.Random,
        path: str,
        query: list[tuple[str, str]],
        data: bytes,
        *,
        key: str,
        part: tuple[str, int] | None = None,
        fault: str | None = None,
        framing: str | None = None,
        alg: str | None = "auto",
    ) -> tuple[Answer, bool, str]:
        """One PutObject or UploadPart (``part`` = (upload id, number)) through s3shim.

        Returns the answer, whether a client-side fault was applied, and its variant.
        """
        fault = plan.fault if fault is None else fault
        framing = plan.framing if framing is None else framing
        gen, shim = self.runner.current()
        if framing == "boto3":
            return self._boto_upload(gen, shim, rng, data, key, part, fault, alg)
        if alg == "auto":
            if framing in ("signed-trailer", "unsigned-trailer"):
                alg = rng.choice(ALGORITHMS) if rng.random() < 0.9 else None
            else:
                alg = rng.choice(ALGORITHMS) if rng.random() < 0.6 else None
            if fault == "wrong_checksum" and alg is None:
                alg = rng.choice(ALGORITHMS)
        variant = ""
        if fault == "forged_signature":
            variant = rng.choice(forgeries_for(framing, len(data), alg))
        te = framing in STREAMING and rng.random() < 0.25
        req = build_put(
            shim.endpoint,
            path,
            query,
            data,
            framing,
            access_key=shim.access_key,
            secret_key=shim.secret_key,
            rng=rng,
            alg=alg,
            wrong_checksum=fault == "wrong_checksum",
            wrong_sha256=fault == "wrong_sha256",
            forgery=variant or None,
            te_chunked=te,
        )
        variant = variant or ("te-chunked" if te else "")
        if fault == "client_cut":
            n = len(req.body)
            cut_at = rng.choice([0, n // 2, max(0, n - 1), rng.randint(0, max(0, n - 1))])
            if n and req.body.endswith(b"\r\n\r\n") and rng.random() < 0.3:
                cut_at = n - 2  # everything but the last CRLF of the trailer section
            failed = send_cut(
                shim.endpoint, path, query, req, min(cut_at, max(0, n - 1)), rst=rng.random() < 0.5
            )
            if failed is not None:
                return Answer(0, failed), False, variant
            return Answer(0, "client-cut"), True, variant
        writes = split_randomly(req.body, rng, 1, 600 * KIB) if req.body else []
        if fault == "slow_client":
            reply = _safe_send(shim.endpoint, path, req.headers, query, _slowly(writes, rng))
            return _reply_answer(reply), True, variant
        if fault == "sigterm":  # the caller holds runner.sigterm_lock
            terminated: list[Shim] = []
            spare = self.runner.spare()
            try:
                reply = _safe_send(
                    shim.endpoint,
                    path,
                    req.headers,
                    query,
                    self._sigterm_midway(req.body, rng, spare, terminated),
                )
            finally:
                if not terminated:  # the upload never got as far: the spare is not needed
                    spare[1].close()
            for old in terminated:
                self.runner.reap(old, self.cfg.grace + 15)
            return _reply_answer(reply), bool(terminated), variant
        reply = _safe_send(shim.endpoint, path, req.headers, query, writes)
        applied = fault in ("wrong_checksum", "wrong_sha256", "forged_signature")
        return _reply_answer(reply), applied, variant

    def _sigterm_midway(
        self,
        body: bytes,
        rng: random.Random,
        spare: tuple[Shim, contextlib.ExitStack],
        terminated: list[Shim],
    ) -> Iterator[bytes]:
        """Send part of the body, SIGTERM s3shim (the spare takes over), send the rest."""
        step = max(1, len(body) // 12)
        pieces = [body[i : i + step] for i in range(0, len(body), step)]
        at = rng.randint(1, max(1, len(pieces) - 1))
        for i, piece in enumerate(pieces):
            if i == at:
                terminated.append(self.runner.sigterm(spare))
            time.sleep(0.02)
            yield piece
        if not terminated:
            terminated.append(self.runner.sigterm(spare))

    def _boto_upload(
        self,
        gen: int,
        shim: Shim,
        rng: random.Random,
        data: bytes,
        key: str,
        part: tuple[str, int] | None,
        fault: str,
        alg: str | None,
    ) -> tuple[Answer, bool, str]:
        client = self.shim_boto(gen, shim)
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "Body": data}
        if part is not None:
            kwargs.update(UploadId=part[0], PartNumber=part[1])
        algo = rng.choice(ALGORITHMS) if alg == "auto" else alg
        variant = ""
        if fault == "wrong_checksum":
            algo = algo or "CRC32"
            # boto3 sends a value it is given as it is (it computes one only when it has none).
            kwargs[f"Checksum{algo}"] = checksum_b64(algo, data + b"\0")
            variant = algo
        elif algo is not None and rng.random() < 0.5:
            kwargs["ChecksumAlgorithm"] = algo  # else boto3's default (CRC32 over http)
        fn = client.upload_part if part is not None else client.put_object
        ans, _ = _boto_call(fn, **kwargs)
        return ans, fault == "wrong_checksum", variant

    # -- multipart --------------------------------------------------------------------
    def _op_multipart(self, plan: Plan) -> Outcome:
        rng = random.Random(f"{self.cfg.seed}:{plan.index}:run")
        key, token = self._key(plan)
        data = rng.randbytes(plan.size)
        new = Digest.of(data)
        self._register(key, new, None)
        gen0, shim = self.runner.current()
        client = self.shim_boto(gen0, shim)
        declare = rng.random() < 0.5
        create_kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if declare:
            create_kwargs["ChecksumAlgorithm"] = "CRC32"
        ans, resp = _boto_call(client.create_multipart_upload, **create_kwargs)
        result: tuple[str, str] = ("IDENTICAL", "")
        if resp is None:
            disturbed = self.runner.generation != gen0
            cls = ("ABSENT", "") if disturbed else ("WRONG-STATUS", f"create answered {ans.status}")
            return self._mp_outcome(plan, cls, ans, False, disturbed, "")
        upload_id = resp["UploadId"]
        fault_part = rng.randint(1, len(plan.part_sizes))
        parts: list[dict[str, Any]] = []
        fired, variant, offset, fault_ans = False, "", 0, Answer(0)
        try:
            for n, size in enumerate(plan.part_sizes, start=1):
                chunk = data[offset : offset + size]
                offset += size
                query = [("partNumber", str(n)), ("uploadId", upload_id)]
                path = f"/{self.bucket}/{key}"
                if n == fault_part and plan.fault != "none":
                    rf = self._relay_fault(plan, f"{token}?partNumber={n}&", rng, size)
                    ans, applied, variant = self._upload(
                        plan,
                        rng,
                        path,
                        query,
                        chunk,
                        key=key,
                        part=(upload_id, n),
                        alg="CRC32" if declare else "auto",
                    )
                    fired = self._fired(rf) or applied
                    fault_ans = ans
                    self.count_written(size)
                    if 200 <= ans.status < 300:
                        # Accepted: right only if the fault allows it (a forged part is not).
                        part_class = classify_write(
                            expectation(plan.fault, variant),
                            ans.status,
                            ans.code,
                            Digest.of(chunk),
                            Digest.of(chunk),
                            None,
                            self.runner.generation != gen0,
                        )
                        if part_class[0] in FINDINGS:
                            result = worst(result, part_class)
                        result = worst(result, self._vouched(ans, chunk))
                        parts.append(self._part_entry(n, ans, chunk))
                        continue
                    if plan.fault == "client_cut":
                        time.sleep(0.2)
                    if self._part_listed(key, upload_id, n):
                        result = worst(
                            result, ("HALF-STORED", f"part {n} answered {ans.status} but is listed")
                        )
                    expect = expectation(plan.fault, variant)
                    if expect.mode == "refuse":
                        st = classify_write(
                            expect,
                            ans.status,
                            ans.code,
                            None,
                            Digest.of(chunk),
                            None,
                            self.runner.generation != gen0,
                        )
                        if st[0] in FINDINGS:
                            result = worst(result, st)
                # A clean upload of this part (the first try, or again after the fault).
                clean_framing = rng.choice(FRAMINGS)
                for _attempt in range(3):
                    ans, _, _ = self._upload(
                        plan,
                        rng,
                        path,
                        query,
                        chunk,
                        key=key,
                        part=(upload_id, n),
                        fault="none",
                        framing=clean_framing,
                        alg="CRC32" if declare else "auto",
                    )
                    if 200 <= ans.status < 300 or self.runner.generation == gen0:
                        break
                self.count_written(size)
                if not 200 <= ans.status < 300:
                    if self.runner.generation != gen0:
                        return self._mp_outcome(
                            plan, worst(result, ("ABSENT", "")), fault_ans, fired, True, variant
                        )
                    return self._mp_outcome(
                        plan,
                        worst(
                            result,
                            (
                                "WRONG-STATUS",
                                f"clean part {n} answered {ans.status} {ans.code or ''}",
                            ),
                        ),
                        fault_ans,
                        fired,
                        False,
                        variant,
                    )
                result = worst(result, self._vouched(ans, chunk))
                parts.append(self._part_entry(n, ans, chunk))
            gen, shim = self.runner.current()
            client = self.shim_boto(gen, shim)
            ans, resp = _boto_call(
                client.complete_multipart_upload,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
            disturbed = self.runner.generation != gen0
            found = self.stored(key)
            cls = classify_write(Expect("store"), ans.status, ans.code, found, new, None, disturbed)
            result = worst(result, cls)
            if found is not None:
                self.delete(key)
            return self._mp_outcome(
                plan, result, fault_ans if plan.fault != "none" else ans, fired, disturbed, variant
            )
        finally:
            with contextlib.suppress(Exception):
                self.direct().abort_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id
                )

    @staticmethod
    def _part_entry(n: int, ans: Answer, chunk: bytes) -> dict[str, Any]:
        entry: dict[str, Any] = {"PartNumber": n, "ETag": ans.headers.get("etag", "")}
        got = ans.headers.get("x-amz-checksum-crc32")
        if got is not None:
            entry["ChecksumCRC32"] = got
        return entry

    def _part_listed(self, key: str, upload_id: str, n: int) -> bool:
        resp = self.direct().list_parts(Bucket=self.bucket, Key=key, UploadId=upload_id)
        return any(p["PartNumber"] == n for p in resp.get("Parts", []))

    def _mp_outcome(
        self,
        plan: Plan,
        cls: tuple[str, str],
        ans: Answer,
        fired: bool,
        disturbed: bool,
        variant: str,
    ) -> Outcome:
        return Outcome(
            plan.index,
            "multipart",
            plan.fault,
            plan.framing,
            plan.size,
            False,
            cls[0],
            cls[1],
            ans.status,
            ans.code,
            fired,
            disturbed,
            variant,
        )

    # -- Range GETs -------------------------------------------------------------------
    def _op_get(self, plan: Plan) -> Outcome:
        rng = random.Random(f"{self.cfg.seed}:{plan.index}:run")
        key, token = self._key(plan)
        data = rng.randbytes(plan.size)
        self._register(key, None, Digest.of(data))
        self.put_direct(key, data)
        self.count_written(plan.size)
        result: tuple[str, str] = ("READ-OK", "")
        fired, last_status = False, 0
        reads = rng.randint(1, 3)
        faulty = rng.randrange(reads)
        gen0, _ = self.runner.current()
        for i in range(reads):
            rng_header, expected, status, content_range = self._draw_range(rng, data)
            fault = None
            if i == faulty and plan.fault != "none":
                fault = self._relay_fault(plan, token, rng, len(expected), reading=True)
            gen, shim = self.runner.current()
            if plan.framing == "boto3":
                got_status, got_range, body, how = self._boto_get(gen, shim, key, rng_header)
            else:
                got_status, got_range, body, how = raw_get(
                    shim.endpoint,
                    f"/{self.bucket}/{key}",
                    rng_header,
                    access_key=shim.access_key,
                    secret_key=shim.secret_key,
                )
            this_fired = self._fired(fault)
            fired = fired or this_fired
            last_status = got_status
            cls = classify_read(
                expected_status=status,
                expected_range=content_range,
                expected=expected,
                status=got_status,
                content_range=got_range,
                body=body,
                faulted=this_fired or self.runner.generation != gen0,
            )
            if cls[0] != "READ-OK":  # which read, and how it broke
                what = rng_header or "whole object"
                cls = (cls[0], f"read {i + 1}/{reads} ({what}): {how or cls[1] or got_status}")
            result = worst(result, cls)
        self.delete(key)
        return Outcome(
            plan.index,
            "get",
            plan.fault,
            plan.framing,
            plan.size,
            False,
            result[0],
            result[1],
            last_status,
            None,
            fired,
            self.runner.generation != gen0,
        )

    @staticmethod
    def _draw_range(rng: random.Random, data: bytes) -> tuple[str | None, bytes, int, str | None]:
        """(Range header, expected body, status, Content-Range) of one read."""
        n = len(data)
        if n == 0 or rng.random() < 0.25:
            return None, data, 200, None
        form = rng.choice(("a-b", "a-", "-n"))
        if form == "a-b":
            a = rng.randrange(n)
            b = rng.randint(a, min(n - 1, a + rng.choice((0, 1, 100, 64 * KIB, 2 * MIB, n))))
        elif form == "a-":
            a, b = rng.randrange(n), n - 1
        else:
            k = rng.randint(1, n)
            a, b = n - k, n - 1
        header = {"a-b": f"bytes={a}-{b}", "a-": f"bytes={a}-", "-n": f"bytes=-{n - a}"}[form]
        return header, data[a : b + 1], 206, f"bytes {a}-{b}/{n}"

    def _boto_get(
        self, gen: int, shim: Shim, key: str, rng_header: str | None
    ) -> tuple[int, str | None, bytes | None, str]:
        from botocore.exceptions import BotoCoreError, ClientError

        client = self.shim_boto(gen, shim)
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if rng_header:
            kwargs["Range"] = rng_header
        try:
            resp = client.get_object(**kwargs)
        except ClientError as e:
            status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            return status, None, b"", e.response.get("Error", {}).get("Code") or ""
        except (BotoCoreError, OSError, http.client.HTTPException) as exc:
            return 0, None, None, _cut_how(0, exc)
        status = int(resp["ResponseMetadata"]["HTTPStatusCode"])
        try:
            body = resp["Body"].read()
        except Exception as exc:  # urllib3 and botocore raise several types for a cut body
            return status, resp.get("ContentRange"), None, _cut_how(status, exc)
        return status, resp.get("ContentRange"), body, ""

    # -- side threads and the end -----------------------------------------------------
    def _gc_loop(self) -> None:
        while not self.stop.is_set():
            if not self.gc_wanted.wait(0.5):
                continue
            self.gc_wanted.clear()
            if self.rgw_state is not None:
                rgw_gc(self.rgw_state)

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
            verdict = judge_leftover(o.cls if o else None, digest, new, old)
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


def _slowly(writes: list[bytes], rng: random.Random) -> Iterator[bytes]:
    """A slow client: at most ~1.5 s of pauses in all, spread over the body."""
    pause = min(rng.uniform(0.005, 0.1), 1.5 / max(1, len(writes)))
    if not writes:
        time.sleep(pause)
    for w in writes:
        time.sleep(pause)
        yield w


def _safe_send(
    endpoint: str,
    path: str,
    headers: dict[str, str],
    query: list[tuple[str, str]],
    body: list[bytes] | Iterator[bytes],
) -> Reply:
    """rawclient.send, with every connection failure as 'no answer' (status 0)."""
    try:
        return send("PUT", endpoint, path, headers, query=query, body=body, timeout=HTTP_TIMEOUT)
    except (OSError, http.client.HTTPException) as exc:
        return Reply(0, {"error": type(exc).__name__}, b"")


def rgw_gc(state: Path) -> None:
    """Free the memstore: RGW only queues deleted data for its garbage collector."""
    subprocess.run(
        [
            "radosgw-admin",
            "-c",
            str(state / "ceph.conf"),
            "-n",
            "client.admin",
            "gc",
            "process",
            "--include-all",
        ],
        check=False,
        capture_output=True,
        timeout=300,
    )


def rgw_state_for(endpoint: str) -> Path | None:
    """The scripts/rgw.sh state directory of the radosgw serving ``endpoint``, if any."""
    port = urlsplit(endpoint).port
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or not argv[0].endswith(b"radosgw") or b"-c" not in argv:
            continue
        conf = Path(argv[argv.index(b"-c") + 1].decode())
        with contextlib.suppress(OSError):
            if f"endpoint=127.0.0.1:{port}\n" in conf.read_text():
                return conf.parent
    return None


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
    if len(summary.findings) > 20:
        lines.append(f"  ... {len(summary.findings) - 20} more in the JSON summary")
    return "\n".join(lines)


def _commit() -> str:
    """The commit measured: git's, or SOAK_COMMIT for a tree exported with git archive."""
    if os.environ.get("SOAK_COMMIT"):
        return os.environ["SOAK_COMMIT"]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "s3shim"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
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
