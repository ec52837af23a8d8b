"""Forged requests through s3shim to a real RGW: no signature, the wrong key or secret, a
skewed date, a path, query or header changed after signing, an expired or altered presigned
URL. Each is refused and nothing is stored.

Each case checks the S3 error code the client gets, the x-amz-request-id header, and that
the store holds no object afterwards (read directly from the store, not through s3shim).
"""

from __future__ import annotations

import base64
import os
import time
import uuid
import zlib

import pytest
from botocore.client import BaseClient

from ..convex_sequence import presign_client
from ..rawclient import Reply, amz_now, send, sign
from ..shim import Shim

pytestmark = pytest.mark.rgw


def _crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def _stored(direct: BaseClient, bucket: str, key: str) -> bool:
    listed = direct.list_objects_v2(Bucket=bucket, Prefix=key)
    return any(o["Key"] == key for o in listed.get("Contents", []))


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


def test_good_raw_put_is_stored(shim: Shim, direct: BaseClient, bucket: str) -> None:
    """Control for the cases below: the same raw client, correctly signed, works."""
    key = f"ok-{uuid.uuid4()}"
    body = os.urandom(1000)
    path, h = _put(shim, bucket, key, body, headers={"x-amz-checksum-crc32": _crc32_b64(body)})
    reply = send("PUT", shim.endpoint, path, h, body=body)
    assert reply.status == 200, reply.body
    assert reply.headers["x-amz-checksum-crc32"] == _crc32_b64(body)
    assert direct.get_object(Bucket=bucket, Key=key)["Body"].read() == body


def test_unsigned_request_is_refused(shim: Shim, direct: BaseClient, bucket: str) -> None:
    key = f"anon-{uuid.uuid4()}"
    reply = send("PUT", shim.endpoint, f"/{bucket}/{key}", {"content-length": "3"}, body=b"abc")
    _assert_refused(reply, 403, "AccessDenied")
    assert not _stored(direct, bucket, key)


def test_wrong_secret_is_refused(shim: Shim, direct: BaseClient, bucket: str) -> None:
    key = f"wrong-{uuid.uuid4()}"
    path, h = _put(shim, bucket, key, b"abc", secret_key="not-the-secret")
    _assert_refused(send("PUT", shim.endpoint, path, h, body=b"abc"), 403, "SignatureDoesNotMatch")
    assert not _stored(direct, bucket, key)


def test_unknown_key_is_refused(shim: Shim, direct: BaseClient, bucket: str) -> None:
    key = f"unknown-{uuid.uuid4()}"
    path, h = _put(shim, bucket, key, b"abc", access_key="AKIDUNKNOWN", secret_key="x")
    _assert_refused(send("PUT", shim.endpoint, path, h, body=b"abc"), 403, "InvalidAccessKeyId")
    assert not _stored(direct, bucket, key)


def test_skewed_date_is_refused(shim: Shim, direct: BaseClient, bucket: str) -> None:
    key = f"skew-{uuid.uuid4()}"
    path, h = _put(shim, bucket, key, b"abc", amz_date=amz_now(-16 * 60))
    _assert_refused(send("PUT", shim.endpoint, path, h, body=b"abc"), 403, "RequestTimeTooSkewed")
    assert not _stored(direct, bucket, key)


def test_tampered_path_is_refused(shim: Shim, direct: BaseClient, bucket: str) -> None:
    key = f"tamper-{uuid.uuid4()}"
    _, h = _put(shim, bucket, key, b"abc")
    reply = send("PUT", shim.endpoint, f"/{bucket}/{key}-other", h, body=b"abc")
    _assert_refused(reply, 403, "SignatureDoesNotMatch")
    assert not _stored(direct, bucket, key + "-other")


def test_tampered_query_is_refused(shim: Shim, direct: BaseClient, bucket: str) -> None:
    path = f"/{bucket}"
    h = sign(
        "GET",
        shim.endpoint,
        path,
        access_key=shim.access_key,
        secret_key=shim.secret_key,
        query=[("list-type", "2"), ("prefix", "a")],
    )
    reply = send("GET", shim.endpoint, path, h, query=[("list-type", "2"), ("prefix", "b")])
    _assert_refused(reply, 403, "SignatureDoesNotMatch")


def test_unsigned_amz_header_is_refused(shim: Shim, direct: BaseClient, bucket: str) -> None:
    """An x-amz-* header added after signing (think x-amz-copy-source) is not vouched for."""
    key = f"inject-{uuid.uuid4()}"
    path, h = _put(shim, bucket, key, b"abc")
    h["x-amz-meta-injected"] = "1"
    _assert_refused(send("PUT", shim.endpoint, path, h, body=b"abc"), 403, "AccessDenied")
    assert not _stored(direct, bucket, key)


def test_expired_presigned_url_is_refused(shim: Shim, direct: BaseClient, bucket: str) -> None:
    direct.put_object(Bucket=bucket, Key="presigned", Body=b"p")
    url = presign_client(shim.client()).generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "presigned"}, ExpiresIn=1
    )
    time.sleep(2.1)
    path_query = url.split(shim.endpoint, 1)[1]
    path, _, query = path_query.partition("?")
    pairs = [tuple(p.split("=", 1)) for p in query.split("&")]
    from urllib.parse import unquote

    reply = send("GET", shim.endpoint, path, {}, query=[(unquote(k), unquote(v)) for k, v in pairs])
    _assert_refused(reply, 403, "AccessDenied")
    assert b"expired" in reply.body


def test_tampered_presigned_put_is_refused(shim: Shim, direct: BaseClient, bucket: str) -> None:
    key = f"presigned-put-{uuid.uuid4()}"
    url = presign_client(shim.client()).generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300
    )
    import urllib.error
    import urllib.request

    forged = url.replace(key, key + "x")
    req = urllib.request.Request(forged, data=b"data", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=30)
    assert info.value.code == 403
    assert not _stored(direct, bucket, key + "x")


def test_expect_100_continue_forged_is_refused_before_body(shim: Shim) -> None:
    """With Expect: 100-continue, a forged request is answered before any body is sent."""
    import socket

    host, port = shim.endpoint.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"PUT /b/k HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\n"
            b"expect: 100-continue\r\n\r\n"
        )
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
    assert b"100 Continue" not in answer
