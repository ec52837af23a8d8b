"""Responses at the aiohttp layer: bodiless statuses keep the connection usable, store errors
pass through, an unreachable store is 503, a store failing mid-body cuts the client off, and
UploadPart gets the checksum s3shim verified.

The store is the recording fake, scripted per request: it shows how s3shim handles each kind
of answer, never how a real store answers.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from testkit.fakestore import Reply
from testkit.helpers import crc32_b64
from testkit.inprocess import InProcessShim, MakeShim, payload, target

MiB = 1024 * 1024


@pytest.mark.parametrize(
    ("method", "reply"),
    [
        ("HEAD", Reply(200, (("Content-Length", "12345"), ("ETag", '"abc"')))),
        ("DELETE", Reply(204)),
        ("GET", Reply(304, (("ETag", '"abc"'),))),
    ],
    ids=["HEAD", "204", "304"],
)
async def test_a_bodiless_response_keeps_the_connection_usable(
    inproc: InProcessShim, method: str, reply: Reply
) -> None:
    inproc.store.script(reply, Reply(200, body=b"the second response"))
    conn = await inproc.client.connect()
    try:
        extra = {"if-none-match": '"abc"'} if reply.status == 304 else {}
        await conn.send_head(method, "/b/k", inproc.client.sign(method, "/b/k", headers=extra))
        first = await conn.response(method)
        # A stray body byte after a bodiless response would corrupt the next one.
        await conn.send_head("GET", "/b/k2", inproc.client.sign("GET", "/b/k2"))
        second = await conn.response("GET")
    finally:
        await conn.close()
    assert first.status == reply.status and first.body == b""
    if method == "HEAD":
        assert first.header("content-length") == "12345"
    if reply.status != 204:
        assert first.header("etag") == '"abc"'
    assert (second.status, second.body, second.complete) == (200, b"the second response", True)
    assert [rec.method for rec in inproc.store.received] == [method, "GET"]


@pytest.mark.parametrize(("status", "code"), [(500, "InternalError"), (404, "NoSuchKey")])
async def test_a_store_error_reaches_the_client_as_the_store_sent_it(
    inproc: InProcessShim, status: int, code: str
) -> None:
    reply = Reply.error(status, code)
    inproc.store.script(reply)
    r = await inproc.client.request("GET", "/b/k")
    assert (r.status, r.code, r.body) == (status, code, reply.body)
    assert r.header("content-type") == "application/xml"
    (line,) = await inproc.logs.request_lines()
    # The store's request id is kept (it matches the one in its error body); s3shim's own
    # is logged beside it.
    assert r.header("x-amz-request-id") == "fake-store-1" == line["upstream_request_id"]
    assert line["request_id"] != "fake-store-1"
    assert line["upstream_status"] == status and line["status"] == status
    assert line["level"] == ("warning" if status >= 500 else "info")


async def test_an_unreachable_store_is_503_service_unavailable(make_inproc: MakeShim) -> None:
    with socket.socket() as s:  # a port nothing listens on any more
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inproc = await make_inproc(upstream=f"http://127.0.0.1:{port}")
    r = await inproc.client.request("GET", "/b/k")
    assert (r.status, r.code) == (503, "ServiceUnavailable")
    assert b"<RequestId>" in r.body and r.header("content-type") == "application/xml"
    assert inproc.metric("s3shim_upstream_errors_total") == 1
    assert inproc.metric("s3shim_requests_total", operation="GetObject", status="503") == 1
    (line,) = await inproc.logs.request_lines()
    assert line["status"] == 503 and line["upstream_error"]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_store_response_cut_mid_body_cuts_the_client_off(
    inproc: InProcessShim, chunked: bool
) -> None:
    body = payload(400_000)
    inproc.store.script(Reply(200, body=body, cut_after=100_000, chunked=chunked))
    r = await inproc.client.request("GET", "/b/k")
    assert r.status == 200
    assert not r.complete and len(r.body) <= 100_000
    assert body.startswith(r.body)
    if not chunked:
        assert r.header("content-length") == str(len(body))
    (line,) = await inproc.logs.request_lines()
    assert line["stream_error"]


async def test_a_complete_store_response_reaches_the_client_whole(inproc: InProcessShim) -> None:
    body = payload(3 * MiB)
    inproc.store.script(Reply(200, (("ETag", '"e"'),), body))
    r = await inproc.client.request("GET", "/b/k")
    assert (r.status, r.complete, r.body) == (200, True, body)
    assert r.header("server") == "s3shim"
    (line,) = await inproc.logs.request_lines()
    assert line["bytes_out"] == len(body) and "stream_error" not in line
    # The store sent no request id: s3shim's fills in.
    assert r.header("x-amz-request-id") == line["request_id"]


async def test_a_client_gone_while_a_slow_store_commits_is_logged_as_a_stream_error(
    inproc: InProcessShim,
) -> None:
    gate = asyncio.Event()  # the store answers only once the client has hung up
    inproc.store.script(Reply(200, (("ETag", '"e"'),), gate=gate))
    data = payload(5000)
    headers = inproc.client.sign("PUT", "/b/k", body=data)
    headers["content-length"] = str(len(data))
    conn = await inproc.client.connect()
    await conn.send_head("PUT", "/b/k", headers)
    await conn.send(data)
    (rec,) = await inproc.store.wait_done(1)
    await conn.close()
    gate.set()
    (line,) = await inproc.logs.request_lines()
    # The upload was not cancelled with the client (handler_cancellation=False): the store
    # got the whole body and answered, and the line says so.
    assert rec.complete and rec.body == data
    assert line["upstream_status"] == 200
    # A client hanging up is not a bug of s3shim's.
    assert "exc_type" not in line and line["level"] != "error"
    assert line["status"] == 200 and line["stream_error"]


PART = [("partNumber", "1"), ("uploadId", "upload-1")]


@pytest.mark.parametrize("size", [5000, MiB + 1], ids=["whole", "streamed"])
async def test_upload_part_gets_the_verified_crc32_the_store_did_not_return(
    inproc: InProcessShim, size: int
) -> None:
    data = payload(size)
    inproc.store.script(Reply(200, (("ETag", '"part-1"'),)))
    r = await inproc.client.request(
        "PUT", "/b/k", query=PART, headers={"x-amz-checksum-crc32": crc32_b64(data)}, body=data
    )
    assert r.status == 200
    assert r.header("x-amz-checksum-crc32") == crc32_b64(data)
    assert r.header("etag") == '"part-1"'
    (rec,) = inproc.store.received
    assert rec.target == target("/b/k", PART) and rec.body == data


async def test_upload_part_keeps_the_stores_own_checksum(inproc: InProcessShim) -> None:
    data = payload(5000)
    inproc.store.script(Reply(200, (("x-amz-checksum-crc32", "AAAAAA=="),)))
    r = await inproc.client.request(
        "PUT", "/b/k", query=PART, headers={"x-amz-checksum-crc32": crc32_b64(data)}, body=data
    )
    assert r.status == 200
    assert [v for k, v in r.headers if k.lower() == "x-amz-checksum-crc32"] == ["AAAAAA=="]


async def test_upload_part_refused_by_the_store_gets_no_checksum(inproc: InProcessShim) -> None:
    data = payload(5000)
    inproc.store.script(Reply.error(500, "InternalError"))
    r = await inproc.client.request(
        "PUT", "/b/k", query=PART, headers={"x-amz-checksum-crc32": crc32_b64(data)}, body=data
    )
    assert r.status == 500
    assert r.header("x-amz-checksum-crc32") is None


async def test_upload_part_without_a_checksum_gets_none(inproc: InProcessShim) -> None:
    r = await inproc.client.request("PUT", "/b/k", query=PART, body=payload(5000))
    assert r.status == 200
    assert not [k for k, _ in r.headers if k.lower().startswith("x-amz-checksum-")]
