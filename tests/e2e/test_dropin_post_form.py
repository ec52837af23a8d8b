"""Browser POST-policy uploads through s3shim to the real RGW, compared with RGW directly.

s3shim verifies the policy signature with the client's key, re-signs the form for the store
(dropping the fields the flags drop, from the form and from the policy), and streams the file;
the store enforces every other condition. Bytes are read back from RGW itself.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import requests
from botocore.client import BaseClient

from testkit.backends import Store, new_bucket
from testkit.helpers import crc32_b64, stored
from testkit.shim import PATH_STYLE, Shim, client_of, flags_on

pytestmark = pytest.mark.both_flags  # the module's s3shim: both flags on, then both off


def presigner(endpoint: str, store: Store, version: str = "s3v4") -> BaseClient:
    return client_of(store, endpoint=endpoint, signature_version=version, s3=PATH_STYLE)


def post(
    endpoint: str,
    store: Store,
    bucket: str,
    key: str,
    data: bytes,
    *,
    fields: dict[str, str] | None = None,
    conditions: list[Any] | None = None,
    version: str = "s3v4",
    expires: int = 300,
    tamper: dict[str, str] | None = None,
) -> requests.Response:
    form = presigner(endpoint, store, version).generate_presigned_post(
        bucket, key, Fields=fields, Conditions=conditions, ExpiresIn=expires
    )
    form_fields = {**form["fields"], **(tamper or {})}
    return requests.post(
        form["url"], data=form_fields, files={"file": ("upload.bin", data)}, timeout=60
    )


def code(resp: requests.Response) -> str | None:
    body = resp.content
    start = body.find(b"<Code>")
    return body[start + 6 : body.find(b"</Code>")].decode() if start >= 0 else None


@pytest.mark.parametrize("size", [0, 1000, 5 * 1024 * 1024 + 3])
@pytest.mark.parametrize("version", ["s3v4", "s3"])
def test_a_form_upload_stores_the_same_bytes_as_directly(
    rgw_store: Store, module_shim: Shim, store: BaseClient, size: int, version: str
) -> None:
    bucket = new_bucket(rgw_store)
    data = os.urandom(size)
    direct = post(rgw_store.endpoint, rgw_store, bucket, "direct", data, version=version)
    through = post(module_shim.endpoint, rgw_store, bucket, "through", data, version=version)
    assert direct.status_code == through.status_code == 204
    assert stored(store, bucket, "direct") == stored(store, bucket, "through") == data


def test_success_action_status_and_metadata_reach_the_store(
    rgw_store: Store, module_shim: Shim, store: BaseClient
) -> None:
    bucket = new_bucket(rgw_store)
    fields = {"success_action_status": "201", "x-amz-meta-owner": "web", "Content-Type": "text/x"}
    conditions = [
        {"success_action_status": "201"},
        {"x-amz-meta-owner": "web"},
        {"Content-Type": "text/x"},
    ]
    resp = post(
        module_shim.endpoint, rgw_store, bucket, "meta", b"hi", fields=fields, conditions=conditions
    )
    assert resp.status_code == 201 and b"<Key>meta</Key>" in resp.content
    head = store.head_object(Bucket=bucket, Key="meta")
    assert head["Metadata"] == {"owner": "web"} and head["ContentType"] == "text/x"


def test_the_flags_drop_sse_fields_that_the_store_refuses(
    rgw_store: Store, module_shim: Shim, store: BaseClient
) -> None:
    bucket = new_bucket(rgw_store)
    fields = {"x-amz-server-side-encryption": "AES256"}
    conditions = [{"x-amz-server-side-encryption": "AES256"}]
    direct = post(
        rgw_store.endpoint, rgw_store, bucket, "sse", b"x", fields=fields, conditions=conditions
    )
    assert (direct.status_code, code(direct)) == (400, "InvalidRequest")  # RGW over http
    through = post(
        module_shim.endpoint,
        rgw_store,
        bucket,
        "sse",
        b"secret-ish",
        fields=fields,
        conditions=conditions,
    )
    if flags_on(module_shim):  # dropped from the form and the policy: stored
        assert through.status_code == 204
        assert stored(store, bucket, "sse") == b"secret-ish"
    else:  # kept: the store refuses it exactly as directly
        assert (through.status_code, code(through)) == (400, "InvalidRequest")
        assert stored(store, bucket, "sse") is None


def test_a_declared_checksum_is_verified_and_nothing_stored_when_wrong(
    rgw_store: Store, module_shim: Shim, store: BaseClient
) -> None:
    bucket = new_bucket(rgw_store)
    data = b"checked form upload" * 1000
    good = crc32_b64(data)
    bad = crc32_b64(b"else")
    for key, value, status in (("good", good, 204), ("bad", bad, 400)):
        fields = {"x-amz-checksum-crc32": value}
        resp = post(
            module_shim.endpoint, rgw_store, bucket, key, data, fields=fields, conditions=[fields]
        )
        assert resp.status_code == status
    assert stored(store, bucket, "good") == data
    assert stored(store, bucket, "bad") is None
    assert code(resp) == "BadDigest"


def test_a_tampered_or_expired_form_is_refused_and_nothing_stored(
    rgw_store: Store, module_shim: Shim, store: BaseClient
) -> None:
    bucket = new_bucket(rgw_store)
    for endpoint in (rgw_store.endpoint, module_shim.endpoint):
        resp = post(endpoint, rgw_store, bucket, "k", b"x", tamper={"key": "other"})
        assert resp.status_code == 403, endpoint
    resp = post(
        module_shim.endpoint, rgw_store, bucket, "k", b"x", tamper={"x-amz-signature": "0" * 64}
    )
    assert (resp.status_code, code(resp)) == (403, "SignatureDoesNotMatch")
    resp = post(module_shim.endpoint, rgw_store, bucket, "k", b"x", expires=-10)
    assert (resp.status_code, code(resp)) == (403, "AccessDenied")
    assert "Contents" not in store.list_objects(Bucket=bucket)


def test_the_store_enforces_the_other_conditions(
    rgw_store: Store, module_shim: Shim, store: BaseClient
) -> None:
    bucket = new_bucket(rgw_store)
    conditions = [["content-length-range", 1, 10]]
    outcomes = []
    for endpoint in (rgw_store.endpoint, module_shim.endpoint):
        resp = post(endpoint, rgw_store, bucket, "big", b"x" * 100, conditions=conditions)
        outcomes.append((resp.status_code, code(resp)))
    assert outcomes[0] == outcomes[1] and outcomes[0][0] == 400
    assert "Contents" not in store.list_objects(Bucket=bucket)


def test_an_anonymous_form_into_a_public_bucket(
    rgw_store: Store, module_shim: Shim, store: BaseClient
) -> None:
    bucket = new_bucket(rgw_store)
    store.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    for endpoint, key in ((rgw_store.endpoint, "anon-d"), (module_shim.endpoint, "anon-t")):
        resp = requests.post(
            f"{endpoint}/{bucket}",
            data={"key": key},
            files={"file": ("f", b"anonymous form")},
            timeout=30,
        )
        assert resp.status_code == 204, (endpoint, resp.content)
    assert stored(store, bucket, "anon-d") == stored(store, bucket, "anon-t") == b"anonymous form"


def test_a_planted_checksum_record_never_reaches_the_store(
    rgw_store: Store, module_shim: Shim, store: BaseClient
) -> None:
    bucket = new_bucket(rgw_store)
    fields = {"x-amz-meta-s3shim-checksum": "CRC32:AAAAAA=="}
    resp = post(
        module_shim.endpoint, rgw_store, bucket, "planted", b"p", fields=fields, conditions=[fields]
    )
    assert resp.status_code == 204
    assert "s3shim-checksum" not in store.head_object(Bucket=bucket, Key="planted")["Metadata"]
