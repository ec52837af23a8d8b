"""The plan: every per-request decision, tested without any I/O."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
import urllib3

from s3shim import chunked, errors, sigv4
from s3shim.auth import AuthContext
from s3shim.checksums import Algorithm, new_checksum
from s3shim.classify import Op, Target
from s3shim.config import ClientKey
from s3shim.head import RequestHead, parse_head
from s3shim.integrity import DEFAULT_ALGORITHM, encode_record
from s3shim.plan import (
    MAX_COMPLETE_XML,
    SMALL_BODY,
    SMALL_RESPONSE,
    BodyMode,
    FormPlan,
    Reply,
    Scheme,
    Settings,
    UpstreamPlan,
    finish_whole,
    form_plan,
    form_request,
    plan,
    relocated,
    scheme,
    store_request,
    verify,
)
from s3shim.rewrite import Group, Policy
from testkit.helpers import crc32_b64
from testkit.plans import auth_context as ctx
from testkit.plans import object_target as target
from testkit.shim import PATH_STYLE, s3_client

ON = Policy(disable_sse=True, disable_checksums=True)
OFF = Policy(disable_sse=False, disable_checksums=False)
CRC = crc32_b64(b"hello")
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def head(
    method: str = "PUT", target: str = "/b/k", has_body: bool = True, **headers: str
) -> RequestHead:
    items = [("Host", "s3shim")] + [(k.replace("_", "-"), v) for k, v in headers.items()]
    return parse_head(method, target, items, has_body)


def response_headers(
    p: UpstreamPlan,
    status: int,
    upstream: list[tuple[str, str]],
    computed_checksum: str | None,
    request_id: str,
) -> list[tuple[str, str]]:
    return p.respond(status, upstream, computed_checksum, request_id).headers


def settings(policy: Policy = ON, *, tls: bool = True) -> Settings:
    store = sigv4.Credentials("STOREKEY", "storesecret")
    return Settings(
        policy=policy,
        lookup=lambda key: "secret" if key == "AK" else None,
        clients={"AK": ClientKey(sigv4.Credentials("AK", "secret"), store)},
        regions=None,
        domains=(),
        store_origin="http://rgw:7480",
        store_host="rgw:7480",
        store_region="default",
        client_scheme="https" if tls else "http",
    )


def names(p: UpstreamPlan) -> list[str]:
    return [n for n, _ in p.headers]


# ---------------------------------------------------------------- body modes


@pytest.mark.parametrize("length", [0, 1, SMALL_BODY])
def test_small_bodies_are_read_whole_and_signed_with_their_hash(length: int) -> None:
    p = plan(target(), ctx(), head(content_length=str(length)), ON)
    assert p.body is BodyMode.WHOLE and p.payload_hash is None
    assert p.read_limit == SMALL_BODY
    body = b"x" * length
    whole = finish_whole(p, "PUT", body, None)
    assert whole.payload_hash == hashlib.sha256(body).hexdigest()
    assert ("content-length", str(length)) in whole.headers


def test_a_large_body_is_streamed_unsigned_with_its_exact_length() -> None:
    p = plan(target(), ctx(), head(content_length=str(SMALL_BODY + 1)), ON)
    assert p.body is BodyMode.STREAM
    assert p.payload_hash == sigv4.UNSIGNED_PAYLOAD
    assert p.headers[-1] == ("content-length", str(SMALL_BODY + 1))


def test_a_streamed_body_of_unknown_length_is_refused_411() -> None:
    h = head(transfer_encoding="chunked")
    with pytest.raises(errors.S3Error) as e:
        plan(target(), ctx(), h, ON)
    assert (e.value.status, e.value.code) == (411, "MissingContentLength")


def test_no_body_at_all_is_whole_and_sends_no_length_on_get() -> None:
    p = plan(target(Op.GET_OBJECT), ctx(), head("GET", has_body=False), ON)
    assert p.body is BodyMode.WHOLE
    whole = finish_whole(p, "GET", b"", None)
    assert "content-length" not in [n for n, _ in whole.headers]
    assert whole.payload_hash == sigv4.EMPTY_SHA256


def test_put_with_an_empty_body_still_says_content_length_zero() -> None:
    p = plan(target(), ctx(), head(has_body=False), ON)
    assert ("content-length", "0") in finish_whole(p, "PUT", b"", None).headers


def _trailer_head(length: int) -> RequestHead:
    return head(
        content_encoding="aws-chunked",
        x_amz_decoded_content_length=str(length),
        x_amz_trailer="x-amz-checksum-crc32",
        x_amz_sdk_checksum_algorithm="CRC32",
        content_length=str(length + 100),
    )


def test_flags_off_large_trailer_checksum_is_reframed_for_the_store() -> None:
    length = SMALL_BODY + 5
    p = plan(target(), ctx(chunked.Framing.UNSIGNED_TRAILER.value), _trailer_head(length), OFF)
    assert p.body is BodyMode.REFRAME and p.forwarded_checksum is Algorithm.CRC32
    assert p.payload_hash == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert p.reframing is not None
    sent = dict(p.headers)
    assert sent["content-encoding"] == "aws-chunked"
    assert sent["x-amz-decoded-content-length"] == str(length)
    assert sent["content-length"] == str(p.reframing.framed_length)
    assert sent["x-amz-trailer"] == "x-amz-checksum-crc32"
    assert names(p).count("content-length") == 1


def test_flags_off_small_trailer_checksum_is_handed_on_as_a_header() -> None:
    p = plan(target(), ctx(chunked.Framing.UNSIGNED_TRAILER.value), _trailer_head(5), OFF)
    assert p.body is BodyMode.WHOLE and p.forwarded_checksum is Algorithm.CRC32
    whole = finish_whole(p, "PUT", b"hello", CRC)
    sent = dict(whole.headers)
    assert sent["x-amz-checksum-crc32"] == CRC
    assert sent["x-amz-sdk-checksum-algorithm"] == "CRC32"
    assert "x-amz-trailer" not in sent and "content-encoding" not in sent


def test_flags_on_trailer_checksum_is_verified_but_never_reaches_the_store() -> None:
    length = SMALL_BODY + 5
    p = plan(target(), ctx(chunked.Framing.UNSIGNED_TRAILER.value), _trailer_head(length), ON)
    assert p.body is BodyMode.STREAM and p.forwarded_checksum is None
    assert p.spec.checksum is not None and p.spec.checksum.in_trailer
    assert not any(n.startswith("x-amz-checksum") or n == "x-amz-trailer" for n in names(p))
    assert dict(p.headers)["content-length"] == str(length)


# ---------------------------------------------------------------- headers and flags


def test_flags_drop_their_groups_and_say_so() -> None:
    h = head(content_length="5", x_amz_server_side_encryption="AES256", x_amz_checksum_crc32=CRC)
    p = plan(
        target(),
        ctx(signed=("host", "x-amz-checksum-crc32", "x-amz-server-side-encryption")),
        h,
        ON,
    )
    assert p.rewrites == {Group.SSE, Group.CHECKSUM}
    assert "x-amz-server-side-encryption" not in names(p)
    assert "x-amz-checksum-crc32" not in names(p)
    assert p.spec.checksum is not None and p.spec.checksum.value == CRC
    kept = plan(
        target(),
        ctx(signed=("host", "x-amz-checksum-crc32", "x-amz-server-side-encryption")),
        h,
        OFF,
    )
    assert kept.rewrites == frozenset()
    assert {"x-amz-server-side-encryption", "x-amz-checksum-crc32"} <= set(names(kept))


def test_a_repeated_checksum_header_is_refused() -> None:
    h = parse_head(
        "PUT",
        "/b/k",
        [("Host", "h"), ("x-amz-checksum-crc32", CRC), ("x-amz-checksum-crc32", "WXc2KQ==")],
        True,
    )
    with pytest.raises(errors.S3Error) as e:
        plan(target(), ctx(), h, ON)
    assert e.value.code == "InvalidRequest"


@pytest.mark.parametrize(
    "name",
    [
        "content-length",
        "x-amz-decoded-content-length",
        "x-amz-trailer",
        "x-amz-sdk-checksum-algorithm",
    ],
)
def test_other_verified_headers_must_come_once(name: str) -> None:
    h = parse_head("PUT", "/b/k", [("Host", "h"), (name, "1"), (name, "1")], True)
    with pytest.raises(errors.S3Error) as e:
        plan(target(), ctx(), h, ON)
    assert e.value.code == "InvalidArgument"


def test_unverified_repeated_headers_are_joined_and_signed_ones_folded() -> None:
    h = parse_head(
        "PUT",
        "/b/k",
        [
            ("Host", "h"),
            ("x-amz-meta-a", "1"),
            ("x-amz-meta-a", "two  words"),
            ("Cache-Control", "a"),
            ("cache-control", "b"),
            ("content-length", "0"),
        ],
        False,
    )
    p = plan(target(), ctx(signed=("host", "x-amz-meta-a")), h, ON)
    sent = dict(p.headers)
    assert sent["x-amz-meta-a"] == "1,two words"
    assert sent["cache-control"] == "a,b"


def test_presigned_parameters_never_reach_the_store_but_others_do() -> None:
    h = head(
        "GET", "/b/k?X-Amz-Signature=00&X-Amz-Date=1&versionId=v1&x-id=GetObject", has_body=False
    )
    p = plan(target(Op.GET_OBJECT), ctx(presigned=True), h, ON)
    assert p.query == (("versionId", "v1"), ("x-id", "GetObject"))
    header_signed = plan(target(Op.GET_OBJECT), ctx(), h, ON)
    assert ("X-Amz-Date", "1") in header_signed.query


# ---------------------------------------------------------------- per-operation traits


def test_complete_xml_is_read_whole_up_to_its_own_limit_only_with_the_flag() -> None:
    xml = (
        b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>e</ETag>"
        b"<ChecksumCRC32>" + CRC.encode() + b"</ChecksumCRC32></Part></CompleteMultipartUpload>"
    )
    h = head("POST", "/b/k?uploadId=u", transfer_encoding="chunked")
    p = plan(target(Op.COMPLETE_MULTIPART_UPLOAD), ctx(), h, ON)
    assert p.body is BodyMode.WHOLE and p.strip_xml and p.read_limit == MAX_COMPLETE_XML
    whole = finish_whole(p, "POST", xml, None)
    assert b"ChecksumCRC32" not in whole.body and Group.CHECKSUM in whole.rewrites
    assert whole.payload_hash == hashlib.sha256(whole.body).hexdigest()
    off = plan(target(Op.COMPLETE_MULTIPART_UPLOAD), ctx(), head("POST", content_length="9"), OFF)
    assert not off.strip_xml and finish_whole(off, "POST", xml, None).body == xml


@pytest.mark.parametrize("op", [Op.COMPLETE_MULTIPART_UPLOAD, Op.COPY_OBJECT, Op.UPLOAD_PART_COPY])
def test_checksums_that_describe_another_body_are_not_verified_here(op: Op) -> None:
    h = head(content_length="0", x_amz_checksum_crc32=CRC)
    assert (
        plan(target(op), ctx(signed=("host", "x-amz-checksum-crc32")), h, ON).spec.checksum is None
    )


@pytest.mark.parametrize("op", [Op.PUT_OBJECT, Op.UPLOAD_PART])
def test_uploads_vouch_for_the_verified_checksum_on_success_only(op: Op) -> None:
    h = head(content_length="5", x_amz_checksum_crc32=CRC)
    p = plan(target(op), ctx(signed=("host", "x-amz-checksum-crc32")), h, ON)
    assert p.answer_verified_checksum
    upstream = [("ETag", '"e"'), ("Server", "rgw"), ("Transfer-Encoding", "chunked")]
    got = response_headers(p, 200, upstream, CRC, "ID")
    assert ("x-amz-checksum-crc32", CRC) in got
    assert [n for n, _ in got] == ["ETag", "x-amz-checksum-crc32", "x-amz-request-id", "Server"]
    assert ("x-amz-checksum-crc32", CRC) not in response_headers(p, 500, upstream, CRC, "ID")
    # the store's own value wins
    theirs = response_headers(p, 200, [("x-amz-checksum-crc32", "AAAAAA==")], CRC, "ID")
    assert theirs[0] == ("x-amz-checksum-crc32", "AAAAAA==")
    assert [n for n, _ in theirs].count("x-amz-checksum-crc32") == 1


def test_the_stores_request_id_is_kept_and_s3shims_fills_in() -> None:
    p = plan(target(Op.GET_OBJECT), ctx(), head("GET", has_body=False), ON)
    kept = response_headers(p, 404, [("x-amz-request-id", "tx00-rgw")], None, "MINE")
    assert [v for n, v in kept if n.lower() == "x-amz-request-id"] == ["tx00-rgw"]
    filled = response_headers(p, 200, [("Server", "Ceph")], None, "MINE")
    assert filled == [("x-amz-request-id", "MINE"), ("Server", "s3shim")]


def test_other_operations_vouch_for_nothing() -> None:
    h = head("POST", "/b/k?uploads", content_length="0", x_amz_checksum_crc32=CRC)
    p = plan(
        target(Op.CREATE_MULTIPART_UPLOAD), ctx(signed=("host", "x-amz-checksum-crc32")), h, ON
    )
    assert not p.answer_verified_checksum
    assert response_headers(p, 200, [], CRC, "ID") == [
        ("x-amz-request-id", "ID"),
        ("Server", "s3shim"),
    ]


def test_every_operation_has_traits() -> None:
    for op in Op:
        assert op.traits.upload in (True, False)
    assert {op for op in Op if op.traits.upload} == {Op.PUT_OBJECT, Op.UPLOAD_PART}


# ---------------------------------------------------------------- unverified requests


def test_requests_without_any_auth_are_forwarded_unsigned_unless_refused() -> None:
    h = head("GET", "/b/k", has_body=False)
    assert scheme(target(Op.GET_OBJECT), h, ON) is Scheme.ANONYMOUS
    assert verify(Scheme.ANONYMOUS, h, settings(), NOW) is None
    p = plan(target(Op.GET_OBJECT), None, h, ON, settings().clients)
    assert not p.sign and p.body is BodyMode.WHOLE and p.store_creds is None
    strict = Policy(True, True, allow_anonymous=False)
    with pytest.raises(errors.S3Error) as e:
        scheme(target(Op.GET_OBJECT), h, strict)
    assert (e.value.status, e.value.code) == (403, "AccessDenied")


@pytest.mark.parametrize(
    "h",
    [
        head("GET", "/b/k", has_body=False, authorization=""),
        head("GET", "/b/k?X-Amz-Credential=x", has_body=False),
        head("GET", "/b/k?AWSAccessKeyId=x", has_body=False),
    ],
)
def test_any_attempt_at_auth_is_verified_never_forwarded_anonymously(h: RequestHead) -> None:
    assert scheme(target(Op.GET_OBJECT), h, ON) in (Scheme.SIGV4, Scheme.SIGV2)


def test_a_preflight_is_unverified_even_with_auth_and_loses_presign_parameters() -> None:
    h = head(
        "OPTIONS",
        "/b/k?X-Amz-Signature=00&X-Amz-Credential=c&partNumber=1",
        has_body=False,
        origin="http://app.test",
        access_control_request_method="PUT",
    )
    t = Target(Op.CORS_PREFLIGHT, "b", "k", "/b/k")
    assert scheme(t, h, Policy(True, True, allow_anonymous=False)) is Scheme.PREFLIGHT
    p = plan(t, None, h, ON)
    assert not p.sign and p.query == (("partNumber", "1"),)
    assert dict(p.headers)["access-control-request-method"] == "PUT"


@pytest.mark.parametrize(
    ("query", "kept"),
    [
        ("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=SAME%2F20301231%2Fr%2Fs3", True),
        ("AWSAccessKeyId=SAME&Expires=1&Signature=x", True),
        ("X-Amz-Credential=MAPPED%2F20301231%2Fr%2Fs3&X-Amz-Signature=00", False),
        ("X-Amz-Credential=SAME%2Fd&AWSAccessKeyId=SAME", False),  # two credentials
        ("partNumber=1", False),
    ],
)
def test_a_preflight_keeps_its_own_presign_parameters_only_for_an_identity_key(
    query: str, kept: bool
) -> None:
    """RGW finds a tenant's bucket from a preflight's credential; only a key that is the
    store's own key may carry it there, as the client sent it."""
    h = head("OPTIONS", f"/b/k?{query}", has_body=False, origin="http://app.test")
    policy = Policy(True, True, identity_keys=frozenset({"SAME"}))
    p = plan(Target(Op.CORS_PREFLIGHT, "b", "k", "/b/k"), None, h, policy)
    assert not p.sign
    if kept:
        assert p.query == h.query
    else:
        assert not any(k.startswith("X-Amz-") or k == "AWSAccessKeyId" for k, _ in p.query)
    get = head("GET", "/b/k?X-Amz-Credential=SAME%2Fd", has_body=False)
    assert plan(target(Op.GET_OBJECT), None, get, policy).query == ()


