"""Records attached after the store committed, against the real RGW (and moto, rclone).

Multipart uploads (Convex's big files, boto3's upload_file, the JS SDK's lib-storage) and
streamed PutObjects whose checksum came in an aws-chunked trailer get the verified
whole-object checksum through a conditional copy of the object onto itself; a corruption made
inside the store is then refused on every full read, as for small objects. The client's own
answers stay the store's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import re
import signal
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.client import BaseClient

from s3shim import chunked, sigv4
from s3shim.attach import Outcome
from s3shim.attacher import Attacher
from s3shim.upstream import Upstream
from testkit.awscli import aws
from testkit.backends import Store
from testkit.backends import s3_client as store_client
from testkit.convex_sequence import (
    MIB,
    PART,
    multipart_upload,
    new_bucket,
    one_part_upload,
    presign_client,
)
from testkit.helpers import crc32_b64, crc64nvme_b64
from testkit.jsrun import run_sdk_uploads
from testkit.rawclient import RawClient
from testkit.readback import CUT_OR_REFUSED, RECORD, corrupt, run_verify
from testkit.shim import Shim, shim_for
from testkit.tap import relay as tcp_relay

HELD_WAIT = 10.0  # bounds the wait for a request the relay holds


def recorded(direct: BaseClient, bucket: str, key: str) -> str:
    """The record, read from the store (attached before the client got its answer)."""
    return str(direct.head_object(Bucket=bucket, Key=key)["Metadata"].get(RECORD, ""))


def counted(shim: Shim, outcome: str) -> float:
    """How many attach attempts s3shim counted with this outcome (from /metrics)."""
    text = urllib.request.urlopen(shim.admin + "/metrics").read().decode()
    pattern = re.compile(
        r's3shim_checksum_records_total\{kind="(?:multipart|put)",outcome="'
        + re.escape(outcome)
        + r'"\} (\S+)'
    )
    return sum(float(v) for v in pattern.findall(text))


def settled(shim: Shim, outcome: str, count: float) -> bool:
    """Whether s3shim counted ``count`` attach outcomes of this kind (before answering)."""
    return counted(shim, outcome) >= count


def direct_multipart(client: BaseClient, bucket: str, key: str, data: bytes, **create: Any) -> None:
    """A multipart upload straight to the store, in PART-sized parts, no checksums."""
    up = client.create_multipart_upload(Bucket=bucket, Key=key, **create)
    parts = []
    for n, off in enumerate(range(0, len(data), PART), start=1):
        r = client.upload_part(
            Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=n, Body=data[off:][:PART]
        )
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
    client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=up["UploadId"], MultipartUpload={"Parts": parts}
    )


@pytest.fixture(scope="module")
def bucket(direct: BaseClient) -> str:
    return new_bucket(direct)


# ------------------------------------------------------------------ clients at defaults


def test_convex_multipart_upload_carries_the_whole_object_crc32(
    shim: Shim, direct: BaseClient, bucket: str
) -> None:
    data = os.urandom(2 * PART + 12345)
    client = shim.client()
    multipart_upload(client, bucket, "convex", data)
    assert recorded(direct, bucket, "convex") == "CRC32:" + crc32_b64(data)
    head = client.head_object(Bucket=bucket, Key="convex", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == crc32_b64(data)
    assert head["ChecksumType"] == "FULL_OBJECT"
    assert RECORD not in head["Metadata"]
    # The multipart ETag the client was given is the object's still.
    assert head["ETag"].endswith('-3"')
    assert client.get_object(Bucket=bucket, Key="convex")["Body"].read() == data


def test_an_empty_convex_upload_is_recorded(shim: Shim, direct: BaseClient, bucket: str) -> None:
    """Convex sends one empty part for an empty file."""
    multipart_upload(shim.client(), bucket, "empty", b"")
    assert recorded(direct, bucket, "empty") == "CRC32:" + crc32_b64(b"")
    assert shim.client().get_object(Bucket=bucket, Key="empty")["Body"].read() == b""


def test_the_clients_answers_are_the_stores(shim: Shim, direct: BaseClient, bucket: str) -> None:
    """The same upload direct and through: the same answer, the same object but the record."""
    data = os.urandom(PART + 10)
    answers = {}
    for name, client in (("direct", direct), ("shim", shim.client())):
        key = f"same-{name}"
        up = client.create_multipart_upload(Bucket=bucket, Key=key, ContentType="text/x-a")
        parts = []
        for n, off in enumerate(range(0, len(data), PART), start=1):
            r = client.upload_part(
                Bucket=bucket,
                Key=key,
                UploadId=up["UploadId"],
                PartNumber=n,
                Body=data[off:][:PART],
            )
            parts.append({"PartNumber": n, "ETag": r["ETag"]})
            if name == "shim":
                parts[-1]["ChecksumCRC32"] = r["ChecksumCRC32"]
        done = client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=up["UploadId"], MultipartUpload={"Parts": parts}
        )
        answers[name] = done
    assert recorded(direct, bucket, "same-shim") == "CRC32:" + crc32_b64(data)
    a, b = answers["direct"], answers["shim"]
    assert a["ResponseMetadata"]["HTTPStatusCode"] == b["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert a.get("ETag") == b.get("ETag")  # the same parts: the same ETag (RGW 16: empty)
    assert sorted(a) == sorted(b)
    heads = [direct.head_object(Bucket=bucket, Key=f"same-{n}") for n in ("direct", "shim")]
    assert heads[0]["ETag"] == heads[1]["ETag"]
    assert heads[0]["ContentType"] == heads[1]["ContentType"] == "text/x-a"
    assert {k: v for k, v in heads[1]["Metadata"].items() if k != RECORD} == heads[0]["Metadata"]


def test_boto3_upload_file_at_defaults_is_recorded(
    shim: Shim, direct: BaseClient, bucket: str, tmp_path: Path
) -> None:
    data = os.urandom(20 * MIB)
    src = tmp_path / "big"
    src.write_bytes(data)
    shim.client().upload_file(str(src), bucket, "upload-file")  # 8 MiB parts, CRC32 each
    assert recorded(direct, bucket, "upload-file") == "CRC32:" + crc32_b64(data)
    out = tmp_path / "out"
    shim.client().download_file(bucket, "upload-file", str(out))
    assert out.read_bytes() == data


def test_aws_cli_cp_at_defaults_is_recorded(
    shim: Shim, direct: BaseClient, bucket: str, tmp_path: Path
) -> None:
    data = os.urandom(20 * MIB + 3)
    src = tmp_path / "src"
    src.write_bytes(data)
    aws(shim, "s3", "cp", str(src), f"s3://{bucket}/cli")  # 8 MiB parts
    assert direct.head_object(Bucket=bucket, Key="cli")["ETag"].endswith('-3"')
    assert recorded(direct, bucket, "cli") == "CRC32:" + crc32_b64(data)


def test_js_sdk_stream_put_and_lib_storage_upload_are_recorded(
    node_js: str, shim: Shim, direct: BaseClient, rgw_store: Store
) -> None:
    bucket = new_bucket(direct)
    results = run_sdk_uploads(
        shim,
        bucket,
        [11 * MIB + 1],
        node_js=node_js,
    )
    assert {o["kind"] for o in results} == {"put", "upload"}
    for o in results:
        record = recorded(direct, bucket, str(o["key"]))
        got = direct.get_object(Bucket=bucket, Key=o["key"])["Body"].read()
        assert hashlib.sha256(got).hexdigest() == o["sha256"]
        # The stream PUT's CRC32 came in an aws-chunked trailer, too late for a header.
        assert record == "CRC32:" + crc32_b64(got), o


def test_a_large_put_with_no_checksum_gets_one_computed_by_s3shim(
    shim: Shim, direct: BaseClient, bucket: str
) -> None:
    """Streamed with UNSIGNED-PAYLOAD and no checksum (a presigned URL from a browser, a
    client signing no payload): s3shim computes CRC64NVME as it streams, recorded after."""
    data = os.urandom(3 * MIB + 1)
    url = presign_client(shim.client()).generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "presigned-large"}, ExpiresIn=300
    )
    req = urllib.request.Request(
        url, data=data, method="PUT", headers={"Content-Type": "application/octet-stream"}
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 200
    assert recorded(direct, bucket, "presigned-large") == ("CRC64NVME:" + crc64nvme_b64(data))
    head = shim.client().head_object(Bucket=bucket, Key="presigned-large", ChecksumMode="ENABLED")
    assert head["ChecksumCRC64NVME"] == crc64nvme_b64(data)
    unsigned = RawClient.of(shim).put(
        f"/{bucket}/unsigned-large", data, payload_hash="UNSIGNED-PAYLOAD"
    )
    assert unsigned.status == 200
    assert recorded(direct, bucket, "unsigned-large") == "CRC64NVME:" + crc64nvme_b64(data)
    chunks = RawClient.of(shim).aws_chunked_put(
        f"/{bucket}/signed-chunks", data, chunked.Framing.SIGNED, random.Random(3)
    )
    assert chunks.status == 200
    assert recorded(direct, bucket, "signed-chunks") == "CRC64NVME:" + crc64nvme_b64(data)


# ------------------------------------------------------------------- rot inside the store


def test_a_rewritten_multipart_object_is_refused(
    shim: Shim, direct: BaseClient, bucket: str
) -> None:
    data = os.urandom(PART + 100)
    multipart_upload(shim.client(), bucket, "rot-whole", data)
    assert recorded(direct, bucket, "rot-whole")
    corrupt(direct, bucket, "rot-whole")  # same metadata, one byte different
    with pytest.raises(CUT_OR_REFUSED):
        shim.client().get_object(Bucket=bucket, Key="rot-whole")["Body"].read()
    lax = shim.client(response_checksum_validation="when_required")
    with pytest.raises(CUT_OR_REFUSED):
        lax.get_object(Bucket=bucket, Key="rot-whole")["Body"].read()


def test_a_flipped_byte_in_one_part_is_refused(shim: Shim, direct: BaseClient, bucket: str) -> None:
    data = os.urandom(2 * PART + 100)
    multipart_upload(shim.client(), bucket, "rot-part", data)
    meta = direct.head_object(Bucket=bucket, Key="rot-part")["Metadata"]
    assert RECORD in meta or recorded(direct, bucket, "rot-part")
    meta = direct.head_object(Bucket=bucket, Key="rot-part")["Metadata"]
    # The store's object made again from its parts, the second with one byte flipped.
    bad = bytearray(data)
    bad[PART + 7] ^= 0x01
    direct_multipart(direct, bucket, "rot-part", bytes(bad), Metadata=meta)
    assert direct.head_object(Bucket=bucket, Key="rot-part")["Metadata"] == meta
    with pytest.raises(CUT_OR_REFUSED):
        shim.client().get_object(Bucket=bucket, Key="rot-part")["Body"].read()
    # Ranges are not the object's bytes: served as stored.
    got = shim.client().get_object(Bucket=bucket, Key="rot-part", Range=f"bytes={PART}-{PART + 9}")
    assert got["Body"].read() == bytes(bad[PART : PART + 10])


def test_the_scrub_checks_recorded_multipart_objects(
    shim: Shim, direct: BaseClient, rgw_store: Store
) -> None:
    bucket = new_bucket(direct)
    for i in range(2):
        multipart_upload(shim.client(), bucket, f"mp/{i}", os.urandom(PART + i))
        assert recorded(direct, bucket, f"mp/{i}")
    good = run_verify(rgw_store, f"s3://{bucket}/mp/")
    assert good.returncode == 0, good.stderr
    assert good.stdout.strip().endswith("checked=2 unrecorded=0 mismatched=0 unreadable=0")
    corrupt(direct, bucket, "mp/1")
    bad = run_verify(rgw_store, f"s3://{bucket}/mp/")
    assert bad.returncode == 1
    assert "mp/1" in bad.stdout + bad.stderr


# ------------------------------------------------------------------- what stays unrecorded


def test_a_complete_listing_no_part_checksums_stays_unrecorded(
    shim: Shim, direct: BaseClient, bucket: str
) -> None:
    client = shim.client()
    before = counted(shim, "no_part_checksums")
    one_part_upload(client, bucket, "bare", b"p" * 100)
    assert settled(shim, "no_part_checksums", before + 1)
    assert RECORD not in direct.head_object(Bucket=bucket, Key="bare")["Metadata"]
    assert client.get_object(Bucket=bucket, Key="bare")["Body"].read() == b"p" * 100


def test_a_complete_listing_another_crc_than_s3shim_answered_stays_unrecorded(
    shim: Shim, direct: BaseClient, bucket: str
) -> None:
    """The list is the client's word; where s3shim verified the part, it must agree."""
    client = shim.client()
    before = counted(shim, "disagrees")
    up = client.create_multipart_upload(Bucket=bucket, Key="liar", ChecksumAlgorithm="CRC32")
    data = os.urandom(1000)
    part = client.upload_part(
        Bucket=bucket,
        Key="liar",
        UploadId=up["UploadId"],
        PartNumber=1,
        Body=data,
        ChecksumAlgorithm="CRC32",
    )
    assert part["ChecksumCRC32"] == crc32_b64(data)
    wrong = crc32_b64(b"other bytes")
    client.complete_multipart_upload(
        Bucket=bucket,
        Key="liar",
        UploadId=up["UploadId"],
        MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": part["ETag"], "ChecksumCRC32": wrong}]
        },
    )
    assert settled(shim, "disagrees", before + 1)
    assert RECORD not in direct.head_object(Bucket=bucket, Key="liar")["Metadata"]
    assert client.get_object(Bucket=bucket, Key="liar")["Body"].read() == data


