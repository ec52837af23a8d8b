"""Reading back what a store holds: a corruption made inside the store, the scrub command."""

from __future__ import annotations

import os
import subprocess
import sys

from botocore.client import BaseClient
from botocore.exceptions import FlexibleChecksumError, IncompleteReadError, ResponseStreamingError

from .backends import Store

RECORD = "s3shim-checksum"  # the reserved x-amz-meta-* name, as boto3 shows metadata
CUT_OR_REFUSED = (FlexibleChecksumError, IncompleteReadError, ResponseStreamingError)


def corrupt(direct: BaseClient, bucket: str, key: str) -> bytes:
    """Rewrite the object inside the store: same metadata, one byte different."""
    head = direct.head_object(Bucket=bucket, Key=key)
    good = bytes(direct.get_object(Bucket=bucket, Key=key)["Body"].read())
    bad = bytes([good[0] ^ 0xFF]) + good[1:]
    direct.put_object(Bucket=bucket, Key=key, Body=bad, Metadata=head["Metadata"])
    assert direct.head_object(Bucket=bucket, Key=key)["Metadata"] == head["Metadata"]
    return bad


def run_verify(rgw_store: Store, target: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "S3SHIM_UPSTREAM_URL": rgw_store.endpoint,
        "AWS_ACCESS_KEY_ID": rgw_store.access_key,
        "AWS_SECRET_ACCESS_KEY": rgw_store.secret_key,
    }
    return subprocess.run(
        [sys.executable, "-m", "s3shim", "verify", target],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
