"""The S3 call sequence an unmodified Convex backend makes, driven with boto3 defaults.

Mirrors ../shared/docs/convex-s3-calls.md: CreateMultipartUpload with SSE + CRC32, parallel
UploadParts with CRC32 that must come back with a CRC32, Complete with per-part ChecksumCRC32,
HeadObject, Range GetObject read through Content-Range, ListObjectsV2, presigned GET and PUT
fetched by a plain HTTP client, DeleteObject, AbortMultipartUpload; and PutObject with SSE.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.client import BaseClient

MIB = 1024 * 1024
PART = 5 * MIB


def payload(size: int) -> bytes:
    # Random bytes, so a misplaced or repeated range can never compare equal by accident.
    return os.urandom(size)


def new_bucket(client: BaseClient) -> str:
    name = "convex-" + uuid.uuid4().hex[:12]
    client.create_bucket(Bucket=name)
    return name


def multipart_upload(client: BaseClient, bucket: str, key: str, data: bytes) -> dict[str, Any]:
    """Convex's multipart path; returns the UploadPart responses' checksums per part."""
    created = client.create_multipart_upload(
        Bucket=bucket, Key=key, ServerSideEncryption="AES256", ChecksumAlgorithm="CRC32"
    )
    upload_id = created["UploadId"]
    # An empty upload still sends one (empty) part, as Convex does.
    chunks = [data[i : i + PART] for i in range(0, len(data), PART)] or [b""]

    def send(n: int) -> dict[str, Any]:
        r = client.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=n + 1,
            Body=chunks[n],
            ChecksumAlgorithm="CRC32",
        )
        # Convex: "Object part missing hash! Expected crc32" when this is absent.
        assert r.get("ChecksumCRC32"), f"UploadPart {n + 1} returned no x-amz-checksum-crc32"
        assert r.get("ETag")
        return {"PartNumber": n + 1, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]}

    with ThreadPoolExecutor(max_workers=4) as pool:
        parts = list(pool.map(send, range(len(chunks))))
    client.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": sorted(parts, key=lambda p: p["PartNumber"])},
    )
    return {"parts": parts, "upload_id": upload_id}


def one_part_upload(client: BaseClient, bucket: str, key: str, data: bytes) -> None:
    """A multipart upload of one part with no checksum anywhere (not Convex's path)."""
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    part = client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=data)
    parts = [{"PartNumber": 1, "ETag": part["ETag"]}]
    client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
    )


def read_back(client: BaseClient, bucket: str, key: str) -> bytes:
    body: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def run_sequence(
    client: BaseClient,
    bucket: str,
    size: int,
    *,
    range_statuses: tuple[int, ...] = (206,),
    store: BaseClient | None = None,
) -> None:
    """Everything Convex does for one file of ``size`` bytes; asserts bytes are identical.

    ``store`` is a client straight to the store: given, the stored bytes are also read from
    the store itself, not only through the client's path.
    """
    data = payload(size)
    key = f"files/{uuid.uuid4()}"
    multipart_upload(client, bucket, key, data)

    head = client.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == size
    assert read_back(client, bucket, key) == data
    if store is not None:
        assert read_back(store, bucket, key) == data

    if size:
        end = min(size, 100) - 1
        ranged = client.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{end}")
        assert ranged["ResponseMetadata"]["HTTPStatusCode"] in range_statuses
        assert ranged["ContentRange"] == f"bytes 0-{end}/{size}"
        assert ranged["Body"].read() == data[: end + 1]

    listed = client.list_objects_v2(Bucket=bucket, Prefix="files/")
    assert key in [o["Key"] for o in listed.get("Contents", [])]

    # Small objects: PutObject with SSE and a CRC32.
    small_key = f"modules/{uuid.uuid4()}"
    small = payload(min(size, 64 * 1024))
    put = client.put_object(
        Bucket=bucket,
        Key=small_key,
        Body=small,
        ServerSideEncryption="AES256",
        ChecksumAlgorithm="CRC32",
    )
    assert put.get("ChecksumCRC32")
    assert read_back(client, bucket, small_key) == small

    # Browser paths: presigned URLs fetched by a plain HTTP client. Convex presigns with
    # SigV4 (boto3 would default to SigV2 query auth, which s3shim refuses with a clear error).
    presigner = presign_client(client)
    get_url = presigner.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300
    )
    with urllib.request.urlopen(get_url, timeout=60, context=_ssl_ctx()) as r:
        assert hashlib.sha256(r.read()).digest() == hashlib.sha256(data).digest()
    up_key = f"uploads/{uuid.uuid4()}"
    put_url = presigner.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": up_key}, ExpiresIn=300
    )
    # An explicit type, as fetch() sends for a Blob: urllib's default form type makes moto
    # parse the body as a form.
    req = urllib.request.Request(
        put_url, data=small, method="PUT", headers={"Content-Type": "application/octet-stream"}
    )
    with urllib.request.urlopen(req, timeout=60, context=_ssl_ctx()) as r:
        assert r.status == 200
    assert read_back(client, bucket, up_key) == small

    for k in (key, small_key, up_key):
        client.delete_object(Bucket=bucket, Key=k)
    listed = client.list_objects_v2(Bucket=bucket)
    assert not {key, small_key, up_key} & {o["Key"] for o in listed.get("Contents", [])}

    # A dropped upload is aborted.
    upload_id = client.create_multipart_upload(
        Bucket=bucket, Key=key, ServerSideEncryption="AES256", ChecksumAlgorithm="CRC32"
    )["UploadId"]
    client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert upload_id not in [u["UploadId"] for u in uploads]


def presign_client(client: BaseClient) -> BaseClient:
    """The same endpoint and keys, presigning with SigV4 as Convex does."""
    import boto3
    from botocore.config import Config

    creds = client._request_signer._credentials  # same keys as the caller's client
    return boto3.client(
        "s3",
        endpoint_url=client.meta.endpoint_url,
        aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key,
        region_name=client.meta.region_name,
        config=Config(signature_version="s3v4"),
    )


def _ssl_ctx() -> Any:
    import ssl

    ca = os.environ.get("S3SHIM_TEST_CA")
    return ssl.create_default_context(cafile=ca) if ca else None
