"""s3shim.upstream: reading paused for a slow consumer, pieces handed over as they arrive,
every timeout (connect, TLS handshake, head, body, a stalled request body), and a cancelled
caller or a failing store ending the exchange with its connection aborted."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator

import pytest
import uvloop

from s3shim.http1 import State
from s3shim.upstream import Upstream, UpstreamError
from testkit.scripted_store import (
    OK,
    WAIT,
    StoreConn,
    answering,
    get,
    head,
    iter_body,
    only_conn,
    pieces,
    settle,
    store_and_client,
    until,
)

# -- flow control ------------------------------------------------------------------------------


async def test_reading_pauses_while_the_body_is_not_taken() -> None:
    size, read_size = 16 * 1024 * 1024, 64 * 1024
    data = bytes(range(256)) * (size // 256)
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + data
    async with store_and_client(answering(reply, OK), read_size=read_size) as (store, up):
        async with await up.request("GET", "/b/k", (), None) as r:
            conn = only_conn(up)
            await until(lambda: not conn.transport.is_reading())
            # Two reads' worth, plus at most one more read before the pause took effect.
            assert conn.buffered <= 2 * read_size + 256 * 1024
            assert await r.read() == data
        assert (await get(up))[1] == b"ok"  # reading resumed on the pooled connection
    assert store.accepted == 1


async def test_an_endless_chunked_body_is_held_to_two_reads_for_a_slow_consumer() -> None:
    read_size = 64 * 1024
    chunk = b"400\r\n" + b"c" * 1024 + b"\r\n"

    async def endless(conn: StoreConn) -> None:
        await conn.read_request()
        await conn.send(head(None, "Transfer-Encoding: chunked"))
        with contextlib.suppress(ConnectionError):
            while True:
                await conn.send(chunk * 64)

    async with store_and_client(endless, read_size=read_size) as (_, up):
        async with await up.request("GET", "/b/k", (), None) as r:
            conn = only_conn(up)
            await until(lambda: not conn.transport.is_reading())
            await settle()
            assert conn.buffered <= 2 * read_size + 256 * 1024
            while not conn.transport.is_reading():  # taking pieces resumes reading
                assert await r.next_buffer()
            assert await r.next_buffer()
        assert not up._idle  # released mid-body: closed


async def test_body_pieces_are_handed_over_as_received() -> None:
    async def store(conn: StoreConn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc")
        await asyncio.sleep(0.05)  # two reads, not a timing assertion
        await conn.send(b"def")

    async with store_and_client(store) as (_, up), await up.request("GET", "/b/k", (), None) as r:
        got = [p async for p in iter_body(r)]
    assert b"".join(got) == b"abcdef" and all(got)


# -- timeouts and connecting -------------------------------------------------------------------


async def test_a_store_that_never_answers_times_out() -> None:
    async def silent(conn: StoreConn) -> None:
        await conn.read_request()
        await asyncio.Event().wait()

    async with store_and_client(silent, read_timeout=0.2) as (_, up):
        with pytest.raises(UpstreamError) as info:
            await up.request("GET", "/b/k", (), None)
    assert isinstance(info.value.__cause__, TimeoutError)


async def test_a_store_that_stalls_mid_body_times_out() -> None:
    async def stalling(conn: StoreConn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await asyncio.Event().wait()

    async with (
        store_and_client(stalling, read_timeout=0.2) as (_, up),
        await up.request("GET", "/b/k", (), None) as r,
    ):
        assert await r.next_buffer() == b"abc"
        with pytest.raises(UpstreamError) as info:
            await r.next_buffer()
    assert isinstance(info.value.__cause__, TimeoutError)


async def test_the_read_timeout_runs_once_a_streamed_body_is_out() -> None:
    async def silent(conn: StoreConn) -> None:
        await conn.read_request()
        await asyncio.Event().wait()

    async with store_and_client(silent, read_timeout=0.2) as (_, up):
        with pytest.raises(UpstreamError) as info:
            await up.request("PUT", "/b/k", [("content-length", "3")], pieces([b"a", b"bc"]))
    assert isinstance(info.value.__cause__, TimeoutError)


async def test_the_read_timeout_runs_on_an_early_response_body_while_the_body_streams() -> None:
    gate = asyncio.Event()  # never set

    async def body() -> AsyncIterator[bytes]:
        yield b"a"
        await gate.wait()
        yield b"b"

    async def early(conn: StoreConn) -> None:
        await conn.read_head()
        await conn.send(head(10, status="403 Forbidden") + b"abc")
        await asyncio.Event().wait()

    async with (
        store_and_client(early, read_timeout=0.2) as (_, up),
        await up.request("PUT", "/b/k", [("content-length", "2")], body()) as r,
    ):
        assert await r.next_buffer() == b"abc"
        with pytest.raises(UpstreamError) as info:
            await r.next_buffer()
    assert isinstance(info.value.__cause__, TimeoutError)


async def test_a_tls_handshake_that_never_completes_times_out() -> None:
    async def mute(conn: StoreConn) -> None:
        await asyncio.Event().wait()

    tls = ssl.create_default_context()
    async with store_and_client(mute, ssl=tls, connect_timeout=0.2) as (store, up):
        with pytest.raises(UpstreamError) as info:
            await up.request("GET", "/b/k", (), None)
    assert isinstance(info.value.__cause__, TimeoutError) and store.accepted == 1


async def test_a_refused_connection_is_an_upstream_error() -> None:
    with socket.socket() as s:  # a port nothing listens on any more
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    up = Upstream(
        host="127.0.0.1",
        port=port,
        host_header="x",
        ssl=None,
        connect_timeout=WAIT,
        read_timeout=WAIT,
    )
    with pytest.raises(UpstreamError) as info:
        await up.request("GET", "/", (), None)
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    await up.close()


# -- cancellation and failures -----------------------------------------------------------------


async def test_cancelled_while_waiting_for_the_head_aborts_the_connection() -> None:
    eof = asyncio.Event()

    async def silent(conn: StoreConn) -> None:
        await conn.read_request()
        await conn.until_eof()
        eof.set()

    async with store_and_client(silent) as (_, up):
        call = asyncio.ensure_future(up.request("GET", "/b/k", (), None))
        await until(lambda: bool(up._conns))
        await settle()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await asyncio.wait_for(eof.wait(), WAIT)
        await until(lambda: not up._conns)
        assert not up._idle


async def test_cancelled_in_next_buffer_aborts_the_connection() -> None:
    eof = asyncio.Event()

    async def stalling(conn: StoreConn) -> None:
        await conn.read_request()
        await conn.send(head(10) + b"abc")
        await conn.until_eof()
        eof.set()

    async with store_and_client(stalling) as (_, up):
        r = await up.request("GET", "/b/k", (), None)

        async def consume() -> None:
            async with r:
                while await r.next_buffer() is not None:
                    pass

        task = asyncio.ensure_future(consume())
        await settle()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(eof.wait(), WAIT)
        assert not up._idle


async def test_cancelled_while_the_body_streams_stops_the_writer_and_cuts_the_body() -> None:
    pulled = 0
    gate = asyncio.Event()  # never set: the client's body is slow
    closed = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        try:
            for _ in range(3):
                pulled += 1
                yield b"x" * 10
            await gate.wait()
            yield b"never"
        finally:
            closed.set()  # by the writer, as it stops

    async def store(conn: StoreConn) -> None:
        await conn.read_request()

    async with store_and_client(store) as (s, up):
        call = asyncio.ensure_future(up.request("PUT", "/b/k", [("content-length", "100")], body()))
        await until(lambda: pulled == 3)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await until(lambda: len(s.requests) == 1)
        await asyncio.wait_for(closed.wait(), WAIT)
        assert all(conn.state is State.MUST_CLOSE for conn in up._conns)
    assert s.requests[0].body == b"x" * 30 and not s.requests[0].complete


async def test_a_store_error_while_the_body_streams_stops_the_writer() -> None:
    more = asyncio.Event()
    pulled_after = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled_after
        yield b"first"
        await more.wait()
        pulled_after += 1
        yield b"second"

    async def garbage(conn: StoreConn) -> None:
        await conn.read_head()
        await conn.send(b"SSH-2.0-nope\r\n\r\n")
        await conn.until_eof()

    async with store_and_client(garbage) as (_, up):
        with pytest.raises(UpstreamError):
            await up.request("PUT", "/b/k", [("content-length", "11")], body())
        more.set()
        await settle()
        assert pulled_after == 0  # the writer was cancelled with the exchange


def test_flow_control_under_uvloop() -> None:
    uvloop.run(test_reading_pauses_while_the_body_is_not_taken())
