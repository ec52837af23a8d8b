"""Integrity on the read side, against the real RGW (which keeps no flexible checksums).

Objects uploaded through s3shim carry s3shim's verified checksum; a corruption made inside
the store (the same metadata, other bytes) is caught on every full read through s3shim, and
SDKs at their defaults get the recorded checksum back to verify themselves.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from boto3.exceptions import RetriesExceededError
from botocore.client import BaseClient
from botocore.exceptions import (
    ClientError,
)

from testkit.backends import Store
from testkit.convex_sequence import new_bucket, one_part_upload
from testkit.helpers import crc32_b64, crc64nvme_b64
from testkit.readback import CUT_OR_REFUSED, RECORD, corrupt, run_verify
from testkit.shim import Shim


@pytest.fixture(scope="module")
def bucket(direct: BaseClient) -> str:
    return new_bucket(direct)


SIZES = [0, 1, 1000, (1 << 20) + 17, 3 << 20]


@pytest.mark.parametrize("size", SIZES)
def test_boto3_uploads_carry_a_verified_checksum_and_reads_return_it(
    shim: Shim, direct: BaseClient, bucket: str, size: int
) -> None:
    data = os.urandom(size)
    key = f"rec-{size}"
    client = shim.client()
    client.put_object(Bucket=bucket, Key=key, Body=data)  # boto3 default: CRC32 header
    meta = direct.head_object(Bucket=bucket, Key=key)["Metadata"]
    assert meta[RECORD] == "CRC32:" + crc32_b64(data)
    head = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == crc32_b64(data)
    assert head.get("ChecksumType") == "FULL_OBJECT"
    assert RECORD not in head["Metadata"]
    got = client.get_object(Bucket=bucket, Key=key)  # boto3 default: checksum-mode ENABLED
    assert got["Body"].read() == data
    assert RECORD not in got["Metadata"]
    assert direct.get_object(Bucket=bucket, Key=key)["Body"].read() == data


def test_a_client_sending_no_checksum_gets_crc64nvme_recorded(
    shim: Shim, direct: BaseClient, bucket: str
) -> None:
    data = b"no checksum from me" * 50
    quiet = shim.client(request_checksum_calculation="when_required")
    quiet.put_object(Bucket=bucket, Key="quiet", Body=data)
    meta = direct.head_object(Bucket=bucket, Key="quiet")["Metadata"]
    assert meta[RECORD] == "CRC64NVME:" + crc64nvme_b64(data)
    head = shim.client().head_object(Bucket=bucket, Key="quiet", ChecksumMode="ENABLED")
    assert head["ChecksumCRC64NVME"] == crc64nvme_b64(data)


def test_a_client_cannot_plant_a_record(shim: Shim, direct: BaseClient, bucket: str) -> None:
    data = b"planted"
    shim.client().put_object(
        Bucket=bucket, Key="planted", Body=data, Metadata={RECORD: "CRC32:AAAAAA==", "a": "b"}
    )
    meta = direct.head_object(Bucket=bucket, Key="planted")["Metadata"]
    assert meta[RECORD] == "CRC32:" + crc32_b64(data) and meta["a"] == "b"


@pytest.mark.parametrize("size", [1000, 3 << 20])
def test_a_corruption_inside_the_store_is_caught_on_every_full_read(
    shim: Shim, direct: BaseClient, bucket: str, size: int, tmp_path: Path
) -> None:
    data = os.urandom(size)
    key = f"rot-{size}"
    shim.client().put_object(Bucket=bucket, Key=key, Body=data)
    bad = corrupt(direct, bucket, key)
    # boto3 at its defaults: never the bad bytes.
    with pytest.raises(CUT_OR_REFUSED):
        shim.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    with pytest.raises((*CUT_OR_REFUSED, ClientError, RetriesExceededError)):
        shim.client().download_file(bucket, key, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists() or (tmp_path / "out").read_bytes() != bad
    # A client that checks nothing itself is cut off by s3shim before the last bytes.
    lax = shim.client(response_checksum_validation="when_required")
    with pytest.raises(CUT_OR_REFUSED):
        lax.get_object(Bucket=bucket, Key=key)["Body"].read()
    lines = [
        e
        for e in shim.log_entries(until="StoreChecksumMismatch")
        if e.get("integrity_failure") == "StoreChecksumMismatch" and e.get("key") == key
    ]
    assert lines and lines[-1]["bucket"] == bucket and lines[-1]["level"] == "warning"
    # Range reads still work (their bytes are not the object's, so nothing to compare).
    part = shim.client().get_object(Bucket=bucket, Key=key, Range="bytes=1-10")
    assert part["Body"].read() == bad[1:11]


def test_the_mismatch_is_counted(shim: Shim, direct: BaseClient, bucket: str) -> None:
    import urllib.request

    shim.client().put_object(Bucket=bucket, Key="counted", Body=b"count me")
    corrupt(direct, bucket, "counted")
    with pytest.raises(CUT_OR_REFUSED):
        shim.client().get_object(Bucket=bucket, Key="counted")["Body"].read()
    text = urllib.request.urlopen(shim.admin + "/metrics").read().decode()
    assert 's3shim_integrity_failures_total{code="StoreChecksumMismatch"}' in text


def test_objects_not_written_by_s3shim_read_as_before(
    shim: Shim, direct: BaseClient, bucket: str
) -> None:
    direct.put_object(Bucket=bucket, Key="direct-only", Body=b"plain")
    got = shim.client().get_object(Bucket=bucket, Key="direct-only", ChecksumMode="ENABLED")
    assert got["Body"].read() == b"plain"
    assert not any(k.startswith("Checksum") and k != "ChecksumType" for k in got)


def test_multipart_objects_carry_no_record(shim: Shim, direct: BaseClient, bucket: str) -> None:
    client = shim.client()
    one_part_upload(client, bucket, "mp", b"p" * 100)
    assert RECORD not in direct.head_object(Bucket=bucket, Key="mp")["Metadata"]
    assert client.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"p" * 100


def test_copy_keeps_the_record_with_the_metadata(
    shim: Shim, direct: BaseClient, bucket: str
) -> None:
    client = shim.client()
    client.put_object(Bucket=bucket, Key="src", Body=b"copied bytes")
    client.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    src = direct.head_object(Bucket=bucket, Key="src")["Metadata"]
    assert direct.head_object(Bucket=bucket, Key="dst")["Metadata"][RECORD] == src[RECORD]
    assert client.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"copied bytes"


def test_the_scrub_command_finds_exactly_the_corrupted_keys(
    shim: Shim, direct: BaseClient, rgw_store: Store
) -> None:
    bucket = new_bucket(direct)
    client = shim.client()
    for i in range(6):
        client.put_object(Bucket=bucket, Key=f"data/{i}", Body=os.urandom(1000 + i))
    client.put_object(Bucket=bucket, Key="other/x", Body=b"outside the prefix")
    direct.put_object(Bucket=bucket, Key="data/plain", Body=b"written around s3shim")
    good = run_verify(rgw_store, f"s3://{bucket}/data/")
    assert good.returncode == 0, good.stderr
    assert good.stdout.strip().endswith("checked=6 unrecorded=1 mismatched=0 unreadable=0")
    corrupt(direct, bucket, "data/2")
    corrupt(direct, bucket, "data/5")
    bad = run_verify(rgw_store, f"s3://{bucket}/data/")
    assert bad.returncode == 1
    assert sorted(line for line in bad.stdout.splitlines() if line.startswith("MISMATCH")) == [
        f"MISMATCH s3://{bucket}/data/2",
        f"MISMATCH s3://{bucket}/data/5",
    ]
    assert "checked=4 unrecorded=1 mismatched=2" in bad.stdout
    whole = run_verify(rgw_store, f"s3://{bucket}")
    assert whole.returncode == 1 and "checked=5 unrecorded=1 mismatched=2" in whole.stdout
    usage = run_verify(rgw_store, "bucket-without-scheme")
    assert usage.returncode == 2 and "s3://bucket" in usage.stderr


def test_an_rgw_append_keeps_the_whole_object_readable(
    shim: Shim, direct: BaseClient, bucket: str
) -> None:
    """RGW's AppendObject (``PUT ?append&position=N``, SigV4-signed) adds to an object: a
    checksum of the one body appended would not be the object's, so none is recorded and
    full reads through s3shim return every appended byte."""
    from testkit.rawclient import RawClient, send

    client = RawClient.of(shim)
    position = 0
    for piece in (b"first piece, ", b"second piece"):
        query = [("append", ""), ("position", str(position))]
        length = {"content-length": str(len(piece))}
        headers = client.sign("PUT", f"/{bucket}/appended", query=query, headers=length, body=piece)
        reply = send("PUT", shim.endpoint, f"/{bucket}/appended", headers, query=query, body=piece)
        assert reply.status == 200, reply.body
        position += len(piece)
    meta = direct.head_object(Bucket=bucket, Key="appended")["Metadata"]
    assert "s3shim-checksum" not in meta
    got = shim.client().get_object(Bucket=bucket, Key="appended")["Body"].read()
    assert got == b"first piece, second piece"
