"""Encryption kept: SSE-S3 through s3shim is stored by RGW itself as SSE-C, over TLS.

A Ceph RGW of its own serves HTTPS with a test CA (``scripts/rgw.sh --tls-port``); s3shim
trusts it through S3SHIM_UPSTREAM_CA_BUNDLE and holds a keys file. What is proven is read
back from the store: the RADOS objects hold no plaintext, a direct GET without the key
fails and one with the key s3shim derives returns the bytes, and the same request made
directly with SSE-C keys has the outcome the client's SSE-S3 request has through s3shim.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import boto3
import pytest
from botocore.client import BaseClient
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from s3shim import config
from s3shim.reencrypt import probe, write_again
from s3shim.reencrypt_plan import Outcome, Rewrite, State, rewrite
from s3shim.scrub import open_store
from s3shim.ssekeys import Keyring, parse_keys_file
from s3shim.upstream import Upstream
from testkit.backends import (
    RGW_ACCESS_KEY,
    RGW_SECRET_KEY,
    BackendUnavailable,
    start_rgw,
)
from testkit.convex_sequence import MIB, new_bucket, payload, presign_client, run_sequence
from testkit.helpers import in_ci
from testkit.shim import Shim, run_shim
from testkit.tls import make_tls

pytestmark = pytest.mark.rgw

OLD = {"id": "2026-01", "key": base64.b64encode(bytes(range(100, 132))).decode()}
NEW = {"id": "2026-06", "key": base64.b64encode(bytes(range(7, 39))).decode()}
CUSTOMER = "x-amz-server-side-encryption-customer-"
DATA_POOL = "default.rgw.buckets.data"


@dataclass(frozen=True)
class TlsRgw:
    endpoint: str  # https://127.0.0.1:PORT
    state: Path
    ca: str

    def client(self) -> BaseClient:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=RGW_ACCESS_KEY,
            aws_secret_access_key=RGW_SECRET_KEY,
            region_name="us-east-1",
            config=BotoConfig(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 1, "mode": "standard"},
                # boto3 frames https bodies as aws-chunked with a trailer, which RGW 16
                # refuses (MissingContentLength): plain bodies, as the store reads them.
                request_checksum_calculation="when_required",
            ),
            verify=self.ca,
        )

    def rados_objects(self, key: str) -> list[bytes]:
        """The RADOS objects holding ``key``'s data (head and tail objects)."""
        conf = str(self.state / "ceph.conf")
        names = subprocess.run(
            ["rados", "-c", conf, "-p", DATA_POOL, "ls"],
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout.decode()
        out = []
        for name in names.split():
            if name.endswith("_" + key) or f"_{key}." in name or f"_{key}.2~" in name:
                done = subprocess.run(
                    ["rados", "-c", conf, "-p", DATA_POOL, "get", name, "-"],
                    capture_output=True,
                    check=True,
                    timeout=30,
                )
                out.append(done.stdout)
        return out


@contextlib.contextmanager
def _start_tls_rgw(tmp: Path) -> Iterator[TlsRgw]:
    tls = make_tls(tmp)
    with start_rgw(tmp, tls=(tls.cert, tls.key)):
        state = tmp / "rgw"
        yield TlsRgw((state / "https-endpoint").read_text().strip(), state, tls.ca)


@pytest.fixture(scope="module")
def rgw_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRgw]:
    with contextlib.ExitStack() as stack:
        try:
            store = stack.enter_context(_start_tls_rgw(tmp_path_factory.mktemp("rgw-tls")))
        except BackendUnavailable as exc:
            if in_ci():
                pytest.fail(f"RGW over TLS could not start (CI=true): {exc.reason}")
            pytest.skip(f"RGW over TLS unavailable: {exc.reason}")
        yield store


def _keys_file(directory: Path, *keys: dict[str, str]) -> str:
    path = directory / f"sse-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps({"keys": list(keys)}))
    return str(path)


@contextlib.contextmanager
def _shim(rgw: TlsRgw, directory: Path, *keys: dict[str, str], **env: str) -> Iterator[Shim]:
    with run_shim(
        rgw.endpoint,
        RGW_ACCESS_KEY,
        RGW_SECRET_KEY,
        directory,
        env={
            "S3SHIM_UPSTREAM_CA_BUNDLE": rgw.ca,
            **({"S3SHIM_SSE_KEYS_FILE": _keys_file(directory, *keys)} if keys else {}),
            **env,
        },
    ) as shim:
        yield shim


@pytest.fixture(scope="module")
def shim_old(rgw_tls: TlsRgw, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shim]:
    """s3shim with the old key only (before a rotation), the Convex flags on."""
    with _shim(rgw_tls, tmp_path_factory.mktemp("shim-old"), OLD) as shim:
        yield shim


@pytest.fixture(scope="module")
def shim(rgw_tls: TlsRgw, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shim]:
    """s3shim after the rotation: the new key current, the old one second."""
    with _shim(rgw_tls, tmp_path_factory.mktemp("shim"), NEW, OLD) as shim:
        yield shim


def _ring(*keys: dict[str, str]) -> Keyring:
    return parse_keys_file(json.dumps({"keys": list(keys)}), "test")


def _sse_c(bucket: str, key: str, master: dict[str, str]) -> dict[str, Any]:
    """boto3's SSE-C parameters for the key s3shim derives for bucket/key under ``master``."""
    derived = _ring(master).for_write(bucket, key)
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": derived.key}


