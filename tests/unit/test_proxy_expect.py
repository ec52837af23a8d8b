"""``Expect: 100-continue`` at the aiohttp layer: who tells the client to send its body.

The store answers the expectation (s3shim forwards it and relays the store's 100 Continue),
except where s3shim reads the body whole before the store's head can go out. A final answer
from the store before its 100 reaches the client with none of the body read, and the client's
connection closes. The store is the recording fake (testkit/fakestore.py): it answers 100
Continue before reading a body, as RGW does, unless its reply says otherwise; these tests show
what s3shim does, tests/e2e/test_forwarding_expect.py what the real stores make of it.
"""

from __future__ import annotations

import dataclasses

import pytest

from s3shim import proxy
from s3shim.classify import Op
from s3shim.head import RequestHead, parse_head
from s3shim.plan import SMALL_BODY, BodyMode, Continue, plan
from s3shim.rewrite import Policy
from testkit.fakestore import Reply
from testkit.helpers import crc32_b64
from testkit.inprocess import (
    WAIT,
    InProcessShim,
    MakeShim,
    payload,
    sha256_hex,
    store_signature_valid,
)
from testkit.plans import auth_context, object_target

MiB = 1024 * 1024
BIG = 2 * MiB  # streamed whatever the expectation
UNSIGNED = "UNSIGNED-PAYLOAD"
UNSIGNED_TRAILER_HASH = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
CRC_HEADER = "x-amz-checksum-crc32"
CRC = crc32_b64(b"x" * 1000)
STREAM, WHOLE = BodyMode.STREAM, BodyMode.WHOLE


