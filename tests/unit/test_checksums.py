"""Checksums: known vectors, incremental == one-shot, S3's rules for declared checksums."""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from s3shim import errors
from s3shim.checksums import (
    Algorithm,
    ExpectedChecksum,
    algorithm_from_header,
    algorithm_from_name,
    declared_checksum,
    decode_checksum_value,
    new_checksum,
)

# b"123456789": the CRC catalogue's "check" input. The base64 values are the ones OpenStack
# Swift's s3api functional tests expect from real AWS S3 (test/s3api/test_object_checksums.py).
CHECK_INPUT = b"123456789"
CHECK_VALUES = {
    Algorithm.CRC32: ("cbf43926", "y/Q5Jg=="),
    Algorithm.CRC32C: ("e3069283", "4waSgw=="),
    Algorithm.CRC64NVME: ("ae8b14860a799888", "rosUhgp5mIg="),
    Algorithm.SHA1: ("f7c3bc1d808e04732adf679965ccc34ca7ae3441", "98O8HYCOBHMq32eZZczDTKeuNEE="),
    Algorithm.SHA256: (
        "15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225",
        "FeKw08M4keuw8e9gnsQZQgwg4yDOlMZfvIwzEkSOsiU=",
    ),
}
# Values S3 refuses as malformed for x-amz-checksum-crc32 (same source).
INVALID_CRC32 = ["y/Q5Jh==", "short===", "shrt", "toolong=", "^^^^^^==", "y^/^Q5^J^g=="]


def _one_shot(alg: Algorithm, data: bytes) -> bytes:
    c = new_checksum(alg)
    c.update(data)
    return c.digest()


def _crc64nvme_bitwise(data: bytes) -> int:
    # Reference from the CRC-64/NVME parameters: reflected poly 0x9a6c9329ac4bc9b5
    # (0xad93d23594c93659 normal), init and xorout all ones.
    crc = 0xFFFF_FFFF_FFFF_FFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x9A6C9329AC4BC9B5 if crc & 1 else 0)
    return crc ^ 0xFFFF_FFFF_FFFF_FFFF


@pytest.mark.parametrize("alg", list(Algorithm))
def test_check_values(alg: Algorithm) -> None:
    hexdigest, b64 = CHECK_VALUES[alg]
    c = new_checksum(alg)
    c.update(CHECK_INPUT)
    assert c.digest().hex() == hexdigest
    assert c.b64digest() == b64
    assert c.algorithm is alg


def test_crc64nvme_published_vectors() -> None:
    # NVM Command Set spec 1.0c values, as used by SPDK's unit tests.
    assert _one_shot(Algorithm.CRC64NVME, bytes(4096)).hex() == "6482d367eb22b64e"
    assert _one_shot(Algorithm.CRC64NVME, b"\xff" * 4096).hex() == "c0ddba7302eca3ac"
    # aws-checksums' test: 32 zero bytes.
    assert _one_shot(Algorithm.CRC64NVME, bytes(32)).hex() == "cf3473434d4ecf3b"
    # Go's hash/crc64 with the NVME table (`echo 'Hello, World!' | crc64nvme | base64`).
    c = new_checksum(Algorithm.CRC64NVME)
    c.update(b"Hello, World!\n")
    assert c.b64digest() == "SoXXbx67KpE="


@given(st.binary(max_size=300))
def test_crc64nvme_matches_bitwise_reference(data: bytes) -> None:
    assert int.from_bytes(_one_shot(Algorithm.CRC64NVME, data), "big") == _crc64nvme_bitwise(data)


def test_empty_input() -> None:
    expected = {
        Algorithm.CRC32: "AAAAAA==",
        Algorithm.CRC32C: "AAAAAA==",
        Algorithm.CRC64NVME: "AAAAAAAAAAA=",
        Algorithm.SHA1: "2jmj7l5rSw0yVb/vlWAYkK/YBwk=",
        Algorithm.SHA256: "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
    }
    for alg, b64 in expected.items():
        assert new_checksum(alg).b64digest() == b64


@pytest.mark.parametrize(
    ("alg", "size", "b64_len"),
    [
        (Algorithm.CRC32, 4, 8),
        (Algorithm.CRC32C, 4, 8),
        (Algorithm.CRC64NVME, 8, 12),
        (Algorithm.SHA1, 20, 28),
        (Algorithm.SHA256, 32, 44),
    ],
)
def test_sizes(alg: Algorithm, size: int, b64_len: int) -> None:
    assert alg.digest_size == size
    assert len(new_checksum(alg).digest()) == size
    assert len(new_checksum(alg).b64digest()) == b64_len


