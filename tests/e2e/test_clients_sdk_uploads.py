"""Every current SDK's default upload through s3shim to a real RGW (issue: aws-chunked).

boto3 over HTTPS frames bodies as STREAMING-UNSIGNED-PAYLOAD-TRAILER; the AWS SDK for
JavaScript v3 does so for stream bodies even over http. Direct to RGW those fail
(XAmzContentSHA256Mismatch / 411); through s3shim they are decoded, verified and stored
byte-identical. The s3rver canary stores any framing that reaches it as content, so a byte
compare there proves s3shim removed it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import uuid
from collections.abc import Iterator

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.client import BaseClient
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from s3shim.chunked import Framing
from testkit.backends import Store
from testkit.convex_sequence import MIB, new_bucket
from testkit.jsrun import run_sdk_uploads
from testkit.rawclient import RawClient
from testkit.shim import Shim, client_of, shim_for
from testkit.tls import TlsFiles

TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"


@pytest.fixture(scope="module")
def canary_shim(s3rver_store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shim]:
    with shim_for(s3rver_store, tmp_path_factory.mktemp("shim-s3rver")) as s:
        yield s


def boto3_default(shim: Shim, ca: str | None) -> BaseClient:
    """boto3 exactly as a user has it: no checksum or signing settings touched."""
    return boto3.client(
        "s3",
        endpoint_url=shim.endpoint,
        aws_access_key_id=shim.access_key,
        aws_secret_access_key=shim.secret_key,
        region_name="us-east-1",
        verify=ca,
        config=BotoConfig(retries={"max_attempts": 1}),
    )


def framings_logged(shim: Shim) -> list[str]:
    lines = [json.loads(x) for x in shim.log_text().splitlines() if x.startswith("{")]
    return [x["framing"] for x in lines if x.get("event") == "request" and "framing" in x]


@pytest.mark.parametrize("size", [0, 1, 64 * 1024 + 1, 8 * MIB + 1], ids=lambda s: f"{s}B")
def test_boto3_https_put_object(
    https_shim: Shim, direct: BaseClient, tls: TlsFiles, size: int
) -> None:
    client = boto3_default(https_shim, tls.ca)
    bucket = new_bucket(direct)
    data = os.urandom(size)
    put = client.put_object(Bucket=bucket, Key="k", Body=io.BytesIO(data))
    assert put.get("ChecksumCRC32")
    assert direct.get_object(Bucket=bucket, Key="k")["Body"].read() == data


@pytest.mark.parametrize("size", [5 * MIB + 1, 40 * MIB], ids=lambda s: f"{s}B")
def test_boto3_https_multipart_upload_fileobj(
    https_shim: Shim, direct: BaseClient, tls: TlsFiles, size: int
) -> None:
    client = boto3_default(https_shim, tls.ca)
    bucket = new_bucket(direct)
    data = os.urandom(size)
    cfg = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    client.upload_fileobj(io.BytesIO(data), bucket, "mp", Config=cfg)
    assert direct.get_object(Bucket=bucket, Key="mp")["Body"].read() == data
    assert TRAILER in framings_logged(https_shim)  # the aws-chunked path really ran


def assert_stored(direct: BaseClient, bucket: str, results: list[dict[str, object]]) -> None:
    assert results
    for o in results:
        got = direct.get_object(Bucket=bucket, Key=o["key"])["Body"].read()
        assert len(got) == o["size"], o
        assert hashlib.sha256(got).hexdigest() == o["sha256"], o


JS_SIZES = [0, 1, 70_000, 11 * MIB + 1]


def test_js_sdk_http_stream_uploads(node_js: str, shim: Shim, direct: BaseClient) -> None:
    bucket = new_bucket(direct)
    results = run_sdk_uploads(shim, bucket, JS_SIZES, node_js=node_js)
    assert_stored(direct, bucket, results)
    assert TRAILER in framings_logged(shim)
    puts = [o for o in results if o["kind"] == "put"]
    assert all(o["checksum"] for o in puts)  # the SDK got its CRC32 back


def test_js_sdk_https_stream_uploads(
    node_js: str, https_shim: Shim, direct: BaseClient, tls: TlsFiles
) -> None:
    bucket = new_bucket(direct)
    assert_stored(
        direct,
        bucket,
        run_sdk_uploads(
            https_shim,
            bucket,
            JS_SIZES,
            ca=tls.ca,
            node_js=node_js,
        ),
    )


def test_canary_js_uploads_through_s3shim_to_s3rver(
    node_js: str, canary_shim: Shim, s3rver_store: Store
) -> None:
    direct = client_of(s3rver_store)
    bucket = new_bucket(direct)
    assert_stored(
        direct,
        bucket,
        run_sdk_uploads(
            canary_shim,
            bucket,
            [0, 1, 70_000, 6 * MIB + 5],
            node_js=node_js,
        ),
    )


def test_direct_rgw_refuses_framing(node_js: str, rgw_store: Store, direct: BaseClient) -> None:
    """Control: the same JS upload straight to RGW fails, so the tests above prove a cure."""
    bucket = new_bucket(direct)
    with pytest.raises(AssertionError) as info:
        run_sdk_uploads(
            rgw_store,
            bucket,
            [70_000],
            node_js=node_js,
        )
    assert "XAmzContentSHA256Mismatch" in str(info.value) or "MissingContentLength" in str(
        info.value
    )


def test_boto3_https_bad_checksum_is_refused(
    https_shim: Shim, direct: BaseClient, tls: TlsFiles
) -> None:
    client = boto3_default(https_shim, tls.ca)
    bucket = new_bucket(direct)
    key = f"bad-{uuid.uuid4()}"
    with pytest.raises(ClientError) as info:
        client.put_object(Bucket=bucket, Key=key, Body=b"data", ChecksumCRC32="AAAAAA==")
    assert info.value.response["Error"]["Code"] == "BadDigest"
    assert "Contents" not in direct.list_objects_v2(Bucket=bucket)


@pytest.mark.parametrize("framing", list(Framing), ids=lambda f: f.name)
def test_canary_hand_framed_uploads_read_back_identical(
    canary_shim: Shim, s3rver_store: Store, framing: Framing
) -> None:
    """Every framing, signed and unsigned, through s3shim to a store that never decodes
    aws-chunked: byte-identical only if s3shim removed all of the framing."""
    direct = client_of(s3rver_store)
    bucket = new_bucket(direct)
    rng = random.Random(framing.value)
    for size in (0, 1, 200_000, 2 * MIB + 3):
        data = rng.randbytes(size)
        reply = RawClient.of(canary_shim).aws_chunked_put(f"/{bucket}/f{size}", data, framing, rng)
        assert reply.status == 200, reply.body[:300]
        assert direct.get_object(Bucket=bucket, Key=f"f{size}")["Body"].read() == data