def _headers(response: dict[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = response["ResponseMetadata"]["HTTPHeaders"]
    return headers


def _status(response: dict[str, Any]) -> int:
    status: int = response["ResponseMetadata"]["HTTPStatusCode"]
    return status


def _no_customer_headers(response: dict[str, Any]) -> None:
    names = set(_headers(response))
    assert not {n for n in names if n.startswith(CUSTOMER)}, names


def _code(call: Any) -> tuple[int, str]:
    with pytest.raises(ClientError) as info:
        call()
    err = info.value.response
    return err["ResponseMetadata"]["HTTPStatusCode"], err["Error"].get("Code", "")


def _retries(shim: Shim) -> float:
    with urllib.request.urlopen(shim.admin + "/metrics", timeout=10) as r:
        text = r.read().decode()
    for line in text.splitlines():
        if line.startswith("s3shim_sse_key_retries_total "):
            return float(line.split()[1])
    return 0.0


def _unique() -> bytes:
    # A marker no ciphertext can contain by chance, repeated so every RADOS object of a
    # multi-object body holds a copy of it in plaintext.
    return (uuid.uuid4().hex.encode() * 4) + b"\n"


def _assert_ciphertext_only(rgw: TlsRgw, key: str, marker: bytes) -> None:
    stored = rgw.rados_objects(key)
    assert stored, f"no RADOS object found for {key}"
    assert all(marker not in blob for blob in stored)


# --------------------------------------------------------------------- stored encrypted
def test_sse_s3_put_is_stored_as_ciphertext_and_reads_back(shim: Shim, rgw_tls: TlsRgw) -> None:
    client, direct = shim.client(), rgw_tls.client()
    bucket = new_bucket(client)
    marker = _unique()
    data = marker * 1000
    put = client.put_object(Bucket=bucket, Key="enc", Body=data, ServerSideEncryption="AES256")
    assert put["ServerSideEncryption"] == "AES256"
    _no_customer_headers(put)
    got = client.get_object(Bucket=bucket, Key="enc")
    assert got["Body"].read() == data and got["ServerSideEncryption"] == "AES256"
    _no_customer_headers(got)
    head = client.head_object(Bucket=bucket, Key="enc")
    assert head["ContentLength"] == len(data) and head["ServerSideEncryption"] == "AES256"
    _no_customer_headers(head)
    ranged = client.get_object(Bucket=bucket, Key="enc", Range="bytes=5-40")
    assert ranged["Body"].read() == data[5:41]
    _no_customer_headers(ranged)
    # The store: ciphertext in RADOS, no read without the key, the bytes with the derived one.
    _assert_ciphertext_only(rgw_tls, "enc", marker)
    assert _code(lambda: direct.get_object(Bucket=bucket, Key="enc"))[0] == 400
    direct_got = direct.get_object(Bucket=bucket, Key="enc", **_sse_c(bucket, "enc", NEW))
    assert direct_got["Body"].read() == data


def test_the_rados_check_sees_plaintext_of_a_plain_object(rgw_tls: TlsRgw) -> None:
    """The control: the same check finds the bytes of an object stored without a key."""
    direct = rgw_tls.client()
    bucket = new_bucket(direct)
    marker = _unique()
    direct.put_object(Bucket=bucket, Key="plain-control", Body=marker * 10)
    assert any(marker in blob for blob in rgw_tls.rados_objects("plain-control"))


def test_same_outcome_as_a_direct_sse_c_put(shim: Shim, rgw_tls: TlsRgw) -> None:
    client, direct = shim.client(), rgw_tls.client()
    bucket = new_bucket(client)
    data = payload(3000)
    through = client.put_object(Bucket=bucket, Key="t", Body=data, ServerSideEncryption="AES256")
    keys = _sse_c(bucket, "d", NEW)
    straight = direct.put_object(Bucket=bucket, Key="d", Body=data, **keys)
    assert _status(through) == _status(straight) == 200
    assert straight["SSECustomerAlgorithm"] == "AES256"
    assert through["ServerSideEncryption"] == "AES256"  # what AWS answers for SSE-S3
    # Each reads back from the store under the derived key, and not without it.
    for key in ("t", "d"):
        assert _code(lambda k=key: direct.get_object(Bucket=bucket, Key=k))[0] == 400
        got = direct.get_object(Bucket=bucket, Key=key, **_sse_c(bucket, key, NEW))
        assert got["Body"].read() == data
    # And through s3shim, the directly written one reads as SSE-S3.
    assert client.get_object(Bucket=bucket, Key="d")["Body"].read() == data


def test_a_streamed_put_and_a_multipart_upload_are_encrypted(shim: Shim, rgw_tls: TlsRgw) -> None:
    client, direct = shim.client(), rgw_tls.client()
    bucket = new_bucket(client)
    marker = _unique()
    big = (marker * (3 * MIB // len(marker) + 1))[: 3 * MIB]
    client.put_object(Bucket=bucket, Key="big", Body=big, ServerSideEncryption="AES256")
    created = client.create_multipart_upload(Bucket=bucket, Key="mp", ServerSideEncryption="AES256")
    assert created["ServerSideEncryption"] == "AES256"
    _no_customer_headers(created)
    upload = created["UploadId"]
    parts = []
    for n, body in enumerate([big + big, b"tail" + marker], start=1):
        part = client.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=n, Body=body)
        _no_customer_headers(part)
        parts.append({"PartNumber": n, "ETag": part["ETag"]})
    client.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=upload, MultipartUpload={"Parts": parts}
    )
    whole = big + big + b"tail" + marker
    assert client.get_object(Bucket=bucket, Key="big")["Body"].read() == big
    assert client.get_object(Bucket=bucket, Key="mp")["Body"].read() == whole
    for key in ("big", "mp"):
        _assert_ciphertext_only(rgw_tls, key, marker)
        assert _code(lambda k=key: direct.get_object(Bucket=bucket, Key=k))[0] == 400


def test_presigned_get_and_put(shim: Shim, rgw_tls: TlsRgw) -> None:
    client, direct = shim.client(), rgw_tls.client()
    bucket = new_bucket(client)
    marker = _unique()
    presigner = presign_client(client)
    url = presigner.generate_presigned_url(
        "put_object",
        Params={"Bucket": bucket, "Key": "pre", "ServerSideEncryption": "AES256"},
        ExpiresIn=300,
    )
    req = urllib.request.Request(
        url, data=marker, method="PUT", headers={"x-amz-server-side-encryption": "AES256"}
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 200 and r.headers["x-amz-server-side-encryption"] == "AES256"
        assert not [n for n in r.headers if n.lower().startswith(CUSTOMER)]
    url = presigner.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "pre"}, ExpiresIn=300
    )
    with urllib.request.urlopen(url, timeout=60) as r:
        assert r.read() == marker
    _assert_ciphertext_only(rgw_tls, "pre", marker)
    assert _code(lambda: direct.get_object(Bucket=bucket, Key="pre"))[0] == 400


def test_the_client_own_sse_c_passes_untouched(shim: Shim, rgw_tls: TlsRgw) -> None:
    client, direct = shim.client(), rgw_tls.client()
    bucket = new_bucket(client)
    own = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": os.urandom(32)}
    put = client.put_object(Bucket=bucket, Key="own", Body=b"mine", **own)
    assert put["SSECustomerAlgorithm"] == "AES256"  # the client's own SSE-C answer, as sent
    assert direct.get_object(Bucket=bucket, Key="own", **own)["Body"].read() == b"mine"
    assert client.get_object(Bucket=bucket, Key="own", **own)["Body"].read() == b"mine"


# ----------------------------------------------------------------------------- copies
def test_a_copy_into_an_encrypted_object_is_refused_as_rgw_would_store_it_plain(
    shim: Shim, rgw_tls: TlsRgw
) -> None:
    """RGW 16 answers 200 to CopyObject with the destination's SSE-C key, and stores the copy
    in plaintext, readable without any key: s3shim refuses that copy rather than answer an
    SSE-S3 it did not get. A copy that asks for no encryption still works."""
    client, direct = shim.client(), rgw_tls.client()
    bucket = new_bucket(client)
    marker = _unique()
    direct.put_object(Bucket=bucket, Key="src", Body=marker)
    direct.copy_object(
        Bucket=bucket,
        Key="direct-dst",
        CopySource=f"{bucket}/src",
        **_sse_c(bucket, "direct-dst", NEW),
    )
    assert any(marker in blob for blob in rgw_tls.rados_objects("direct-dst"))
    assert direct.get_object(Bucket=bucket, Key="direct-dst")["Body"].read() == marker
    refused = _code(
        lambda: client.copy_object(
            Bucket=bucket, Key="dst", CopySource=f"{bucket}/src", ServerSideEncryption="AES256"
        )
    )
    assert refused == (501, "NotImplemented")
    assert _code(lambda: direct.head_object(Bucket=bucket, Key="dst"))[0] == 404
    client.copy_object(Bucket=bucket, Key="plain-dst", CopySource=f"{bucket}/src")
    assert client.get_object(Bucket=bucket, Key="plain-dst")["Body"].read() == marker


def test_copy_from_an_encrypted_source_is_what_rgw_answers_directly(
    shim: Shim, rgw_tls: TlsRgw
) -> None:
    """RGW 16 refuses every copy of an SSE-C source (501 NotImplemented): s3shim's keys do
    not change that; the client gets the store's answer, as with the keys sent directly."""
    client, direct = shim.client(), rgw_tls.client()
    bucket = new_bucket(client)
    client.put_object(Bucket=bucket, Key="src", Body=b"secret", ServerSideEncryption="AES256")
    through = _code(
        lambda: client.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/src")
    )
    keys = _sse_c(bucket, "src", NEW)
    straight = _code(
        lambda: direct.copy_object(
            Bucket=bucket,
            Key="dst",
            CopySource=f"{bucket}/src",
            CopySourceSSECustomerAlgorithm="AES256",
            CopySourceSSECustomerKey=keys["SSECustomerKey"],
        )
    )
    assert through == straight == (501, "NotImplemented")


# ------------------------------------------------------------------------ part copies
@dataclass(frozen=True)
class _Parts:
    """A bucket with a plain object ``src`` and the two parts of an upload: ``first``
    uploaded, then ``src`` copied (UploadPartCopy); ``marker`` is in the plaintext of both."""

    bucket: str
    marker: bytes
    first: bytes
    source: bytes

    @property
    def whole(self) -> bytes:
        return self.first + self.source


def _parts(direct: BaseClient, source_key: str = "src") -> _Parts:
    bucket = new_bucket(direct)
    marker = _unique()
    # Part 1 of the minimum size a part followed by another must have (5 MiB).
    first = (b"one" + marker) * (5 * MIB // (len(marker) + 3) + 1)
    parts = _Parts(bucket, marker, first, marker * 2000)
    if source_key:
        direct.put_object(Bucket=bucket, Key=source_key, Body=parts.source)
    return parts


def _with_a_copied_part(
    client: BaseClient,
    parts: _Parts,
    key: str,
    *,
    source: str = "src",
    create: dict[str, Any] | None = None,
    part: dict[str, Any] | None = None,
    copy: dict[str, Any] | None = None,
    begun_by: BaseClient | None = None,
) -> tuple[int, str, dict[str, Any] | None]:
    """``key`` uploaded in two parts, ``parts.first`` then ``source`` copied, the part copy
    sent by ``client``; the upload begun and its first part sent by ``begun_by`` (``client``
    by default). ``create``, ``part``, ``copy``: the SSE parameters of CreateMultipartUpload,
    UploadPart and UploadPartCopy (the part's by default). The part copy's status, code and
    answer; completed when the copy is taken, aborted when not."""
    starter = begun_by or client
    where = {"Bucket": parts.bucket, "Key": key}
    upload = starter.create_multipart_upload(**where, **(create or {}))["UploadId"]
    one = starter.upload_part(
        **where, UploadId=upload, PartNumber=1, Body=parts.first, **(part or {})
    )
    try:
        two = client.upload_part_copy(
            **where,
            UploadId=upload,
            PartNumber=2,
            CopySource=f"{parts.bucket}/{source}",
            **(copy if copy is not None else part or {}),
        )
    except ClientError as exc:
        client.abort_multipart_upload(**where, UploadId=upload)
        err = exc.response
        return err["ResponseMetadata"]["HTTPStatusCode"], err["Error"].get("Code", ""), None
    done = [
        {"PartNumber": 1, "ETag": one["ETag"]},
        {"PartNumber": 2, "ETag": two["CopyPartResult"]["ETag"]},
    ]
    client.complete_multipart_upload(**where, UploadId=upload, MultipartUpload={"Parts": done})
    return _status(two), "", two


SSE_S3_ASKED = {"ServerSideEncryption": "AES256"}


def test_a_part_copy_into_an_encrypted_upload_is_stored_encrypted(
    shim: Shim, rgw_tls: TlsRgw, tmp_path: Path
) -> None:
    """RGW 16 refuses a part copy into an SSE-C upload without the upload's key (400) and,
    with it, stores the copied part encrypted: through s3shim a part copy from a plain object
    into an upload begun with SSE-S3 (or under S3SHIM_SSE_DEFAULT) carries the upload's key,
    and the completed object holds only ciphertext, the plain source's bytes included."""
    client, direct = shim.client(), rgw_tls.client()
    parts = _parts(direct)

    def sse_c(key: str) -> dict[str, Any]:
        return _sse_c(parts.bucket, key, NEW)

    nokey = sse_c("nokey")
    unkeyed = _with_a_copied_part(direct, parts, "nokey", create=nokey, part=nokey, copy={})
    assert unkeyed[:2] == (400, "InvalidArgument")  # the upload's key is required
    keyed = sse_c("direct")
    straight = _with_a_copied_part(direct, parts, "direct", create=keyed, part=keyed)
    through = _with_a_copied_part(client, parts, "through", create=SSE_S3_ASKED)
    with _shim(rgw_tls, tmp_path, NEW, S3SHIM_SSE_DEFAULT="true") as by_default:
        default = _with_a_copied_part(by_default.client(), parts, "default")
    assert straight[:2] == through[:2] == default[:2] == (200, "")
    assert through[2] is not None
    _no_customer_headers(through[2])
    # RGW's answer to a part copy names no SSE-C, and s3shim cannot tell an encrypted upload
    # from a plain one by it: no SSE-S3 either (AWS would say AES256).
    assert "ServerSideEncryption" not in through[2]
    for key in ("direct", "through", "default"):
        _assert_ciphertext_only(rgw_tls, key, parts.marker)
        assert _code(lambda k=key: direct.get_object(Bucket=parts.bucket, Key=k))[0] == 400
        got = direct.get_object(Bucket=parts.bucket, Key=key, **sse_c(key))
        assert got["Body"].read() == parts.whole
        assert client.get_object(Bucket=parts.bucket, Key=key)["Body"].read() == parts.whole
    assert any(parts.marker in blob for blob in rgw_tls.rados_objects("src"))  # the control


def test_a_part_copy_into_an_older_key_or_a_plain_upload(
    shim_old: Shim, shim: Shim, rgw_tls: TlsRgw
) -> None:
    """An upload begun before a rotation takes a part copy under its own key (one retry: a
    part copy has no body to lose); a plain upload takes the key as RGW takes it on any
    part, and stores the part plain, as the same part copy made directly without a key does."""
    client, direct = shim.client(), rgw_tls.client()
    parts = _parts(direct)
    before = _retries(shim)
    # Begun, and its streamed part sent, before the rotation (such a part cannot be sent
    # again with the older key).
    old = _with_a_copied_part(client, parts, "old", create=SSE_S3_ASKED, begun_by=shim_old.client())
    assert old[:2] == (200, "")
    assert _retries(shim) == before + 1  # the current key first, then the upload's
    _assert_ciphertext_only(rgw_tls, "old", parts.marker)
    got = direct.get_object(Bucket=parts.bucket, Key="old", **_sse_c(parts.bucket, "old", OLD))
    assert got["Body"].read() == parts.whole
    assert client.get_object(Bucket=parts.bucket, Key="old")["Body"].read() == parts.whole
    # A plain upload stays plain, readable without any key, through s3shim or not.
    plain = [
        _with_a_copied_part(c, parts, key)[:2]
        for c, key in ((direct, "plain-direct"), (client, "plain-through"))
    ]
    assert plain == [(200, "")] * 2
    for key in ("plain-direct", "plain-through"):
        assert any(parts.marker in blob for blob in rgw_tls.rados_objects(key))
        assert direct.get_object(Bucket=parts.bucket, Key=key)["Body"].read() == parts.whole
        assert client.get_object(Bucket=parts.bucket, Key=key)["Body"].read() == parts.whole


def test_a_part_copy_of_an_encrypted_object_is_what_rgw_answers_directly(
    shim: Shim, rgw_tls: TlsRgw
) -> None:
    """RGW 16 reads a part copy's SSE-C source with the upload's key (not the copy-source
    key headers): into another object's upload it is 400 InvalidArgument, through s3shim
    (each key tried) and directly with both right keys; into an upload of the object itself
    (the same derived key) it is taken, and the part stays ciphertext."""
    client, direct = shim.client(), rgw_tls.client()
    parts = _parts(direct, source_key="")
    bucket = parts.bucket
    client.put_object(Bucket=bucket, Key="enc", Body=parts.source, ServerSideEncryption="AES256")
    src_keys, dst_keys = _sse_c(bucket, "enc", NEW), _sse_c(bucket, "other", NEW)
    both = {
        **dst_keys,
        "CopySourceSSECustomerAlgorithm": "AES256",
        "CopySourceSSECustomerKey": src_keys["SSECustomerKey"],
    }
    straight = _with_a_copied_part(
        direct, parts, "other", source="enc", create=dst_keys, part=dst_keys, copy=both
    )
    through = _with_a_copied_part(client, parts, "other", source="enc", create=SSE_S3_ASKED)
    assert straight[:2] == through[:2] == (400, "InvalidArgument")
    # The object copied into an upload of itself: its own key on both sides.
    itself = _with_a_copied_part(client, parts, "enc", source="enc", create=SSE_S3_ASKED)
    assert itself[:2] == (200, "")
    _assert_ciphertext_only(rgw_tls, "enc", parts.marker)
    assert client.get_object(Bucket=bucket, Key="enc")["Body"].read() == parts.whole
    assert direct.get_object(Bucket=bucket, Key="enc", **src_keys)["Body"].read() == parts.whole


# --------------------------------------------------------------- rotation, plain objects
def test_objects_under_the_old_key_stay_readable_after_rotation(
    shim_old: Shim, shim: Shim, rgw_tls: TlsRgw
) -> None:
    bucket = new_bucket(shim_old.client())
    data = payload(5000)
    shim_old.client().put_object(Bucket=bucket, Key="old", Body=data, ServerSideEncryption="AES256")
    direct = rgw_tls.client()
    assert (
        direct.get_object(Bucket=bucket, Key="old", **_sse_c(bucket, "old", OLD))["Body"].read()
        == data
    )
    assert (
        _code(lambda: direct.get_object(Bucket=bucket, Key="old", **_sse_c(bucket, "old", NEW)))[0]
        == 400
    )
    client = shim.client()
    before = _retries(shim)
    got = client.get_object(Bucket=bucket, Key="old")
    assert got["Body"].read() == data and got["ServerSideEncryption"] == "AES256"
    assert _retries(shim) == before + 1  # one extra round trip: the current key first
    head = client.head_object(Bucket=bucket, Key="old")
    assert head["ContentLength"] == len(data)
    assert (
        client.get_object(Bucket=bucket, Key="old", Range="bytes=0-9")["Body"].read() == data[:10]
    )
    assert _retries(shim) == before + 3
    # Written again through the rotated s3shim: under the new key, read with no retry.
    client.put_object(Bucket=bucket, Key="old", Body=data, ServerSideEncryption="AES256")
    assert client.get_object(Bucket=bucket, Key="old")["Body"].read() == data
    assert _retries(shim) == before + 3


def test_objects_stored_unencrypted_stay_readable(shim: Shim, rgw_tls: TlsRgw) -> None:
    client, direct = shim.client(), rgw_tls.client()
    bucket = new_bucket(client)
    data = payload(2 * MIB)  # a streamed answer too
    direct.put_object(Bucket=bucket, Key="plain", Body=data)
    before = _retries(shim)
    got = client.get_object(Bucket=bucket, Key="plain")
    assert got["Body"].read() == data and "ServerSideEncryption" not in got
    assert client.head_object(Bucket=bucket, Key="plain")["ContentLength"] == len(data)
    assert _retries(shim) == before  # RGW returns a plain object to a request with a key


def test_a_missing_object_is_the_store_404(shim: Shim, rgw_tls: TlsRgw) -> None:
    client, direct = shim.client(), rgw_tls.client()
    bucket = new_bucket(client)
    through = _code(lambda: client.get_object(Bucket=bucket, Key="none"))
    assert through == _code(lambda: direct.get_object(Bucket=bucket, Key="none"))
    assert through[0] == 404


# ------------------------------------------------------------------------------- Convex
@pytest.mark.parametrize("size", [1, 5 * MIB + 1], ids=lambda s: f"{s}B")
def test_the_convex_sequence_with_sse(shim: Shim, rgw_tls: TlsRgw, size: int) -> None:
    client = shim.client()
    bucket = new_bucket(client)
    run_sequence(client, bucket, size)
    # Its SSE-S3 writes left ciphertext only, readable through s3shim, not without the key.
    direct = rgw_tls.client()
    marker = _unique()
    data = marker * (size // len(marker) + 1)
    created = client.create_multipart_upload(
        Bucket=bucket, Key="files/x", ServerSideEncryption="AES256", ChecksumAlgorithm="CRC32"
    )
    part = client.upload_part(
        Bucket=bucket,
        Key="files/x",
        UploadId=created["UploadId"],
        PartNumber=1,
        Body=data,
        ChecksumAlgorithm="CRC32",
    )
    client.complete_multipart_upload(
        Bucket=bucket,
        Key="files/x",
        UploadId=created["UploadId"],
        MultipartUpload={
            "Parts": [
                {"PartNumber": 1, "ETag": part["ETag"], "ChecksumCRC32": part["ChecksumCRC32"]}
            ]
        },
    )
    assert client.get_object(Bucket=bucket, Key="files/x")["Body"].read() == data
    _assert_ciphertext_only(rgw_tls, "files/x", marker)
    assert _code(lambda: direct.get_object(Bucket=bucket, Key="files/x"))[0] == 400


# ---------------------------------------------------------------------- startup refusals
def _start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_ACCESS_KEY_ID": RGW_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": RGW_SECRET_KEY,
        "S3SHIM_LISTEN_PORT": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", "s3shim"],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_startup_refuses_keys_with_an_http_store(tmp_path: Path) -> None:
    done = _start(
        {
            "S3SHIM_UPSTREAM_URL": "http://127.0.0.1:7480",
            "S3SHIM_SSE_KEYS_FILE": _keys_file(tmp_path, NEW),
        }
    )
    assert done.returncode == 2
    assert "S3SHIM_SSE_KEYS_FILE: the store is http://" in done.stderr
    assert NEW["key"] not in done.stderr + done.stdout


def test_startup_refuses_a_bad_key_without_printing_it(tmp_path: Path) -> None:
    short = {"id": "a", "key": base64.b64encode(b"0123456789abcdef").decode()}
    done = _start(
        {
            "S3SHIM_UPSTREAM_URL": "https://127.0.0.1:7443",
            "S3SHIM_SSE_KEYS_FILE": _keys_file(tmp_path, short),
        }
    )
    assert done.returncode == 2 and "keys[0].key must be the base64 of 32" in done.stderr
    assert short["key"] not in done.stderr + done.stdout
    assert len(done.stderr.strip().splitlines()) == 1


def test_the_startup_line_names_key_ids_only(shim: Shim) -> None:
    text = shim.log_text()
    (started,) = [e for e in shim.log_entries() if e.get("event") == "started"]
    assert started["sse_keys"] == ["2026-06", "2026-01"]
    assert NEW["key"] not in text and OLD["key"] not in text


# ---------------------------------------------------------------------------- forms
def _form_post(
    endpoint: str, bucket: str, key: str, data: bytes, fields: dict[str, str], ca: str
) -> Any:
    import requests

    presigner = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=RGW_ACCESS_KEY,
        aws_secret_access_key=RGW_SECRET_KEY,
        region_name="us-east-1",
        config=BotoConfig(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    conditions: list[Any] = [{k: v} for k, v in fields.items()]
    form = presigner.generate_presigned_post(
        bucket, key, Fields=fields, Conditions=conditions, ExpiresIn=300
    )
    return form, requests.post(
        form["url"], data=form["fields"], files={"file": ("f.bin", data)}, timeout=60, verify=ca
    )


def test_a_form_asking_for_sse_s3_is_stored_encrypted_with_the_derived_key(
    shim: Shim, rgw_tls: TlsRgw
) -> None:
    """Directly, RGW 16 over TLS takes a form's SSE-S3 field and stores the file in
    plaintext, but takes SSE-C fields (each with its policy condition) and stores it
    encrypted: s3shim's store form carries the derived key instead of the SSE-S3 field."""
    client, direct = shim.client(), rgw_tls.client()
    bucket = new_bucket(client)
    marker = _unique()
    sse = {"x-amz-server-side-encryption": "AES256"}
    _, straight = _form_post(rgw_tls.endpoint, bucket, "direct-form", marker, sse, rgw_tls.ca)
    assert straight.status_code == 204
    assert any(marker in blob for blob in rgw_tls.rados_objects("direct-form"))
    derived = _ring(NEW).for_write(bucket, "direct-sse-c")
    own = {name: value for name, value in derived.headers()}
    _, keyed = _form_post(rgw_tls.endpoint, bucket, "direct-sse-c", marker, own, rgw_tls.ca)
    assert keyed.status_code == 204
    _assert_ciphertext_only(rgw_tls, "direct-sse-c", marker)

    _, through = _form_post(shim.endpoint, bucket, "form", marker, sse, rgw_tls.ca)
    assert through.status_code == 204, through.content
    assert not [n for n in through.headers if n.lower().startswith(CUSTOMER)]
    assert through.headers["x-amz-server-side-encryption"] == "AES256"  # as AWS answers
    _assert_ciphertext_only(rgw_tls, "form", marker)
    assert _code(lambda: direct.get_object(Bucket=bucket, Key="form"))[0] == 400
    got = direct.get_object(Bucket=bucket, Key="form", **_sse_c(bucket, "form", NEW))
    assert got["Body"].read() == marker
    assert client.get_object(Bucket=bucket, Key="form")["Body"].read() == marker
    # The 201 answer (an XML document naming the object) carries no key or key MD5 either.
    status = {**sse, "success_action_status": "201"}
    _, created = _form_post(shim.endpoint, bucket, "form201", marker, status, rgw_tls.ca)
    assert created.status_code == 201 and b"<Key>form201</Key>" in created.content
    assert not [n for n in created.headers if n.lower().startswith(CUSTOMER)]
    assert created.headers["x-amz-server-side-encryption"] == "AES256"
    _assert_ciphertext_only(rgw_tls, "form201", marker)
    # A form without SSE still uploads, in plaintext as asked.
    _, plain = _form_post(shim.endpoint, bucket, "plain-form", marker, {}, rgw_tls.ca)
    assert plain.status_code == 204
    assert direct.get_object(Bucket=bucket, Key="plain-form")["Body"].read() == marker


def test_a_form_naming_its_object_by_filename_is_refused_under_encryption(
    shim: Shim, rgw_tls: TlsRgw
) -> None:
    """The store substitutes ${filename} in the key: s3shim cannot derive that object's
    key before the store names it, so it refuses such a form asking for encryption (501)."""
    client, direct = shim.client(), rgw_tls.client()
    bucket = new_bucket(client)
    sse = {"x-amz-server-side-encryption": "AES256"}
    _, through = _form_post(shim.endpoint, bucket, "up/${filename}", b"x", sse, rgw_tls.ca)
    assert through.status_code == 501 and b"<Code>NotImplemented</Code>" in through.content
    assert direct.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_every_worker_derives_the_same_keys(rgw_tls: TlsRgw, tmp_path: Path) -> None:
    """Two worker processes share the port: whichever takes a request, the object it wrote
    reads back through the other, and stays ciphertext in RADOS."""
    with _shim(rgw_tls, tmp_path, NEW, OLD, S3SHIM_WORKERS="2") as shim:
        client, direct = shim.client(), rgw_tls.client()
        bucket = new_bucket(client)
        marker = _unique()
        for i in range(12):  # new connections each, spread over both workers
            key = f"w{i}"
            fresh = shim.client()
            fresh.put_object(Bucket=bucket, Key=key, Body=marker, ServerSideEncryption="AES256")
            assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == marker
            assert _code(lambda k=key: direct.get_object(Bucket=bucket, Key=k))[0] == 400
        _assert_ciphertext_only(rgw_tls, "w0", marker)
        assert [e.get("event") for e in shim.log_entries()].count("started") == 2


# ------------------------------------------------------------------------- reencrypt
def _reencrypt(
    rgw: TlsRgw, directory: Path, target: str, *args: str, keys: tuple[dict[str, str], ...]
) -> subprocess.CompletedProcess[str]:
    return _command(rgw, directory, "reencrypt", target, *args, keys=keys)


def _command(
    rgw: TlsRgw, directory: Path, *argv: str, keys: tuple[dict[str, str], ...]
) -> subprocess.CompletedProcess[str]:
    """``s3shim reencrypt`` or ``verify`` as an operator runs it: s3shim's environment, the
    keys file (none: no keys)."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "S3SHIM_UPSTREAM_URL": rgw.endpoint,
        "S3SHIM_UPSTREAM_CA_BUNDLE": rgw.ca,
        "AWS_ACCESS_KEY_ID": RGW_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": RGW_SECRET_KEY,
        **({"S3SHIM_SSE_KEYS_FILE": _keys_file(directory, *keys)} if keys else {}),
    }
    done = subprocess.run(
        [sys.executable, "-m", "s3shim", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    for key in keys:
        assert key["key"] not in done.stdout + done.stderr
    return done


def _under(rgw: TlsRgw, bucket: str, key: str) -> str:
    """Which master key the object is stored under, asked of the store directly (again when
    no key fits: a rewrite under way can commit between two of the HEADs)."""
    direct = rgw.client()
    for _ in range(3):
        for name, master in (("new", NEW), ("old", OLD)):
            with contextlib.suppress(ClientError):
                head = direct.head_object(Bucket=bucket, Key=key, **_sse_c(bucket, key, master))
                return name if "SSECustomerAlgorithm" in head else "plain"
        with contextlib.suppress(ClientError):
            return "plain" if _status(direct.head_object(Bucket=bucket, Key=key)) == 200 else "?"
    return "?"


def _kept(head: dict[str, Any]) -> dict[str, Any]:
    """What an object carries that a re-encryption must keep."""
    names = (
        *("ContentType", "ContentEncoding", "ContentDisposition", "ContentLanguage"),
        *("CacheControl", "Metadata", "ContentLength", "WebsiteRedirectLocation"),
    )
    return {n: head.get(n) for n in names} | {"Expires": _headers(head).get("expires")}


def _grants(direct: BaseClient, bucket: str, key: str) -> list[Any]:
    return sorted(
        direct.get_object_acl(Bucket=bucket, Key=key)["Grants"], key=lambda g: json.dumps(g)
    )


def test_reencrypt_moves_old_key_and_plain_objects_to_the_current_key(
    shim_old: Shim, shim: Shim, rgw_tls: TlsRgw, tmp_path: Path
) -> None:
    direct = rgw_tls.client()
    bucket = new_bucket(direct)
    marker = _unique()
    old_data, plain_data, current_data = payload(7000), marker * 30000, payload(1500)
    described = {
        "ContentType": "text/x-old",
        "ContentEncoding": "identity",
        "ContentDisposition": 'attachment; filename="o.txt"',
        "ContentLanguage": "fr",
        "CacheControl": "max-age=60",
        "Expires": "Wed, 21 Oct 2037 07:28:00 GMT",
        "WebsiteRedirectLocation": "/elsewhere",
        "Metadata": {"owner-app": "convex", "n": "1"},
    }
    shim_old.client().put_object(
        Bucket=bucket,
        Key="data/old",
        Body=old_data,
        ServerSideEncryption="AES256",
        Tagging="team=a&note=x%20y",
        **described,
    )
    direct.put_object(
        Bucket=bucket, Key="data/plain", Body=plain_data, ACL="public-read", **described
    )
    shim.client().put_object(
        Bucket=bucket, Key="data/current", Body=current_data, ServerSideEncryption="AES256"
    )
    direct.put_object(Bucket=bucket, Key="other/plain", Body=marker)  # outside the prefix
    assert [_under(rgw_tls, bucket, k) for k in ("data/old", "data/plain", "data/current")] == [
        "old",
        "plain",
        "new",
    ]
    record = direct.head_object(Bucket=bucket, Key="data/old", **_sse_c(bucket, "data/old", OLD))
    assert "s3shim-checksum" in record["Metadata"]  # the proxy recorded it: it must stay true
    before = {
        "data/old": _kept(record),
        "data/plain": _kept(direct.head_object(Bucket=bucket, Key="data/plain")),
    }
    tags = direct.get_object_tagging(Bucket=bucket, Key="data/old")["TagSet"]
    acl = _grants(direct, bucket, "data/plain")
    target = f"s3://{bucket}/data/"

    dry = _reencrypt(rgw_tls, tmp_path, target, "--dry-run", keys=(NEW, OLD))
    assert dry.returncode == 0, dry.stderr
    assert "current=1 reencrypted=0 would-reencrypt=2 (dry run)" in dry.stdout
    assert _under(rgw_tls, bucket, "data/old") == "old"  # nothing written
    # verify reads each object with its key, an older one too, as s3shim does.
    before_run = _command(rgw_tls, tmp_path, "verify", target, keys=(NEW, OLD))
    assert before_run.stdout.strip() == "checked=2 unrecorded=1 mismatched=0 unreadable=0"

    done = _reencrypt(rgw_tls, tmp_path, target, keys=(NEW, OLD))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "current=1 reencrypted=2"
    assert [_under(rgw_tls, bucket, k) for k in ("data/old", "data/plain", "data/current")] == [
        "new"
    ] * 3
    assert _under(rgw_tls, bucket, "other/plain") == "plain"

    # The old key can go: s3shim with the current key alone reads every object back.
    with _shim(rgw_tls, tmp_path, NEW) as only_new:
        client = only_new.client()
        for key, data in (
            ("data/old", old_data),
            ("data/plain", plain_data),
            ("data/current", current_data),
        ):
            got = client.get_object(Bucket=bucket, Key=key)
            assert got["Body"].read() == data and got["ServerSideEncryption"] == "AES256"
        assert _retries(only_new) == 0
    # What the store holds: ciphertext where the plain object was, the control still plain.
    _assert_ciphertext_only(rgw_tls, "data/plain", marker)
    assert any(marker in blob for blob in rgw_tls.rados_objects("other/plain"))
    assert _code(lambda: direct.get_object(Bucket=bucket, Key="data/plain"))[0] == 400
    # What the objects carry, kept: headers, metadata (the record too), tags, ACL grants.
    for key, kept in before.items():
        head = direct.head_object(Bucket=bucket, Key=key, **_sse_c(bucket, key, NEW))
        assert _kept(head) == kept
    assert direct.get_object_tagging(Bucket=bucket, Key="data/old")["TagSet"] == tags
    assert _grants(direct, bucket, "data/plain") == acl

    again = _reencrypt(rgw_tls, tmp_path, target, keys=(NEW,))
    assert again.returncode == 0 and again.stdout.strip() == "current=3 reencrypted=0"
    # The records stayed true: verify, reading with the current key alone, finds them all.
    verified = _command(rgw_tls, tmp_path, "verify", target, keys=(NEW,))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.strip() == "checked=2 unrecorded=1 mismatched=0 unreadable=0"
    # (Without keys it cannot read them: the store refuses an SSE-C object without its key.)
    keyless = _command(rgw_tls, tmp_path, "verify", target, keys=())
    assert keyless.returncode == 3 and "unreadable=3" in keyless.stdout


def test_a_stopped_reencrypt_resumes_where_it_stopped(
    shim_old: Shim, rgw_tls: TlsRgw, tmp_path: Path
) -> None:
    client = shim_old.client()
    bucket = new_bucket(client)
    keys = [f"k{i}" for i in range(6)]
    for key in keys:
        client.put_object(Bucket=bucket, Key=key, Body=key.encode(), ServerSideEncryption="AES256")
    first = _reencrypt(rgw_tls, tmp_path, f"s3://{bucket}", "--limit", "2", keys=(NEW, OLD))
    assert first.returncode == 4, first.stdout + first.stderr
    assert "current=0 reencrypted=2" in first.stdout
    resume = f"stopped; resume with: s3shim reencrypt s3://{bucket} --start-after k1"
    assert first.stdout.splitlines()[-1] == resume
    assert [_under(rgw_tls, bucket, k) for k in keys] == ["new"] * 2 + ["old"] * 4
    rest = _reencrypt(rgw_tls, tmp_path, f"s3://{bucket}", "--start-after", "k1", keys=(NEW, OLD))
    assert rest.returncode == 0 and rest.stdout.strip() == "current=0 reencrypted=4"
    assert [_under(rgw_tls, bucket, k) for k in keys] == ["new"] * 6
    # And a run from the start, as after a crash, skips them all.
    whole = _reencrypt(rgw_tls, tmp_path, f"s3://{bucket}", keys=(NEW, OLD))
    assert whole.returncode == 0 and whole.stdout.strip() == "current=6 reencrypted=0"


def test_a_killed_reencrypt_leaves_every_object_readable_and_a_rerun_finishes(
    shim_old: Shim, rgw_tls: TlsRgw, tmp_path: Path
) -> None:
    """SIGTERM at whatever point the run has reached: an abandoned PUT commits nothing, so
    every object is whole under one of the keys, and running again completes the job."""
    client = shim_old.client()
    bucket = new_bucket(client)
    data = {f"big{i}": payload(4 * MIB + i) for i in range(8)}
    for key, body in data.items():
        client.put_object(Bucket=bucket, Key=key, Body=body, ServerSideEncryption="AES256")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "S3SHIM_UPSTREAM_URL": rgw_tls.endpoint,
        "S3SHIM_UPSTREAM_CA_BUNDLE": rgw_tls.ca,
        "AWS_ACCESS_KEY_ID": RGW_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": RGW_SECRET_KEY,
        "S3SHIM_SSE_KEYS_FILE": _keys_file(tmp_path, NEW, OLD),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "s3shim", "reencrypt", f"s3://{bucket}", "--concurrency", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Once the first object is under the new key, the run is under way: stop it.
    for _ in range(600):
        if _under(rgw_tls, bucket, "big0") == "new" or proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 4), out + err  # 0: it had finished before the signal
    if proc.returncode == 4:
        assert "stopped; resume with:" in out
    assert {_under(rgw_tls, bucket, k) for k in data} <= {"new", "old"}
    with _shim(rgw_tls, tmp_path, NEW, OLD) as both:
        for key, body in data.items():
            assert both.client().get_object(Bucket=bucket, Key=key)["Body"].read() == body
    rerun = _reencrypt(rgw_tls, tmp_path, f"s3://{bucket}", keys=(NEW, OLD))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert [_under(rgw_tls, bucket, k) for k in data] == ["new"] * 8


def test_reencrypt_leaves_alone_what_it_cannot_rewrite_truly(
    rgw_tls: TlsRgw, tmp_path: Path
) -> None:
    """A client's own SSE-C object (a key s3shim does not hold) and an object whose bytes no
    longer match s3shim's record are reported and left as they were: exit status 1."""
    direct = rgw_tls.client()
    bucket = new_bucket(direct)
    own = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": os.urandom(32)}
    direct.put_object(Bucket=bucket, Key="own", Body=b"mine", **own)
    marker = _unique()
    wrong = base64.b64encode(bytes(8)).decode()
    direct.put_object(
        Bucket=bucket, Key="rotten", Body=marker, Metadata={"s3shim-checksum": f"CRC64NVME:{wrong}"}
    )
    done = _reencrypt(rgw_tls, tmp_path, f"s3://{bucket}", keys=(NEW,))
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.splitlines() == [  # by key
        f"UNKNOWN-KEY s3://{bucket}/own",
        f"MISMATCHED s3://{bucket}/rotten",
        "current=0 reencrypted=0 unknown-key=1 mismatched=1",
    ]
    assert direct.get_object(Bucket=bucket, Key="own", **own)["Body"].read() == b"mine"
    assert direct.get_object(Bucket=bucket, Key="rotten")["Body"].read() == marker
    assert any(marker in blob for blob in rgw_tls.rados_objects("rotten"))


def test_rgw_honours_if_match_on_put_only_unquoted(rgw_tls: TlsRgw) -> None:
    """The measurement the guard rests on: RGW 16 carries out a PUT with If-Match only when
    the ETag matches, and compares it as stored, so the quoted (RFC) form never matches."""
    direct = rgw_tls.client()
    bucket = new_bucket(direct)
    direct.put_object(Bucket=bucket, Key="o", Body=b"one")
    etag = direct.head_object(Bucket=bucket, Key="o")["ETag"]
    assert etag.startswith('"')
    assert _code(lambda: direct.put_object(Bucket=bucket, Key="o", Body=b"2", IfMatch=etag)) == (
        412,
        "PreconditionFailed",
    )
    stale = etag.strip('"')
    assert _status(direct.put_object(Bucket=bucket, Key="o", Body=b"two", IfMatch=stale)) == 200
    assert (
        _code(lambda: direct.put_object(Bucket=bucket, Key="o", Body=b"3", IfMatch=stale))[0] == 412
    )
    assert direct.get_object(Bucket=bucket, Key="o")["Body"].read() == b"two"


def test_rgw_ignores_if_match_on_complete_multipart_upload(rgw_tls: TlsRgw) -> None:
    """Why reencrypt rewrites only what one PUT can carry: a Complete with an If-Match no
    object has replaces the object anyway, so a rewrite in parts could not be guarded."""
    direct = rgw_tls.client()
    bucket = new_bucket(direct)
    direct.put_object(Bucket=bucket, Key="o", Body=b"one")
    upload = direct.create_multipart_upload(Bucket=bucket, Key="o")["UploadId"]
    part = direct.upload_part(Bucket=bucket, Key="o", UploadId=upload, PartNumber=1, Body=b"two")

    def if_match(request: Any, **_: Any) -> None:
        request.headers["If-Match"] = "0123456789abcdef0123456789abcdef"

    direct.meta.events.register_first("before-sign.s3.CompleteMultipartUpload", if_match)
    done = direct.complete_multipart_upload(
        Bucket=bucket,
        Key="o",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    assert _status(done) == 200
    assert direct.get_object(Bucket=bucket, Key="o")["Body"].read() == b"two"


class _RacingClient:
    """The store client, with a client's write of the object landing just before the
    rewrite's request of ``method`` (its GET, or its PUT)."""

    def __init__(self, inner: Upstream, method: str, write: Callable[[], object]) -> None:
        self.inner, self.method, self.write = inner, method, write

    async def request(self, method: str, *args: Any) -> Any:
        if method == self.method and any(n == "if-match" for n, _ in args[1]):
            await asyncio.to_thread(self.write)
        return await self.inner.request(method, *args)

    async def close(self) -> None:
        await self.inner.close()


@pytest.mark.parametrize("before", ["GET", "PUT"])
def test_an_object_overwritten_during_reencrypt_is_not_clobbered(
    shim_old: Shim, rgw_tls: TlsRgw, tmp_path: Path, before: str
) -> None:
    """A client writes the object after the HEAD that planned its rewrite, before the
    rewrite's GET or before its PUT: the If-Match of either fails and the client's object
    stays as the client wrote it (reported as changed: exit status 3, run again)."""
    client, direct = shim_old.client(), rgw_tls.client()
    bucket = new_bucket(client)
    client.put_object(Bucket=bucket, Key="o", Body=b"first", ServerSideEncryption="AES256")
    cfg = config.load(
        ["--upstream-url", rgw_tls.endpoint],
        {
            "S3SHIM_UPSTREAM_CA_BUNDLE": rgw_tls.ca,
            "AWS_ACCESS_KEY_ID": RGW_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": RGW_SECRET_KEY,
            "S3SHIM_SSE_KEYS_FILE": _keys_file(tmp_path, NEW, OLD),
        },
    )
    ring = cfg.sse_keyring
    assert ring is not None

    def overwrite() -> None:
        client.put_object(Bucket=bucket, Key="o", Body=b"second", ServerSideEncryption="AES256")

    async def race() -> Outcome:
        store = open_store(cfg)
        racing = replace(
            store, client=cast(Upstream, _RacingClient(store.client, before, overwrite))
        )
        try:
            state, under, headers = await probe(store, bucket, "o", ring)
            assert state is State.OLDER
            plan = rewrite(state, under, headers, ring.for_write(bucket, "o"))
            assert isinstance(plan, Rewrite)
            return await write_again(racing, bucket, "o", plan)
        finally:
            await store.client.close()

    assert asyncio.run(race()) is Outcome.CHANGED
    got = direct.get_object(Bucket=bucket, Key="o", **_sse_c(bucket, "o", OLD))
    assert got["Body"].read() == b"second"
