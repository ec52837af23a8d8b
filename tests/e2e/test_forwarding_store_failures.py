"""A store that fails in the middle of a response body.

No real store can be made to die at an exact byte, so a tiny socket server plays a broken
store here (a test double, for this one failure mode only). What matters is what s3shim does
with it: the client must see a short body, never a complete-looking object.
"""

from __future__ import annotations

import functools
import http.client
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.helpers import host_port
from testkit.rawclient import sign
from testkit.shim import Shim, run_shim
from testkit.tap import tcp_server


def _answer_and_vanish(chunked: bool, conn: socket.socket) -> None:
    """A store that answers a quarter of a 1 MiB body, then vanishes: no terminating chunk,
    3/4 missing."""
    with conn:
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = conn.recv(65536)
            if not data:
                break
            buf += data
        piece = b"x" * 65536
        if chunked:
            head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            body = b"%x\r\n%s\r\n" % (len(piece), piece) * 4
        else:
            head = b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n"
            body = piece * 4
        conn.sendall(head + body)


@pytest.fixture(params=[True, False], ids=["chunked", "content-length"])
def broken(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Shim]:
    with (
        tcp_server(functools.partial(_answer_and_vanish, request.param)) as port,
        run_shim(f"http://127.0.0.1:{port}", "AKID", "secret", tmp_path) as s,
    ):
        yield s


def test_store_dying_mid_body_never_looks_complete(broken: Shim) -> None:
    headers = sign("GET", broken.endpoint, "/b/k", access_key="AKID", secret_key="secret")
    host, port = host_port(broken.endpoint)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("GET", "/b/k", skip_host=True, skip_accept_encoding=True)
    for k, v in headers.items():
        conn.putheader(k, v)
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 200
    with pytest.raises(http.client.IncompleteRead):
        resp.read()
    entries = broken.log_entries(until="stream_error")
    assert any(e.get("stream_error") for e in entries if e.get("event") == "request")
