"""Regression tests for the holes a security review found, each against a real RGW.

Each test reproduces the attack as it was demonstrated, and checks that s3shim now refuses
it (or neutralises it) and that the store holds nothing it should not.
"""

from __future__ import annotations

import base64
import socket
import time
import uuid
import zlib
from pathlib import Path
from urllib.parse import unquote

import pytest
from botocore.client import BaseClient

from .backends import Store
from .convex_sequence import presign_client
from .rawclient import send, sign
from .shim import Shim, run_shim

pytestmark = pytest.mark.rgw


def _stored(direct: BaseClient, bucket: str, key: str) -> bytes | None:
    try:
        data: bytes = direct.get_object(Bucket=bucket, Key=key)["Body"].read()
    except direct.exceptions.NoSuchKey:
        return None
    return data


def _signed_put(shim: Shim, path: str, body: bytes, **kw: object) -> dict[str, str]:
    headers = {"content-length": str(len(body)), **kw.pop("headers", {})}  # type: ignore[dict-item]
    return sign(
        "PUT",
        shim.endpoint,
        path,
        access_key=shim.access_key,
        secret_key=shim.secret_key,
        headers=headers,
        body=body,
        **kw,
    )  # type: ignore[arg-type]


def test_underscore_amz_header_cannot_be_smuggled(
    shim: Shim, direct: BaseClient, bucket: str
) -> None:
    """RGW reads x_amz_copy_source as x-amz-copy-source: unsigned, it must never pass."""
    direct.put_object(Bucket=bucket, Key="secret", Body=b"TOPSECRET")
    key = f"u-{uuid.uuid4()}"
    h = _signed_put(shim, f"/{bucket}/{key}", b"mine")
    h["x_amz_copy_source"] = f"/{bucket}/secret"
    reply = send("PUT", shim.endpoint, f"/{bucket}/{key}", h, body=b"mine")
    assert (reply.status, reply.code) == (403, "AccessDenied")
    assert _stored(direct, bucket, key) is None


def test_underscore_header_via_presigned_url_cannot_change_acl(
    shim: Shim, direct: BaseClient, bucket: str
) -> None:
    key = f"p-{uuid.uuid4()}"
    url = presign_client(shim.client()).generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300
    )
    path, _, query = url.split(shim.endpoint, 1)[1].partition("?")
    pairs = [(unquote(k), unquote(v)) for k, v in (p.split("=", 1) for p in query.split("&"))]
    reply = send(
        "PUT",
        shim.endpoint,
        path,
        {"x_amz_acl": "public-read-write", "content-length": "4"},
        query=pairs,
        body=b"data",
    )
    assert (reply.status, reply.code) == (403, "AccessDenied")
    assert _stored(direct, bucket, key) is None


def test_other_underscore_headers_are_dropped_not_forwarded(
    shim: Shim, direct: BaseClient, bucket: str
) -> None:
    key = f"d-{uuid.uuid4()}"
    h = _signed_put(shim, f"/{bucket}/{key}", b"x")
    h["content_disposition"] = "attachment; filename=evil.html"
    assert send("PUT", shim.endpoint, f"/{bucket}/{key}", h, body=b"x").status == 200
    assert "ContentDisposition" not in direct.head_object(Bucket=bucket, Key=key)


@pytest.mark.parametrize("value", ["deadbeef", "0" * 63, "unsigned-payload"])
def test_invalid_content_sha256_is_not_read_as_unsigned(
    shim: Shim, direct: BaseClient, bucket: str, value: str
) -> None:
    key = f"h-{uuid.uuid4()}"
    h = _signed_put(shim, f"/{bucket}/{key}", b"tampered body", payload_hash=value)
    reply = send("PUT", shim.endpoint, f"/{bucket}/{key}", h, body=b"tampered body")
    assert (reply.status, reply.code) == (400, "InvalidArgument")
    assert _stored(direct, bucket, key) is None


