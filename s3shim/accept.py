"""The client listener's accept loop: every pending connection taken at once, a batch at a time.

uvloop's own server accepts one connection per loop iteration while the loop is busy
(measured with strace: after the first burst, one ``accept4`` per iteration, never an
``EAGAIN``). A saturated s3shim runs a few dozen iterations a second, so the 256th of 256 new
connections waited seconds for its first byte — the tail that put wrk's p99 at 3 s while the
requests of established connections took 0.1 s. Here the listening socket is watched with
``add_reader`` and each readiness takes up to ``batch`` connections, so new connections wait
one iteration, and a flood of them still cannot starve the requests of the others.

The transports are the loop's own (``connect_accepted_socket``; TLS handshakes there too), so
everything above the socket — aiohttp's server, the listener's limits — is unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl as _ssl
from collections.abc import Callable

# More than one batch waits one more iteration: the requests in flight go first. Small enough
# that a flood of connections sending unfinished heads at once is read a batch at a time, so the
# head budget (listener.py) cuts the largest before the next batch's first reads are buffered
# (measured: 300 such connections peaked at +134 MiB with 128 a batch, over the 128 MiB bound).
BATCH = 32

ProtocolFactory = Callable[[], asyncio.Protocol]


def listening_sockets(
    host: str | None, port: int, *, backlog: int, reuse_port: bool
) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets for every address ``host`` names (as asyncio)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    socks: list[socket.socket] = []
    try:
        for family, type_, proto, _, addr in dict.fromkeys(infos):
            sock = socket.socket(family, type_, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                # One socket per family, as asyncio does: "::" must not also claim IPv4.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


class Acceptor:
    """Accepts on ``socks`` into ``factory``'s protocols until :meth:`close`."""

    def __init__(
        self,
        socks: list[socket.socket],
        factory: ProtocolFactory,
        *,
        ssl: _ssl.SSLContext | None = None,
        batch: int = BATCH,
        on_error: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        self.socks = socks
        self.factory = factory
        self.ssl = ssl
        self.batch = batch
        self.on_error = on_error
        self.accepted = 0
        self._loop = asyncio.get_running_loop()
        self._opening: set[asyncio.Task[object]] = set()
        for sock in socks:
            self._loop.add_reader(sock.fileno(), self._on_readable, sock)

    def _on_readable(self, sock: socket.socket) -> None:
        for _ in range(self.batch):
            try:
                conn, _addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # EMFILE, ENOBUFS, ECONNABORTED: this connection is lost, the listener is not.
                if self.on_error is not None:
                    self.on_error("accept_failed", exc)
                return
            self.accepted += 1
            self._open(conn)

    def _open(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        if conn.family in (socket.AF_INET, socket.AF_INET6):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = self._loop.create_task(
            self._loop.connect_accepted_socket(self.factory, conn, ssl=self.ssl)
        )
        self._opening.add(task)
        task.add_done_callback(lambda t: self._opened(t, conn))

    def _opened(self, task: asyncio.Task[object], conn: socket.socket) -> None:
        self._opening.discard(task)
        if task.cancelled():
            conn.close()
            return
        exc = task.exception()
        if exc is not None:
            # A failed TLS handshake, a peer gone before the transport existed.
            conn.close()
            if self.on_error is not None:
                self.on_error("connection_setup_failed", exc)

    @property
    def ports(self) -> list[int]:
        return [int(s.getsockname()[1]) for s in self.socks]

    def close(self) -> None:
        """Stop accepting (new connections are refused); connections already accepted are
        left alone, those still being set up too: under uvloop a connection's protocol may
        already be reading its first request when its setup task has yet to return, and
        cancelling that task would close the transport under a request the store then
        carries out unanswered (the drain's time limit bounds a handshake that never ends)."""
        for sock in self.socks:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self.socks = []
