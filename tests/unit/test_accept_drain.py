"""A drain that begins as a just-accepted connection's first request arrives.

SIGTERM closes the client listener (``Acceptor.close``) and lets the requests in flight finish.
A connection accepted a loop iteration earlier already has its protocol and may be reading a
request while the task that set it up (``connect_accepted_socket``) has yet to return: the
soak saw s3shim forward such a PutObject, the store commit it, and the client get the
connection closed with no answer — the setup task, cancelled by the close, had closed the
transport under the request (bench/SOAK.md, "A drain that cut a request").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

import uvloop
from aiohttp import web
from aiohttp.web_request import BaseRequest

from s3shim.accept import Acceptor, listening_sockets

REQUEST = b"PUT /b/k HTTP/1.1\r\nHost: s3\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello"


class _DrainOnFirstBytes(asyncio.Protocol):
    """The drain begins (``drain``: the listener closes) the moment the first request bytes
    arrive, in the loop iteration before the connection's setup task returns; then aiohttp's
    own protocol takes over, as the listener's admission protocol hands a connection on."""

    def __init__(self, inner: asyncio.Protocol, drain: Callable[[], None]) -> None:
        self.inner, self.drain = inner, drain
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # cast, not isinstance: uvloop's transports are not asyncio.Transport subclasses
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.drain()
        self.transport.set_protocol(self.inner)
        self.inner.connection_made(self.transport)
        self.inner.data_received(data)


async def _request_as_the_drain_begins() -> None:
    handled: list[bytes] = []

    async def store_it(request: BaseRequest) -> web.StreamResponse:
        handled.append(await request.read())  # what s3shim forwards: the store commits it
        await asyncio.sleep(0.05)
        return web.Response(body=b"stored")

    server = web.Server(store_it)
    opening: list[int] = []

    def drain() -> None:  # SIGTERM: server.py's drain closes the listener first
        opening.append(len(acceptor._opening))
        acceptor.close()

    acceptor = Acceptor(
        listening_sockets("127.0.0.1", 0, backlog=4, reuse_port=False),
        lambda: _DrainOnFirstBytes(server(), drain),
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", acceptor.ports[0])
    writer.write(REQUEST)
    try:
        answer = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
        await server.shutdown()
    assert opening == [1]  # the window: this connection's setup task had not returned
    assert handled == [b"hello"]
    # The request was carried out: its client must hear so.
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert answer.endswith(b"stored")


def test_a_request_arriving_as_the_drain_begins_is_answered() -> None:
    # Under uvloop, s3shim's loop (server.py): a setup task returns an iteration after its
    # protocol's first bytes. asyncio's own loop runs the task first: no window to test there.
    uvloop.run(_request_as_the_drain_begins())
