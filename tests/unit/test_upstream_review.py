"""An adversarial review of s3shim.upstream: framing, pooling, leaks, stalls, smuggling.

Tests named for a defect (an early response pooled, a refused body reaching the store
complete, ambiguous framing sent, split Transfer-Encoding, an endless trailer, a cancelled
body iterator, a HEAD without length not pooled, an iterator left open, bytes a parser may
split on) failed against the first version of upstream.py and hold its fixes; the rest pin
behaviour the review checked and found right, on the paths most likely to regress.

Two harnesses: the scripted store of test_upstream.py (real sockets on 127.0.0.1) where what
the store received matters, and a bare ``_Connection`` fed reads by hand where the exact
boundaries of the reads matter (a socket cannot promise them).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import pytest

from s3shim import upstream as upstream_mod
from s3shim.upstream import Response, Upstream, UpstreamBodyError, UpstreamError

from .test_upstream import (
    OK,
    WAIT,
    StoreConn,
    answering,
    cut_after,
    get,
    only_conn,
    pieces,
    store_and_client,
    until,
)


async def settle(rounds: int = 50) -> None:
    """Let the loop run callbacks and tasks that are ready (a count of turns, not a time)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


# -- a connection fed reads by hand ---------------------------------------------------------


class Wire(asyncio.Transport):
    """Just enough transport to drive one _Connection with reads of exactly chosen bounds."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = False
        self.aborted = False
        self.paused = False
        self.sent = b""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.sent += bytes(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = self.aborted = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


class Hand:
    """One pooled-to-be connection and the pool it would go back to."""

    def __init__(self, read_size: int = 256 * 1024) -> None:
        self.up = Upstream(
            host="x",
            port=1,
            host_header="x",
            ssl=None,
            connect_timeout=1,
            read_timeout=WAIT,
            read_size=read_size,
        )
        self.conn = upstream_mod._Connection(self.up, asyncio.get_running_loop())
        self.wire = Wire()
        self.conn.connection_made(self.wire)

    async def respond(self, *reads: bytes, method: str = "GET", eof: bool = False) -> Response:
        """The response to one request, the store's bytes arriving in exactly these reads."""
        call = asyncio.ensure_future(
            self.conn.exchange(
                b"%s / HTTP/1.1\r\n\r\n" % method.encode(), None, None, method == "HEAD"
            )
        )
        await asyncio.sleep(0)
        for data in reads:
            self.conn.data_received(data)
        if eof:
            self.conn.connection_lost(None)
        return await call

    def pooled(self) -> bool:
        return self.conn in self.up._idle and not self.wire.closed


def head(length: int | None = None, *extra: str, status: str = "200 OK") -> bytes:
    lines = [f"HTTP/1.1 {status}", *extra]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# -- response framing: pinned ---------------------------------------------------------------


@pytest.mark.parametrize(
    "reads",
    [
        [head(10) + b"01234", b"56789HTTP/1.1 200 OK\r\n"],  # the fast path's read overflows
        [head(10) + b"0123456789HTTP/1.1 200 OK\r\n"],  # head, body and more in the first read
        [head(10), b"0123456789", b"X"],  # more in a later read, before the release
        [head(10) + b"0", b"123456789", b"\r\n"],  # even a stray CR LF is not trusted
    ],
    ids=["overflow-in-fast-path", "overflow-in-first-read", "later-read", "stray-crlf"],
)
async def test_bytes_after_a_content_length_body_never_reach_the_next_request(
    reads: list[bytes],
) -> None:
    hand = Hand()
    r = await hand.respond(*reads)
    assert await r.read() == b"0123456789"
    r.release()
    assert not hand.pooled()


async def test_the_fast_path_takes_exactly_the_body_and_pools_the_connection() -> None:
    hand = Hand()
    r = await hand.respond(head(10) + b"012", b"3456", b"789")
    assert await r.read() == b"0123456789"
    r.release()
    assert hand.pooled()
    # The parser was replaced at the body's end: the next response on it parses from scratch.
    r = await hand.respond(head(2) + b"ok")
    assert await r.read() == b"ok"


@pytest.mark.parametrize(
    "framing",
    [
        ("Transfer-Encoding: chunked", "Content-Length: 5"),
        ("Content-Length: 5", "Transfer-Encoding: chunked"),
        ("Transfer-Encoding: gzip", "Content-Length: 5"),
    ],
    ids=["te-then-cl", "cl-then-te", "gzip-and-cl"],
)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_a_response_with_both_chunked_and_content_length_is_refused(
    framing: tuple[str, str], method: str
) -> None:
    hand = Hand()
    with pytest.raises(UpstreamError):
        await hand.respond(head(None, *framing) + b"5\r\nhello\r\n0\r\n\r\n", method=method)
    assert hand.wire.aborted


async def test_gzip_then_chunked_is_chunked_and_reusable() -> None:
    hand = Hand()
    r = await hand.respond(
        head(None, "Transfer-Encoding: gzip, chunked") + b"5\r\nhello\r\n0\r\n\r\n"
    )
    assert await r.read() == b"hello"  # passed on as the store encoded it (gzip), unchunked
    r.release()
    assert hand.pooled()


