"""The upstream client's test harness: a scripted store on 127.0.0.1 and a hand-fed connection.

The scripted store (asyncio streams, raw bytes both ways) is for tests where what the store
received matters; :class:`Hand` drives one connection with reads of exactly chosen bounds,
which a socket cannot promise.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from s3shim import upstream as upstream_mod
from s3shim.http1 import State
from s3shim.upstream import Response, Upstream

WAIT = 10.0  # only bounds a hang (a failing test, never a slow one); nothing is timed


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


# -- a scripted store --------------------------------------------------------------------------


@dataclass
class Received:
    head: bytes
    body: bytes
    length: int  # its Content-Length (0 without one)

    @property
    def complete(self) -> bool:
        return len(self.body) == self.length

    @property
    def method(self) -> str:
        return self.head.split(b" ", 1)[0].decode()


class StoreConn:
    def __init__(self, store: Store, index: int, r: asyncio.StreamReader, w: asyncio.StreamWriter):
        self.store, self.index, self.reader, self.writer = store, index, r, w

    async def read_head(self) -> bytes | None:
        try:
            return await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                return None  # the client closed an idle connection
            raise

    async def read_body(self, head: bytes) -> Received:
        """The body its Content-Length announces, or what arrived before the connection ended."""
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        body = b""
        with contextlib.suppress(ConnectionError):
            while len(body) < length:
                piece = await self.reader.read(min(65536, length - len(body)))
                if not piece:
                    break
                body += piece
        got = Received(head, body, length)
        self.store.requests.append(got)
        return got

    async def read_request(self) -> Received | None:
        head = await self.read_head()
        return None if head is None else await self.read_body(head)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def reset(self) -> None:
        """Close with a RST instead of a FIN."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def until_eof(self) -> bytes:
        rest = b""
        with contextlib.suppress(ConnectionError):
            while piece := await self.reader.read(65536):
                rest += piece
        return rest


Serve = Callable[[StoreConn], Awaitable[None]]


class Store:
    def __init__(self, serve: Serve) -> None:
        self.serve = serve
        self.accepted = 0
        self.requests: list[Received] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self, tls: ssl.SSLContext | None = None) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=tls)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        conn = StoreConn(self, self.accepted, reader, writer)
        self.accepted += 1
        try:
            await self.serve(conn)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        except asyncio.CancelledError:  # by close(); asyncio's streams would log it
            pass
        finally:
            writer.close()
            self.tasks.discard(task)

    async def close(self) -> None:
        self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.sleep(0)


def answering(*responses: bytes) -> Serve:
    """The store answers its requests with these in turn (whichever connection they came
    on), the last one repeated."""
    sent = 0

    async def serve(conn: StoreConn) -> None:
        nonlocal sent
        while await conn.read_request() is not None:
            reply = responses[min(sent, len(responses) - 1)]
            sent += 1
            await conn.send(reply)

    return serve


def cut_after(reply: bytes, how: str = "close") -> Serve:
    async def serve(conn: StoreConn) -> None:
        if await conn.read_request() is not None:
            await conn.send(reply)
            if how == "reset":
                conn.reset()

    return serve


async def until(check: Callable[[], bool]) -> None:
    """Wait for something the test cannot await directly (bounded, never timed)."""
    async with asyncio.timeout(WAIT):
        while not check():
            await asyncio.sleep(0.005)


async def settle(rounds: int = 50) -> None:
    """Let the loop run callbacks and tasks that are ready (a count of turns, not a time)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def store_and_client(
    serve: Serve, tls: ssl.SSLContext | None = None, **kw: Any
) -> AsyncIterator[tuple[Store, Upstream]]:
    store = Store(serve)
    await store.start(tls)
    up = Upstream(
        host="127.0.0.1",
        port=store.port,
        host_header=kw.pop("host_header", f"127.0.0.1:{store.port}"),
        ssl=kw.pop("ssl", None),
        connect_timeout=kw.pop("connect_timeout", WAIT),
        read_timeout=kw.pop("read_timeout", WAIT),
        **kw,
    )
    try:
        async with asyncio.timeout(WAIT * 3):
            yield store, up
    finally:
        await up.close()
        await store.close()


async def get(up: Upstream, method: str = "GET", target: str = "/b/k") -> tuple[Response, bytes]:
    async with await up.request(method, target, (), None) as r:
        return r, await r.read()


def only_conn(up: Upstream) -> Any:
    (conn,) = up._conns
    return conn


async def pieces(items: list[bytes]) -> AsyncIterator[bytes]:
    for item in items:
        yield item


async def iter_body(r: Response) -> AsyncIterator[bytes]:
    while (piece := await r.next_buffer()) is not None:
        yield piece


class RecordingTransport:
    """A real transport, with every write recorded (what the client asked to send at once)."""

    def __init__(self, inner: asyncio.Transport) -> None:
        self.inner = inner
        self.writes: list[list[bytes]] = []

    def write(self, data: bytes) -> None:
        self.writes.append([bytes(data)])
        self.inner.write(data)

    def writelines(self, lines: Any) -> None:
        lines = [bytes(x) for x in lines]
        self.writes.append(lines)
        self.inner.writelines(lines)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def writes_paused(conn: Any) -> bool:
    """Whether the connection's transport holds more than its high-water mark: the body's
    writer waits for it to drain."""
    transport = conn.transport
    return bool(transport.get_write_buffer_size() > transport.get_write_buffer_limits()[1])


# -- Expect: 100-continue ----------------------------------------------------------------------

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


FORBIDDEN = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\n\r\ndenied"


EXPECT = ("Expect", "100-continue")


class Pulled:
    """A streamed body that records whether (and when) anything asked it for bytes."""

    def __init__(self, data: bytes, size: int = 65536) -> None:
        self.data, self.size = data, size
        self.pulls = 0

    async def __call__(self) -> AsyncIterator[bytes]:
        for i in range(0, len(self.data), self.size):
            self.pulls += 1
            yield self.data[i : i + self.size]


def expect_headers(length: int) -> list[tuple[str, str]]:
    return [("content-length", str(length)), EXPECT]


# -- a connection fed reads by hand ------------------------------------------------------------


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
            self.conn.exchange(method, b"%s / HTTP/1.1\r\n\r\n" % method.encode(), None, None)
        )
        await asyncio.sleep(0)
        for data in reads:
            self.conn.data_received(data)
        if eof:
            self.conn.connection_lost(None)
        return await call

    def pooled(self) -> bool:
        return self.conn.state is State.IDLE and self.conn in self.up._idle


def head(length: int | None = None, *extra: str, status: str = "200 OK") -> bytes:
    lines = [f"HTTP/1.1 {status}", *extra]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
