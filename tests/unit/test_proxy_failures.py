"""Bodies s3shim refuses, and its own bugs, at the aiohttp layer.

A refused body never reaches the store whole: a body read whole (<= 1 MiB) is refused before
the store is contacted; a streamed one is cut while the store is still short of the
Content-Length it was sent (the hold-back), so the store cannot commit it. The store here is
the recording fake: it shows what s3shim sent, not what a real store keeps (the RGW tests
show that).
"""

from __future__ import annotations

import pytest

from s3shim import sigv4
from testkit.chunksign import SIGNED, UNSIGNED_TRAILER
from testkit.fakestore import FakeStore
from testkit.helpers import crc32_b64
from testkit.inprocess import (
    InProcessShim,
    MakeShim,
    Response,
    aws_chunked,
    payload,
    sha256_hex,
)

MiB = 1024 * 1024
SMALL, LARGE = 5000, 3 * MiB
SIZES = pytest.mark.parametrize("size", [SMALL, LARGE], ids=["whole", "streamed"])


async def assert_never_whole(store: FakeStore, size: int) -> None:
    """Nothing reached the store (a body read whole), or a request cut short of its
    Content-Length (a streamed one)."""
    await store.settled()
    if size <= MiB:
        assert store.connections_opened == 0 and store.received == []
        return
    (rec,) = store.received
    assert rec.declared_length is not None
    assert not rec.complete and len(rec.body) < rec.declared_length


async def assert_refused(inproc: InProcessShim, r: Response, status: int, code: str) -> None:
    assert (r.status, r.code) == (status, code)
    (line,) = await inproc.logs.request_lines()
    assert (line["status"], line["error"], line["integrity_failure"]) == (status, code, code)
    assert inproc.metric("s3shim_integrity_failures_total", code=code) == 1


@SIZES
async def test_a_wrong_checksum_is_bad_digest(inproc: InProcessShim, size: int) -> None:
    data = payload(size)
    wrong = crc32_b64(data + b"!")
    r = await inproc.client.request(
        "PUT", "/b/k", headers={"x-amz-checksum-crc32": wrong}, body=data
    )
    await assert_refused(inproc, r, 400, "BadDigest")
    await assert_never_whole(inproc.store, size)


@SIZES
async def test_a_wrong_payload_sha256_is_x_amz_content_sha256_mismatch(
    inproc: InProcessShim, size: int
) -> None:
    data = payload(size)
    r = await inproc.client.request("PUT", "/b/k", body=data, payload_hash=sha256_hex(b"other"))
    await assert_refused(inproc, r, 400, "XAmzContentSHA256Mismatch")
    await assert_never_whole(inproc.store, size)


@SIZES
@pytest.mark.parametrize("declared", [+10, -10], ids=["body-short", "body-long"])
async def test_an_aws_chunked_body_not_of_its_decoded_length_is_incomplete_body(
    inproc: InProcessShim, size: int, declared: int
) -> None:
    data = payload(size)
    headers, body = aws_chunked(
        inproc.client,
        "/b/k",
        data,
        UNSIGNED_TRAILER,
        checksum=crc32_b64(data),
        decoded_length=size + declared,
    )
    r = await inproc.client.send("PUT", "/b/k", headers, body)
    await assert_refused(inproc, r, 400, "IncompleteBody")
    await assert_never_whole(inproc.store, size + declared)


async def test_a_client_hanging_up_mid_body_is_incomplete_body(inproc: InProcessShim) -> None:
    data = payload(LARGE)
    headers = inproc.client.sign("PUT", "/b/k", body=data)
    headers["content-length"] = str(len(data))
    conn = await inproc.client.connect()
    await conn.send_head("PUT", "/b/k", headers)
    await conn.send(data[: 2 * MiB])
    await inproc.store.until(lambda: len(inproc.store.received) == 1)  # streaming has begun
    await conn.close()
    (line,) = await inproc.logs.request_lines()
    assert (line["error"], line["integrity_failure"]) == ("IncompleteBody", "IncompleteBody")
    assert inproc.metric("s3shim_integrity_failures_total", code="IncompleteBody") == 1
    await assert_never_whole(inproc.store, LARGE)


@SIZES
async def test_a_bad_chunk_signature_is_signature_does_not_match(
    inproc: InProcessShim, size: int
) -> None:
    data = payload(size)
    chunks = -(-size // (64 * 1024))
    headers, body = aws_chunked(inproc.client, "/b/k", data, SIGNED, tamper_chunk=chunks - 1)
    r = await inproc.client.send("PUT", "/b/k", headers, body)
    await assert_refused(inproc, r, 403, "SignatureDoesNotMatch")
    await assert_never_whole(inproc.store, size)


@SIZES
async def test_a_silent_client_is_request_timeout(make_inproc: MakeShim, size: int) -> None:
    inproc = await make_inproc(S3SHIM_CLIENT_TIMEOUT_SECONDS="1")
    data = payload(size)
    headers = inproc.client.sign("PUT", "/b/k", body=data)
    headers["content-length"] = str(len(data))
    conn = await inproc.client.connect()
    try:
        await conn.send_head("PUT", "/b/k", headers)
        await conn.send(data[: len(data) // 2])  # then nothing: the client falls silent
        r = await conn.response("PUT")
    finally:
        await conn.close()
    await assert_refused(inproc, r, 400, "RequestTimeout")
    await assert_never_whole(inproc.store, size)


# -- s3shim's own bugs: an unexpected exception must still give one S3 answer, one log line
# -- and one count


def _boom(**_: object) -> sigv4.SignedRequest:
    raise RuntimeError("a bug in s3shim")


@pytest.mark.parametrize("expect_continue", [False, True], ids=["plain", "after-100-continue"])
async def test_an_unexpected_exception_is_internal_error_logged_once_and_counted(
    inproc: InProcessShim, monkeypatch: pytest.MonkeyPatch, expect_continue: bool
) -> None:
    data = payload(SMALL)
    headers = inproc.client.sign("PUT", "/b/k", body=data)  # signed before the signer breaks
    headers["content-length"] = str(len(data))
    if expect_continue:
        headers["expect"] = "100-continue"
    monkeypatch.setattr(sigv4, "sign_headers", _boom)  # the proxy calls it through the module
    # Flags on, s3shim reads this small body whole (its record) and invites it itself; flags
    # off, the store would answer the expectation, and the bug strikes before the store is
    # asked: the answer comes with no 100 Continue and no body sent.
    invited_by_shim = inproc.config.disable_checksums
    conn = await inproc.client.connect()
    try:
        await conn.send_head("PUT", "/b/k", headers)
        if expect_continue and invited_by_shim:
            assert await conn.interim() == 100
        if not expect_continue or invited_by_shim:
            await conn.send(data)
        r = await conn.response("PUT")
    finally:
        await conn.close()
    assert (r.status, r.code) == (500, "InternalError")
    assert r.header("content-type") == "application/xml"
    lines = await inproc.logs.request_lines()
    assert len(lines) == 1
    assert (lines[0]["status"], lines[0]["error"]) == (500, "InternalError")
    assert r.header("x-amz-request-id") == lines[0]["request_id"]
    assert inproc.metric("s3shim_requests_total", operation="PutObject", status="500") == 1
    assert inproc.metric("s3shim_in_flight_requests") == 0 and inproc.proxy.active == 0
    assert inproc.store.connections_opened == 0
    if expect_continue and not invited_by_shim:
        assert r.interim == [] and (r.header("connection") or "").lower() == "close"