async def test_chunked_then_gzip_is_read_to_the_end_of_the_connection() -> None:
    # llhttp: a response whose last coding is not chunked runs until EOF (RFC 9112 6.3).
    hand = Hand()
    r = await hand.respond(
        head(None, "Transfer-Encoding: chunked, gzip") + b"5\r\nhello\r\n0\r\n\r\n", eof=True
    )
    assert await r.read() == b"5\r\nhello\r\n0\r\n\r\n"
    r.release()
    assert not hand.pooled()


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


async def test_http_1_0_keep_alive_is_pooled() -> None:
    hand = Hand()
    r = await hand.respond(
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n", b"ok"
    )
    assert await r.read() == b"ok"
    r.release()
    assert hand.pooled()


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_100_continue_and_the_final_response_in_one_read(method: str) -> None:
    hand = Hand()
    body = b"" if method == "HEAD" else b"ok"
    r = await hand.respond(
        b"HTTP/1.1 100 Continue\r\n\r\n" + head(2, "X-Final: 1") + body, method=method
    )
    assert (r.status, r.headers.get("x-final"), await r.read()) == (200, "1", body)
    r.release()
    assert hand.pooled()


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\nxyz",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    ],
    ids=["with-upgrade", "bare"],
)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_101_is_an_error_not_a_skipped_informational(reply: bytes, method: str) -> None:
    hand = Hand()
    with pytest.raises(UpstreamError):
        await hand.respond(reply, method=method)
    assert hand.wire.aborted


@pytest.mark.parametrize("later", [False, True], ids=["same-read", "later-read"])
async def test_a_head_response_followed_by_a_body_is_not_pooled(later: bool) -> None:
    hand = Hand()
    data = head(5)
    r = await hand.respond(*((data, b"hello") if later else (data + b"hello",)), method="HEAD")
    assert await r.read() == b""
    r.release()
    assert not hand.pooled()


async def test_bytes_after_a_pooled_response_close_the_idle_connection() -> None:
    hand = Hand()
    r = await hand.respond(head(2) + b"ok")
    await r.read()
    r.release()
    assert hand.pooled()
    hand.conn.data_received(b"HTTP/1.1 200 OK\r\n")  # nobody asked: framing lost
    assert hand.wire.aborted and not hand.conn.usable(60.0)


@pytest.mark.parametrize("status", [204, 304])
async def test_a_body_after_204_or_304_is_not_taken_for_the_next_response(status: int) -> None:
    hand = Hand()
    r = await hand.respond(head(5, status=f"{status} X") + b"hello")
    assert await r.read() == b""
    r.release()
    assert not hand.pooled()


# -- response framing: defects ----------------------------------------------------------------


async def test_a_chunked_body_split_over_two_te_headers_cut_by_eof_is_an_error() -> None:
    reply = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n"  # ... and the connection ends: no last chunk
    )
    async with store_and_client(cut_after(reply)) as (_, up):
        with pytest.raises(UpstreamError):
            async with await up.request("GET", "/b/k", (), None) as r:
                await r.read()


async def test_an_endless_trailer_is_refused_not_buffered() -> None:
    hand = Hand()
    r = await hand.respond(head(None, "Transfer-Encoding: chunked") + b"5\r\nhello\r\n0\r\nX-T: ")
    assert await r.next_buffer() == b"hello"
    for _ in range(64):  # 4 MiB of one trailer value, never ending
        hand.conn.data_received(b"t" * 65536)
    assert hand.wire.aborted
    with pytest.raises(UpstreamError, match="too long"):
        await r.next_buffer()


async def test_a_head_response_without_content_length_is_pooled() -> None:
    hand = Hand()
    r = await hand.respond(b"HTTP/1.1 404 Not Found\r\nx-amz-request-id: 1\r\n\r\n", method="HEAD")
    assert (r.status, await r.read()) == (404, b"")
    r.release()
    assert hand.pooled()


# -- flow control and memory: pinned ----------------------------------------------------------


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
            await until(lambda: conn._read_paused)
            await settle()
            assert conn._buffered <= 2 * read_size + 256 * 1024
            while conn._read_paused:  # taking pieces resumes reading
                assert await r.next_buffer()
            assert await r.next_buffer()
        assert not up._idle  # released mid-body: closed


# -- leaks on cancellation and early ends: pinned ---------------------------------------------


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

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(3):
            pulled += 1
            yield b"x" * 10
        await gate.wait()
        yield b"never"

    async def store(conn: StoreConn) -> None:
        await conn.read_request()

    async with store_and_client(store) as (s, up):
        call = asyncio.ensure_future(up.request("PUT", "/b/k", [("content-length", "100")], body()))
        await until(lambda: pulled == 3)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await until(lambda: len(s.requests) == 1)
        writer = only_conn(up)._writer if up._conns else None
        assert writer is None or writer.done()
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


# -- the request body: defects ------------------------------------------------------------------


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
        await until(lambda: conn._write_paused)  # the writer waits in _drain, at a yield
        assert (r.status, await r.read()) == (403, b"denied")
        r.release()
        await settle()
        assert closed.is_set()
    await gen.aclose()  # (held until here: only the writer could have closed it above)


# -- the request head: defects ------------------------------------------------------------------


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