def test_names() -> None:
    assert Algorithm.CRC32.value == "crc32"
    assert Algorithm.CRC64NVME.header == "x-amz-checksum-crc64nvme"
    assert Algorithm.CRC32C.xml_element == "ChecksumCRC32C"
    assert Algorithm.SHA256.xml_element == "ChecksumSHA256"
    for alg in Algorithm:
        assert algorithm_from_name(alg.name) is alg
        assert algorithm_from_name(alg.value) is alg
        assert algorithm_from_header(alg.header) is alg
        assert algorithm_from_header(alg.header.upper()) is alg
    for other in ("x-amz-checksum-type", "x-amz-checksum-mode", "x-amz-checksum-algorithm"):
        assert algorithm_from_header(other) is None
    assert algorithm_from_header("content-md5") is None


def test_unknown_algorithm_names() -> None:
    with pytest.raises(errors.S3Error) as e:
        algorithm_from_name("nope")
    assert (e.value.code, e.value.status) == ("InvalidRequest", 400)
    assert "valid types: [CRC32, CRC32C, CRC64NVME, SHA1, SHA256]" in e.value.message
    with pytest.raises(errors.S3Error) as e:
        algorithm_from_name("md4", header="x-amz-sdk-checksum-algorithm")
    assert e.value.message == "Value for x-amz-sdk-checksum-algorithm header is invalid."
    # S3 knows these; s3shim cannot compute them: say so rather than "invalid".
    for name in ("SHA512", "MD5", "XXHASH64"):
        with pytest.raises(errors.S3Error) as e:
            algorithm_from_name(name)
        assert (e.value.code, e.value.status) == ("NotImplemented", 501)


@given(st.binary(max_size=4096), st.data())
def test_incremental_equals_one_shot(data: bytes, draw: st.DataObject) -> None:
    cuts = sorted(draw.draw(st.lists(st.integers(0, len(data)), max_size=8)))
    for alg in Algorithm:
        c = new_checksum(alg)
        prev = 0
        for i, cut in enumerate([*cuts, len(data)]):
            piece = data[prev:cut]
            # Every accepted buffer type.
            c.update((bytes, bytearray, memoryview)[i % 3](piece))
            prev = cut
        assert c.digest() == _one_shot(alg, data)
        assert c.digest() == c.digest()  # reading does not reset


@pytest.mark.parametrize("alg", list(Algorithm))
def test_decode_round_trip(alg: Algorithm) -> None:
    hexdigest, b64 = CHECK_VALUES[alg]
    assert decode_checksum_value(alg, b64) == bytes.fromhex(hexdigest)


@pytest.mark.parametrize("value", [*INVALID_CRC32, "", "y/Q5Jg", "y/Q5Jg==\n", "é/Q5Jg=="])
def test_decode_refuses_malformed(value: str) -> None:
    with pytest.raises(errors.S3Error) as e:
        decode_checksum_value(Algorithm.CRC32, value)
    assert (e.value.code, e.value.status) == ("InvalidRequest", 400)
    assert e.value.message == "Value for x-amz-checksum-crc32 header is invalid."
    with pytest.raises(errors.S3Error) as e:
        decode_checksum_value(Algorithm.CRC32, value, trailer=True)
    assert e.value.message == "Value for x-amz-checksum-crc32 trailing header is invalid."


def test_decode_refuses_wrong_size() -> None:
    with pytest.raises(errors.S3Error):
        decode_checksum_value(Algorithm.CRC64NVME, "y/Q5Jg==")  # a CRC32's 4 bytes


# --- declared_checksum ---------------------------------------------------------------


def _declared(**headers: str) -> ExpectedChecksum | None:
    return declared_checksum({k.replace("_", "-"): v for k, v in headers.items()})


def _refused(**headers: str) -> errors.S3Error:
    with pytest.raises(errors.S3Error) as e:
        _declared(**headers)
    return e.value


def test_declared_none() -> None:
    assert _declared() is None
    assert _declared(x_amz_checksum_mode="ENABLED", content_md5="x") is None
    # CreateMultipartUpload's settings are not values.
    assert _declared(x_amz_checksum_algorithm="CRC32", x_amz_checksum_type="COMPOSITE") is None


def test_declared_header_value() -> None:
    got = _declared(x_amz_checksum_crc32="y/Q5Jg==", x_amz_sdk_checksum_algorithm="CRC32")
    assert got == ExpectedChecksum(Algorithm.CRC32, "y/Q5Jg==")
    assert got is not None and not got.in_trailer
    got = _declared(x_amz_checksum_sha256=CHECK_VALUES[Algorithm.SHA256][1])
    assert got == ExpectedChecksum(Algorithm.SHA256, CHECK_VALUES[Algorithm.SHA256][1])


def test_declared_from_case_insensitive_multidict() -> None:
    headers = CIMultiDict(
        {"X-Amz-Checksum-CRC32": "y/Q5Jg==", "X-Amz-SDK-Checksum-Algorithm": "CRC32"}
    )
    assert declared_checksum(headers) == ExpectedChecksum(Algorithm.CRC32, "y/Q5Jg==")


