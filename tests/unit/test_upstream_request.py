"""s3shim.upstream: the request as it goes out — the head byte for byte, heads and body
framings refused before connecting, bodies in one write or streamed under flow control, and
a body that fails or has another length cut so the store commits nothing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import pytest
import uvloop

from s3shim import upstream as upstream_mod
from s3shim.upstream import UpstreamBodyError, UpstreamError
from testkit.scripted_store import (
    OK,
    WAIT,
    RecordingTransport,
    StoreConn,
    answering,
    get,
    head,
    only_conn,
    pieces,
    settle,
    store_and_client,
    until,
    writes_paused,
)

# -- the head ----------------------------------------------------------------------------------


async def test_the_head_is_sent_byte_for_byte_with_host_first() -> None:
    async with store_and_client(answering(OK), host_header="store.example:9000") as (store, up):
        headers = [
            ("X-Amz-Meta-Name", "v\u00e4lue"),  # as the signer hashed it: UTF-8
            ("x-amz-meta-name", "two"),  # repeats and case kept
            ("x-amz-meta-raw", "\udcff\udcfe"),  # undecodable client bytes, surrogateescaped
            ("range", "bytes=0-1"),
        ]
        async with await up.request("GET", "/b/a%2Fb%20c?x=1&y=%7E&z", headers, None) as r:
            assert (r.status, await r.read()) == (200, b"ok")
    assert store.requests[0].head == (
        b"GET /b/a%2Fb%20c?x=1&y=%7E&z HTTP/1.1\r\n"
        b"Host: store.example:9000\r\n"
        b"X-Amz-Meta-Name: v\xc3\xa4lue\r\n"
        b"x-amz-meta-name: two\r\n"
        b"x-amz-meta-raw: \xff\xfe\r\n"
        b"range: bytes=0-1\r\n"
        b"\r\n"
    )


@pytest.mark.parametrize(
    ("target", "headers"),
    [
        ("/b/k", [("x-a", "1\r\nx-injected: 2")]),
        ("/b/k", [("x-a", "1\n")]),
        ("/b/k", [("x-a", "\r")]),
        ("/b/k", [("x\r\nx-b", "1")]),
        ("/b/k HTTP/1.1\r\nx-b: 1", []),
        ("/b/k x", []),
    ],
    ids=["crlf-value", "lf-value", "cr-value", "crlf-name", "crlf-target", "space-target"],
)
async def test_cr_lf_in_a_header_or_the_target_is_refused_before_connecting(
    target: str, headers: list[tuple[str, str]]
) -> None:
    async with store_and_client(answering(OK)) as (store, up):
        with pytest.raises(ValueError):
            await up.request("GET", target, headers, None)
    assert store.accepted == 0


@pytest.mark.parametrize(
    ("target", "headers"),
    [
        ("/b/k", [("x-amz-meta-a", "a\x00b")]),
        ("/b/k", [("x-amz-meta-a", "a\x0bb")]),
        ("/b/k", [("x-a: b", "c")]),
        ("/b/k", [("", "c")]),
        ("/b/k", [("host", "other.example")]),
        ("/b/k\tx", []),
        ("/b/k\x00", []),
        ("http://other.example/b/k", []),
    ],
    ids=[
        "nul-in-value",
        "ctl-in-value",
        "colon-in-name",
        "empty-name",
        "second-host",
        "tab-in-target",
        "nul-in-target",
        "absolute-form-target",
    ],
)
async def test_a_head_with_bytes_a_parser_may_split_on_is_refused_before_connecting(
    target: str, headers: list[tuple[str, str]]
) -> None:
    async with store_and_client(answering(OK)) as (store, up):
        with pytest.raises(ValueError):
            async with await up.request("GET", target, headers, None) as r:
                await r.read()
    assert store.accepted == 0


@pytest.mark.parametrize(
    ("method", "headers", "body"),
    [
        ("PUT", [("content-length", "3"), ("transfer-encoding", "chunked")], b"abc"),
        ("PUT", [("content-length", "0"), ("content-length", "3")], b"abc"),
        ("GET", [("content-length", "5")], None),
        ("PUT", [("content-length", "5")], b""),
    ],
    ids=["transfer-encoding", "two-content-lengths", "length-without-body", "length-empty-body"],
)
async def test_a_body_framing_the_store_could_read_two_ways_is_refused_before_connecting(
    method: str, headers: list[tuple[str, str]], body: bytes | None
) -> None:
    # (a short read timeout: a store waiting for a body that never comes ends the test soon)
    async with store_and_client(answering(OK), read_timeout=0.5) as (store, up):
        with pytest.raises(ValueError):
            async with await up.request(method, "/b/k", headers, body) as r:
                await r.read()
    assert store.accepted == 0


# -- the body ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1000, 300_000])
async def test_a_bytes_body_is_sent_with_its_head_in_one_write(size: int) -> None:
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    async with store_and_client(answering(OK)) as (store, up):
        await get(up)  # a pooled connection to watch
        conn = only_conn(up)
        conn.transport = recorder = RecordingTransport(conn.transport)
        headers = [("content-length", str(size))]
        async with await up.request("PUT", "/b/k", headers, body) as r:
            assert r.status == 200
    assert store.requests[1].body == body
    (write,) = recorder.writes
    assert b"".join(write) == store.requests[1].head + body
    assert len(write) == (1 if size <= upstream_mod._ONE_WRITE else 2)  # big: vectored


async def test_a_bytes_body_needs_its_exact_content_length() -> None:
    async with store_and_client(answering(OK)) as (store, up):
        for headers in ([], [("Content-Length", "4")]):
            with pytest.raises(ValueError):
                await up.request("PUT", "/b/k", headers, b"abc")
        with pytest.raises(ValueError):  # a streamed one too
            await up.request("PUT", "/b/k", [], pieces([b"abc"]))
    assert store.accepted == 0


async def test_a_streamed_body_goes_out_whole_under_write_flow_control() -> None:
    piece, count = bytes(range(256)) * 256, 256  # 64 KiB x 256 = 16 MiB
    reading = asyncio.Event()

    async def slow_store(conn: StoreConn) -> None:
        head = await conn.read_head()
        assert head is not None
        await reading.wait()  # the client's socket and transport buffers fill up meanwhile
        await conn.read_body(head)
        await conn.send(OK)

    async with store_and_client(slow_store) as (store, up):
        buffered: list[int] = []

        async def body() -> AsyncIterator[bytes]:
            for _ in range(count):
                buffered.append(only_conn(up).transport.get_write_buffer_size())
                yield piece

        headers = [("content-length", str(len(piece) * count))]
        call = asyncio.ensure_future(up.request("PUT", "/b/k", headers, body()))
        await until(lambda: bool(up._conns) and writes_paused(only_conn(up)))
        reading.set()
        async with await call as r:
            assert (r.status, await r.read()) == (200, b"ok")
    assert store.requests[0].complete and store.requests[0].body == piece * count
    # Without waiting for the transport to drain, the whole body would have queued in it.
    assert max(buffered) < 2 * 1024 * 1024


async def test_a_failing_body_aborts_the_request_so_the_store_sees_a_short_body() -> None:
    async def store(conn: StoreConn) -> None:
        await conn.read_request()

    async def body() -> AsyncIterator[bytes]:
        yield b"a" * 1000
        raise RuntimeError("the client went away")

    async with store_and_client(store) as (s, up):
        with pytest.raises(UpstreamBodyError) as info:
            await up.request("PUT", "/b/k", [("content-length", "5000")], body())
        assert isinstance(info.value.__cause__, RuntimeError)
        await until(lambda: len(s.requests) == 1)
    (got,) = s.requests
    assert not got.complete and got.body == b"a" * 1000


@pytest.mark.parametrize(
    ("items", "sent"),
    [([b"a" * 3000, b"b" * 3000], b"a" * 3000), ([b"a" * 3000], b"a" * 3000)],
    ids=["longer", "shorter"],
)
async def test_a_body_of_another_length_than_announced_is_cut_short(
    items: list[bytes], sent: bytes
) -> None:
    async def store(conn: StoreConn) -> None:
        await conn.read_request()

    async with store_and_client(store) as (s, up):
        with pytest.raises(UpstreamBodyError) as info:
            await up.request("PUT", "/b/k", [("content-length", "5000")], pieces(items))
        assert isinstance(info.value.__cause__, ValueError)
        await until(lambda: len(s.requests) == 1)
    assert s.requests[0].body == sent and not s.requests[0].complete


async def ends_badly() -> AsyncIterator[bytes]:
    yield b"a" * 5000  # the whole Content-Length ...
    await asyncio.sleep(0)  # (the check at the end: a digest, a trailer signature)
    raise RuntimeError("the body is refused after its last byte")


@pytest.mark.parametrize(
    "body",
    [ends_badly, lambda: pieces([b"a" * 5000, b"b"])],
    ids=["fails-after-last-byte", "longer-at-a-piece-boundary"],
)
async def test_a_refused_body_never_reaches_the_store_complete(
    body: Callable[[], AsyncIterator[bytes]],
) -> None:
    async with store_and_client(answering(OK)) as (s, up):
        with pytest.raises(UpstreamBodyError):
            await up.request("PUT", "/b/k", [("content-length", "5000")], body())
        await until(lambda: len(s.requests) == 1)
    assert not s.requests[0].complete  # the store would commit a complete body


async def test_a_body_failing_after_an_early_response_still_cuts_the_request() -> None:
    eof = asyncio.Event()

    async def store(conn: StoreConn) -> None:
        assert await conn.read_head() is not None
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
        await conn.until_eof()
        eof.set()

    fail = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"first"
        await fail.wait()
        raise RuntimeError("the client went away")

    headers = [("content-length", "100")]
    async with (
        store_and_client(store) as (_, up),
        await up.request("PUT", "/b/k", headers, body()) as r,
    ):
        assert await r.next_buffer() == b"abc"
        fail.set()
        await asyncio.wait_for(eof.wait(), WAIT)  # cut at once, not when released
        with pytest.raises(UpstreamBodyError):
            await r.next_buffer()


async def test_a_body_iterator_raising_cancelled_error_does_not_hang_the_exchange() -> None:
    raised = False

    async def body() -> AsyncIterator[bytes]:
        nonlocal raised
        yield b"a"
        raised = True
        raise asyncio.CancelledError  # e.g. a future it awaited was cancelled by its owner

    async def store(conn: StoreConn) -> None:
        await conn.read_request()

    async with store_and_client(store) as (_, up):
        call = asyncio.ensure_future(up.request("PUT", "/b/k", [("content-length", "10")], body()))
        try:
            await until(lambda: raised)
            await settle()
            assert call.done()
            with pytest.raises(UpstreamBodyError):
                await call
        finally:
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError, UpstreamError):
                await call


async def test_the_body_iterator_is_closed_when_the_writer_stops() -> None:
    closed = asyncio.Event()

    async def endless() -> AsyncGenerator[bytes, None]:
        try:
            while True:
                yield b"z" * 65536
        finally:
            closed.set()

    async def refusing(conn: StoreConn) -> None:
        await conn.read_head()
        await conn.send(head(6, status="403 Forbidden") + b"denied")
        await asyncio.Event().wait()  # never reads the body: the client's writes back up

    gen = endless()
    async with store_and_client(refusing) as (_, up):
        r = await up.request("PUT", "/b/k", [("content-length", str(1 << 40))], gen)
        conn = only_conn(up)
        await until(lambda: writes_paused(conn))  # the writer waits for a drain, at a yield
        assert (r.status, await r.read()) == (403, b"denied")
        r.release()
        await settle()
        assert closed.is_set()
    await gen.aclose()  # (held until here: only the writer could have closed it above)


def test_the_request_side_under_uvloop() -> None:
    async def scenario() -> None:
        await test_a_streamed_body_goes_out_whole_under_write_flow_control()
        await test_a_failing_body_aborts_the_request_so_the_store_sees_a_short_body()
        await test_a_bytes_body_is_sent_with_its_head_in_one_write(300_000)

    uvloop.run(scenario())