def test_a_versioned_bucket_gets_no_extra_version(shim: Shim, direct: BaseClient) -> None:
    bucket = new_bucket(direct)
    direct.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    before = counted(shim, "versioned")
    data = os.urandom(PART + 1)
    multipart_upload(shim.client(), bucket, "v", data)
    assert settled(shim, "versioned", before + 1)
    versions = direct.list_object_versions(Bucket=bucket, Prefix="v")["Versions"]
    assert len(versions) == 1
    assert RECORD not in direct.head_object(Bucket=bucket, Key="v")["Metadata"]
    assert shim.client().get_object(Bucket=bucket, Key="v")["Body"].read() == data


def test_a_bucket_with_versioning_suspended_is_recorded_in_place(
    shim: Shim, direct: BaseClient
) -> None:
    bucket = new_bucket(direct)
    direct.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    direct.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    data = os.urandom(PART + 1)
    multipart_upload(shim.client(), bucket, "s", data)
    assert recorded(direct, bucket, "s") == "CRC32:" + crc32_b64(data)
    versions = direct.list_object_versions(Bucket=bucket, Prefix="s")["Versions"]
    assert [v["VersionId"] for v in versions] == ["null"]  # replaced, not added


# ------------------------------------------------------------- the attach against the store


def store_upstream(store: Store) -> tuple[Upstream, str]:
    host = urlsplit(store.endpoint).netloc
    name, _, port = host.partition(":")
    upstream = Upstream(
        host=name,
        port=int(port),
        host_header=host,
        ssl=None,
        connect_timeout=5,
        read_timeout=30,
    )
    return upstream, host


