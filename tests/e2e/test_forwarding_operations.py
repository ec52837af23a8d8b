"""Operations through s3shim to a real RGW answer as S3 does: paths S3 would refuse are
refused, conditional reads and the store's own errors pass through unchanged."""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError

from testkit.convex_sequence import new_bucket
from testkit.rawclient import RawClient, send
from testkit.shim import Shim


def test_double_slash_path_is_refused(shim: Shim, bucket: str) -> None:
    """Security review: s3shim and RGW must agree on the resource a path names; one starting
    with // is refused (InvalidBucketName) instead of being read differently by each."""
    h = RawClient.of(shim).sign(
        "GET",
        f"//{bucket}/k",
    )
    reply = send("GET", shim.endpoint, f"//{bucket}/k", h)
    assert (reply.status, reply.code) == (400, "InvalidBucketName")


def test_head_missing_is_not_found(shim: Shim) -> None:
    client = shim.client()
    bucket = new_bucket(client)
    with pytest.raises(ClientError) as info:
        client.head_object(Bucket=bucket, Key="missing")
    assert info.value.response["Error"]["Code"] == "404"


def test_conditional_get_304_and_store_errors_pass_through(shim: Shim) -> None:
    client = shim.client()
    bucket = new_bucket(client)
    etag = client.put_object(Bucket=bucket, Key="c", Body=b"cond")["ETag"]
    with pytest.raises(ClientError) as info:
        client.get_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert info.value.response["Error"]["Code"] == "304"
    with pytest.raises(ClientError) as info:
        client.get_object(Bucket=bucket, Key="nope")
    assert info.value.response["Error"]["Code"] == "NoSuchKey"  # the store's own error
    with pytest.raises(ClientError) as info:
        client.list_objects_v2(Bucket="no-such-bucket-" + uuid.uuid4().hex[:8])
    assert info.value.response["Error"]["Code"] == "NoSuchBucket"
