"""The same client sequences against the other real stores.

- rclone serve s3 verifies SigV4 strictly: a proxy that strips headers without re-signing
  fails there at once. The Convex sequence must pass through s3shim.
- moto is the AWS-faithful control: with both flags false s3shim must be invisible, so
  what the client sees through s3shim equals what it sees direct.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.client import BaseClient

from testkit.backends import Store
from testkit.convex_sequence import MIB, new_bucket, run_sequence
from testkit.helpers import crc32_b64
from testkit.jsrun import run_sdk_uploads
from testkit.shim import Shim, client_of, run_shim, shim_for


@pytest.fixture(scope="module")
def rclone_shim(rclone_store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shim]:
    with shim_for(rclone_store, tmp_path_factory.mktemp("shim-rclone")) as s:
        yield s


@pytest.fixture(scope="module")
def moto_shim(moto_store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shim]:
    with shim_for(moto_store, tmp_path_factory.mktemp("shim-moto"), flags=False) as s:
        yield s


@pytest.mark.parametrize("size", [0, 1, 5 * MIB + 1], ids=lambda s: f"{s}B")
def test_convex_sequence_through_s3shim_to_rclone(rclone_shim: Shim, size: int) -> None:
    client = rclone_shim.client()
    bucket = new_bucket(client)
    # rclone answers a Range GET with 200 (correct Content-Range and body): its quirk.
    run_sequence(client, bucket, size, range_statuses=(200, 206))


def test_rclone_rejects_a_wrong_secret_through_s3shim(
    rclone_store: Store, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """s3shim's re-signing really is what rclone checks: with the wrong store secret, 403."""
    with run_shim(
        rclone_store.endpoint,
        rclone_store.access_key,
        "wrong-store-secret",
        tmp_path_factory.mktemp("shim-rclone-bad"),
    ) as s:
        client = s.client()
        from botocore.exceptions import ClientError

        with pytest.raises(ClientError) as info:
            client.list_buckets()
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def _observe(client: BaseClient, bucket: str, data: bytes) -> list[Any]:
    """What a Convex-like client sees, minus per-request noise (ids, dates)."""
    seen: list[Any] = []
    put = client.put_object(
        Bucket=bucket,
        Key="small",
        Body=data[:1000],
        ServerSideEncryption="AES256",
        ChecksumAlgorithm="CRC32",
    )
    seen.append(("put", put.get("ServerSideEncryption"), put.get("ChecksumCRC32"), put["ETag"]))
    up = client.create_multipart_upload(
        Bucket=bucket, Key="big", ServerSideEncryption="AES256", ChecksumAlgorithm="CRC32"
    )
    seen.append(("create", up.get("ServerSideEncryption"), up.get("ChecksumAlgorithm")))
    parts = []
    for n, start in enumerate(range(0, len(data), 5 * MIB), start=1):
        r = client.upload_part(
            Bucket=bucket,
            Key="big",
            UploadId=up["UploadId"],
            PartNumber=n,
            Body=data[start : start + 5 * MIB],
            ChecksumAlgorithm="CRC32",
        )
        seen.append(("part", n, r.get("ChecksumCRC32"), r["ETag"]))
        parts.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
    done = client.complete_multipart_upload(
        Bucket=bucket, Key="big", UploadId=up["UploadId"], MultipartUpload={"Parts": parts}
    )
    seen.append(("complete", done.get("ETag"), done.get("ChecksumCRC32")))
    head = client.head_object(Bucket=bucket, Key="big", ChecksumMode="ENABLED")
    seen.append(("head", head["ContentLength"], head.get("ServerSideEncryption"), head["ETag"]))
    rng = client.get_object(Bucket=bucket, Key="big", Range="bytes=10-19")
    seen.append(
        (
            "range",
            rng["ResponseMetadata"]["HTTPStatusCode"],
            rng["ContentRange"],
            rng["Body"].read() == data[10:20],
        )
    )
    whole = client.get_object(Bucket=bucket, Key="big")["Body"].read()
    seen.append(("get", whole == data))
    listed = client.list_objects_v2(Bucket=bucket)
    seen.append(("list", sorted((o["Key"], o["Size"]) for o in listed["Contents"])))
    return seen


def test_moto_through_s3shim_equals_direct(moto_store: Store, moto_shim: Shim) -> None:
    data = os.urandom(11 * MIB)
    direct = client_of(moto_store)
    b1, b2 = new_bucket(direct), "via-" + uuid.uuid4().hex[:12]
    moto_shim.client().create_bucket(Bucket=b2)
    assert _observe(moto_shim.client(), b2, data) == _observe(direct, b1, data)


def test_moto_sequence_through_transparent_s3shim(moto_shim: Shim) -> None:
    client = moto_shim.client()
    run_sequence(client, new_bucket(client), 5 * MIB + 1)


def test_trailer_checksum_reaches_a_store_that_supports_checksums(
    node_js: str, moto_store: Store, moto_shim: Shim
) -> None:
    """Flags off: s3shim decodes the JS SDK's aws-chunked body but still hands the store the
    client's CRC32 (as a header for a small body, re-framed as one unsigned-trailer chunk for
    a streamed one); moto stores it and returns it with ChecksumMode=ENABLED."""

    direct = client_of(moto_store)
    bucket = new_bucket(direct)
    results = run_sdk_uploads(
        moto_shim,
        bucket,
        [70_000, 3 * MIB + 1],
        node_js=node_js,
    )
    puts = [o for o in results if o["kind"] == "put"]
    assert len(puts) == 2
    for o in puts:
        body = direct.get_object(Bucket=bucket, Key=o["key"])["Body"].read()
        crc = crc32_b64(body)
        head = direct.head_object(Bucket=bucket, Key=o["key"], ChecksumMode="ENABLED")
        assert head.get("ChecksumCRC32") == crc == o["checksum"], o
