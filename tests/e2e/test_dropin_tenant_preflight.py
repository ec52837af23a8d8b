"""CORS preflights for an RGW tenant's bucket, through s3shim and directly.

RGW finds a tenant's bucket from the request's credential: a browser's preflight (OPTIONS) of
a presigned URL carries the URL's query, and RGW reads the tenant from its X-Amz-Credential
without checking the signature (a preflight is never signed). s3shim never signs a preflight;
it forwards the client's own presign parameters untouched where the client's key is the
store's key (identity mapping), so the store reads exactly what it would read directly, and
strips them otherwise (the store does not know a mapped client key).
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from botocore.client import BaseClient

from testkit.backends import Store, new_bucket, rgw_tenant_user, s3_client
from testkit.shim import PATH_STYLE, Shim
from testkit.shim import s3_client as endpoint_client
from testkit.tap import Tap

ORIGIN = "http://app.test"
MAPPED_KEY, MAPPED_SECRET = "s3shimmappedclient", "s3shimmappedclientsecret0123"


@pytest.fixture(scope="module")
def tenant(rgw_store: Store) -> Store:
    return rgw_tenant_user(rgw_store)


@pytest.fixture(scope="module")
def shim_env(
    rgw_store: Store, tenant: Store, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """s3shim (the tapped fixture) with three clients: both RGW users as themselves, and one
    client key mapped onto the tenant user."""
    keys = tmp_path_factory.mktemp("tenant") / "clients.json"
    clients = [
        {"access_key_id": rgw_store.access_key, "secret_access_key": rgw_store.secret_key},
        {"access_key_id": tenant.access_key, "secret_access_key": tenant.secret_key},
        {
            "access_key_id": MAPPED_KEY,
            "secret_access_key": MAPPED_SECRET,
            "upstream_access_key_id": tenant.access_key,
            "upstream_secret_access_key": tenant.secret_key,
        },
    ]
    keys.write_text(json.dumps({"clients": clients}))
    return {"S3SHIM_CLIENT_KEYS_FILE": str(keys)}


@pytest.fixture(scope="module")
def bucket(tenant: Store) -> str:
    """A bucket of the tenant's, with a CORS rule for ORIGIN."""
    store: BaseClient = s3_client(tenant)
    name = new_bucket(tenant, "tenant")
    store.put_bucket_cors(
        Bucket=name,
        CORSConfiguration={
            "CORSRules": [
                {"AllowedOrigins": [ORIGIN], "AllowedMethods": ["PUT"], "AllowedHeaders": ["*"]}
            ]
        },
    )
    return name


def presigned_put(endpoint: str, access_key: str, secret_key: str, bucket: str, v4: bool) -> str:
    client = endpoint_client(
        endpoint, access_key, secret_key, signature_version="s3v4" if v4 else "s3", s3=PATH_STYLE
    )
    url: str = client.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=300
    )
    return url


def preflight(url: str, with_origin: bool) -> tuple[int, str | None, str | None]:
    headers = {"Origin": ORIGIN, "Access-Control-Request-Method": "PUT"} if with_origin else {}
    resp = requests.options(url, headers=headers, timeout=30)
    body = resp.content
    code = body[body.find(b"<Code>") + 6 : body.find(b"</Code>")].decode() if body else None
    return resp.status_code, code or None, resp.headers.get("Access-Control-Allow-Origin")


def last_request_head(tap: Tap, since: int) -> bytes:
    return tap.to_store()[since:].split(b"\r\n\r\n", 1)[0]


@pytest.mark.parametrize("with_origin", [True, False], ids=["browser", "no-origin"])
@pytest.mark.parametrize("v4", [True, False], ids=["sigv4-url", "sigv2-url"])
def test_a_tenant_s_presigned_preflight_answers_as_directly(
    tenant: Store, tapped: tuple[Shim, Tap], bucket: str, with_origin: bool, v4: bool
) -> None:
    shim, tap = tapped
    direct = preflight(
        presigned_put(tenant.endpoint, tenant.access_key, tenant.secret_key, bucket, v4),
        with_origin,
    )
    client_url = presigned_put(shim.endpoint, tenant.access_key, tenant.secret_key, bucket, v4)
    before = len(tap.to_store())
    through = preflight(client_url, with_origin)
    assert through == direct
    assert direct[0] == (200 if with_origin else 400)
    head = last_request_head(tap, before)
    # The client's own query, parameter for parameter; no credentials of s3shim's.
    method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ")
    sent, sent_to = urlsplit(target), urlsplit(client_url)
    assert (method, sent.path) == ("OPTIONS", sent_to.path)
    assert sorted(parse_qsl(sent.query)) == sorted(parse_qsl(sent_to.query))
    assert b"authorization" not in head.lower()


def test_a_mapped_client_key_s_preflight_carries_no_key_at_all(
    tenant: Store, tapped: tuple[Shim, Tap], bucket: str
) -> None:
    """The store does not know a mapped client key, and s3shim never puts a store key on a
    preflight: the parameters are stripped, and RGW looks in the default tenant (a
    documented difference: 404 NoSuchBucket where the tenant user's own URL gets 200)."""
    shim, tap = tapped
    url = presigned_put(shim.endpoint, MAPPED_KEY, MAPPED_SECRET, bucket, True)
    before = len(tap.to_store())
    status, code, _ = preflight(url, True)
    head = last_request_head(tap, before)
    assert head.startswith(f"OPTIONS /{bucket}/k HTTP/1.1\r\n".encode())
    for absent in (MAPPED_KEY, tenant.access_key, "X-Amz-", "authorization"):
        assert absent.encode().lower() not in head.lower()
    assert (status, code) == (404, "NoSuchBucket")


def test_the_tenant_user_is_a_tenant(tenant: Store, rgw_store: Store, bucket: str) -> None:
    """The fixture's premise: the main user does not see the tenant's bucket."""
    names = [b["Name"] for b in s3_client(rgw_store).list_buckets()["Buckets"]]
    assert bucket not in names