def test_an_anonymous_upload_is_still_checked_and_its_checksum_dropped() -> None:
    h = head(content_length="5", x_amz_checksum_crc32=CRC, x_amz_server_side_encryption="AES256")
    p = plan(target(), None, h, ON)
    assert p.spec.checksum is not None and p.spec.checksum.value == CRC
    assert p.rewrites == {Group.SSE, Group.CHECKSUM}
    assert "x-amz-checksum-crc32" not in names(p)
    hashed = plan(target(), None, head(content_length="5", x_amz_content_sha256="a" * 64), ON)
    assert hashed.spec.sha256_hex == "a" * 64


@pytest.mark.parametrize("value", ["STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "nonsense"])
def test_an_anonymous_request_cannot_claim_a_signed_payload(value: str) -> None:
    with pytest.raises(errors.S3Error) as e:
        plan(target(), None, head(content_length="5", x_amz_content_sha256=value), ON)
    assert e.value.code == "AccessDenied"


EMPTY_CRC = crc32_b64(b"")  # what the JS SDK v3 signs into every presigned PUT/UploadPart
QUERY_CHECKSUMS = (
    ("x-amz-checksum-crc32", EMPTY_CRC),
    ("x-amz-sdk-checksum-algorithm", "CRC32"),
    ("x-amz-checksum-algorithm", "SHA256"),
    ("x-amz-checksum-type", "FULL_OBJECT"),
    ("x-amz-trailer", "x-amz-checksum-crc32c"),
    ("x-amz-checksum-mode", "ENABLED"),
)


def presigned_head(length: int, query: tuple[tuple[str, str], ...], **headers: str) -> RequestHead:
    qs = "&".join(f"{k}={v.replace('=', '%3D')}" for k, v in query)
    return head("PUT", f"/b/k?X-Amz-Signature=0&{qs}", True, content_length=str(length), **headers)


@pytest.mark.parametrize("op", [Op.PUT_OBJECT, Op.UPLOAD_PART])
def test_checksums_in_a_presigned_query_are_no_claim_about_the_body(op: Op) -> None:
    h = presigned_head(5, QUERY_CHECKSUMS)
    on = plan(target(op), ctx(presigned=True), h, ON)
    assert on.spec.checksum is None
    assert on.query == () and on.rewrites == {Group.CHECKSUM}
    # Flag off: the store gets them exactly as sent (in order), and decides.
    off = plan(target(op), ctx(presigned=True), h, OFF)
    assert off.spec.checksum is None
    assert off.query == QUERY_CHECKSUMS and off.rewrites == frozenset()


def test_a_repeated_checksum_parameter_in_a_presigned_query_is_the_stores_to_judge() -> None:
    twice = (("x-amz-checksum-crc32", EMPTY_CRC), ("x-amz-checksum-crc32", CRC))
    off = plan(target(), ctx(presigned=True), presigned_head(5, twice), OFF)
    assert off.spec.checksum is None and off.query == twice
    assert plan(target(), ctx(presigned=True), presigned_head(5, twice), ON).query == ()


def test_a_checksum_header_beside_presigned_query_checksums_is_the_one_verified() -> None:
    h = presigned_head(5, QUERY_CHECKSUMS[:2], x_amz_checksum_crc32=CRC)
    for policy in (ON, OFF):
        p = plan(target(), ctx(presigned=True), h, policy)
        assert p.spec.checksum is not None and p.spec.checksum.value == CRC
    assert ("x-amz-checksum-crc32", CRC) in plan(target(), ctx(presigned=True), h, OFF).headers


@pytest.mark.parametrize("length", [5, SMALL_BODY + 1])
def test_the_record_of_a_presigned_upload_never_comes_from_its_query(length: int) -> None:
    """Read whole: s3shim's own CRC64NVME of the body; streamed unsigned with only a query
    checksum: no record (nothing verified to record)."""
    record = Policy(disable_sse=True, disable_checksums=True, record_checksums=True)
    body = b"x" * length
    p = plan(target(), ctx(presigned=True), presigned_head(length, QUERY_CHECKSUMS[:2]), record)
    assert "x-amz-meta-s3shim-checksum" not in names(p)
    if length > SMALL_BODY:
        assert p.body is BodyMode.STREAM
        return
    recorded = dict(finish_whole(p, "PUT", body, None).headers)["x-amz-meta-s3shim-checksum"]
    c = new_checksum(DEFAULT_ALGORITHM)
    c.update(body)
    assert recorded == encode_record(DEFAULT_ALGORITHM, c.b64digest())
    # Beside a checksum header, the record is the header's algorithm over the verified body.
    h = presigned_head(length, QUERY_CHECKSUMS[:2], x_amz_checksum_crc32=crc32_b64(body))
    p = plan(target(), ctx(presigned=True), h, record)
    again = dict(finish_whole(p, "PUT", body, crc32_b64(body)).headers)
    assert again["x-amz-meta-s3shim-checksum"] == f"CRC32:{crc32_b64(body)}"


def test_sigv2_query_parameters_never_reach_the_store() -> None:
    h = head("GET", "/b/k?AWSAccessKeyId=a&Expires=1&Signature=s&versionId=v", has_body=False)
    p = plan(target(Op.GET_OBJECT), ctx(presigned=True), h, ON)
    assert p.query == (("versionId", "v"),)


# ---------------------------------------------------------------- SigV2


def v2ctx(presigned: bool) -> AuthContext:
    return AuthContext(
        "AK", presigned, "", "", "", b"", "", sigv4.UNSIGNED_PAYLOAD, (), scheme="sigv2"
    )


@pytest.mark.parametrize("param", ["encryption", "publicAccessBlock", "retention", "legal-hold"])
def test_sigv2_refuses_an_unsigned_sub_resource(param: str) -> None:
    h = head("GET", f"/b/k?{param}", has_body=False, authorization="AWS AK:sig")
    with pytest.raises(errors.S3Error) as e:
        plan(target(Op.OBJECT_SUBRESOURCE), v2ctx(False), h, ON)
    assert (e.value.status, e.value.code) == (403, "AccessDenied")


def test_sigv2_passes_listing_parameters_and_signed_sub_resources() -> None:
    h = head("GET", "/b?prefix=a&max-keys=2&acl", has_body=False, authorization="AWS AK:sig")
    p = plan(Target(Op.BUCKET_SUBRESOURCE, "b", None, "/b"), v2ctx(False), h, ON)
    assert dict(p.query) == {"prefix": "a", "max-keys": "2", "acl": ""}


def test_sigv2_query_amz_parameters_become_headers_and_auth_parameters_vanish() -> None:
    h = head(
        "PUT",
        "/b/k?AWSAccessKeyId=AK&Expires=9&Signature=s&x-amz-acl=public-read"
        "&x-amz-server-side-encryption=AES256&content-type=text/plain",
        content_length="3",
    )
    p = plan(target(), v2ctx(True), h, ON)
    assert p.query == ()
    assert dict(p.headers)["x-amz-acl"] == "public-read"
    assert "x-amz-server-side-encryption" not in dict(p.headers) and Group.SSE in p.rewrites
    off = plan(target(), v2ctx(True), h, OFF)
    assert dict(off.headers)["x-amz-server-side-encryption"] == "AES256"


# ---------------------------------------------------------------- form uploads


def _form(fields: list[tuple[str, str]], query: str = "") -> tuple[FormPlan, bytes]:
    body, ctype = urllib3.encode_multipart_formdata([*fields, ("file", ("f.bin", b"hello"))])
    items = [
        ("Host", "s3shim.example:8080"),
        ("Content-Type", ctype),
        ("Content-Length", str(len(body))),
        ("Origin", "http://app.test"),
        ("X-Amz-Acl", "public-read"),
    ]
    h = parse_head("POST", "/b" + query, items, True)
    return form_plan(Target(Op.POST_OBJECT, "b", None, "/b"), h, settings(), NOW), body


def _fields_read(fp: FormPlan, body: bytes) -> UpstreamPlan:
    fp.upload.feed(body)
    assert fp.upload.store_form is not None
    return form_request(fp)


def test_a_form_upload_answer_names_the_clients_origin_not_the_stores() -> None:
    fp, body = _form([("key", "k")])
    assert fp.relocate == ("http://rgw:7480", "https://s3shim.example:8080")
    doc = (
        b"<PostResponse><Location>http://rgw:7480/b/k</Location><Bucket>b</Bucket>"
        b"<Key>k</Key></PostResponse>"
    )
    pair = fp.relocate
    assert relocated(pair, doc) == doc.replace(b"http://rgw:7480", b"https://s3shim.example:8080")
    assert relocated(pair, b"http://rgw:7480/b/k") == b"https://s3shim.example:8080/b/k"
    assert relocated(pair, b"http://app.test/done?key=k") == b"http://app.test/done?key=k"
    # Its Location header is relocated whatever the status, the body only in a 201
    # PostResponse.
    p = _fields_read(fp, body)
    got = p.respond(204, [("Location", "http://rgw:7480/b/k")], None, "ID")
    assert ("Location", "https://s3shim.example:8080/b/k") in got.headers
    assert got.relocate is None and got.body is Reply.NONE
    created = p.respond(201, [("Content-Length", str(len(doc)))], None, "ID")
    assert created.body is Reply.WHOLE and created.relocated(doc) == relocated(pair, doc)
    assert p.respond(200, [("Content-Length", "9")], None, "ID").relocated(doc) == doc


def test_a_form_goes_to_the_store_with_its_own_framing_and_only_the_kept_head_headers() -> None:
    fp, body = _form([("key", "k")], "?x-id=PostObject")
    assert dict(fp.headers) == {"origin": "http://app.test"}
    p = _fields_read(fp, body)
    assert not p.sign and p.body is BodyMode.STREAM and p.store_creds is None
    assert p.headers[:1] == (("origin", "http://app.test"),)
    sent = dict(p.headers)
    assert sent["content-type"] == fp.upload.content_type
    assert sent["content-length"] == str(fp.upload.content_length)
    # Anonymous: the store reads the query as it would directly. A verified form: no query.
    assert p.query == (("x-id", "PostObject"),)
    s3 = s3_client(
        "http://s3shim.example:8080",
        "AK",
        "secret",
        region="default",
        signature_version="s3v4",
        s3=PATH_STYLE,
    )
    signed = s3.generate_presigned_post("b", "k")["fields"]
    fp, body = _form(list(signed.items()), "?x-id=PostObject")
    assert _fields_read(fp, body).query == ()


@pytest.mark.parametrize("length", [None, "", "x", "-1", "²"])
def test_a_form_without_a_plain_content_length_is_refused(length: str | None) -> None:
    items = [("Host", "s3shim"), ("Content-Type", "multipart/form-data; boundary=x")]
    if length is not None:
        items.append(("Content-Length", length))
    h = parse_head("POST", "/b", items, True)
    with pytest.raises(errors.S3Error) as e:
        form_plan(Target(Op.POST_OBJECT, "b", None, "/b"), h, settings(), NOW)
    assert e.value.code == "MissingContentLength"


# ---------------------------------------------------------------- the surface around plan()


def test_sigv2_is_its_own_scheme_refused_when_not_accepted_as_a_verification_failure() -> None:
    h = head("GET", "/b/k", has_body=False, authorization="AWS AK:c2lnbmF0dXJl", date="x")
    assert scheme(target(Op.GET_OBJECT), h, ON) is Scheme.SIGV2
    q = head("GET", "/b/k?AWSAccessKeyId=AK&Expires=1&Signature=x", has_body=False)
    assert scheme(target(Op.GET_OBJECT), q, ON) is Scheme.SIGV2
    off = Policy(True, True, allow_sigv2=False)
    assert scheme(target(Op.GET_OBJECT), h, off) is Scheme.SIGV2  # refused by verify()
    with pytest.raises(errors.S3Error) as e:
        verify(Scheme.SIGV2, h, settings(off), NOW)
    assert (e.value.status, e.value.code) == (403, "AccessDenied")
    assert "SigV2 is not accepted" in e.value.message
    v4 = head("GET", "/b/k", has_body=False, authorization="AWS4-HMAC-SHA256 Credential=AK/x")
    assert scheme(target(Op.GET_OBJECT), v4, off) is Scheme.SIGV4
    assert scheme(Target(Op.POST_OBJECT, "b", None, "/b"), v4, off) is Scheme.FORM


def test_a_verified_request_is_signed_with_its_clients_store_key_and_sent_as_signed() -> None:
    h = head("GET", "/b/a%20b?uploads", has_body=False)
    t = Target(Op.GET_OBJECT, "b", "a b", "/b/a%20b")
    p = plan(t, ctx(), h, ON, settings().clients)
    assert p.store_creds == sigv4.Credentials("STOREKEY", "storesecret")
    path, sent = store_request(p, p.headers, "UNSIGNED-PAYLOAD", "20261201T000000Z", settings())
    assert path == "/b/a%20b?uploads="
    names = [n for n, _ in sent]
    assert "authorization" in names and "host" not in names
    assert dict(sent)["authorization"].startswith("AWS4-HMAC-SHA256 Credential=STOREKEY/")
    # Unverified: the same target, no credentials at all.
    anon = plan(t, None, h, ON, settings().clients)
    path, sent = store_request(anon, anon.headers, "UNSIGNED-PAYLOAD", "", settings())
    assert path == "/b/a%20b?uploads=" and sent == anon.headers


@pytest.mark.parametrize(
    ("method", "status", "length", "reply"),
    [
        ("GET", 200, str(SMALL_RESPONSE), Reply.WHOLE),
        ("GET", 200, str(SMALL_RESPONSE + 1), Reply.STREAM),
        ("GET", 200, None, Reply.STREAM),
        ("GET", 200, "1x", Reply.STREAM),
        ("GET", 404, "200", Reply.WHOLE),
        ("GET", 204, "0", Reply.NONE),
        ("GET", 304, "10", Reply.NONE),
        ("HEAD", 200, "10", Reply.NONE),
    ],
)
def test_a_small_answer_is_read_whole_a_large_one_streamed_and_some_have_no_body(
    method: str, status: int, length: str | None, reply: Reply
) -> None:
    p = plan(target(Op.GET_OBJECT), ctx(), head(method, has_body=False), ON)
    answer = p.respond(status, [("Content-Length", length)] if length else [], None, "ID")
    assert answer.body is reply
    assert answer.length == (int(length) if length and length.isdigit() else None)
    assert answer.relocate is None and answer.verifier is None
