"""The body pipeline: verification before release, hold-back of the last bytes."""

from __future__ import annotations

import hashlib
import itertools
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3shim import chunked, errors
from s3shim.body import BodyPipeline, BodySpec
from s3shim.checksums import Algorithm, ExpectedChecksum
from s3shim.testing import encode_unsigned_trailer_chunk, encode_unsigned_trailer_end
from testkit.helpers import crc32_b64


def run(spec: BodySpec, pieces: list[bytes]) -> tuple[list[bytes], bytes]:
    p = BodyPipeline(spec)
    released = [p.feed(x) for x in pieces]
    return released, p.finish()


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=5000), cuts=st.lists(st.integers(0, 5000), max_size=8))
def test_output_equals_input_and_last_bytes_held(data: bytes, cuts: list[int]) -> None:
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    pieces = [data[a:b] for a, b in itertools.pairwise(bounds)]
    spec = BodySpec(
        length=len(data),
        sha256_hex=hashlib.sha256(data).hexdigest(),
        checksum=ExpectedChecksum(Algorithm.CRC32, crc32_b64(data)),
    )
    p = BodyPipeline(spec)
    released = b"".join(p.feed(x) for x in pieces)
    if data:
        assert len(released) < len(data)  # the store is short until finish()
    assert released + p.finish() == data
    assert p.computed_checksum == crc32_b64(data)


def test_checksum_mismatch_never_releases_the_tail() -> None:
    data = os.urandom(1000)
    spec = BodySpec(length=1000, checksum=ExpectedChecksum(Algorithm.CRC32, crc32_b64(b"x")))
    p = BodyPipeline(spec)
    released = p.feed(data[:500]) + p.feed(data[500:])
    assert len(released) == 500
    with pytest.raises(errors.S3Error) as info:
        p.finish()
    assert info.value.code == "BadDigest"


def test_sha256_mismatch() -> None:
    with pytest.raises(errors.S3Error) as info:
        run(BodySpec(length=3, sha256_hex=hashlib.sha256(b"abd").hexdigest()), [b"abc"])
    assert info.value.code == "XAmzContentSHA256Mismatch"


def test_empty_body_with_wrong_hash() -> None:
    with pytest.raises(errors.S3Error) as info:
        run(BodySpec(length=0, sha256_hex=hashlib.sha256(b"x").hexdigest()), [])
    assert info.value.code == "XAmzContentSHA256Mismatch"


def test_length_mismatch_both_ways() -> None:
    with pytest.raises(errors.S3Error) as info:
        run(BodySpec(length=4), [b"abc"])
    assert info.value.code == "IncompleteBody"
    with pytest.raises(errors.S3Error) as info:
        run(BodySpec(length=2), [b"abc"])
    assert info.value.code == "IncompleteBody"


def _framed(data: bytes, trailer_value: str) -> bytes:
    out = b"".join(
        encode_unsigned_trailer_chunk(data[i : i + 700]) for i in range(0, len(data), 700)
    )
    return out + encode_unsigned_trailer_end([("x-amz-checksum-crc32", trailer_value)])


# 3000 bytes, unsigned aws-chunked, its CRC32 in the trailer.
TRAILER_SPEC = BodySpec(
    length=3000,
    checksum=ExpectedChecksum(Algorithm.CRC32, None),
    framing=chunked.Framing.UNSIGNED_TRAILER,
    trailers=frozenset({"x-amz-checksum-crc32"}),
)


def test_aws_chunked_trailer_checksum_verified() -> None:
    data = os.urandom(3000)
    spec = TRAILER_SPEC
    framed = _framed(data, crc32_b64(data))
    released, tail = run(spec, [framed[i : i + 333] for i in range(0, len(framed), 333)])
    assert b"".join(released) + tail == data
    with pytest.raises(errors.S3Error) as info:
        run(spec, [_framed(data, crc32_b64(b"other"))])
    assert info.value.code == "BadDigest"


def test_aws_chunked_truncated() -> None:
    data = os.urandom(3000)
    spec = TRAILER_SPEC
    with pytest.raises(errors.S3Error) as info:
        run(spec, [_framed(data, crc32_b64(data))[:-10]])
    assert info.value.code in ("IncompleteBody", "MalformedTrailerError")
