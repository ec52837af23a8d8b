"""Hand-framed aws-chunked uploads through s3shim to a real RGW: every framing decoded and
verified with random chunk sizes and random TCP write boundaries; every malformed or forged
body refused with the right code and nothing stored."""

from __future__ import annotations

import random
import uuid

import pytest
from botocore.client import BaseClient

from s3shim import chunked
from testkit.convex_sequence import MIB
from testkit.helpers import crc32_b64, stored
from testkit.rawclient import RawClient, send, sign
from testkit.shim import Shim

SIGNED = chunked.Framing.SIGNED
SIGNED_TRAILER = chunked.Framing.SIGNED_TRAILER
UNSIGNED_TRAILER = chunked.Framing.UNSIGNED_TRAILER


@pytest.mark.parametrize(
    "framing", [SIGNED, SIGNED_TRAILER, UNSIGNED_TRAILER], ids=lambda f: f.name
)
@pytest.mark.parametrize("size", [0, 1, 100_000, 3 * MIB + 7], ids=lambda s: f"{s}B")
def test_every_framing_decodes_to_the_payload(
    shim: Shim, direct: BaseClient, bucket: str, framing: chunked.Framing, size: int
) -> None:
    rng = random.Random(f"{framing.name}-{size}")
    data = rng.randbytes(size)
    key = f"framed-{uuid.uuid4()}"
    reply = RawClient.of(shim).aws_chunked_put(f"/{bucket}/{key}", data, framing, rng)
    assert reply.status == 200, reply.body
    if framing is not SIGNED:
        assert reply.headers["x-amz-checksum-crc32"] == crc32_b64(data)
    assert stored(direct, bucket, key) == data


def _flip_last_signature(body: bytes) -> bytes:
    i = body.rfind(b"chunk-signature=") + len(b"chunk-signature=")
    return body[:i] + (b"0" if body[i : i + 1] != b"0" else b"1") + body[i + 1 :]


def _flip_first_chunk_signature(body: bytes) -> bytes:
    i = body.find(b"chunk-signature=") + len(b"chunk-signature=")
    return body[:i] + (b"0" if body[i : i + 1] != b"0" else b"1") + body[i + 1 :]


def _flip_trailer_signature(body: bytes) -> bytes:
    i = body.rfind(b"x-amz-trailer-signature:") + len(b"x-amz-trailer-signature:")
    return body[:i] + (b"0" if body[i : i + 1] != b"0" else b"1") + body[i + 1 :]


def _flip_data_byte(body: bytes) -> bytes:
    i = body.find(b"\r\n") + 10
    return body[:i] + bytes([body[i] ^ 1]) + body[i + 1 :]


MALFORMED: list[tuple[str, chunked.Framing, dict[str, object], int, str]] = [
    (
        "bad hex size",
        UNSIGNED_TRAILER,
        {"mangle": lambda b: b"zz" + b[b.find(b"\r\n") :]},
        400,
        "IncompleteBody",
    ),
    (
        "missing CRLF after data",
        UNSIGNED_TRAILER,
        {"mangle": lambda b: b.replace(b"\r\n0\r\n", b"XX0\r\n", 1)},
        400,
        "IncompleteBody",
    ),
    (
        "chunk longer than declared",
        UNSIGNED_TRAILER,
        {"mangle": lambda b: b.replace(b"\r\n0\r\n", b"!!\r\n0\r\n", 1)},
        400,
        "IncompleteBody",
    ),
    (
        "truncated framing",
        UNSIGNED_TRAILER,
        {"mangle": lambda b: b[: len(b) // 2]},
        400,
        "IncompleteBody",
    ),
    (
        "oversize size line",
        UNSIGNED_TRAILER,
        {"mangle": lambda b: b[: b.find(b"\r\n")] + b";" + b"x" * 8000 + b[b.find(b"\r\n") :]},
        400,
        "IncompleteBody",
    ),
    (
        "bad first chunk signature",
        SIGNED_TRAILER,
        {"mangle": _flip_first_chunk_signature},
        403,
        "SignatureDoesNotMatch",
    ),
    (
        "bad final chunk signature",
        SIGNED,
        {"mangle": _flip_last_signature},
        403,
        "SignatureDoesNotMatch",
    ),
    (
        "data changed after signing",
        SIGNED,
        {"mangle": _flip_data_byte},
        403,
        "SignatureDoesNotMatch",
    ),
    (
        "bad trailer signature",
        SIGNED_TRAILER,
        {"mangle": _flip_trailer_signature},
        403,
        "SignatureDoesNotMatch",
    ),
    (
        "checksum mismatch (unsigned)",
        UNSIGNED_TRAILER,
        {"trailer_value": "AAAAAA=="},
        400,
        "BadDigest",
    ),
    ("checksum mismatch (signed)", SIGNED_TRAILER, {"trailer_value": "AAAAAA=="}, 400, "BadDigest"),
    (
        "announced trailer missing",
        UNSIGNED_TRAILER,
        {"mangle": lambda b: b[: b.rfind(b"x-amz-checksum-crc32:")] + b"\r\n"},
        400,
        "MalformedTrailerError",
    ),
    ("decoded length too small", UNSIGNED_TRAILER, {"decoded_length": 100}, 400, "IncompleteBody"),
    ("decoded length too large", SIGNED, {"decoded_length": 3 * MIB}, 400, "IncompleteBody"),
]


@pytest.mark.parametrize("size", [2000, 2 * MIB + 1], ids=["whole", "streamed"])
@pytest.mark.parametrize("case", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_bodies_are_refused_and_nothing_is_stored(
    shim: Shim,
    direct: BaseClient,
    bucket: str,
    case: tuple[str, chunked.Framing, dict[str, object], int, str],
    size: int,
) -> None:
    name, framing, kwargs, status, code = case
    rng = random.Random(name)
    data = rng.randbytes(size)
    key = f"bad-{uuid.uuid4()}"
    reply = RawClient.of(shim).aws_chunked_put(f"/{bucket}/{key}", data, framing, rng, **kwargs)  # type: ignore[arg-type]  # the case's keyword overrides
    assert (reply.status, reply.code) == (status, code), (name, reply.status, reply.body[:300])
    assert stored(direct, bucket, key) is None


def test_sigv4a_framing_is_not_implemented(shim: Shim, bucket: str) -> None:
    path = f"/{bucket}/v4a"
    h = sign(
        "PUT",
        shim.endpoint,
        path,
        access_key=shim.access_key,
        secret_key=shim.secret_key,
        headers={"content-encoding": "aws-chunked", "x-amz-decoded-content-length": "1"},
        payload_hash="STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD",
    )
    h["content-length"] = "1"
    reply = send("PUT", shim.endpoint, path, h, body=b"x")
    assert (reply.status, reply.code) == (501, "NotImplemented")


def test_other_content_codings_are_kept(shim: Shim, direct: BaseClient, bucket: str) -> None:
    """aws-chunked,gzip: the framing is removed, the gzip coding stays with the object."""
    import gzip

    data = gzip.compress(b"compressible " * 10_000)
    key = f"gz-{uuid.uuid4()}"
    reply = RawClient.of(shim).aws_chunked_put(
        f"/{bucket}/{key}",
        data,
        UNSIGNED_TRAILER,
        random.Random(1),
        content_encoding="aws-chunked,gzip",
    )
    assert reply.status == 200, reply.body
    assert direct.head_object(Bucket=bucket, Key=key)["ContentEncoding"] == "gzip"
    raw = direct.get_object(Bucket=bucket, Key=key)["Body"]
    assert raw.read() == data  # stored as sent: s3shim never decompresses
