"""Relays between s3shim and the real store. :func:`relay` passes every byte on, through an
optional filter each way; :func:`wire_tap` records what the store was sent. Lets a test
assert what really reached the store (headers and bodies), which no client-side observation
can show, or make the store look different to s3shim (a filter that drops or holds bytes)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# What a relay passes on of one chunk it read (b"": nothing); it may block to hold the chunk.
Filter = Callable[[bytes], bytes]


@dataclass
class Tap:
    endpoint: str
    _sent: list[bytes] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def to_store(self) -> bytes:
        """Every byte s3shim sent to the store so far (all connections, in arrival order)."""
        with self._lock:
            return b"".join(self._sent)

    def record(self, data: bytes) -> bytes:
        with self._lock:
            self._sent.append(data)
        return data


def _pump(src: socket.socket, dst: socket.socket, passed: Filter | None) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(262144):
            if passed is not None:
                data = passed(data)
            if data:
                dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def tcp_server(handle: Callable[[socket.socket], None]) -> Iterator[int]:
    """A TCP server on 127.0.0.1 (its port is yielded) handing each connection, one at a time
    in its thread, to ``handle``, which closes it."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)

    def accept() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            handle(conn)

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield srv.getsockname()[1]
    finally:
        srv.close()


@contextlib.contextmanager
def relay(
    store_endpoint: str, *, to_store: Filter | None = None, to_client: Filter | None = None
) -> Iterator[str]:
    """A relay on 127.0.0.1 in front of the store (its endpoint is yielded): a connection to
    the store for each connection to it, every chunk read passed through the direction's
    filter."""
    target = urlsplit(store_endpoint)

    def connect(client: socket.socket) -> None:
        upstream = socket.create_connection((target.hostname, target.port))
        threading.Thread(target=_pump, args=(client, upstream, to_store), daemon=True).start()
        threading.Thread(target=_pump, args=(upstream, client, to_client), daemon=True).start()

    with tcp_server(connect) as port:
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def wire_tap(store_endpoint: str) -> Iterator[Tap]:
    """A relay that records every byte sent to the store."""
    tap = Tap("")
    with relay(store_endpoint, to_store=tap.record) as tap.endpoint:
        yield tap
