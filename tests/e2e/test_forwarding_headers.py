"""What s3shim forwards to a real RGW and what it never forwards: headers nobody signed,
header values in the form that was signed, SSE-C kept whatever the flags say."""

from __future__ import annotations

import uuid

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from testkit.convex_sequence import new_bucket
from testkit.rawclient import RawClient, send
from testkit.shim import Shim


def test_other_underscore_headers_are_dropped_not_forwarded(
    shim: Shim, direct: BaseClient, bucket: str
) -> None:
    """Security review: RGW reads any underscore header as its dash form, so
    content_disposition would set Content-Disposition unsigned: such headers are dropped
    (not refused) and the object has no Content-Disposition."""
    key = f"d-{uuid.uuid4()}"
    h = RawClient.of(shim).sign_put(f"/{bucket}/{key}", b"x")
    h["content_disposition"] = "attachment; filename=evil.html"
    assert send("PUT", shim.endpoint, f"/{bucket}/{key}", h, body=b"x").status == 200
    assert "ContentDisposition" not in direct.head_object(Bucket=bucket, Key=key)


def test_signed_header_is_forwarded_as_verified(
    shim: Shim, direct: BaseClient, bucket: str
) -> None:
    """A whitespace variant that canonicalises to the signed value reaches the store in the
    signed form, never as the variant."""
    key = f"w-{uuid.uuid4()}"
    h = RawClient.of(shim).sign_put(f"/{bucket}/{key}", b"x", headers={"x-amz-meta-a": "x y"})
    h["x-amz-meta-a"] = "x\ty"
    assert send("PUT", shim.endpoint, f"/{bucket}/{key}", h, body=b"x").status == 200
    assert direct.head_object(Bucket=bucket, Key=key)["Metadata"]["a"] == "x y"


def test_sse_c_is_never_dropped(shim: Shim, direct: BaseClient) -> None:
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
    assert "Contents" not in direct.list_objects_v2(Bucket=bucket)
