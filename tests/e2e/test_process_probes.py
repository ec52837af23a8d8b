"""Liveness and readiness probes on the admin listener, with a store up and a store down."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from testkit.helpers import free_port, http_get
from testkit.shim import Shim, run_shim


def test_probes(shim: Shim) -> None:
    assert http_get(shim.admin + "/healthz") == (200, "ok\n")
    assert http_get(shim.admin + "/readyz") == (200, "ready\n")


def test_healthz_is_a_bucket_on_the_s3_port(shim: Shim) -> None:
    """Probes live on the admin port, so a bucket named healthz still works."""
    client = shim.client()
    try:
        client.create_bucket(Bucket="healthz")
    except ClientError as exc:  # a previous run in the same store
        assert exc.response["Error"]["Code"] == "BucketAlreadyOwnedByYou"
    client.put_object(Bucket="healthz", Key="metrics", Body=b"data")
    assert client.get_object(Bucket="healthz", Key="metrics")["Body"].read() == b"data"


def test_unreachable_store(tmp_path: Path) -> None:
    """Store down: readiness fails, requests get a retryable S3 error, liveness holds."""
    dead = f"http://127.0.0.1:{free_port()}"
    with run_shim(dead, "AKID", "secret", tmp_path) as s:
        assert http_get(s.admin + "/healthz")[0] == 200
        assert http_get(s.admin + "/readyz") == (503, "store unreachable\n")
        with pytest.raises(ClientError) as info:
            s.client().list_buckets()
        assert info.value.response["Error"]["Code"] == "ServiceUnavailable"
