"""Hand-framed aws-chunked uploads through s3shim to a real RGW: every framing decoded and
verified with random chunk sizes and random TCP write boundaries; every malformed or forged
body refused with the right code and nothing stored."""

from __future__ import annotations

import base64
import random
import re
import uuid
import zlib
from collections.abc import Callable

import pytest
from botocore.client import BaseClient

from s3shim import chunked, sigv4
from s3shim.testing import ChunkSigner, encode_unsigned_trailer_chunk, encode_unsigned_trailer_end

from ..convex_sequence import MIB
from ..rawclient import Reply, send, sign
from ..shim import Shim

pytestmark = pytest.mark.rgw

SIGNED = chunked.Framing.SIGNED
SIGNED_TRAILER = chunked.Framing.SIGNED_TRAILER
UNSIGNED_TRAILER = chunked.Framing.UNSIGNED_TRAILER


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def split_randomly(data: bytes, rng: random.Random, low: int, high: int) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        n = rng.randint(low, high)
        out.append(data[i : i + n])
        i += n
    return out


def framed_upload(
    shim: Shim,
    path: str,
    data: bytes,
    framing: chunked.Framing,
    rng: random.Random,
    *,
    trailer_value: str | None = None,
    decoded_length: int | None = None,
    mangle: Callable[[bytes], bytes] | None = None,
    announce_trailer: bool = True,
    content_encoding: str = "aws-chunked",
) -> Reply:
    """Frame ``data`` as the SDKs do, sign it with the client key and send it in random
    TCP writes. ``mangle`` edits the framed bytes after signing (forgery/corruption)."""
    trailer = framing is not SIGNED
    headers = {
        "content-encoding": content_encoding,
        "x-amz-decoded-content-length": str(
            len(data) if decoded_length is None else decoded_length
        ),
    }
    if trailer and announce_trailer:
        headers["x-amz-trailer"] = "x-amz-checksum-crc32"
        headers["x-amz-sdk-checksum-algorithm"] = "CRC32"
    # Content-Length is not signed by the SigV4 signer, so it can be set after framing.
    signed = sign(
        "PUT",
        shim.endpoint,
        path,
        access_key=shim.access_key,
        secret_key=shim.secret_key,
        headers=headers,
        payload_hash=framing.value,
    )
    pieces = split_randomly(data, rng, 1, 1024 * 1024) if data else []
    trailers = [("x-amz-checksum-crc32", trailer_value or crc32_b64(data))] if trailer else None
    if framing is UNSIGNED_TRAILER:
        body = b"".join(encode_unsigned_trailer_chunk(p) for p in pieces)
        body += encode_unsigned_trailer_end(trailers or [])
    else:
        seed = re.search(r"Signature=([0-9a-f]{64})", signed["authorization"])
        assert seed
        amz_date = signed["x-amz-date"]
        key = sigv4.signing_key(shim.secret_key, amz_date[:8], "us-east-1")
        signer = ChunkSigner(
            chunked.ChunkSigning(
                signing_key=key,
                amz_date=amz_date,
                scope=sigv4.scope(amz_date[:8], "us-east-1"),
                seed_signature=seed.group(1),
            )
        )
        body = b"".join(signer.chunk(p) for p in pieces) + signer.end(trailers)
    if mangle is not None:
        body = mangle(body)
    signed["content-length"] = str(len(body))
    writes = split_randomly(body, rng, 1, 300_000) if body else []
    return send("PUT", shim.endpoint, path, signed, body=writes, timeout=60)


def stored(direct: BaseClient, bucket: str, key: str) -> bytes | None:
    try:
        data: bytes = direct.get_object(Bucket=bucket, Key=key)["Body"].read()
    except direct.exceptions.NoSuchKey:
        return None
    return data


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
    reply = framed_upload(shim, f"/{bucket}/{key}", data, framing, rng)
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
    reply = framed_upload(shim, f"/{bucket}/{key}", data, framing, rng, **kwargs)  # type: ignore[arg-type]
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
    reply = framed_upload(
        shim,
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
