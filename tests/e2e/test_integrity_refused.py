"""Bodies that do not match what the client declared (a wrong checksum, a wrong
x-amz-content-sha256, a body cut short) are refused through s3shim to a real RGW, and the
store holds nothing afterwards (read from the store itself)."""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid

import pytest
from botocore.client import BaseClient

from testkit.convex_sequence import MIB
from testkit.helpers import crc32_b64, host_port, stored
from testkit.rawclient import RawClient, assert_refused, request_head, send
from testkit.shim import Shim


@pytest.mark.parametrize("subresource", ["torrent", "select", "restore", "attributes"])
def test_checksum_checked_on_put_with_any_query(
    shim: Shim, direct: BaseClient, bucket: str, subresource: str
) -> None:
    """RGW runs PUT ?torrent as PutObject: the declared checksum must still be verified."""
    key = f"s-{uuid.uuid4()}"
    wrong = crc32_b64(b"other")
    h = RawClient.of(shim).sign(
        "PUT",
        f"/{bucket}/{key}",
        query=[(subresource, "")],
        payload_hash="UNSIGNED-PAYLOAD",
        headers={"x-amz-checksum-crc32": wrong, "content-length": "19"},
    )
    reply = send(
        "PUT",
        shim.endpoint,
        f"/{bucket}/{key}",
        h,
        query=[(subresource, "")],
        body=b"corrupted-in-flight",
    )
    assert (reply.status, reply.code) == (400, "BadDigest")
    assert stored(direct, bucket, key) is None


def test_delete_objects_checksum_is_verified(shim: Shim, direct: BaseClient, bucket: str) -> None:
    """Security review: the DeleteObjects body's checksum was not verified, so a body changed
    in flight could delete other keys: BadDigest, and the key is still there."""
    direct.put_object(Bucket=bucket, Key="keep-me", Body=b"k")
    body = (
        b'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<Object><Key>keep-me</Key></Object></Delete>"
    )
    claimed = b"<Delete><Object><Key>tmp-1</Key></Object></Delete>"
    crc = crc32_b64(claimed)
    h = RawClient.of(shim).sign(
        "POST",
        f"/{bucket}",
        query=[("delete", "")],
        payload_hash="UNSIGNED-PAYLOAD",
        headers={
            "x-amz-checksum-crc32": crc,
            "content-length": str(len(body)),
            "content-type": "application/xml",
        },
    )
    reply = send("POST", shim.endpoint, f"/{bucket}", h, query=[("delete", "")], body=body)
    assert (reply.status, reply.code) == (400, "BadDigest")
    assert stored(direct, bucket, "keep-me") == b"k"


@pytest.mark.parametrize("size", [10, 3 * MIB], ids=["small", "streamed"])
def test_wrong_checksum_gets_bad_digest_and_nothing_stored(
    shim: Shim, direct: BaseClient, bucket: str, size: int
) -> None:
    """RGW 16 stores a wrong CRC32 without complaint; through s3shim it never commits."""
    key = f"baddigest-{uuid.uuid4()}"
    body = os.urandom(size)
    wrong = crc32_b64(body + b"!")
    path = f"/{bucket}/{key}"
    h = RawClient.of(shim).sign_put(
        path,
        body,
        headers={"x-amz-checksum-crc32": wrong},
        payload_hash="UNSIGNED-PAYLOAD",
    )
    assert_refused(send("PUT", shim.endpoint, path, h, body=body), 400, "BadDigest")
    assert stored(direct, bucket, key) is None


@pytest.mark.parametrize("size", [0, 10, 3 * MIB], ids=["empty", "small", "streamed"])
def test_wrong_content_sha256_is_refused_and_nothing_stored(
    shim: Shim, direct: BaseClient, bucket: str, size: int
) -> None:
    key = f"badsha-{uuid.uuid4()}"
    body = os.urandom(size)
    path = f"/{bucket}/{key}"
    h = RawClient.of(shim).sign_put(path, body, payload_hash=hashlib.sha256(b"other").hexdigest())
    assert_refused(send("PUT", shim.endpoint, path, h, body=body), 400, "XAmzContentSHA256Mismatch")
    assert stored(direct, bucket, key) is None


def test_truncated_body_stores_nothing(shim: Shim, direct: BaseClient, bucket: str) -> None:
    """The client dies mid-upload: the store must not keep a short object."""

    key = f"trunc-{uuid.uuid4()}"
    body = os.urandom(3 * MIB)
    path = f"/{bucket}/{key}"
    h = RawClient.of(shim).sign_put(path, body, payload_hash="UNSIGNED-PAYLOAD")
    with socket.create_connection(host_port(shim.endpoint)) as sock:
        sock.sendall(request_head("PUT", path, h))
        sock.sendall(body[: len(body) // 2])
    time.sleep(1.0)
    assert stored(direct, bucket, key) is None
