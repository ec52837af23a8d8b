"""SigV2 (header and presigned query form) through s3shim works as it does against RGW.

s3shim verifies SigV2 exactly, then re-signs SigV4 for the store; each test runs with both
flags on and with both off. What a captured SigV2 request may add to its query, and its
clock, are test_sigv2_replays.py's.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from email.utils import formatdate
from urllib.parse import urlsplit

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from s3shim import sigv2
from testkit.backends import Store, new_bucket
from testkit.rawclient import send
from testkit.shim import PATH_STYLE, Shim, ShimStarter, client_of

pytestmark = pytest.mark.both_flags  # the module's s3shim: both flags on, then both off


def v2_client(endpoint: str, store: Store, **config: object) -> BaseClient:
    return client_of(store, endpoint=endpoint, signature_version="s3", s3=PATH_STYLE, **config)


def default_presigner(endpoint: str, store: Store) -> BaseClient:
    """boto3 as a user makes it (but one attempt): its presigner then signs SigV2 on a custom
    endpoint."""
    return client_of(store, endpoint=endpoint)


def fetch(url: str, method: str = "GET", data: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_the_default_presigned_url_is_sigv2_and_works_through_s3shim(
    rgw_store: Store, module_shim: Shim, store: BaseClient
) -> None:
    bucket = new_bucket(rgw_store)
    store.put_object(Bucket=bucket, Key="doc.txt", Body=b"presigned v2 body")
    results = []
    for endpoint in (rgw_store.endpoint, module_shim.endpoint):
        url = default_presigner(endpoint, rgw_store).generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": "doc.txt"}, ExpiresIn=300
        )
        assert "AWSAccessKeyId=" in url and "Signature=" in url  # SigV2, as users get it
        results.append(fetch(url))
    assert results[0] == results[1] == (200, b"presigned v2 body")
    line = next(
        e
        for e in module_shim.log_entries(until="sigv2-presigned")
        if e.get("auth") == "sigv2-presigned"
    )
    assert line["status"] == 200


def put_url(url: str, body: bytes) -> int:
    """PUT a body to a presigned URL with no Content-Type (as signed), like curl -T."""
    parts = urlsplit(url)
    return send(
        "PUT",
        f"http://{parts.netloc}",
        parts.path,
        {"content-length": str(len(body))},
        body=body,
        raw_query=parts.query,
    ).status


def test_a_sigv2_presigned_put_stores_the_same_bytes(
    rgw_store: Store, module_shim: Shim, store: BaseClient
) -> None:
    bucket = new_bucket(rgw_store)
    for endpoint, key in ((rgw_store.endpoint, "direct"), (module_shim.endpoint, "through")):
        url = default_presigner(endpoint, rgw_store).generate_presigned_url(
            "put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300
        )
        assert put_url(url, b"put by url " + key.encode()) == 200
    for key in ("direct", "through"):
        assert (
            store.get_object(Bucket=bucket, Key=key)["Body"].read() == b"put by url " + key.encode()
        )


def test_signed_amz_parameters_of_a_sigv2_url_reach_the_store_as_headers(
    rgw_store: Store, module_shim: Shim, store: BaseClient
) -> None:
    """botocore's presigner signs x-amz-acl as an amz header and moves it into the URL. RGW 16
    itself refuses such a URL (SignatureDoesNotMatch: it does not sign query amz parameters);
    through s3shim it verifies as AWS defines it and the store gets the ACL as a header."""
    bucket = new_bucket(rgw_store)
    urls = [
        default_presigner(endpoint, rgw_store).generate_presigned_url(
            "put_object",
            Params={"Bucket": bucket, "Key": "acl", "ACL": "public-read"},
            ExpiresIn=300,
        )
        for endpoint in (rgw_store.endpoint, module_shim.endpoint)
    ]
    assert "x-amz-acl=public-read" in urls[1]
    assert put_url(urls[0], b"acl") == 403  # RGW's own quirk, recorded here
    assert put_url(urls[1], b"acl") == 200
    assert store.get_object(Bucket=bucket, Key="acl")["Body"].read() == b"acl"
    assert send("GET", rgw_store.endpoint, f"/{bucket}/acl", {}).status == 200  # public-read


def test_a_tampered_sigv2_url_is_refused_like_the_store_does(
    rgw_store: Store, module_shim: Shim, store: BaseClient
) -> None:
    bucket = new_bucket(rgw_store)
    store.put_object(Bucket=bucket, Key="a", Body=b"a")
    store.put_object(Bucket=bucket, Key="b", Body=b"b")
    statuses = []
    for endpoint in (rgw_store.endpoint, module_shim.endpoint):
        url = default_presigner(endpoint, rgw_store).generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": "a"}, ExpiresIn=300
        )
        statuses.append(fetch(url.replace(f"/{bucket}/a?", f"/{bucket}/b?"))[0])
    assert statuses == [403, 403]


def test_boto3_with_sigv2_headers_works_through_s3shim(
    rgw_store: Store, module_shim: Shim, store: BaseClient
) -> None:
    bucket = new_bucket(rgw_store)
    body = b"\x00v2\xff" * 1000
    for endpoint, key in (
        (rgw_store.endpoint, "direct.bin"),
        (module_shim.endpoint, "through.bin"),
    ):
        client = v2_client(endpoint, rgw_store)
        client.put_object(Bucket=bucket, Key=key, Body=body, Metadata={"m": "1"})
        assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == body
        assert client.head_object(Bucket=bucket, Key=key)["Metadata"]["m"] == "1"
    for key in ("direct.bin", "through.bin"):
        assert store.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    v2_client(module_shim.endpoint, rgw_store).delete_object(Bucket=bucket, Key="through.bin")
    assert [o["Key"] for o in store.list_objects(Bucket=bucket)["Contents"]] == ["direct.bin"]


def test_sigv2_listing_works_through_s3shim(rgw_store: Store, module_shim: Shim) -> None:
    """boto3 signs a path-style bucket as '/bucket/' but sends '/bucket': RGW 16 refuses its
    SigV2 listings (SignatureDoesNotMatch); s3shim accepts both spellings of the same bucket."""
    bucket = new_bucket(rgw_store)
    client = v2_client(module_shim.endpoint, rgw_store)
    client.put_object(Bucket=bucket, Key="k1", Body=b"1")
    with pytest.raises(ClientError):
        v2_client(rgw_store.endpoint, rgw_store).list_objects(Bucket=bucket)
    listed = client.list_objects(Bucket=bucket, Prefix="k")
    assert [o["Key"] for o in listed["Contents"]] == ["k1"]


def test_a_wrong_sigv2_secret_is_refused_and_nothing_stored(
    rgw_store: Store, module_shim: Shim, store: BaseClient
) -> None:
    bucket = new_bucket(rgw_store)
    bad = Store(rgw_store.name, rgw_store.endpoint, rgw_store.access_key, "not-the-secret")
    for endpoint in (rgw_store.endpoint, module_shim.endpoint):
        with pytest.raises(ClientError) as info:
            v2_client(endpoint, bad).put_object(Bucket=bucket, Key="x", Body=b"x")
        assert info.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert "Contents" not in store.list_objects(Bucket=bucket)


def test_an_unsigned_sub_resource_is_refused(rgw_store: Store, module_shim: Shim) -> None:
    """SigV2 does not sign ?encryption: a captured request could be turned into another
    operation, which s3shim would sign with a store key. Refused (deliberately unlike RGW)."""
    bucket = new_bucket(rgw_store)
    date = formatdate(usegmt=True)
    to_sign = sigv2.string_to_sign("GET", f"/{bucket}", "encryption", {"date": [date]})
    sig = sigv2.sign(rgw_store.secret_key, to_sign)
    headers = {"date": date, "authorization": f"AWS {rgw_store.access_key}:{sig}"}
    reply = send("GET", module_shim.endpoint, f"/{bucket}", headers, query=[("encryption", "")])
    assert (reply.status, reply.code) == (403, "AccessDenied")
    # A listing parameter only filters what the signature allowed: it passes.
    to_sign = sigv2.string_to_sign("GET", f"/{bucket}", "", {"date": [date]})
    sig = sigv2.sign(rgw_store.secret_key, to_sign)
    headers["authorization"] = f"AWS {rgw_store.access_key}:{sig}"
    reply = send("GET", module_shim.endpoint, f"/{bucket}", headers, query=[("prefix", "x")])
    assert reply.status == 200


def test_sigv2_can_be_refused_by_setting(rgw_store: Store, start_shim: ShimStarter) -> None:
    bucket = new_bucket(rgw_store)
    with start_shim(env={"S3SHIM_ALLOW_SIGV2": "false"}) as shim:
        with pytest.raises(ClientError) as info:
            v2_client(shim.endpoint, rgw_store).list_objects(Bucket=bucket)
        assert info.value.response["Error"]["Code"] == "AccessDenied"
