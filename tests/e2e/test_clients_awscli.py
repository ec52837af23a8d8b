"""The AWS CLI (v1, from PyPI) with its default settings, through s3shim to a real RGW."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from botocore.client import BaseClient

from testkit.awscli import aws
from testkit.convex_sequence import MIB, new_bucket, payload
from testkit.shim import Shim


@pytest.mark.parametrize("size", [0, 1, 20 * MIB + 3], ids=lambda s: f"{s}B")
def test_aws_s3_cp_round_trip(shim: Shim, direct: BaseClient, tmp_path: Path, size: int) -> None:
    bucket = new_bucket(direct)
    data = payload(size)
    src, back = tmp_path / "src", tmp_path / "back"
    src.write_bytes(data)
    key = f"cli/{uuid.uuid4()}"
    aws(shim, "s3", "cp", str(src), f"s3://{bucket}/{key}", "--sse", "AES256")
    assert direct.get_object(Bucket=bucket, Key=key)["Body"].read() == data
    assert key in aws(shim, "s3", "ls", f"s3://{bucket}/cli/", "--recursive")
    aws(shim, "s3", "cp", f"s3://{bucket}/{key}", str(back))
    assert back.read_bytes() == data
    aws(shim, "s3", "rm", f"s3://{bucket}/{key}")
    assert "Contents" not in direct.list_objects_v2(Bucket=bucket)
