"""Forged requests through s3shim to a real RGW: no signature, the wrong key or secret, a
skewed date, a path, query or header changed after signing, an expired or altered presigned
URL. Each is refused and nothing is stored.

Each case checks the S3 error code the client gets, the x-amz-request-id header, and that
the store holds no object afterwards (read directly from the store, not through s3shim).
"""

from __future__ import annotations

import os
import socket
import time
import urllib.error
import urllib.request
import uuid

import pytest
from botocore.client import BaseClient

from testkit.convex_sequence import presign_client
from testkit.helpers import crc32_b64, host_port, stored
from testkit.rawclient import RawClient, amz_now, assert_refused, request_head, send, url_parts
from testkit.shim import Shim


def test_good_raw_put_is_stored(shim: Shim, direct: BaseClient, bucket: str) -> None:
    """Control for the cases below: the same raw client, correctly signed, works."""
    key = f"ok-{uuid.uuid4()}"
    body = os.urandom(1000)
    path = f"/{bucket}/{key}"
    h = RawClient.of(shim).sign_put(path, body, headers={"x-amz-checksum-crc32": crc32_b64(body)})
    reply = send("PUT", shim.endpoint, path, h, body=body)
    assert reply.status == 200, reply.body
    assert reply.headers["x-amz-checksum-crc32"] == crc32_b64(body)
    assert direct.get_object(Bucket=bucket, Key=key)["Body"].read() == body


def test_unsigned_request_is_refused(shim: Shim, direct: BaseClient, bucket: str) -> None:
    key = f"anon-{uuid.uuid4()}"
    reply = send("PUT", shim.endpoint, f"/{bucket}/{key}", {"content-length": "3"}, body=b"abc")
    assert_refused(reply, 403, "AccessDenied")
    assert stored(direct, bucket, key) is None


def test_wrong_secret_is_refused(shim: Shim, direct: BaseClient, bucket: str) -> None:
    key = f"wrong-{uuid.uuid4()}"
    path = f"/{bucket}/{key}"
    h = RawClient.of(shim).sign_put(path, b"abc", secret_key="not-the-secret")
    assert_refused(send("PUT", shim.endpoint, path, h, body=b"abc"), 403, "SignatureDoesNotMatch")
    assert stored(direct, bucket, key) is None


def test_unknown_key_is_refused(shim: Shim, direct: BaseClient, bucket: str) -> None:
    key = f"unknown-{uuid.uuid4()}"
    path = f"/{bucket}/{key}"
    h = RawClient.of(shim).sign_put(path, b"abc", access_key="AKIDUNKNOWN", secret_key="x")
    assert_refused(send("PUT", shim.endpoint, path, h, body=b"abc"), 403, "InvalidAccessKeyId")
    assert stored(direct, bucket, key) is None


def test_skewed_date_is_refused(shim: Shim, direct: BaseClient, bucket: str) -> None:
    key = f"skew-{uuid.uuid4()}"
    path = f"/{bucket}/{key}"
    h = RawClient.of(shim).sign_put(path, b"abc", amz_date=amz_now(-16 * 60))
    assert_refused(send("PUT", shim.endpoint, path, h, body=b"abc"), 403, "RequestTimeTooSkewed")
    assert stored(direct, bucket, key) is None


def test_tampered_path_is_refused(shim: Shim, direct: BaseClient, bucket: str) -> None:
    key = f"tamper-{uuid.uuid4()}"
    h = RawClient.of(shim).sign_put(f"/{bucket}/{key}", b"abc")
    reply = send("PUT", shim.endpoint, f"/{bucket}/{key}-other", h, body=b"abc")
    assert_refused(reply, 403, "SignatureDoesNotMatch")
    assert stored(direct, bucket, key + "-other") is None


def test_tampered_query_is_refused(shim: Shim, direct: BaseClient, bucket: str) -> None:
    path = f"/{bucket}"
    h = RawClient.of(shim).sign("GET", path, query=[("list-type", "2"), ("prefix", "a")])
    reply = send("GET", shim.endpoint, path, h, query=[("list-type", "2"), ("prefix", "b")])
    assert_refused(reply, 403, "SignatureDoesNotMatch")


def test_unsigned_amz_header_is_refused(shim: Shim, direct: BaseClient, bucket: str) -> None:
    """An x-amz-* header added after signing (think x-amz-copy-source) is not vouched for."""
    key = f"inject-{uuid.uuid4()}"
    path = f"/{bucket}/{key}"
    h = RawClient.of(shim).sign_put(path, b"abc")
    h["x-amz-meta-injected"] = "1"
    assert_refused(send("PUT", shim.endpoint, path, h, body=b"abc"), 403, "AccessDenied")
    assert stored(direct, bucket, key) is None


def test_expired_presigned_url_is_refused(shim: Shim, direct: BaseClient, bucket: str) -> None:
    direct.put_object(Bucket=bucket, Key="presigned", Body=b"p")
    url = presign_client(shim.client()).generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "presigned"}, ExpiresIn=1
    )
    time.sleep(2.1)
    path, query = url_parts(url, shim.endpoint)
    reply = send("GET", shim.endpoint, path, {}, query=query)
    assert_refused(reply, 403, "AccessDenied")
    assert b"expired" in reply.body


def test_tampered_presigned_put_is_refused(shim: Shim, direct: BaseClient, bucket: str) -> None:
    key = f"presigned-put-{uuid.uuid4()}"
    url = presign_client(shim.client()).generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300
    )
    forged = url.replace(key, key + "x")
    req = urllib.request.Request(forged, data=b"data", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=30)
    assert info.value.code == 403
    assert stored(direct, bucket, key + "x") is None


def test_expect_100_continue_forged_is_refused_before_body(
    shim: Shim, direct: BaseClient, bucket: str
) -> None:
    """With Expect: 100-continue, a forged request (a wrong secret) is answered before any
    body is sent. (A request with no signature at all is anonymous: s3shim hands it to the
    store, which decides, so it says nothing about s3shim's own check.)"""
    key = f"expect-{uuid.uuid4()}"
    path = f"/{bucket}/{key}"
    h = RawClient.of(shim).sign_put(
        path,
        b"",
        secret_key="not-the-secret",
        payload_hash="UNSIGNED-PAYLOAD",
        headers={"content-length": "1000000", "expect": "100-continue"},
    )
    with socket.create_connection(host_port(shim.endpoint), timeout=10) as sock:
        sock.sendall(request_head("PUT", path, h))
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
    assert b"100 Continue" not in answer
    assert b"<Code>SignatureDoesNotMatch</Code>" in answer
    assert stored(direct, bucket, key) is None
