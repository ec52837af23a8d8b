"""The real stores start, and plain boto3 (path-style) round-trips an object on each."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from botocore.exceptions import ClientError

from testkit.backends import Store, s3_client


def _round_trip(store: Store, make_bucket: Callable[[Store], str]) -> None:
    bucket = make_bucket(store)
    s3 = s3_client(store)
    body = os.urandom(256 * 1024) + b"\x00\r\n0;chunk-signature=\r\n"  # binary, odd bytes
    s3.put_object(Bucket=bucket, Key="dir/obj.bin", Body=body)
    got = s3.get_object(Bucket=bucket, Key="dir/obj.bin")["Body"].read()
    assert got == body
    head = s3.head_object(Bucket=bucket, Key="dir/obj.bin")
    assert head["ContentLength"] == len(body)
    listed = s3.list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in listed.get("Contents", [])] == ["dir/obj.bin"]


# One test per store, each naming its store's fixture, so that each gets that store's marker
# (a fixture fetched with request.getfixturevalue would be invisible to the marker hook).
def test_put_get_roundtrip_rgw(rgw_store: Store, make_bucket: Callable[[Store], str]) -> None:
    _round_trip(rgw_store, make_bucket)


def test_put_get_roundtrip_rclone(rclone_store: Store, make_bucket: Callable[[Store], str]) -> None:
    _round_trip(rclone_store, make_bucket)


def test_put_get_roundtrip_moto(moto_store: Store, make_bucket: Callable[[Store], str]) -> None:
    _round_trip(moto_store, make_bucket)


def test_put_get_roundtrip_s3rver(s3rver_store: Store, make_bucket: Callable[[Store], str]) -> None:
    _round_trip(s3rver_store, make_bucket)


def test_rgw_refuses_sse_over_plain_http(
    rgw_store: Store, make_bucket: Callable[[Store], str]
) -> None:
    """Stock RGW (rgw crypt require ssl = true): SSE-S3 over http is a 400 InvalidRequest."""
    bucket = make_bucket(rgw_store)
    s3 = s3_client(rgw_store)
    with pytest.raises(ClientError) as excinfo:
        s3.put_object(Bucket=bucket, Key="sse", Body=b"secret", ServerSideEncryption="AES256")
    assert excinfo.value.response["Error"]["Code"] == "InvalidRequest"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket=bucket, Key="sse")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_stores_are_distinct(rclone_store: Store, moto_store: Store) -> None:
    assert rclone_store.endpoint != moto_store.endpoint
    assert rclone_store.endpoint.startswith("http://127.0.0.1:")
