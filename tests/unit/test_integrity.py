"""Read-side integrity: what is recorded with an upload, answered on reads, and verified."""

from __future__ import annotations

import base64
import hashlib
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3shim import errors
from s3shim.checksums import Algorithm
from s3shim.classify import Op, Target
from s3shim.head import parse_head
from s3shim.integrity import RECORD_HEADER, ReadVerifier, encode_record, parse_record
from s3shim.plan import BodyMode, UpstreamPlan, finish_whole, plan
from s3shim.rewrite import Policy, forward_headers
from testkit.helpers import b64_int, crc32c_b64, crc64nvme_b64
from testkit.plans import auth_context as ctx

ON = Policy(True, True, record_checksums=True, verify_reads=True)
OFF = Policy(True, True)
BODY = b"hello world"


CRC64 = crc64nvme_b64(BODY)


def put(length: int, **headers: str) -> tuple[Target, list[tuple[str, str]]]:
    items = [("Host", "h"), ("Content-Length", str(length))]
    items += [(k.replace("_", "-"), v) for k, v in headers.items()]
    return Target(Op.PUT_OBJECT, "b", "k", "/b/k"), items


def test_a_small_upload_without_checksum_records_crc64nvme_computed_by_s3shim() -> None:
    t, items = put(len(BODY))
    p = plan(t, ctx(), parse_head("PUT", "/b/k", items, True), ON)
    assert p.body is BodyMode.WHOLE and p.record_whole
    whole = finish_whole(p, "PUT", BODY, None)
    assert (RECORD_HEADER, f"CRC64NVME:{CRC64}") in whole.headers


def test_a_small_upload_records_the_clients_own_algorithm() -> None:
    crc = crc32c_b64(BODY)
    t, items = put(len(BODY), x_amz_checksum_crc32c=crc)
    p = plan(
        t, ctx(signed=("host", "x-amz-checksum-crc32c")), parse_head("PUT", "/b/k", items, True), ON
    )
    whole = finish_whole(p, "PUT", BODY, crc)
    records = [v for n, v in whole.headers if n == RECORD_HEADER]
    assert records == [f"CRC32C:{crc}"]


def test_a_large_upload_with_a_header_checksum_records_it_up_front() -> None:
    crc = b64_int(123, 4)
    t, items = put(5 << 20, x_amz_checksum_crc32=crc)
    p = plan(
        t, ctx(signed=("host", "x-amz-checksum-crc32")), parse_head("PUT", "/b/k", items, True), ON
    )
    assert p.body is BodyMode.STREAM and not p.record_whole
    assert (RECORD_HEADER, f"CRC32:{crc}") in p.headers


def test_a_large_upload_signed_with_its_sha256_records_that() -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    t, items = put(5 << 20)
    p = plan(t, ctx(digest), parse_head("PUT", "/b/k", items, True), ON)
    want = base64.b64encode(bytes.fromhex(digest)).decode()
    assert (RECORD_HEADER, f"SHA256:{want}") in p.headers


def test_a_large_unsigned_upload_without_checksum_records_nothing() -> None:
    t, items = put(5 << 20)
    p = plan(t, ctx(), parse_head("PUT", "/b/k", items, True), ON)
    assert RECORD_HEADER not in dict(p.headers) and not p.record_whole


@pytest.mark.parametrize("op", [Op.UPLOAD_PART, Op.COPY_OBJECT, Op.CREATE_MULTIPART_UPLOAD])
def test_only_put_object_records(op: Op) -> None:
    items = [("Host", "h"), ("Content-Length", "3")]
    p = plan(Target(op, "b", "k", "/b/k"), ctx(), parse_head("PUT", "/b/k", items, True), ON)
    assert not p.record_whole
    assert RECORD_HEADER not in dict(finish_whole(p, "PUT", b"abc", None).headers)


def test_recording_off_records_nothing() -> None:
    t, items = put(len(BODY))
    p = plan(t, ctx(), parse_head("PUT", "/b/k", items, True), OFF)
    assert RECORD_HEADER not in dict(finish_whole(p, "PUT", BODY, None).headers)


