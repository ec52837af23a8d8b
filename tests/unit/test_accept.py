"""The client listener's accept loop: every pending connection in one readiness, a batch at most."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest
from aiohttp import web
from aiohttp.web_request import BaseRequest

from s3shim.accept import Acceptor, listening_sockets


async def _answer(_request: BaseRequest) -> web.StreamResponse:
    return web.Response(body=b"ok")


def _pending_connections(port: int, n: int) -> list[socket.socket]:
    """n connections the kernel has completed (in the accept queue), none accepted yet."""
    clients = []
    for _ in range(n):
        c = socket.create_connection(("127.0.0.1", port))
        clients.append(c)
    return clients


@pytest.mark.parametrize(("pending", "batch", "taken"), [(40, 128, 40), (40, 16, 16), (1, 128, 1)])
async def test_one_readiness_takes_every_pending_connection_up_to_the_batch(
    pending: int, batch: int, taken: int
) -> None:
    socks = listening_sockets("127.0.0.1", 0, backlog=256, reuse_port=False)
    acceptor = Acceptor(socks, web.Server(_answer), batch=batch)
    clients = _pending_connections(acceptor.ports[0], pending)
    try:
        acceptor._on_readable(socks[0])  # what the loop calls once the socket is readable
        assert acceptor.accepted == taken
        # The rest are taken on the next readiness (the socket stays readable).
        for _ in range(10):
            await asyncio.sleep(0)
        assert acceptor.accepted == pending
    finally:
        acceptor.close()
        for c in clients:
            c.close()


async def test_accepted_connections_are_served_and_close_refuses_new_ones() -> None:
    server = web.Server(_answer)
    socks = listening_sockets("127.0.0.1", 0, backlog=16, reuse_port=False)
    acceptor = Acceptor(socks, server)
    port = acceptor.ports[0]
    async with aiohttp.ClientSession() as session:
        for _ in range(3):  # keep-alive: one connection, three requests
            async with session.get(f"http://127.0.0.1:{port}/x") as resp:
                assert resp.status == 200
                assert await resp.read() == b"ok"
        assert acceptor.accepted == 1
        acceptor.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
    await server.shutdown()


async def test_a_connection_whose_setup_fails_is_closed_and_reported() -> None:
    reported: list[str] = []

    def failing_factory() -> asyncio.Protocol:
        raise RuntimeError("no protocol")

    socks = listening_sockets("127.0.0.1", 0, backlog=4, reuse_port=False)
    acceptor = Acceptor(socks, failing_factory, on_error=lambda event, _exc: reported.append(event))
    client = socket.create_connection(("127.0.0.1", acceptor.ports[0]))
    try:
        for _ in range(50):
            if reported:
                break
            await asyncio.sleep(0.01)
        assert reported == ["connection_setup_failed"]
        client.settimeout(2)
        assert client.recv(1) == b""  # s3shim closed its end
    finally:
        acceptor.close()
        client.close()


def test_every_address_family_gets_its_own_socket() -> None:
    socks = listening_sockets("localhost", 0, backlog=4, reuse_port=False)
    try:
        families = [s.family for s in socks]
        assert socket.AF_INET in families
        assert len(set(families)) == len(families)
    finally:
        for s in socks:
            s.close()
