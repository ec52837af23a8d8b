"""The Convex call sequence against a real Ceph RGW: fails direct, passes through s3shim.

Unmodified boto3 with default settings plays the client (it sends what Convex sends:
SSE-S3 on CreateMultipartUpload/PutObject and a CRC32 on every part).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from .backends import Store
from .convex_sequence import MIB, new_bucket, payload, read_back, run_sequence
from .shim import Shim, s3_client

pytestmark = pytest.mark.rgw

SIZES = [0, 1, 5 * MIB + 1, 17 * MIB]


def test_sequence_fails_directly_against_rgw(rgw_store: Store) -> None:
    direct = s3_client(rgw_store.endpoint, rgw_store.access_key, rgw_store.secret_key)
    bucket = new_bucket(direct)
    with pytest.raises(ClientError) as info:
        run_sequence(direct, bucket, 1)
    # The failure Convex users report: CreateMultipartUpload with SSE-S3 over plain http.
    assert info.value.response["Error"]["Code"] == "InvalidRequest"
    assert info.value.operation_name == "CreateMultipartUpload"


def test_upload_part_direct_returns_no_checksum(rgw_store: Store) -> None:
    """Why Convex fails even without SSE: RGW 16 returns no x-amz-checksum-crc32."""
    direct = s3_client(rgw_store.endpoint, rgw_store.access_key, rgw_store.secret_key)
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
def test_sequence_passes_through_s3shim(shim: Shim, rgw_store: Store, size: int) -> None:
    client = shim.client()
    bucket = new_bucket(client)
    direct = s3_client(rgw_store.endpoint, rgw_store.access_key, rgw_store.secret_key)
    run_sequence(client, bucket, size, store=direct)  # bytes compared through s3shim and in RGW


def test_objects_written_through_s3shim_read_identical_directly(
    shim: Shim, rgw_store: Store
) -> None:
    """The store itself holds exactly the bytes sent, not only what s3shim returns."""
    client = shim.client()
    direct = s3_client(rgw_store.endpoint, rgw_store.access_key, rgw_store.secret_key)
    bucket = new_bucket(client)
    data = payload(2 * MIB + 3)  # above the whole-body threshold: streamed with hold-back
    client.put_object(Bucket=bucket, Key="big", Body=data, ServerSideEncryption="AES256")
    assert read_back(direct, bucket, "big") == data


def test_sse_c_is_never_dropped(shim: Shim, rgw_store: Store) -> None:
    """SSE-C reaches the store even with AWS_S3_DISABLE_SSE: RGW refuses it over http, and
    the client hears so, instead of s3shim silently storing plaintext."""
    client = shim.client()
    bucket = new_bucket(client)
    key = f"ssec-{uuid.uuid4()}"
    with pytest.raises(ClientError) as info:
        client.put_object(
            Bucket=bucket,
            Key=key,
            Body=b"secret",
            SSECustomerAlgorithm="AES256",
            SSECustomerKey="k" * 32,
        )
    assert info.value.response["Error"]["Code"] == "InvalidRequest"
    # It is the store's refusal: the request went through s3shim with SSE-C intact.
    rid = info.value.response["ResponseMetadata"]["RequestId"]
    line = next(e for e in shim.log_entries(until=rid) if e.get("upstream_request_id") == rid)
    assert line["upstream_status"] == 400
    direct = s3_client(rgw_store.endpoint, rgw_store.access_key, rgw_store.secret_key)
    assert "Contents" not in direct.list_objects_v2(Bucket=bucket)


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


def test_shim_log_is_json_without_secrets(shim: Shim, rgw_store: Store, tmp_path: Path) -> None:

    client = shim.client()
    bucket = new_bucket(client)
    rid = client.put_object(Bucket=bucket, Key="logged", Body=b"x")["ResponseMetadata"]["RequestId"]
    assert read_back(client, bucket, "logged") == b"x"
    lines = shim.log_entries(until=rid)
    requests = [entry for entry in lines if entry.get("event") == "request"]
    assert any(r.get("op") == "PutObject" and r.get("status") == 200 for r in requests)
    text = shim.log_text()
    assert rgw_store.secret_key not in text
    assert "Signature=" not in text and "X-Amz-Signature" not in text


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"])
def test_every_checksum_algorithm_verified_and_returned(
    shim: Shim, rgw_store: Store, algorithm: str
) -> None:
    """boto3 computes each algorithm itself; s3shim verifies it, returns it, and refuses a
    wrong one with nothing stored (RGW 16 would accept any value)."""
    client = shim.client()
    direct = s3_client(rgw_store.endpoint, rgw_store.access_key, rgw_store.secret_key)
    bucket = new_bucket(client)
    for size in (10, 3 * MIB):  # whole-body and streamed paths
        data = payload(size)
        put = client.put_object(
            Bucket=bucket, Key=f"ok-{size}", Body=data, ChecksumAlgorithm=algorithm
        )
        # The value s3shim returns is the right one, computed independently here.
        assert put.get(f"Checksum{algorithm}") == _independent_checksum(algorithm, data)
        assert read_back(direct, bucket, f"ok-{size}") == data
        good = put[f"Checksum{algorithm}"]
        wrong = ("B" if good[0] != "B" else "C") + good[1:]
        with pytest.raises(ClientError) as info:
            client.put_object(
                Bucket=bucket, Key=f"bad-{size}", Body=data, **{f"Checksum{algorithm}": wrong}
            )
        assert info.value.response["Error"]["Code"] == "BadDigest"
        assert "bad-" not in str(direct.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_memory_stays_flat_for_large_objects(shim: Shim, rgw_store: Store) -> None:
    """s3shim never holds an object: a 512 MiB upload and download leave its peak RSS far
    below the object size (the bench measures the same at 1 GiB)."""
    import io

    from boto3.s3.transfer import TransferConfig

    client = shim.client()
    bucket = new_bucket(client)
    size = 512 * MIB
    data = payload(size)
    cfg = TransferConfig(
        multipart_threshold=64 * MIB, multipart_chunksize=64 * MIB, max_concurrency=2
    )
    client.upload_fileobj(io.BytesIO(data), bucket, "big", Config=cfg)
    sink = io.BytesIO()
    client.download_fileobj(bucket, "big", sink, Config=cfg)
    assert sink.getvalue() == data
    client.delete_object(Bucket=bucket, Key="big")
    status = Path(f"/proc/{shim.pid}/status").read_text()
    peak_kib = int(next(x for x in status.splitlines() if x.startswith("VmHWM")).split()[1])
    assert peak_kib < 150 * 1024, f"s3shim peak RSS {peak_kib // 1024} MiB"


def _independent_checksum(algorithm: str, data: bytes) -> str:
    import base64
    import hashlib
    import zlib

    from botocore.httpchecksum import CrtCrc32cChecksum, CrtCrc64NvmeChecksum

    if algorithm == "CRC32":
        return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    if algorithm in ("SHA1", "SHA256"):
        return base64.b64encode(hashlib.new(algorithm.lower(), data).digest()).decode()
    checksum = CrtCrc32cChecksum() if algorithm == "CRC32C" else CrtCrc64NvmeChecksum()
    checksum.update(data)
    return str(checksum.b64digest())
