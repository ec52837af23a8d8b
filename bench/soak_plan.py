"""The soak's operations, planned: what operation ``index`` of a seed does (kind, fault,
framing, size, parts), and the checksums S3 puts in x-amz-checksum-*, computed without
s3shim's code."""

from __future__ import annotations

import base64
import hashlib
import random
import zlib
from dataclasses import dataclass

from awscrt import checksums as crt

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