@pytest.fixture(params=[True, False], ids=["flags-on", "flags-off"])
async def patient(
    make_inproc: MakeShim, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> InProcessShim:
    """s3shim (both flag settings) waiting for the store's 100 Continue longer than any test
    runs: only the store can release a body."""
    monkeypatch.setattr(proxy, "UPSTREAM_CONTINUE_TIMEOUT", WAIT * 10)
    return await make_inproc(flags=bool(request.param))


@pytest.fixture
async def patient_on(make_inproc: MakeShim, monkeypatch: pytest.MonkeyPatch) -> InProcessShim:
    """As ``patient``, flags on only (recording on)."""
    monkeypatch.setattr(proxy, "UPSTREAM_CONTINUE_TIMEOUT", WAIT * 10)
    return await make_inproc(flags=True)


def expect_head(inproc: InProcessShim, size: int, **extra: str) -> dict[str, str]:
    headers = inproc.client.sign("PUT", "/b/k", payload_hash="UNSIGNED-PAYLOAD", headers=extra)
    headers.update({"content-length": str(size), "expect": "100-continue"})
    return headers


def before_100(status: int, code: str) -> Reply:
    """The store's final answer from the head alone, its body never read (RGW's refusals)."""
    return dataclasses.replace(Reply.error(status, code), read_body=False)


async def test_the_stores_100_continue_invites_the_body(patient: InProcessShim) -> None:
    inproc = patient
    data = payload(BIG)
    conn = await inproc.client.connect()
    try:
        await conn.send_head("PUT", "/b/k", expect_head(inproc, BIG))
        assert await conn.interim() == 100
        # Only the store's own 100 could have released it (see `patient`).
        (rec,) = inproc.store.received
        assert rec.continued and rec.values("expect") == ["100-continue"]
        await conn.send(data)
        r = await conn.response("PUT")
    finally:
        await conn.close()
    assert r.status == 200 and r.interim == []  # the one 100 was read above
    assert r.raw.count(b"100 Continue") == 0
    await inproc.store.wait_done()
    assert rec.complete and rec.body == data
    assert store_signature_valid(rec)  # Expect is not signed: a hop may drop it


@pytest.mark.parametrize(
    ("anonymous", "status", "code"),
    [(False, 404, "NoSuchBucket"), (True, 403, "AccessDenied")],
    ids=["signed-missing-bucket", "anonymous-private-bucket"],
)
async def test_a_final_answer_before_100_continue_reaches_the_client_with_no_body_read(
    patient: InProcessShim, anonymous: bool, status: int, code: str
) -> None:
    inproc = patient
    inproc.store.script(before_100(status, code))
    if anonymous:
        host = inproc.endpoint.removeprefix("http://")
        headers = {"host": host, "content-length": str(BIG), "expect": "100-continue"}
    else:
        headers = expect_head(inproc, BIG)
    conn = await inproc.client.connect()
    try:
        await conn.send_head("PUT", "/b/k", headers)  # and nothing more: never invited
        r = await conn.response("PUT")
    finally:
        await conn.close()
    assert (r.status, r.code) == (status, code)
    assert r.interim == [] and b"100 Continue" not in r.raw
    # The body was never read: the client must not reuse the connection.
    assert (r.header("connection") or "").lower() == "close"
    (rec,) = inproc.store.received
    assert rec.header("expect") == "100-continue" and not rec.continued
    assert ("authorization" in rec.names) is not anonymous
    (line,) = await inproc.logs.request_lines()
    assert line["status"] == status and line["upstream_status"] == status
    assert line["bytes_in"] == 0
    # The store's connection, with a request whose body was never sent, is not reused.
    assert (await inproc.client.request("GET", "/b/other")).status == 200
    assert inproc.store.connections_opened == 2


async def test_a_body_sent_anyway_after_a_final_answer_is_never_read_as_a_request(
    patient: InProcessShim,
) -> None:
    """A client that stopped waiting for 100 Continue sends its body regardless; here that
    body holds requests of its own, and one more follows it: none may be run."""
    inproc = patient
    inproc.store.script(before_100(403, "AccessDenied"))
    smuggled = b"DELETE /b/victim HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    body = (smuggled * 4).ljust(BIG, b"x")
    conn = await inproc.client.connect()
    try:
        await conn.send_head("PUT", "/b/k", expect_head(inproc, len(body)))
        r = await conn.response("PUT")
        assert r.status == 403
        await conn.send(body + smuggled)  # the body, and one more request after it
        rest = await conn.reader.read()  # until s3shim closes the connection
    finally:
        await conn.close()
    assert rest == b""
    assert [rec.method for rec in inproc.store.received] == ["PUT"]


async def test_a_store_that_ignores_the_expectation_gets_the_body_after_a_short_wait(
    make_inproc: MakeShim, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(proxy, "UPSTREAM_CONTINUE_TIMEOUT", 0.01)
    inproc = await make_inproc()
    inproc.store.script(Reply(continues=False))
    data = payload(BIG)
    interim, _, r = await inproc.after_continue("PUT", "/b/k", expect_head(inproc, BIG), data)
    assert interim == 100  # s3shim's, once the store stayed silent
    assert r.status == 200
    (rec,) = await inproc.store.wait_done()
    assert rec.header("expect") == "100-continue" and not rec.continued
    assert rec.complete and rec.body == data


PART = [("partNumber", "1"), ("uploadId", "u")]


@pytest.mark.parametrize("part", [True, False], ids=["upload-part", "put-with-checksum-header"])
async def test_a_small_upload_the_store_can_refuse_first_streams_with_the_expectation(
    patient_on: InProcessShim, part: bool
) -> None:
    """Recording on: an UploadPart has no record, and a PutObject's record from its header
    checksum is the same whether the body is read whole or streamed."""
    inproc = patient_on
    data = payload(1000)
    crc = crc32_b64(data)
    query = PART if part else None
    extra = {} if part else {"x-amz-checksum-crc32": crc}
    target = "/b/k?partNumber=1&uploadId=u" if part else "/b/k"
    headers = inproc.client.sign("PUT", "/b/k", query=query, body=data, headers=extra)
    headers.update({"content-length": str(len(data)), "expect": "100-continue"})
    interim, _, r = await inproc.after_continue("PUT", target, headers, data)
    assert interim == 100
    assert r.status == 200
    (rec,) = await inproc.store.wait_done()
    assert rec.continued and rec.complete and rec.body == data
    # Streamed as every large body is: unsigned, exact length, verified as it passed.
    assert rec.header("x-amz-content-sha256") == "UNSIGNED-PAYLOAD"
    assert rec.header("content-length") == "1000"
    assert rec.header("x-amz-meta-s3shim-checksum") == (None if part else f"CRC32:{crc}")


async def test_a_small_upload_with_a_wrong_hash_after_100_continue_leaves_the_store_short(
    patient: InProcessShim,
) -> None:
    inproc = patient
    data = payload(1000)
    headers = inproc.client.sign("PUT", "/b/k", query=PART, body=b"other bytes")
    headers.update({"content-length": str(len(data)), "expect": "100-continue"})
    target = "/b/k?partNumber=1&uploadId=u"
    interim, _, r = await inproc.after_continue("PUT", target, headers, data)
    assert interim == 100
    assert (r.status, r.code) == (400, "XAmzContentSHA256Mismatch")
    await inproc.store.settled()
    (rec,) = inproc.store.received
    assert rec.continued and not rec.complete and len(rec.body) < len(data)


async def test_a_small_put_recorded_from_its_bytes_is_invited_by_s3shim(
    inproc_on: InProcessShim,
) -> None:
    """No checksum declared in a header, recording on: s3shim reads the body whole to
    compute the record, so it says 100 Continue itself, and the store never sees Expect."""
    inproc = inproc_on
    data = payload(1000)
    headers = expect_head(inproc, len(data))
    interim, opened, r = await inproc.after_continue("PUT", "/b/k", headers, data)
    assert interim == 100 and opened == 0
    assert r.status == 200
    (rec,) = inproc.store.received
    assert "expect" not in rec.names and rec.body == data
    assert rec.header("x-amz-content-sha256") == sha256_hex(data)
    assert (rec.header("x-amz-meta-s3shim-checksum") or "").startswith("CRC64NVME:")


async def test_a_complete_multipart_upload_rewritten_by_s3shim_is_invited_by_s3shim(
    inproc_on: InProcessShim,
) -> None:
    inproc = inproc_on
    xml = (
        b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>e</ETag>"
        b"<ChecksumCRC32>AAAAAA==</ChecksumCRC32></Part></CompleteMultipartUpload>"
    )
    query = [("uploadId", "u")]
    headers = inproc.client.sign("POST", "/b/k", query=query, body=xml)
    headers.update({"content-length": str(len(xml)), "expect": "100-continue"})
    interim, opened, r = await inproc.after_continue("POST", "/b/k?uploadId=u", headers, xml)
    assert interim == 100 and opened == 0
    assert r.status == 200
    # (ListParts comes first: the part sizes of the checksum recorded after the Complete.)
    (rec,) = [x for x in inproc.store.received if x.method == "POST"]
    assert "expect" not in rec.names and b"ChecksumCRC32" not in rec.body


@pytest.mark.parametrize(
    ("spoil", "status", "code"),
    [
        ("signature", 403, "SignatureDoesNotMatch"),
        ("checksum-header", 400, "InvalidRequest"),
    ],
)
async def test_s3shims_own_refusal_comes_before_the_store_hears_of_the_request(
    inproc: InProcessShim, spoil: str, status: int, code: str
) -> None:
    if spoil == "checksum-header":
        headers = expect_head(inproc, BIG, **{"x-amz-checksum-crc32": "not base64!"})
    else:
        headers = expect_head(inproc, BIG)
        headers["authorization"] = headers["authorization"][:-1] + (
            "0" if headers["authorization"][-1] != "0" else "1"
        )
    conn = await inproc.client.connect()
    try:
        await conn.send_head("PUT", "/b/k", headers)
        r = await conn.response("PUT")
    finally:
        await conn.close()
    assert (r.status, r.code) == (status, code)
    assert r.interim == [] and (r.header("connection") or "").lower() == "close"
    assert inproc.store.connections_opened == 0 and inproc.store.received == []


async def test_a_request_without_the_expectation_is_not_given_one(inproc: InProcessShim) -> None:
    data = payload(BIG)
    r = await inproc.client.request("PUT", "/b/k", body=data)
    assert r.status == 200 and r.interim == []
    (rec,) = inproc.store.received
    assert "expect" not in rec.names and rec.body == data


# -- the decision itself (plan.plan, pure) --------------------------------------------------

RECORDING = Policy(disable_sse=True, disable_checksums=True, record_checksums=True)
FLAGS_OFF = Policy(disable_sse=False, disable_checksums=False)
SHA = sha256_hex(b"x" * 1000)


@pytest.mark.parametrize(
    ("op", "length", "hash_", "extra", "policy", "who", "mode"),
    [
        (Op.PUT_OBJECT, BIG, UNSIGNED, {}, RECORDING, Continue.STORE, STREAM),
        (Op.UPLOAD_PART, 1000, SHA, {}, RECORDING, Continue.STORE, STREAM),
        (Op.PUT_OBJECT, 1000, UNSIGNED, {CRC_HEADER: CRC}, RECORDING, Continue.STORE, STREAM),
        (Op.PUT_OBJECT, 1000, SHA, {}, FLAGS_OFF, Continue.STORE, STREAM),
        # The record is computed over the bytes (CRC64NVME), or would change (SHA256):
        (Op.PUT_OBJECT, 1000, UNSIGNED, {}, RECORDING, Continue.SHIM, WHOLE),
        (Op.PUT_OBJECT, 1000, SHA, {}, RECORDING, Continue.SHIM, WHOLE),
        (Op.UPLOAD_PART, 0, UNSIGNED, {}, RECORDING, Continue.SHIM, WHOLE),
        (Op.COMPLETE_MULTIPART_UPLOAD, 1000, SHA, {}, RECORDING, Continue.SHIM, WHOLE),
        (Op.BUCKET_SUBRESOURCE, 1000, SHA, {}, RECORDING, Continue.SHIM, WHOLE),
    ],
)
def test_who_answers_the_expectation(
    op: Op,
    length: int,
    hash_: str,
    extra: dict[str, str],
    policy: Policy,
    who: Continue,
    mode: BodyMode,
) -> None:
    method = "POST" if op is Op.COMPLETE_MULTIPART_UPLOAD else "PUT"
    h = plan_head(method, length, expect="100-continue", **extra)
    p = plan(object_target(op), auth_context(hash_), h, policy)
    assert (p.expect, p.body) == (who, mode)
    assert (("expect", "100-continue") in p.headers) is (who is Continue.STORE)
    if who is Continue.STORE:
        assert p.payload_hash == "UNSIGNED-PAYLOAD"
        assert ("content-length", str(length)) in p.headers
    # Without the expectation: the same request as ever.
    q = plan(object_target(op), auth_context(hash_), plan_head(method, length, **extra), policy)
    assert q.expect is None and "expect" not in {n for n, _ in q.headers}
    assert q.body is (BodyMode.STREAM if length > SMALL_BODY else BodyMode.WHOLE)


def test_a_small_trailer_checksum_handed_on_is_reframed_when_the_store_answers_first() -> None:
    h = plan_head(
        "PUT",
        1000,
        expect="100-continue",
        content_encoding="aws-chunked",
        x_amz_decoded_content_length="1000",
        x_amz_trailer="x-amz-checksum-crc32",
    )
    p = plan(object_target(Op.UPLOAD_PART), auth_context(UNSIGNED_TRAILER_HASH), h, FLAGS_OFF)
    assert (p.expect, p.body) == (Continue.STORE, BodyMode.REFRAME)
    assert ("expect", "100-continue") in p.headers


def plan_head(method: str, length: int, **headers: str) -> RequestHead:
    items = [("Host", "s3shim")] + [(k.replace("_", "-"), v) for k, v in headers.items()]
    if not any(k.lower() == "x-amz-decoded-content-length" for k, _ in items):
        items.append(("content-length", str(length)))
    return parse_head(method, "/b/k", items, length > 0)