class Log:
    """Collects what the attacher logs."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.lines.append((event, kw))

    warning = info


def complete_body(parts: list[tuple[int, str, bytes]]) -> bytes:
    xml = "".join(
        f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag>"
        f"<ChecksumCRC32>{crc32_b64(data)}</ChecksumCRC32></Part>"
        for n, etag, data in parts
    )
    return f"<CompleteMultipartUpload>{xml}</CompleteMultipartUpload>".encode()


async def upload_then_attach(
    store: Store, bucket: str, key: str, data: bytes, between: Any = None, **create: Any
) -> tuple[Outcome, Attacher]:
    """A multipart upload made directly, recorded by an in-process attacher; ``between`` runs
    after the store committed and before the attach."""
    client = store_client(store)
    upstream, host = store_upstream(store)
    log = Log()
    attacher = Attacher(upstream, host=host, region="us-east-1", registry=None, log=log)
    creds = sigv4.Credentials(store.access_key, store.secret_key)
    up = client.create_multipart_upload(Bucket=bucket, Key=key, **create)
    listed = []
    for n, off in enumerate(range(0, len(data), PART), start=1):
        chunk = data[off : off + PART]
        r = client.upload_part(
            Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=n, Body=chunk
        )
        listed.append((n, r["ETag"], chunk))
    path = f"/{bucket}/{key}"
    where = {"bucket": bucket, "key": key}
    pending = await attacher.before_complete(
        creds, path, up["UploadId"], complete_body(listed), {}, where
    )
    assert pending is not None, log.lines
    done = client.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e, _ in listed]},
    )
    if between is not None:
        between()
    headers = {k.lower(): v for k, v in done["ResponseMetadata"]["HTTPHeaders"].items()}
    await attacher.after_commit("multipart", creds, path, pending, 200, headers, where)
    await upstream.close()
    outcome = Outcome.RECORDED
    for _, kw in log.lines:
        outcome = Outcome(kw["outcome"])
    return outcome, attacher


def test_a_newer_object_written_before_the_attach_is_left_untouched(
    rgw_store: Store, direct: BaseClient
) -> None:
    bucket = new_bucket(direct)
    newer = b"another writer's object"

    def overwrite() -> None:
        direct.put_object(Bucket=bucket, Key="race", Body=newer, Metadata={"who": "other"})

    outcome, _ = asyncio.run(
        upload_then_attach(rgw_store, bucket, "race", os.urandom(PART + 1), overwrite)
    )
    assert outcome is Outcome.CHANGED
    head = direct.head_object(Bucket=bucket, Key="race")
    assert head["Metadata"] == {"who": "other"}
    assert direct.get_object(Bucket=bucket, Key="race")["Body"].read() == newer


def test_a_newer_multipart_object_is_left_untouched(rgw_store: Store, direct: BaseClient) -> None:
    bucket = new_bucket(direct)
    newer = os.urandom(PART + 2)

    def overwrite() -> None:
        direct_multipart(direct, bucket, "race-mp", newer)

    outcome, _ = asyncio.run(
        upload_then_attach(rgw_store, bucket, "race-mp", os.urandom(PART + 1), overwrite)
    )
    assert outcome is Outcome.CHANGED
    assert RECORD not in direct.head_object(Bucket=bucket, Key="race-mp")["Metadata"]
    assert direct.get_object(Bucket=bucket, Key="race-mp")["Body"].read() == newer


def test_the_copy_keeps_headers_metadata_and_grants(rgw_store: Store, direct: BaseClient) -> None:
    bucket = new_bucket(direct)
    data = os.urandom(PART + 3)
    create = {
        "ContentType": "text/x-mine",
        "CacheControl": "max-age=5",
        "ContentDisposition": "attachment",
        "ContentEncoding": "identity",
        "ContentLanguage": "fr",
        "Expires": "Wed, 21 Oct 2037 07:28:00 GMT",
        "WebsiteRedirectLocation": "/elsewhere",
        "Metadata": {"a": "1", "b": "two"},
        "ACL": "public-read",
    }
    before: dict[str, Any] = {}

    def snapshot() -> None:
        before["head"] = direct.head_object(Bucket=bucket, Key="kept")
        before["acl"] = direct.get_object_acl(Bucket=bucket, Key="kept")["Grants"]

    outcome, attacher = asyncio.run(
        upload_then_attach(rgw_store, bucket, "kept", data, snapshot, **create)
    )
    assert outcome is Outcome.RECORDED
    assert attacher.requests == 4  # ListParts, HEAD, GetObjectAcl, the copy
    after = direct.head_object(Bucket=bucket, Key="kept")
    assert after["Metadata"] == {**before["head"]["Metadata"], RECORD: "CRC32:" + crc32_b64(data)}
    for name in (
        "ETag",
        "ContentType",
        "CacheControl",
        "ContentDisposition",
        "ContentEncoding",
        "ContentLanguage",
        "ExpiresString",
        "WebsiteRedirectLocation",
        "ContentLength",
    ):
        assert after.get(name) == before["head"].get(name), name
    # RGW gives a copy a private ACL unless its grants are given again.
    assert any(g["Permission"] == "READ" for g in before["acl"])
    assert direct.get_object_acl(Bucket=bucket, Key="kept")["Grants"] == before["acl"]
    assert direct.get_object(Bucket=bucket, Key="kept")["Body"].read() == data


def test_a_tagged_object_is_left_unrecorded(rgw_store: Store, direct: BaseClient) -> None:
    """RGW 16 drops the tags of a self-copy whatever the tagging directive: no copy then."""
    bucket = new_bucket(direct)
    tags = [{"Key": "a b", "Value": "1&2"}]

    def tag() -> None:  # RGW 16 ignores tags given to CreateMultipartUpload
        direct.put_object_tagging(Bucket=bucket, Key="tagged", Tagging={"TagSet": tags})

    outcome, attacher = asyncio.run(
        upload_then_attach(rgw_store, bucket, "tagged", os.urandom(PART + 1), tag)
    )
    assert outcome is Outcome.UNCOPYABLE
    assert attacher.requests == 2  # ListParts, HEAD
    assert direct.get_object_tagging(Bucket=bucket, Key="tagged")["TagSet"] == tags


def left_alone(store: Store) -> None:
    client = store_client(store)
    bucket = "mp-" + uuid.uuid4().hex[:12]
    client.create_bucket(Bucket=bucket)
    data = os.urandom(PART + 4)
    etag = None

    def remember() -> None:
        nonlocal etag
        etag = client.head_object(Bucket=bucket, Key="alone")["ETag"]

    outcome, attacher = asyncio.run(upload_then_attach(store, bucket, "alone", data, remember))
    assert outcome is Outcome.STORE
    head = client.head_object(Bucket=bucket, Key="alone")
    assert head["ETag"] == etag
    assert not any(k.lower() == RECORD for k in head["Metadata"])
    assert attacher.requests == 2  # ListParts, HEAD: no copy
    assert client.get_object(Bucket=bucket, Key="alone")["Body"].read() == data


def test_moto_is_left_alone(moto_store: Store) -> None:
    """moto (as AWS) gives a self-copied multipart object a new ETag and ignores the copy's
    precondition: the object stays as uploaded, unrecorded."""
    left_alone(moto_store)


def test_rclone_is_left_alone(rclone_store: Store) -> None:
    """rclone ignores the precondition under either name."""
    left_alone(rclone_store)


# ------------------------------------------------ several processes, a crash, the cost


def test_parts_uploaded_through_two_processes_are_recorded(
    shim: Shim, direct: BaseClient, bucket: str, rgw_store: Store, tmp_path: Path
) -> None:
    data = os.urandom(3 * PART + 5)
    with shim_for(rgw_store, tmp_path / "second") as second:
        clients = [shim.client(), second.client()]
        up = clients[0].create_multipart_upload(Bucket=bucket, Key="two", ChecksumAlgorithm="CRC32")
        parts = []
        for n, off in enumerate(range(0, len(data), PART), start=1):
            r = clients[n % 2].upload_part(
                Bucket=bucket,
                Key="two",
                UploadId=up["UploadId"],
                PartNumber=n,
                Body=data[off : off + PART],
                ChecksumAlgorithm="CRC32",
            )
            parts.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
        clients[1].complete_multipart_upload(
            Bucket=bucket, Key="two", UploadId=up["UploadId"], MultipartUpload={"Parts": parts}
        )
        assert recorded(direct, bucket, "two") == "CRC32:" + crc32_b64(data)


@dataclass
class Relay:
    """A relay between s3shim and the store that lists the requests it passes on and can
    hold the ones whose head starts with ``hold_prefix`` until ``release`` is set."""

    endpoint: str
    requests: list[tuple[str, str]] = field(default_factory=list)
    hold_prefix: bytes | None = None
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def pass_on(self, data: bytes) -> bytes:
        line = _REQUEST_LINE.match(data)
        if line is not None:
            self.requests.append((line[1].decode(), line[2].decode()))
            if self.hold_prefix is not None and data.startswith(self.hold_prefix):
                self.held.set()
                self.release.wait(60)
        return data


_REQUEST_LINE = re.compile(rb"(GET|HEAD|PUT|POST|DELETE) (\S+) HTTP/1\.1\r\n")


@contextlib.contextmanager
def relay(store_endpoint: str) -> Iterator[Relay]:
    r = Relay("")
    try:
        with tcp_relay(store_endpoint, to_store=r.pass_on) as r.endpoint:
            yield r
    finally:
        r.release.set()


def operation(method: str, target: str) -> str:
    query = target.partition("?")[2]
    names = {q.partition("=")[0] for q in query.split("&") if q}
    if "uploads" in names:
        return "CreateMultipartUpload"
    if "partNumber" in names:
        return "UploadPart"
    if "uploadId" in names:
        return {"GET": "ListParts", "POST": "CompleteMultipartUpload"}[method]
    if "acl" in names:
        return "GetObjectAcl"
    return {"HEAD": "HeadObject", "PUT": "PutObject", "GET": "GetObject"}[method]


def test_the_cost_per_upload_in_store_requests(
    direct: BaseClient, rgw_store: Store, tmp_path: Path
) -> None:
    """Convex's upload of a 2-part file: the store requests it makes directly, and through
    s3shim: ListParts before the Complete, then HEAD, GetObjectAcl and the copy."""
    bucket = new_bucket(direct)
    data = os.urandom(PART + 9)
    with (
        relay(rgw_store.endpoint) as r,
        shim_for(rgw_store, tmp_path / "counted", via=r.endpoint) as counted_shim,
    ):
        multipart_upload(counted_shim.client(), bucket, "cost", data)
        assert recorded(direct, bucket, "cost") == "CRC32:" + crc32_b64(data)
        assert settled(counted_shim, "recorded", 1)
        ops = [operation(m, t) for m, t in r.requests]
    assert sorted(ops) == sorted(
        [
            "CreateMultipartUpload",
            "UploadPart",
            "UploadPart",
            "ListParts",
            "CompleteMultipartUpload",
            "HeadObject",
            "GetObjectAcl",
            "PutObject",  # the self-copy (x-amz-copy-source), no body
        ]
    )
    assert ops.index("ListParts") < ops.index("CompleteMultipartUpload") < ops.index("HeadObject")


def test_a_crash_between_complete_and_attach_leaves_the_object_unrecorded_and_readable(
    shim: Shim, direct: BaseClient, rgw_store: Store, tmp_path: Path
) -> None:
    """s3shim killed after the store completed the upload, before the copy: the client gets
    no answer (as from a store that died answering), the object is there, unrecorded."""
    bucket = new_bucket(direct)
    data = os.urandom(PART + 11)
    failed: list[BaseException] = []

    def upload(client: BaseClient) -> None:
        try:
            multipart_upload(client, bucket, "crash", data)
        except Exception as exc:  # the connection is cut by the kill
            failed.append(exc)

    with (
        relay(rgw_store.endpoint) as r,
        shim_for(rgw_store, tmp_path / "killed", via=r.endpoint) as doomed,
    ):
        r.hold_prefix = f"HEAD /{bucket}/crash ".encode()
        uploader = threading.Thread(target=upload, args=(doomed.client(),))
        uploader.start()
        assert r.held.wait(HELD_WAIT)  # the store completed it; the attach's HEAD is held
        os.kill(doomed.pid, signal.SIGKILL)
        r.release.set()
        uploader.join(60)
    assert failed  # no answer: the client retries, as it would a store's cut answer
    assert RECORD not in direct.head_object(Bucket=bucket, Key="crash")["Metadata"]
    assert shim.client().get_object(Bucket=bucket, Key="crash")["Body"].read() == data


def test_a_delete_right_after_the_answer_stays_deleted(
    shim: Shim, direct: BaseClient, bucket: str
) -> None:
    """The copy is done before the client hears of its upload, so nothing the client does
    next can be undone by it."""
    client = shim.client()
    for i in range(5):
        data = os.urandom(PART + i)
        multipart_upload(client, bucket, f"gone-{i}", data)
        assert RECORD in direct.head_object(Bucket=bucket, Key=f"gone-{i}")["Metadata"]
        client.delete_object(Bucket=bucket, Key=f"gone-{i}")
    listed = direct.list_objects_v2(Bucket=bucket, Prefix="gone-")
    assert listed.get("KeyCount", 0) == 0


@pytest.mark.parametrize(
    "framing",
    [chunked.Framing.UNSIGNED_TRAILER, chunked.Framing.SIGNED_TRAILER],
    ids=lambda f: f.value,
)
def test_a_large_put_whose_crc32_came_in_a_trailer_is_recorded_after_it(
    direct: BaseClient, rgw_store: Store, tmp_path: Path, framing: chunked.Framing
) -> None:
    """Too large to read whole, its checksum known only at its end: recorded by the copy,
    which costs HEAD, GetObjectAcl and the copy."""
    bucket = new_bucket(direct)
    data = os.urandom(3 * MIB + 7)
    with (
        relay(rgw_store.endpoint) as r,
        shim_for(rgw_store, tmp_path / "trailer", via=r.endpoint) as through,
    ):
        reply = RawClient.of(through).aws_chunked_put(
            f"/{bucket}/trailer", data, framing, random.Random(7)
        )
        assert reply.status == 200, reply.body
        assert recorded(direct, bucket, "trailer") == "CRC32:" + crc32_b64(data)
        assert settled(through, "recorded", 1)
        ops = [operation(m, t) for m, t in r.requests]
    assert ops == ["PutObject", "HeadObject", "GetObjectAcl", "PutObject"]
    assert reply.headers.get("etag") == direct.head_object(Bucket=bucket, Key="trailer")["ETag"]
    assert direct.get_object(Bucket=bucket, Key="trailer")["Body"].read() == data