def test_declared_trailer() -> None:
    # What every SDK sends with an aws-chunked body.
    got = _declared(x_amz_trailer="x-amz-checksum-crc32", x_amz_sdk_checksum_algorithm="CRC32")
    assert got == ExpectedChecksum(Algorithm.CRC32, None)
    assert got is not None and got.in_trailer
    got = _declared(x_amz_trailer=" X-Amz-Checksum-CRC64NVME ")
    assert got == ExpectedChecksum(Algorithm.CRC64NVME, None)


def test_declared_errors() -> None:
    e = _refused(
        x_amz_checksum_crc32="y/Q5Jg==", x_amz_checksum_sha1="98O8HYCOBHMq32eZZczDTKeuNEE="
    )
    assert (e.code, e.message) == (
        "InvalidRequest",
        "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
    )
    e = _refused(x_amz_checksum_crc32="y/Q5Jg==", x_amz_trailer="x-amz-checksum-crc32")
    assert (e.code, e.message) == ("InvalidRequest", "Expecting a single x-amz-checksum- header")
    e = _refused(x_amz_trailer="x-amz-checksum-crc32,x-amz-checksum-crc32c")
    assert e.code == "InvalidRequest"
    e = _refused(x_amz_checksum_crc32="y/Q5Jh==")
    assert e.message == "Value for x-amz-checksum-crc32 header is invalid."
    e = _refused(x_amz_checksum_crc32="y/Q5Jg==", x_amz_sdk_checksum_algorithm="SHA1")
    assert e.message == "Value for x-amz-sdk-checksum-algorithm header is invalid."
    e = _refused(x_amz_trailer="x-amz-checksum-crc32", x_amz_sdk_checksum_algorithm="bogus")
    assert e.message == "Value for x-amz-sdk-checksum-algorithm header is invalid."
    e = _refused(x_amz_sdk_checksum_algorithm="CRC32")
    assert e.message == (
        "x-amz-sdk-checksum-algorithm specified, but no corresponding x-amz-checksum-* "
        "or x-amz-trailer headers were found."
    )
    e = _refused(x_amz_trailer="x-amz-meta-foo")
    assert e.message == "The value specified in the x-amz-trailer header is not supported"
    e = _refused(x_amz_checksum_foo="AAAA")
    assert e.message == "The algorithm type you specified in x-amz-checksum- header is invalid."
    e = _refused(x_amz_checksum_xxhash64="AAAAAAAAAAA=")
    assert (e.code, e.status) == ("NotImplemented", 501)
    e = _refused(x_amz_trailer="x-amz-checksum-sha512")
    assert (e.code, e.status) == ("NotImplemented", 501)


def test_verify() -> None:
    digest = _one_shot(Algorithm.CRC32, CHECK_INPUT)
    ExpectedChecksum(Algorithm.CRC32, "y/Q5Jg==").verify(digest)
    with pytest.raises(errors.S3Error) as e:
        ExpectedChecksum(Algorithm.CRC32, "z/Q5Jg==").verify(digest)
    assert (e.value.code, e.value.message) == (
        "BadDigest",
        "The CRC32 you specified did not match the calculated checksum.",
    )
    trailer = ExpectedChecksum(Algorithm.CRC32, None)
    trailer.verify(digest, "y/Q5Jg==")
    with pytest.raises(errors.S3Error) as e:
        trailer.verify(digest, "z/Q5Jg==")
    assert e.value.code == "BadDigest"
    with pytest.raises(errors.S3Error) as e:
        trailer.verify(digest, "y/Q5Jh==")
    assert e.value.message == "Value for x-amz-checksum-crc32 trailing header is invalid."
    with pytest.raises(errors.S3Error) as e:
        trailer.verify(digest)
    assert e.value.code == "MalformedTrailerError"


def test_throughput_per_gib(capsys: pytest.CaptureFixture[str]) -> None:
    """CPU seconds per GiB in 256 KiB pieces (the proxy's read size); printed, not asserted."""
    piece = os.urandom(256 * 1024)
    total = 64 * 1024 * 1024
    lines = []
    for alg in Algorithm:
        c = new_checksum(alg)
        start = time.process_time()
        for _ in range(total // len(piece)):
            c.update(piece)
        c.digest()
        per_gib = (time.process_time() - start) * (1 << 30) / total
        lines.append(f"{alg.name:10} {per_gib:.3f} s/GiB")
    with capsys.disabled():
        print("\nchecksum CPU cost (64 MiB sample):\n  " + "\n  ".join(lines))


def test_crc32_uses_isal_and_agrees_with_zlib() -> None:
    """isal is a dependency (4x cheaper CRC32 here); its values must be zlib's exactly."""
    import zlib as _zlib

    from isal import isal_zlib

    from s3shim import checksums as mod

    assert mod._CRC_FUNCTIONS[mod.Algorithm.CRC32] is isal_zlib.crc32
    for data in (b"", b"a", bytes(range(256)) * 1000):
        c = mod.new_checksum(mod.Algorithm.CRC32)
        c.update(data[: len(data) // 3])
        c.update(memoryview(data)[len(data) // 3 :])
        assert c.digest() == _zlib.crc32(data).to_bytes(4, "big")
