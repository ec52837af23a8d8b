"""s3shim.upstream: the keep-alive pool — one connection for sequential requests, one each
for concurrent ones, reuse only of a connection whose response ended as framed and kept it
alive (never after an early response, extra bytes, a close, a response not read whole or
too long idle), idle connections pruned, and one resend of an idempotent request with its
body in hand on a connection the store had just closed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import uvloop

from s3shim.http1 import State
from s3shim.upstream import UpstreamBodyError, UpstreamError
from testkit.scripted_store import (
    OK,
    WAIT,
    Hand,
    StoreConn,
    answering,
    get,
    head,
    only_conn,
    pieces,
    store_and_client,
    until,
)

# -- one connection, reused --------------------------------------------------------------------


async def test_sequential_requests_share_one_connection() -> None:
    async with store_and_client(answering(OK)) as (store, up):
        for _ in range(5):
            assert (await get(up))[1] == b"ok"
        length = [("content-length", "3")]
        async with await up.request("PUT", "/b/k", length, b"abc") as r:
            await r.read()
        async with await up.request("PUT", "/b/k", length, pieces([b"abc"])) as r:
            await r.read()
    assert store.accepted == 1 and len(store.requests) == 7


async def test_concurrent_requests_get_their_own_connections() -> None:
    gate = asyncio.Event()

    async def gated(conn: StoreConn) -> None:
        while await conn.read_request() is not None:
            await gate.wait()
            await conn.send(OK)

    async with store_and_client(gated) as (store, up):
        calls = [asyncio.ensure_future(get(up)) for _ in range(3)]
        await until(lambda: len(store.requests) == 3)
        gate.set()
        assert [body for _, body in await asyncio.gather(*calls)] == [b"ok"] * 3
        assert len(up._idle) == 3
    assert store.accepted == 3


async def test_http_1_0_keep_alive_is_pooled() -> None:
    hand = Hand()
    r = await hand.respond(
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n", b"ok"
    )
    assert await r.read() == b"ok"
    r.release()
    assert hand.pooled()


# -- not reused --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ],
    ids=["connection-close", "http-1.0"],
)
async def test_a_connection_the_store_will_close_is_not_reused(reply: bytes) -> None:
    async with store_and_client(answering(reply)) as (store, up):
        await get(up)
        await get(up)
    assert store.accepted == 2


@pytest.mark.parametrize(
    "status_line",
    [
        "HTTP/1.1 200 OK\r\nConnection: close",
        "HTTP/1.0 200 OK",
        "HTTP/1.1 200 OK\r\nConnection: x, close",
    ],
    ids=["connection-close", "http-1.0", "close-token"],
)
async def test_a_connection_the_store_closes_is_not_pooled_on_the_fast_path(
    status_line: str,
) -> None:
    # The body arrives over several reads, so its end is found by _take, not by llhttp.
    hand = Hand()
    r = await hand.respond(status_line.encode() + b"\r\nContent-Length: 10\r\n\r\n01", b"23456789")
    assert await r.read() == b"0123456789"
    r.release()
    assert not hand.pooled()


async def test_a_response_not_read_whole_closes_its_connection() -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n" + b"x" * 2_000_000
    async with store_and_client(answering(reply, OK)) as (store, up):
        async with await up.request("GET", "/b/k", (), None) as r:
            assert await r.next_buffer()
        assert (await get(up))[1] == b"ok"
    assert store.accepted == 2


async def test_an_early_response_is_returned_and_its_connection_is_not_reused() -> None:
    rest: list[bytes] = []

    async def refusing_store(conn: StoreConn) -> None:
        if conn.index == 0:
            assert await conn.read_head() is not None
            await conn.send(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\n\r\ndenied")
            rest.append(await conn.until_eof())
        else:
            await answering(OK)(conn)

    ended = asyncio.Event()
    more = asyncio.Event()  # never set: the client's body would go on forever

    async def body() -> AsyncIterator[bytes]:
        try:
            yield b"first"
            await more.wait()
            yield b"never"
        finally:
            ended.set()

    async with store_and_client(refusing_store) as (store, up):
        r = await up.request("PUT", "/b/k", [("content-length", "100")], body())
        async with r:
            assert (r.status, r.reason, await r.read()) == (403, "Forbidden", b"denied")
        await asyncio.wait_for(ended.wait(), WAIT)  # the writer was cancelled with the response
        assert (await get(up))[1] == b"ok"
        assert store.accepted == 2
        await until(lambda: bool(rest))
    assert rest == [b"first"]


async def test_an_early_response_never_pools_its_connection() -> None:
    smuggled = asyncio.Event()

    def echo(request_head: bytes) -> bytes:
        line = request_head.split(b"\r\n", 1)[0]
        return head(len(line)) + line

    async def store(conn: StoreConn) -> None:
        if conn.index == 0:
            await conn.read_head()
            await conn.send(head(6, status="403 Forbidden") + b"denied")
            # Answered early, kept alive, body not drained: what follows is a request.
            second = await conn.read_head()
            smuggled.set()
            third = await conn.read_head()
            if second is None or third is None:
                return  # the client closed it instead of sending another request: right
            await conn.send(echo(second) + echo(third))
        while (h := await conn.read_head()) is not None:
            await conn.send(echo(h))

    go = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"GET /smuggled HTTP/1.1\r\n"
        await go.wait()
        yield b"x-a: 1\r\n\r\n"

    length = len(b"GET /smuggled HTTP/1.1\r\nx-a: 1\r\n\r\n")
    async with store_and_client(store) as (_, up):
        r = await up.request("PUT", "/b/k", [("content-length", str(length))], body())
        assert (r.status, await r.read()) == (403, b"denied")
        go.set()  # the proxy is still relaying the 403 while the body goes on out
        await asyncio.wait_for(smuggled.wait(), WAIT)
        r.release()
        assert (await get(up))[1] == b"GET /b/k HTTP/1.1"


async def test_bytes_after_a_pooled_response_close_the_idle_connection() -> None:
    hand = Hand()
    r = await hand.respond(head(2) + b"ok")
    await r.read()
    r.release()
    assert hand.pooled()
    hand.conn.data_received(b"HTTP/1.1 200 OK\r\n")  # nobody asked: framing lost
    assert hand.wire.aborted and hand.conn.state is State.MUST_CLOSE


async def test_a_connection_the_store_closed_while_idle_is_not_used() -> None:
    async def once(conn: StoreConn) -> None:
        await conn.read_request()
        await conn.send(OK)

    async with store_and_client(once) as (store, up):
        await get(up)
        conn = only_conn(up)
        await until(lambda: conn.state is State.MUST_CLOSE)
        # A streamed body cannot be retried: it only succeeds if the stale one was skipped.
        async with await up.request("PUT", "/b/k", [("content-length", "1")], pieces([b"x"])) as r:
            assert r.status == 200
    assert store.accepted == 2


async def test_a_connection_idle_too_long_is_not_used() -> None:
    async with store_and_client(answering(OK), idle_timeout=0.05) as (store, up):
        await get(up)
        await asyncio.sleep(0.1)  # idle for longer than idle_timeout, whatever the machine
        await get(up)
        await get(up)  # without a pause: reused
    assert store.accepted == 2


async def test_idle_connections_are_closed_while_no_request_comes() -> None:
    # After a burst, a quiet pool must not keep every connection open until its next use.
    closed = asyncio.Event()

    async def serve(conn: StoreConn) -> None:
        await answering(OK)(conn)  # returns when the client closes the connection
        closed.set()

    async with store_and_client(serve, idle_timeout=0.05) as (store, up):
        await get(up)
        await asyncio.wait_for(closed.wait(), WAIT)  # no request needed to close it
        assert not up._idle and up._pruner is None  # nothing left to prune: no timer
        await get(up)  # a new connection, and pruning armed again
        assert up._pruner is not None
    assert store.accepted == 2


async def test_close_closes_idle_connections_and_refuses_new_requests() -> None:
    eof = asyncio.Event()

    async def serve(conn: StoreConn) -> None:
        await answering(OK)(conn)
        eof.set()

    async with store_and_client(serve) as (_, up):
        await get(up)
        await up.close()
        await asyncio.wait_for(eof.wait(), WAIT)
        with pytest.raises(UpstreamError):
            await up.request("GET", "/", (), None)


# -- sent again, or never ----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["close", "reset"])
@pytest.mark.parametrize("body", ["none", "bytes"])
async def test_a_request_on_a_connection_the_store_just_closed_is_sent_again(
    how: str, body: str
) -> None:
    async def closing(conn: StoreConn) -> None:
        if conn.index == 0:
            await conn.read_request()
            await conn.send(OK)
            await conn.read_request()  # as it closes an idle connection, the request arrives
            conn.reset() if how == "reset" else conn.writer.close()
        else:
            await answering(OK)(conn)

    async with store_and_client(closing) as (store, up):
        await get(up)
        data = b"abc" if body == "bytes" else None
        headers = [("content-length", "3")] if data else []
        async with await up.request("PUT", "/b/k", headers, data) as r:
            assert (r.status, await r.read()) == (200, b"ok")
    assert store.accepted == 2
    sent = data or b""
    assert [r.body for r in store.requests] == [b"", sent, sent]


async def test_a_post_is_never_sent_twice() -> None:
    # The store may have carried it out (completed an upload) before it closed.
    async def closing(conn: StoreConn) -> None:
        await conn.read_request()
        await conn.send(OK)
        await conn.read_request()
        conn.writer.close()

    async with store_and_client(closing) as (store, up):
        await get(up)
        with pytest.raises(UpstreamError):
            await up.request("POST", "/b/k?uploadId=1", [("content-length", "3")], b"xml")
    assert store.accepted == 1
    assert [r.body for r in store.requests] == [b"", b"xml"]


async def test_a_streamed_body_is_never_sent_twice() -> None:
    async def closing(conn: StoreConn) -> None:
        await conn.read_request()
        await conn.send(OK)
        await conn.read_head()
        conn.writer.close()

    async with store_and_client(closing) as (store, up):
        await get(up)
        with pytest.raises(UpstreamError) as info:
            await up.request("PUT", "/b/k", [("content-length", "3")], pieces([b"abc"]))
        assert not isinstance(info.value, UpstreamBodyError)
    assert store.accepted == 1


def test_the_pool_under_uvloop() -> None:
    async def scenario() -> None:
        await test_an_early_response_is_returned_and_its_connection_is_not_reused()
        await test_a_request_on_a_connection_the_store_just_closed_is_sent_again("reset", "bytes")

    uvloop.run(scenario())
