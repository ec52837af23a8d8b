"""Requests that try to get something past the signature to a real RGW: headers RGW reads
but SigV4 does not cover (underscore names), payload hashes that are not hashes, numbers
that are not ASCII digits. Each reproduces an attack a security review demonstrated, and
checks that s3shim refuses it and that the store holds nothing it should not.
"""

from __future__ import annotations

import uuid
from urllib.parse import unquote

import pytest
from botocore.client import BaseClient

from testkit.convex_sequence import presign_client
from testkit.helpers import stored
from testkit.rawclient import RawClient, send
from testkit.shim import Shim


def test_underscore_amz_header_cannot_be_smuggled(
    shim: Shim, direct: BaseClient, bucket: str
) -> None:
    """RGW reads x_amz_copy_source as x-amz-copy-source: unsigned, it must never pass."""
    direct.put_object(Bucket=bucket, Key="secret", Body=b"TOPSECRET")
    key = f"u-{uuid.uuid4()}"
    h = RawClient.of(shim).sign_put(f"/{bucket}/{key}", b"mine")
    h["x_amz_copy_source"] = f"/{bucket}/secret"
    reply = send("PUT", shim.endpoint, f"/{bucket}/{key}", h, body=b"mine")
    assert (reply.status, reply.code) == (403, "AccessDenied")
    assert stored(direct, bucket, key) is None


def test_underscore_header_via_presigned_url_cannot_change_acl(
    shim: Shim, direct: BaseClient, bucket: str
) -> None:
    """Security review: a presigned PUT signs only its query, and RGW reads x_amz_acl as
    x-amz-acl, so an added x_amz_acl would have made the object public unsigned: refused,
    nothing stored."""
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
    assert stored(direct, bucket, key) is None


@pytest.mark.parametrize("value", ["deadbeef", "0" * 63, "unsigned-payload"])
def test_invalid_content_sha256_is_not_read_as_unsigned(
    shim: Shim, direct: BaseClient, bucket: str, value: str
) -> None:
    """Security review: an x-amz-content-sha256 that is neither a SHA-256 hex digest nor a
    known keyword was treated like UNSIGNED-PAYLOAD, so a tampered body passed: now
    InvalidArgument, nothing stored."""
    key = f"h-{uuid.uuid4()}"
    h = RawClient.of(shim).sign_put(f"/{bucket}/{key}", b"tampered body", payload_hash=value)
    reply = send("PUT", shim.endpoint, f"/{bucket}/{key}", h, body=b"tampered body")
    assert (reply.status, reply.code) == (400, "InvalidArgument")
    assert stored(direct, bucket, key) is None


def test_non_ascii_digits_get_400_not_500(shim: Shim, bucket: str) -> None:
    """Security review: "²" passes str.isdigit() but not int(); in
    x-amz-decoded-content-length or X-Amz-Expires it was a 500, now a 400 with S3's code."""
    key = f"n-{uuid.uuid4()}"
    h = RawClient.of(shim).sign_put(
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
