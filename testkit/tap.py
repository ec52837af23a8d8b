"""A wire tap between s3shim and the real store: relays every byte, records what the store
was sent. Lets a test assert what really reached the store (headers and bodies), which no
client-side observation can show."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Tap:
    endpoint: str
    _sent: list[bytes] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def to_store(self) -> bytes:
        """Every byte s3shim sent to the store so far (all connections, in arrival order)."""
        with self._lock:
            return b"".join(self._sent)

    def record(self, data: bytes) -> None:
        with self._lock:
            self._sent.append(data)


def _pump(src: socket.socket, dst: socket.socket, tap: Tap | None) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(262144):
            if tap is not None:
                tap.record(data)
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def wire_tap(store_endpoint: str) -> Iterator[Tap]:
    target = urlsplit(store_endpoint)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    tap = Tap(f"http://127.0.0.1:{srv.getsockname()[1]}")

    def accept() -> None:
        while True:
            try:
                client, _ = srv.accept()
            except OSError:
                return
            upstream = socket.create_connection((target.hostname, target.port))
            threading.Thread(target=_pump, args=(client, upstream, tap), daemon=True).start()
            threading.Thread(target=_pump, args=(upstream, client, None), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield tap
    finally:
        srv.close()