def test_non_ascii_digits_get_400_not_500(shim: Shim, bucket: str) -> None:
    key = f"n-{uuid.uuid4()}"
    h = _signed_put(
        shim,
        f"/{bucket}/{key}",
        b"x",
        payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        headers={"x-amz-decoded-content-length": "²", "content-encoding": "aws-chunked"},
    )
    reply = send("PUT", shim.endpoint, f"/{bucket}/{key}", h, body=b"x")
    assert 400 <= reply.status < 500 and reply.code != "InternalError"
    query = [
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
        ("X-Amz-Credential", f"{shim.access_key}/20261125/us-east-1/s3/aws4_request"),
        ("X-Amz-Date", "20261125T000000Z"),
        ("X-Amz-Expires", "²"),
        ("X-Amz-SignedHeaders", "host"),
        ("X-Amz-Signature", "0" * 64),
    ]
    reply = send("GET", shim.endpoint, f"/{bucket}/k", {}, query=query)
    assert (reply.status, reply.code) == (400, "AuthorizationQueryParametersError")


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


def test_signed_header_is_forwarded_as_verified(
    shim: Shim, direct: BaseClient, bucket: str
) -> None:
    """A whitespace variant that canonicalises to the signed value reaches the store in the
    signed form, never as the variant."""
    key = f"w-{uuid.uuid4()}"
    h = _signed_put(shim, f"/{bucket}/{key}", b"x", headers={"x-amz-meta-a": "x y"})
    h["x-amz-meta-a"] = "x\ty"
    assert send("PUT", shim.endpoint, f"/{bucket}/{key}", h, body=b"x").status == 200
    assert direct.head_object(Bucket=bucket, Key=key)["Metadata"] == {"a": "x y"}


def test_double_slash_path_is_refused(shim: Shim, bucket: str) -> None:
    h = sign(
        "GET",
        shim.endpoint,
        f"//{bucket}/k",
        access_key=shim.access_key,
        secret_key=shim.secret_key,
    )
    reply = send("GET", shim.endpoint, f"//{bucket}/k", h)
    assert (reply.status, reply.code) == (400, "InvalidBucketName")


def test_stalled_body_gets_request_timeout_and_nothing_stored(
    rgw_store: Store, direct: BaseClient, bucket: str, tmp_path: Path
) -> None:
    with run_shim(
        rgw_store.endpoint,
        rgw_store.access_key,
        rgw_store.secret_key,
        tmp_path,
        env={"S3SHIM_CLIENT_TIMEOUT_SECONDS": "2"},
    ) as s:
        for size in (100, 3 * 1024 * 1024):  # whole-body path and streamed path
            key = f"stall-{size}-{uuid.uuid4()}"
            body = b"s" * size
            h = sign(
                "PUT",
                s.endpoint,
                f"/{bucket}/{key}",
                access_key=s.access_key,
                secret_key=s.secret_key,
                payload_hash="UNSIGNED-PAYLOAD",
                headers={"content-length": str(size)},
            )
            port = int(s.endpoint.rsplit(":", 1)[1])
            with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
                head = f"PUT /{bucket}/{key} HTTP/1.1\r\n" + "".join(
                    f"{k}: {v}\r\n" for k, v in h.items()
                )
                sock.sendall(head.encode() + b"\r\n" + body[: size // 2])
                answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
            assert b"<Code>RequestTimeout</Code>" in answer
            assert _stored(direct, bucket, key) is None


def test_silent_connection_is_closed_and_connections_are_capped(
    rgw_store: Store, tmp_path: Path
) -> None:
    with run_shim(
        rgw_store.endpoint,
        rgw_store.access_key,
        rgw_store.secret_key,
        tmp_path,
        env={"S3SHIM_CLIENT_TIMEOUT_SECONDS": "2", "S3SHIM_MAX_CONNECTIONS": "2"},
    ) as s:
        port = int(s.endpoint.rsplit(":", 1)[1])
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
