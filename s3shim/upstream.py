"""A lean HTTP/1.1 client to the one fixed store: a keep-alive pool, streamed bodies, nothing else.

Why not aiohttp's client: on the hot path it cost ~236 µs of CPU per request (measured: an
aiohttp server proxying a 1 KiB GET through ``ClientSession`` 328 µs/request, the same server
with an asyncio Protocol + httptools 92 µs, answering by itself 71 µs). s3shim talks to a
single store it was configured with, so nearly everything a general client does per request
(URL objects, cookies, redirects, auto headers, tracing, DNS cache, per-host limits) is work
for nothing. What is left: write the head (and a small body) in one ``transport.write``, parse
the answer with llhttp (httptools), hand body pieces over as they arrived.

What the bytes mean is decided in ``http1.py`` (pure): the request head and its checks, a
response's framing and keep-alive, and the connection's one ``State``. What this module adds:

* a request body always comes with the caller's Content-Length, and a streamed one that
  fails or has another length aborts the connection: the store sees a short body and commits
  nothing;
* a connection goes back to the pool only when its state is DONE and its response kept it
  alive; any doubt about the framing (early response, extra bytes, a cut body, an error)
  ends keep-alive;
* a request with ``Expect: 100-continue`` sends its head alone and holds its body until the
  store answers 100 Continue, or stays silent for ``continue_timeout`` (a store that ignores
  the expectation); a final answer first is returned with nothing taken from the body's
  iterator, and that connection is not used again (the store may read what follows as the
  body, or as the next request);
* one resend, on a new connection, of an idempotent request whose pooled connection the
  store closed before answering, when its body is still in hand (none, bytes, or held for
  100 Continue and never asked for).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as _ssl
from collections import deque
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any, cast

import httptools  # type: ignore[import-untyped]  # ships no type information
from multidict import CIMultiDict, CIMultiDictProxy

from .http1 import (
    AFTER_BODY_SENT,
    AFTER_CLOSE,
    AFTER_FAIL,
    AFTER_POOL,
    AFTER_RESPONSE_END,
    AFTER_RESPONSE_HEAD,
    AFTER_SEND,
    AFTER_SEND_HEAD,
    AWAITING_HEAD,
    BEFORE_HEAD,
    BODY,
    DONE,
    IDLE,
    NO_BODY,
    SENDING,
    UNTIL_CLOSE,
    State,
    request_head,
    response_framing,
)

_ONE_WRITE = 64 * 1024  # a bytes body up to this is copied behind the head: one send
# The longest response head taken (1xx heads before it included): a store that never ends
# its head must not make s3shim buffer without bound. S3 allows 2 KB of user metadata.
_MAX_HEAD = 64 * 1024
_PARSE_ERRORS = (httptools.HttpParserError, httptools.HttpParserUpgrade)


class UpstreamError(OSError):
    """The store could not be reached, stalled, or answered something broken or cut short.

    ``__cause__`` keeps the original exception (a ConnectionResetError, TimeoutError,
    ssl.SSLError, httptools.HttpParserError...), when there is one.
    """


class UpstreamBodyError(UpstreamError):
    """The request body's iterator raised (``__cause__``), or yielded another length than
    its Content-Length. The connection was aborted, so the store got a short body."""


class _Closed(UpstreamError):
    """The connection ended before a single byte of the response: on a pooled connection,
    most likely the store closing it as idle just as the request went out."""


def _error(cls: type[UpstreamError], message: str, cause: BaseException | None) -> UpstreamError:
    err = cls(message)
    err.__cause__ = cause
    return err


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


class _Held:
    """A streamed body held for 100 Continue, which knows whether any of it was asked for:
    one never started can be sent again on a fresh connection."""

    __slots__ = ("_body", "taken")

    def __init__(self, body: AsyncIterator[bytes]) -> None:
        self._body = body
        self.taken = False

    def __aiter__(self) -> _Held:
        return self

    async def __anext__(self) -> bytes:
        self.taken = True
        return await anext(self._body)

    def untouched(self) -> AsyncIterator[bytes]:
        """The iterator, which nothing has asked for a byte yet."""
        assert not self.taken
        return self._body

    async def aclose(self) -> None:
        # An iterator never started is left as it is (for the resend); else closed as ever.
        aclose = getattr(self._body, "aclose", None)
        if self.taken and aclose is not None:
            await aclose()


def _in_hand(body: bytes | AsyncIterator[bytes] | None) -> bool:
    """Whether a request's body can be sent once more: none, bytes, or a held one that the
    store never asked for."""
    return not isinstance(body, AsyncIterator) or (isinstance(body, _Held) and not body.taken)


class Response:
    """The store's answer: its head at once, its body as it arrives.

    :meth:`release` (or leaving ``async with``) hands the connection back to the pool when
    the body was received whole on a keep-alive connection, and closes it otherwise.
    """

    __slots__ = ("_conn", "headers", "reason", "status")

    def __init__(
        self, conn: _Connection, status: int, reason: str, headers: CIMultiDictProxy[str]
    ) -> None:
        self._conn: _Connection | None = conn
        self.status = status
        self.reason = reason
        self.headers = headers  # as received: order, case and repeats kept

    async def next_buffer(self) -> bytes | None:
        """The next piece of the body as it was received, or None at its end."""
        conn = self._conn
        if conn is None:
            raise RuntimeError("the response was released")
        return await conn.next_piece()

    async def read(self) -> bytes:
        """The rest of the body (not joined when it arrived in one piece)."""
        conn = self._conn
        if conn is None:
            raise RuntimeError("the response was released")
        first = await conn.next_piece()  # (not through next_buffer: one await less a piece)
        if first is None:
            return b""
        rest: list[bytes] = []
        while (piece := await conn.next_piece()) is not None:
            rest.append(piece)
        return b"".join([first, *rest]) if rest else first

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.release()

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


# RFC 9110 9.2.2: repeating one of these has the effect of sending it once.
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})


class Upstream:
    """A keep-alive pool of HTTP/1.1 connections to ``host:port`` (TLS with ``ssl``).

    ``connect_timeout`` bounds the TCP connect and TLS handshake; ``read_timeout`` the wait
    for any byte of a response (head or body piece), and for the store to take more of a
    streamed request body; idle connections older than ``idle_timeout`` are not used again.
    ``continue_timeout`` is how long a body sent with ``Expect: 100-continue`` waits for the
    store's 100 Continue before it is sent anyway.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        host_header: str,
        ssl: _ssl.SSLContext | None,
        connect_timeout: float,
        read_timeout: float,
        idle_timeout: float = 15.0,
        read_size: int = 256 * 1024,
        continue_timeout: float = 1.0,
    ) -> None:
        self.host = host
        self.port = port
        self.host_header = host_header
        self.ssl = ssl
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.idle_timeout = idle_timeout
        self.read_size = read_size
        self.continue_timeout = continue_timeout
        # LIFO (the most recently used is the least likely to have been closed by the
        # store); the oldest, at the left, are pruned once past idle_timeout.
        self._idle: deque[_Connection] = deque()
        self._conns: set[_Connection] = set()  # every open connection, for close()
        self._closed = False
        # Prunes idle connections while no requests come (after a burst, a quiet pool
        # would otherwise keep every connection open until its next use).
        self._pruner: asyncio.TimerHandle | None = None

    async def request(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]],
        body: bytes | AsyncIterator[bytes] | None,
    ) -> Response:
        """Send one request and return the response once its head has arrived.

        ``target`` is the encoded path and query, sent as is; ``Host`` is sent first, then
        ``headers`` unchanged. A body needs a Content-Length among them; with
        ``Expect: 100-continue`` among them too, it is held until the store asks for it (see
        the module's notes). Raises :class:`UpstreamError` (:class:`UpstreamBodyError` when
        the body failed).
        """
        head, length, expects = request_head(method, target, self.host_header, headers)
        if isinstance(body, bytes) or body is None:
            if (len(body) if body else 0) != (length or 0):
                raise ValueError("a bytes body needs its exact Content-Length")
            body = body or None
        elif body is not None and length is None:
            raise ValueError("a streamed body needs a Content-Length")
        hold = None
        if expects:
            if not length or body is None:
                raise ValueError("Expect: 100-continue needs a body")
            hold = self.continue_timeout
            if not isinstance(body, bytes):
                body = _Held(body)
        conn = self._pop_idle()
        if conn is not None:
            try:
                return await conn.exchange(method, head, body, length, hold)
            except _Closed:
                # The store closed this idle connection as the request went out. An
                # idempotent request with its body still in hand is sent once more on a fresh
                # connection; a streamed body is partly consumed (unless it was held for 100
                # Continue and never asked for), and a POST (Complete multipart upload,
                # DeleteObjects) may have been carried out before the store closed: sending it
                # again could turn a success into NoSuchUpload.
                if method not in _IDEMPOTENT or not _in_hand(body):
                    raise
                if isinstance(body, _Held):
                    # A new holder: the stale connection's writer, still being cancelled,
                    # keeps the old one, and cannot close the iterator under the new one.
                    body = _Held(body.untouched())
        conn = await self._connect()
        return await conn.exchange(method, head, body, length, hold)

    def _pop_idle(self) -> _Connection | None:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.usable(self.idle_timeout):
                return conn
            conn.close()
        return None

    def _put_idle(self, conn: _Connection, now: float) -> None:
        if self._closed:
            conn.close()
            return
        idle = self._idle
        idle.append(conn)
        if now - idle[0].idle_since >= self.idle_timeout:
            self._prune(now)
        if self._pruner is None:
            loop = asyncio.get_running_loop()
            self._pruner = loop.call_at(idle[0].idle_since + self.idle_timeout, self._on_prune)

    def _prune(self, now: float) -> None:
        idle = self._idle
        while idle and now - idle[0].idle_since >= self.idle_timeout:
            idle.popleft().close()

    def _on_prune(self) -> None:
        loop = asyncio.get_running_loop()
        self._pruner = None
        self._prune(loop.time())
        if self._idle and not self._closed:
            self._pruner = loop.call_at(
                self._idle[0].idle_since + self.idle_timeout, self._on_prune
            )

    async def _connect(self) -> _Connection:
        if self._closed:
            raise UpstreamError("the upstream client is closed")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self, loop),
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.ssl is not None else None,
                )
        except OSError as exc:  # refused, unreachable, TLS (ssl.SSLError), TimeoutError
            where = f"{self.host}:{self.port}"
            raise _error(UpstreamError, f"cannot connect to {where}: {exc!r}", exc) from exc
        return conn

    async def close(self) -> None:
        """Close every connection, idle or not; later requests fail."""
        self._closed = True
        self._idle.clear()
        if self._pruner is not None:
            self._pruner.cancel()
            self._pruner = None
        for conn in list(self._conns):
            conn.close()
        await asyncio.sleep(0)  # let the transports report connection_lost


