"""The limits that keep one client from holding s3shim: a stalled body gets RequestTimeout, a
silent connection is closed, connections are capped, an oversize head gets S3 XML."""

from __future__ import annotations

import socket
import time
import uuid

from botocore.client import BaseClient

from testkit.helpers import host_port, stored
from testkit.rawclient import RawClient, request_head
from testkit.shim import Shim, ShimStarter


def test_stalled_body_gets_request_timeout_and_nothing_stored(
    direct: BaseClient, bucket: str, start_shim: ShimStarter
) -> None:
    """Security review: a client that stops sending mid-body held its connection and the
    store's upload forever; after S3SHIM_CLIENT_TIMEOUT_SECONDS it gets 400 RequestTimeout
    and nothing is stored, on the whole-body and the streamed path."""
    with start_shim(env={"S3SHIM_CLIENT_TIMEOUT_SECONDS": "2"}) as s:
        for size in (100, 3 * 1024 * 1024):  # whole-body path and streamed path
            key = f"stall-{size}-{uuid.uuid4()}"
            body = b"s" * size
            h = RawClient.of(s).sign(
                "PUT",
                f"/{bucket}/{key}",
                payload_hash="UNSIGNED-PAYLOAD",
                headers={"content-length": str(size)},
            )
            _, port = host_port(s.endpoint)
            with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
                sock.sendall(request_head("PUT", f"/{bucket}/{key}", h) + body[: size // 2])
                answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
            assert b"<Code>RequestTimeout</Code>" in answer
            assert stored(direct, bucket, key) is None


def test_silent_connection_is_closed_and_connections_are_capped(start_shim: ShimStarter) -> None:
    """Security review: a connection whose head never ends is closed after the client
    timeout, and a connection past S3SHIM_MAX_CONNECTIONS is closed on arrival."""
    with start_shim(env={"S3SHIM_CLIENT_TIMEOUT_SECONDS": "2", "S3SHIM_MAX_CONNECTIONS": "2"}) as s:
        _, port = host_port(s.endpoint)
        first = socket.create_connection(("127.0.0.1", port), timeout=10)
        second = socket.create_connection(("127.0.0.1", port), timeout=10)
        first.sendall(b"GET /b/k HTTP/1.1\r\nhost: x\r\n")  # a head that never ends
        time.sleep(0.3)
        third = socket.create_connection(("127.0.0.1", port), timeout=10)
        assert third.recv(10) == b""  # closed on arrival: over the cap
        third.close()
        started = time.monotonic()
        assert first.recv(10) == b""  # closed by the head deadline
        assert time.monotonic() - started < 8
        first.close()
        second.close()


def test_oversize_header_gets_s3_xml(shim: Shim) -> None:
    with socket.create_connection(host_port(shim.endpoint), timeout=10) as sock:
        sock.sendall(b"GET /b/k HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 20000 + b"\r\n\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.0 400") or answer.startswith(b"HTTP/1.1 400")
    assert b"<Code>RequestHeaderSectionTooLarge</Code>" in answer
    assert b"x-amz-request-id:" in answer
    assert b"aaaaaaaaaa" not in answer  # the request is not echoed back
