"""Bodies that do not match what the client declared (a wrong checksum, a wrong
x-amz-content-sha256, a body cut short) are refused through s3shim to a real RGW, and the
store holds nothing afterwards (read from the store itself)."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import time
import uuid
import zlib

import pytest
from botocore.client import BaseClient

from ..convex_sequence import MIB
from ..rawclient import Reply, send, sign
from ..shim import Shim

pytestmark = pytest.mark.rgw


def _stored(direct: BaseClient, bucket: str, key: str) -> bytes | None:
    try:
        data: bytes = direct.get_object(Bucket=bucket, Key=key)["Body"].read()
    except direct.exceptions.NoSuchKey:
        return None
    return data


def _crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def _assert_refused(reply: Reply, status: int, code: str) -> None:
    assert (reply.status, reply.code) == (status, code), reply.body[:500]
    assert reply.headers.get("x-amz-request-id")
    assert reply.headers.get("content-type") == "application/xml"


def _put(
    shim: Shim,
    bucket: str,
    key: str,
    body: bytes,
    *,
    access_key: str | None = None,
    secret_key: str | None = None,
    headers: dict[str, str] | None = None,
    amz_date: str | None = None,
    payload_hash: str | None = None,
) -> tuple[str, dict[str, str]]:
    path = f"/{bucket}/{key}"
    h = sign(
        "PUT",
        shim.endpoint,
        path,
        access_key=access_key or shim.access_key,
        secret_key=secret_key or shim.secret_key,
        headers={"content-length": str(len(body)), **(headers or {})},
        body=body,
        amz_date=amz_date,
        payload_hash=payload_hash,
    )
    return path, h


@pytest.mark.parametrize("subresource", ["torrent", "select", "restore", "attributes"])
def test_checksum_checked_on_put_with_any_query(
    shim: Shim, direct: BaseClient, bucket: str, subresource: str
) -> None:
    """RGW runs PUT ?torrent as PutObject: the declared checksum must still be verified."""
    key = f"s-{uuid.uuid4()}"
    wrong = base64.b64encode(zlib.crc32(b"other").to_bytes(4, "big")).decode()
    h = sign(
        "PUT",
        shim.endpoint,
        f"/{bucket}/{key}",
        access_key=shim.access_key,
        secret_key=shim.secret_key,
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
    assert _stored(direct, bucket, key) is None


def test_delete_objects_checksum_is_verified(shim: Shim, direct: BaseClient, bucket: str) -> None:
    """Security review: the DeleteObjects body's checksum was not verified, so a body changed
    in flight could delete other keys: BadDigest, and the key is still there."""
    direct.put_object(Bucket=bucket, Key="keep-me", Body=b"k")
    body = (
        b'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<Object><Key>keep-me</Key></Object></Delete>"
    )
    claimed = b"<Delete><Object><Key>tmp-1</Key></Object></Delete>"
    crc = base64.b64encode(zlib.crc32(claimed).to_bytes(4, "big")).decode()
    h = sign(
        "POST",
        shim.endpoint,
        f"/{bucket}",
        access_key=shim.access_key,
        secret_key=shim.secret_key,
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
    assert _stored(direct, bucket, "keep-me") == b"k"


@pytest.mark.parametrize("size", [10, 3 * MIB], ids=["small", "streamed"])
def test_wrong_checksum_gets_bad_digest_and_nothing_stored(
    shim: Shim, direct: BaseClient, bucket: str, size: int
) -> None:
    """RGW 16 stores a wrong CRC32 without complaint; through s3shim it never commits."""
    key = f"baddigest-{uuid.uuid4()}"
    body = os.urandom(size)
    wrong = _crc32_b64(body + b"!")
    path, h = _put(
        shim,
        bucket,
        key,
        body,
        headers={"x-amz-checksum-crc32": wrong},
        payload_hash="UNSIGNED-PAYLOAD",
    )
    _assert_refused(send("PUT", shim.endpoint, path, h, body=body), 400, "BadDigest")
    assert _stored(direct, bucket, key) is None


@pytest.mark.parametrize("size", [0, 10, 3 * MIB], ids=["empty", "small", "streamed"])
def test_wrong_content_sha256_is_refused_and_nothing_stored(
    shim: Shim, direct: BaseClient, bucket: str, size: int
) -> None:
    key = f"badsha-{uuid.uuid4()}"
    body = os.urandom(size)
    path, h = _put(shim, bucket, key, body, payload_hash=hashlib.sha256(b"other").hexdigest())
    _assert_refused(
        send("PUT", shim.endpoint, path, h, body=body), 400, "XAmzContentSHA256Mismatch"
    )
    assert _stored(direct, bucket, key) is None


def test_truncated_body_stores_nothing(shim: Shim, direct: BaseClient, bucket: str) -> None:
    """The client dies mid-upload: the store must not keep a short object."""

    key = f"trunc-{uuid.uuid4()}"
    body = os.urandom(3 * MIB)
    path, h = _put(shim, bucket, key, body, payload_hash="UNSIGNED-PAYLOAD")
    host, port = shim.endpoint.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port))) as sock:
        head = f"PUT {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
        sock.sendall(head.encode() + b"\r\n")
        sock.sendall(body[: len(body) // 2])
    time.sleep(1.0)
    assert _stored(direct, bucket, key) is None
