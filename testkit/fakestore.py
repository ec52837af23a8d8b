"""A RECORDING fake S3 store, for the in-process tests of s3shim's aiohttp layer.

It records every request s3shim sends it (method, raw target, headers as received, the
body bytes and whether the body arrived complete or the connection was cut) and answers
from a script the test sets, one :class:`Reply` per request: any status, headers and body,
a body cut mid-way, a reply held back until the test releases it. A request that expects
``100 Continue`` gets it before its body is read, as RGW does once the head passed its checks
(``Reply.continues``); a reply that does not read the body (``read_body=False``) is the store's
final answer before 100 Continue, as RGW refuses from the head.

It is a recording fake for testing the proxy's own branches (what s3shim forwards, holds
back, aborts or answers), and it is NEVER the proof that a feature works with a real store:
it implements no S3 semantics at all (it checks no signature, stores nothing, computes no
checksum). What a real store does with s3shim's requests is shown only by the tests that
run against the real stores in testkit/backends.py (RGW, rclone, moto, s3rver).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_request import BaseRequest

SETTLE_TIMEOUT = 10.0  # only bounds a hang; no test depends on how long anything takes


@dataclass(frozen=True)
class Reply:
    """How the fake store answers one request."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    # Declare Content-Length len(body) (or chunked) but send only this many bytes, then
    # end the connection (a store dying mid-response).
    cut_after: int | None = None
    chunked: bool = False  # send the body with chunked transfer coding, no Content-Length
    # A slow store: the reply is sent only once the test sets this event.
    gate: asyncio.Event | None = None
    read_body: bool = True  # read the whole request body before answering
    # Answer Expect: 100-continue with 100 Continue before reading the body; False: ignore
    # the expectation (a store that does not implement it reads the body when it comes).
    continues: bool = True

    @classmethod
    def error(cls, status: int, code: str, message: str = "fake store error") -> Reply:
        """An S3 XML error, as a store sends it."""
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            "<RequestId>fake-store-1</RequestId></Error>"
        ).encode()
        return cls(
            status,
            (("Content-Type", "application/xml"), ("x-amz-request-id", "fake-store-1")),
            body,
        )


@dataclass
class Received:
    """One request as the fake store received it."""

    method: str
    target: str  # raw path and query, exactly as on the request line
    headers: list[tuple[str, str]]  # as received: order, case and repeats kept
    body: bytes = b""
    # True: the body was read to its end as framed (Content-Length bytes, or the last
    # chunk). False: the connection was cut first (or read_body=False).
    complete: bool = False
    error: str | None = None  # why the body read ended early
    done: bool = False  # the handler has finished reading (body and complete are final)
    continued: bool = False  # answered its Expect: 100-continue with 100 Continue

    @property
    def expects_continue(self) -> bool:
        return (self.header("expect") or "").lower() == "100-continue"

    def header(self, name: str) -> str | None:
        """The first value of a header (case-insensitive), or None."""
        values = self.values(name)
        return values[0] if values else None

    def values(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for k, v in self.headers if k.lower() == lname]

    @property
    def names(self) -> set[str]:
        """Every header name received, lower case."""
        return {k.lower() for k, _ in self.headers}

    @property
    def declared_length(self) -> int | None:
        raw = self.header("content-length")
        return int(raw) if raw is not None else None


class _RecordingServer(web.Server):
    """aiohttp's low-level server (no router: the raw target reaches the handler as is),
    counting connections so a test can wait until s3shim has let go of the store."""

    def __init__(self, store: FakeStore, **kwargs: Any) -> None:
        super().__init__(store._handle, **kwargs)
        self._store = store

    def connection_made(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self._store.connections_opened += 1
        self._store.connections_open += 1
        self._store._changed()

    def connection_lost(
        self, handler: web.RequestHandler, exc: BaseException | None = None
    ) -> None:
        super().connection_lost(handler, exc)
        self._store.connections_open -= 1
        self._store._changed()


class FakeStore:
    """Start with :meth:`start`, script replies with :meth:`script`, read :attr:`received`."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.connections_opened = 0
        self.connections_open = 0
        self._replies: collections.deque[Reply] = collections.deque()
        self._active = 0  # handlers running
        self._event = asyncio.Event()
        self._runner: web.ServerRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with these, in order; then plain empty 200s."""
        self._replies.extend(replies)

    async def start(self) -> None:
        server = _RecordingServer(self, handler_cancellation=False, access_log=None)
        self._runner = web.ServerRunner(server, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _changed(self) -> None:
        self._event.set()

    async def until(self, predicate: Callable[[], bool], timeout: float = SETTLE_TIMEOUT) -> None:
        """Wait (on the store's own events, not on a clock) until ``predicate()`` holds."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._event.clear()
                await self._event.wait()

    async def settled(self) -> None:
        """Every connection s3shim opened is closed and every handler is done: what the
        store received is final."""
        await self.until(lambda: self.connections_open == 0 and self._active == 0)

    async def wait_done(self, count: int = 1) -> list[Received]:
        """The first ``count`` requests, once each was read to its end (or its cut)."""
        await self.until(lambda: len(self.received) >= count and self.received[count - 1].done)
        return self.received

    async def _handle(self, request: BaseRequest) -> web.StreamResponse:
        self._active += 1
        try:
            return await self._answer(request)
        finally:
            self._active -= 1
            self._changed()

    async def _answer(self, request: BaseRequest) -> web.StreamResponse:
        reply = self._replies.popleft() if self._replies else Reply()
        rec = Received(
            request.method,
            request.raw_path,
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers],
        )
        self.received.append(rec)
        self._changed()
        if reply.read_body and reply.continues and rec.expects_continue:
            transport = request.transport
            assert transport is not None
            transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            rec.continued = True
        if reply.read_body:
            body = bytearray()
            try:
                while piece := await request.content.readany():
                    body += piece
                    self._changed()
            except Exception as exc:  # whatever aiohttp raises for a cut body: recorded
                rec.error = type(exc).__name__
            else:
                rec.complete = True
            rec.body = bytes(body)
        rec.done = True
        self._changed()
        if reply.gate is not None:
            await reply.gate.wait()
        resp = web.StreamResponse(status=reply.status)
        for name, value in reply.headers:
            resp.headers.add(name, value)
        no_body = request.method == "HEAD" or reply.status in (204, 304)
        if reply.chunked:
            resp.enable_chunked_encoding()
        elif "Content-Length" not in resp.headers:
            # A HEAD reply gives its Content-Length in reply.headers (the object's size).
            resp.content_length = len(reply.body)
        await resp.prepare(request)
        if no_body:
            await resp.write_eof()
            return resp
        if reply.cut_after is not None:
            if reply.cut_after:
                await resp.write(reply.body[: reply.cut_after])
            transport = request.transport
            assert transport is not None
            # close() rather than abort(): the bytes written so far still leave, then the
            # connection ends short of what was declared.
            transport.close()
            return resp
        if reply.body:
            await resp.write(reply.body)
        await resp.write_eof()
        return resp