class _Connection(asyncio.Protocol):
    """One connection: it moves the bytes (httptools' callbacks, the body's writer) and runs
    the timers; its ``state`` (``http1.State``) moves only by http1's transition table."""

    __slots__ = (
        "_body",
        "_body_error",
        "_buffered",
        "_drain_waiter",
        "_error",
        "_framing",
        "_got_body",
        "_head_buf",
        "_headers",
        "_high",
        "_keep_alive",
        "_loop",
        "_low",
        "_method",
        "_parser",
        "_pieces",
        "_pool",
        "_read_paused",
        "_read_timeout",
        "_reason",
        "_received",
        "_remaining",
        "_response",
        "_state",
        "_waiter",
        "_write_paused",
        "_writer",
        "idle_since",
        "transport",
    )

    def __init__(self, pool: Upstream, loop: asyncio.AbstractEventLoop) -> None:
        self._pool = pool
        self._loop = loop
        self._read_timeout = pool.read_timeout
        # Reading pauses above two reads' worth not yet taken, resumes at one.
        self._high = 2 * pool.read_size
        self._low = pool.read_size
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # connection_made
        self._parser: Any = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._state = IDLE
        # Whether the connection may carry another request once the response is DONE: from
        # the response's framing, ended by any doubt about it.
        self._keep_alive = False
        self._write_paused = False
        self._read_paused = False
        self._pieces: deque[bytes] = deque()
        self._buffered = 0
        self.idle_since = 0.0
        self._headers: CIMultiDict[str] = CIMultiDict()  # new for each message (on_message_begin)
        self._reason = b""
        self._method = ""
        self._received = 0
        self._error: UpstreamError | None = None
        self._body_error: UpstreamError | None = None
        self._framing = 0
        self._got_body = False
        self._writer: asyncio.Task[None] | None = None
        self._response: Response | None = None
        self._body = NO_BODY
        self._remaining = 0
        self._head_buf = b""

    @property
    def state(self) -> State:
        return self._state

    @property
    def buffered(self) -> int:
        """Body bytes received and not yet taken."""
        return self._buffered

    @property
    def reusable(self) -> bool:
        """Whether, released now, the connection would go back to the pool."""
        return self._state is DONE and self._keep_alive and not self.transport.is_closing()

    # The exchange (coroutines, called by Upstream and Response)

    async def exchange(
        self,
        method: str,
        head: bytes,
        body: bytes | AsyncIterator[bytes] | None,
        length: int | None,
        hold: float | None = None,
    ) -> Response:
        """One request and its response's head. ``hold``: the head expects 100 Continue,
        and the body waits for it at most this long."""
        transport = self.transport
        if self._state is not IDLE or transport.is_closing():
            # (a new connection the store closed before the first request)
            raise UpstreamError("the store closed the connection before the request")
        self._method = method
        self._received = 0  # bytes before the response's head was complete
        self._error = self._body_error = None
        # Bytes fed to the parser since a read last carried body bytes: chunk lines and a
        # trailer, which httptools buffers without a bound (counted per read, not per byte).
        self._framing = 0
        self._got_body = False
        self._writer = None
        self._response = None
        self._keep_alive = False
        self._body = NO_BODY
        self._remaining = 0  # body bytes still due, for a Content-Length body
        self._head_buf = b""
        if body is None:
            self._state = AFTER_SEND[self._state]
            transport.write(head)
        elif isinstance(body, bytes) and hold is None:
            self._state = AFTER_SEND[self._state]
            if len(body) <= _ONE_WRITE:
                transport.write(head + body)
            else:  # vectored, not copied
                transport.writelines((head, body))
        else:
            assert length is not None
            self._state = AFTER_SEND_HEAD[self._state]
            transport.write(head)
            if isinstance(body, bytes):
                body = _once(body)
            self._writer = self._loop.create_task(self._send_body(body, length, hold))
        try:
            while self._state in BEFORE_HEAD:
                # No read timeout while the body is still going out: the store answers
                # once it has it all (the writer has its own timeout for a stalled store).
                writer = self._writer
                await self._wait(writer is None or writer.done())
        except BaseException:
            self._abandon()
            raise
        if self._response is None:  # failed before the head
            self._abandon()
            self._raise_failure()
        assert self._response is not None
        return self._response

    async def next_piece(self) -> bytes | None:
        pieces = self._pieces
        while True:
            if pieces:
                piece = pieces.popleft()
                self._buffered -= len(piece)
                if self._read_paused and self._buffered <= self._low:
                    self._read_paused = False
                    self.transport.resume_reading()
                return piece
            if self._state is DONE:
                return None
            self._raise_failure()
            await self._wait(True)

    def _raise_failure(self) -> None:
        if self._body_error is not None:
            raise self._body_error
        if self._error is not None:
            raise self._error

    async def _wait(self, timed: bool) -> None:
        fut = self._loop.create_future()
        self._waiter = fut
        timer = self._loop.call_later(self._read_timeout, self._timed_out, fut) if timed else None
        try:
            await fut
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def _timed_out(self, fut: asyncio.Future[None]) -> None:
        if not fut.done():
            why = f"no response bytes from the store for {self._read_timeout:g} s"
            self._fail(_error(UpstreamError, why, TimeoutError()))

    async def _send_body(self, body: AsyncIterator[bytes], length: int, hold: float | None) -> None:
        """Stream the body (a task beside the response), with write flow control; after
        the store's 100 Continue (or ``hold`` seconds of silence) when ``hold`` is set."""
        transport = self.transport
        sent = 0
        it = aiter(body)
        try:
            if hold is not None:
                await self._await_continue(hold)
                if self._state is not SENDING or transport.is_closing():
                    return  # answered (or gone) first: not one byte of the body is asked for
            async for piece in it:
                sent += len(piece)
                if sent > length:
                    raise ValueError(f"the body is longer than its Content-Length {length}")
                if sent == length:
                    # Hold the piece that completes the body until the iterator has ended
                    # well: a failure or more bytes after it must leave the store short.
                    async for more in it:
                        if more:
                            raise ValueError(f"the body is longer than its Content-Length {length}")
                if transport.is_closing():
                    return  # the connection is gone: the response side says why
                transport.write(piece)
                if sent == length:
                    self._state = AFTER_BODY_SENT[self._state]
                if self._write_paused:
                    await self._drain()
            if sent != length:
                raise ValueError(f"the body ended at {sent} of its Content-Length {length}")
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # release() or _abandon(): the exchange is over
            self._body_failed(_error(UpstreamBodyError, "the request body was cancelled", exc))
            return
        except Exception as exc:
            self._body_failed(_error(UpstreamBodyError, f"the request body failed: {exc}", exc))
            return
        finally:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
        self._wake()  # the exchange's wait for the head is timed from now

    def _body_failed(self, err: UpstreamError) -> None:
        self._body_error = err
        self._keep_alive = False
        self._state = AFTER_FAIL[self._state]
        self.transport.abort()  # the store must see a short body, and commit nothing
        self._wake()

    async def _drain(self) -> None:
        fut = self._loop.create_future()
        self._drain_waiter = fut
        timer = self._loop.call_later(self._read_timeout, self._drain_timed_out, fut)
        try:
            await fut
        finally:
            self._drain_waiter = None
            timer.cancel()

    def _drain_timed_out(self, fut: asyncio.Future[None]) -> None:
        if not fut.done():
            why = f"the store took no request body bytes for {self._read_timeout:g} s"
            self._fail(_error(UpstreamError, why, TimeoutError()))

    async def _await_continue(self, timeout: float) -> None:
        """Until the store's 100 Continue, the connection's end or ``timeout``: the writer's
        one wait (on ``_drain_waiter``) before its first byte. A final answer meanwhile is
        seen by the writer once this returns, or the writer is cancelled first (release)."""
        fut = self._loop.create_future()
        self._drain_waiter = fut
        timer = self._loop.call_later(timeout, _resolve, fut)
        try:
            await fut
        finally:
            self._drain_waiter = None
            timer.cancel()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_writer(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, err: UpstreamError) -> None:
        if self._error is None:
            self._error = err
        self._keep_alive = False
        self._state = AFTER_FAIL[self._state]
        self.transport.abort()
        self._wake()
        self._wake_writer()

    def _abandon(self) -> None:
        """The exchange ends without a response (an error, or the caller was cancelled)."""
        self._keep_alive = False
        self._state = AFTER_FAIL[self._state]
        if self._writer is not None:
            self._writer.cancel()
        self.transport.abort()

    def release(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None and not writer.done():
            # An early response (the store answered before taking the whole body): the rest
            # is never sent, so this connection's next request would start mid-body.
            writer.cancel()
            self._keep_alive = False
        if self.reusable:
            self._pieces.clear()  # received whole, but not all taken: still reusable
            self._buffered = 0
            if self._read_paused:
                self._read_paused = False
                self.transport.resume_reading()
            self._state = AFTER_POOL[self._state]
            self.idle_since = now = self._loop.time()
            self._pool._put_idle(self, now)
        elif self._state is DONE:
            self._state = AFTER_CLOSE[self._state]
            self.transport.close()
        else:
            self._state = AFTER_CLOSE[self._state]
            self.transport.abort()

    def usable(self, idle_timeout: float) -> bool:
        return (
            self._state is IDLE
            and not self.transport.is_closing()
            and self._loop.time() - self.idle_since < idle_timeout
        )

    def close(self) -> None:
        self._keep_alive = False
        self.transport.close()  # connection_lost moves the state

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # cast, not isinstance: uvloop's transports are not asyncio.Transport subclasses
        self.transport = cast(asyncio.Transport, transport)
        self._pool._conns.add(self)

    def data_received(self, data: bytes) -> None:
        state = self._state
        if state is BODY:
            if self._remaining > 0:
                self._take(data)
                return
        elif state is AWAITING_HEAD or state is SENDING:
            self._received += len(data)
            if self._method == "HEAD":
                self._feed_head(data)
                return
        else:
            # Bytes nobody asked for (no pipelining): the framing can no longer be trusted.
            self._keep_alive = False
            if state is not DONE:
                self._state = AFTER_FAIL[state]
                self.transport.abort()
            return
        self._got_body = False
        try:
            self._parser.feed_data(data)
        except _PARSE_ERRORS as exc:
            if self._state is DONE:  # more after the response's end (on_message_begin)
                self._keep_alive = False
            else:
                self._fail(_error(UpstreamError, f"bad response from the store: {exc}", exc))
            return
        self._framing = 0 if self._got_body else self._framing + len(data)
        if self._response is None and self._received > _MAX_HEAD:
            self._fail(UpstreamError("the store's response head is too long"))
        elif self._framing > _MAX_HEAD and self._state is BODY:
            self._fail(UpstreamError("the store's chunk framing or trailer is too long"))

    def _feed_head(self, data: bytes) -> None:
        """A HEAD response: parse its head only, whatever Content-Length it declares.

        httptools cannot be told the request was HEAD, so it would wait for that many body
        bytes. The head is cut out here (1xx heads before it included) and the parser,
        which then expects a body, is replaced by a fresh one.
        """
        buf = self._head_buf + data if self._head_buf else data
        while self._state in BEFORE_HEAD:
            end = buf.find(b"\r\n\r\n")  # llhttp refuses bare LF line ends anyway
            if end < 0:
                if self._received > _MAX_HEAD:
                    self._fail(UpstreamError("the store's response head is too long"))
                else:
                    self._head_buf = buf
                return
            try:
                self._parser.feed_data(buf[: end + 4])
            except _PARSE_ERRORS as exc:
                self._fail(_error(UpstreamError, f"bad response from the store: {exc}", exc))
                return
            buf = buf[end + 4 :]
        self._head_buf = b""
        self._parser = httptools.HttpResponseParser(self)
        if buf:  # a body after a HEAD response's head: the store's framing is off
            self._keep_alive = False
        if self._state is BODY:  # (llhttp has ended it already when it saw no body)
            self._message_done()

    def eof_received(self) -> bool | None:
        self._keep_alive = False
        return None  # the transport closes itself; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._pool._conns.discard(self)
        self._keep_alive = False
        state = self._state
        if state is BODY and self._body is UNTIL_CLOSE and exc is None:
            self._message_done()  # a body delimited by the end of the connection
        elif state is BODY or state in BEFORE_HEAD:
            if self._error is None:
                if state is not BODY and not self._received:
                    why = "the store closed the connection before answering"
                    self._error = _error(_Closed, why, exc)
                else:
                    why = "the store closed the connection before the response's end"
                    self._error = _error(UpstreamError, why, exc)
            self._state = AFTER_FAIL[state]
        elif state is IDLE:
            self._state = AFTER_FAIL[state]
        self._wake()
        self._wake_writer()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writer()

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self._state is DONE:
            raise RuntimeError("bytes after the end of the response")  # stops the parser
        self._headers = CIMultiDict()
        self._reason = b""

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._state in BEFORE_HEAD:  # else a chunked body's trailer: not passed on
            # llhttp strips the whitespace before a value, not after it (RFC 9110 5.5: both)
            self._headers.add(
                name.decode("utf-8", "surrogateescape"),
                value.rstrip(b" \t").decode("utf-8", "surrogateescape"),
            )

    def on_headers_complete(self) -> None:
        parser = self._parser
        status: int = parser.get_status_code()
        if status < 200:  # 100 Continue, 103 Early Hints...: skipped
            if status == 100:
                self._wake_writer()  # a body held for it goes now (else: a no-op)
            return
        headers = CIMultiDictProxy(self._headers)
        reason = self._reason.decode("utf-8", "surrogateescape")
        self._body, self._remaining, keep_alive = response_framing(
            self._method, status, headers, parser.get_http_version
        )
        # An early response (the body not all out): whether the store reads the rest as body
        # or as the next request cannot be known, so the connection is not used again. (A
        # body still held for 100 Continue is then never sent: see _send_body.)
        self._keep_alive = keep_alive and self._state is AWAITING_HEAD
        self._state = AFTER_RESPONSE_HEAD[self._state]
        self._response = Response(self, status, reason, headers)
        self._wake()

    def _take(self, data: bytes) -> None:
        """A read in the middle of a Content-Length body: kept as it is, not parsed.

        llhttp would only copy it out again (measured, a 256 MiB GET from nginx: 0.35-0.51
        CPU-s/GiB for the client instead of 0.60-0.70). The parser, which still expects
        those bytes, is replaced at the body's end.
        """
        if len(data) > self._remaining:  # more than the response: framing off
            data = data[: self._remaining]
            self._keep_alive = False
        self._remaining -= len(data)
        self._append(data)
        if not self._remaining:
            self._parser = httptools.HttpResponseParser(self)
            self._message_done()

    def on_body(self, body: bytes) -> None:
        self._got_body = True
        if self._remaining > 0:
            self._remaining -= len(body)
        self._append(body)

    def _append(self, body: bytes) -> None:
        self._pieces.append(body)
        self._buffered += len(body)
        if self._buffered > self._high and not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._state is BODY:  # else a 1xx answer's end
            self._message_done()

    def _message_done(self) -> None:
        self._state = AFTER_RESPONSE_END[self._state]
        self._wake()