def test_a_client_can_never_plant_a_record() -> None:
    fwd, _ = forward_headers(
        [(RECORD_HEADER, "CRC32:AAAAAA=="), ("X-Amz-Meta-S3shim-Checksum", "x")], ON
    )
    assert fwd == []
    items = [("Host", "h")]
    p = plan(
        Target(Op.GET_OBJECT, "b", "k", "/b/k"),
        ctx(),
        parse_head("GET", "/b/k?x-amz-meta-s3shim-checksum=CRC32:AAAAAA==", items, False),
        ON,
    )
    assert p.query == ()


def _get(*extra: tuple[str, str], method: str = "GET") -> UpstreamPlan:
    op = Op.GET_OBJECT if method == "GET" else Op.HEAD_OBJECT
    items = [("Host", "h"), *extra]
    return plan(Target(op, "b", "k", "/b/k"), ctx(), parse_head(method, "/b/k", items, False), ON)


STORED = [("ETag", '"e"'), (RECORD_HEADER, f"CRC64NVME:{CRC64}"), ("Content-Length", "11")]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_reads_asking_for_checksums_get_the_recorded_one_and_never_the_record(
    method: str,
) -> None:
    p = _get(("x-amz-checksum-mode", "ENABLED"), method=method)
    got = p.respond(200, STORED, None, "ID").headers
    assert ("x-amz-checksum-crc64nvme", CRC64) in got
    assert ("x-amz-checksum-type", "FULL_OBJECT") in got
    assert all(n.lower() != RECORD_HEADER for n, _ in got)


def test_reads_not_asking_get_no_checksum_and_no_record() -> None:
    got = _get().respond(200, STORED, None, "ID").headers
    assert [n for n, _ in got if n.lower().startswith("x-amz-checksum")] == []
    assert all(n.lower() != RECORD_HEADER for n, _ in got)


def test_the_stores_own_checksum_wins_and_ranges_get_none() -> None:
    p = _get(("x-amz-checksum-mode", "ENABLED"))
    theirs = [*STORED, ("x-amz-checksum-crc32", "AAAAAA==")]
    got = p.respond(200, theirs, None, "ID").headers
    assert [n for n, _ in got if n.startswith("x-amz-checksum")] == ["x-amz-checksum-crc32"]
    ranged = _get(("x-amz-checksum-mode", "ENABLED"), ("Range", "bytes=0-1"))
    got = ranged.respond(206, STORED, None, "ID").headers
    assert not any(n.startswith("x-amz-checksum") for n, _ in got)
    assert ranged.respond(206, STORED, None, "ID").verifier is None


def test_full_reads_of_recorded_objects_are_verified() -> None:
    assert _get().respond(200, STORED, None, "ID").verifier is not None
    assert _get().respond(200, STORED[:1], None, "ID").verifier is None
    assert _get().respond(304, STORED, None, "ID").verifier is None
    assert _get(method="HEAD").respond(200, STORED, None, "ID").verifier is None


@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=6))
def test_the_verifier_holds_back_until_the_whole_object_matched(
    data: bytes, cuts: list[int]
) -> None:
    alg = Algorithm.CRC64NVME
    good = ReadVerifier(alg, crc64nvme_b64(data))
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    out = b"".join(good.feed(data[a:b]) for a, b in itertools.pairwise(bounds))
    assert len(out) < len(data) or not data  # the last piece is always held back
    assert out + good.finish() == data
    bad = ReadVerifier(alg, crc64nvme_b64(data + b"!"))
    out = b"".join(bad.feed(data[a:b]) for a, b in itertools.pairwise(bounds))
    with pytest.raises(errors.S3Error) as e:
        bad.finish()
    assert e.value.code == "StoreChecksumMismatch"
    assert len(out) < len(data) or not data


@pytest.mark.parametrize(
    "value",
    [
        "",
        "CRC32",
        "crc32:AAAAAA==",
        "CRC32:AAAA",
        "CRC32:!!!!!!==",
        "MD5:AAAAAA==",
        "CRC32:AAAAAAAA",
    ],
)
def test_values_s3shim_did_not_write_are_no_record(value: str) -> None:
    assert parse_record(value) is None


def test_records_round_trip() -> None:
    for alg, size in ((Algorithm.CRC32, 4), (Algorithm.CRC64NVME, 8), (Algorithm.SHA256, 32)):
        v = base64.b64encode(bytes(range(size))).decode()
        assert parse_record(encode_record(alg, v)) == (alg, v)
