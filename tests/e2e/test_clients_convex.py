"""The Convex call sequence against a real Ceph RGW: fails direct, passes through s3shim.

Unmodified boto3 with default settings plays the client (it sends what Convex sends:
SSE-S3 on CreateMultipartUpload/PutObject and a CRC32 on every part).
"""

from __future__ import annotations

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from testkit.convex_sequence import MIB, new_bucket, payload, read_back, run_sequence
from testkit.shim import Shim

SIZES = [0, 1, 5 * MIB + 1, 17 * MIB]


def test_sequence_fails_directly_against_rgw(direct: BaseClient) -> None:
    bucket = new_bucket(direct)
    with pytest.raises(ClientError) as info:
        run_sequence(direct, bucket, 1)
    # The failure Convex users report: CreateMultipartUpload with SSE-S3 over plain http.
    assert info.value.response["Error"]["Code"] == "InvalidRequest"
    assert info.value.operation_name == "CreateMultipartUpload"


def test_upload_part_direct_returns_no_checksum(direct: BaseClient) -> None:
    """Why Convex fails even without SSE: RGW 16 returns no x-amz-checksum-crc32."""
    bucket = new_bucket(direct)
    upload = direct.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="CRC32")
    part = direct.upload_part(
        Bucket=bucket,
        Key="k",
        UploadId=upload["UploadId"],
        PartNumber=1,
        Body=b"x",
        ChecksumAlgorithm="CRC32",
    )
    assert "ChecksumCRC32" not in part
    direct.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload["UploadId"])


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s}B")
def test_sequence_passes_through_s3shim(shim: Shim, direct: BaseClient, size: int) -> None:
    client = shim.client()
    bucket = new_bucket(client)
    run_sequence(client, bucket, size, store=direct)  # bytes compared through s3shim and in RGW


def test_objects_written_through_s3shim_read_identical_directly(
    shim: Shim, direct: BaseClient
) -> None:
    """The store itself holds exactly the bytes sent, not only what s3shim returns."""
    client = shim.client()
    bucket = new_bucket(client)
    data = payload(2 * MIB + 3)  # above the whole-body threshold: streamed with hold-back
    client.put_object(Bucket=bucket, Key="big", Body=data, ServerSideEncryption="AES256")
    assert read_back(direct, bucket, "big") == data
