"""Drop-in: anonymous access, CORS, signing regions and request ids work through s3shim as
they do directly against the real RGW — same status, same error code, same stored bytes (read
from the store itself) — and what s3shim forwards unverified carries no credentials."""

from __future__ import annotations

import json

import pytest
from botocore.client import BaseClient

from testkit.backends import Store, new_bucket
from testkit.helpers import crc32_b64, stored
from testkit.rawclient import Reply, send, sign
from testkit.shim import Shim, ShimStarter, flags_on
from testkit.tap import Tap, wire_tap

ORIGIN = "http://app.test:8000"
EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

# Every test through the tapped s3shim runs with both flags on and both off (every store user
# keeping its own key).
pytestmark = pytest.mark.both_flags


@pytest.fixture(scope="module")
def public(rgw_store: Store, store: BaseClient) -> str:
    """A public-read-write bucket with a CORS rule, a public object and a private one."""
    bucket = new_bucket(rgw_store)
    store.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    store.put_object(Bucket=bucket, Key="open.txt", Body=b"for everyone", ACL="public-read")
    store.put_object(Bucket=bucket, Key="closed.txt", Body=b"not for you")
    store.put_bucket_cors(
        Bucket=bucket,
        CORSConfiguration={
            "CORSRules": [
                {
                    "AllowedOrigins": [ORIGIN],
                    "AllowedMethods": ["GET", "PUT", "POST"],
                    "AllowedHeaders": ["*"],
                    "ExposeHeaders": ["ETag"],
                    "MaxAgeSeconds": 600,
                }
            ]
        },
    )
    return bucket


def both(
    rgw_store: Store,
    shim: Shim,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> tuple[Reply, Reply]:
    """The same unsigned request, directly to RGW and through s3shim."""
    return (
        send(method, rgw_store.endpoint, path, dict(headers or {}), body=body),
        send(method, shim.endpoint, path, dict(headers or {}), body=body),
    )


@pytest.mark.parametrize(
    ("method", "key", "status", "code"),
    [
        ("GET", "open.txt", 200, None),
        ("HEAD", "open.txt", 200, None),
        ("GET", "closed.txt", 403, "AccessDenied"),
        ("GET", "missing.txt", 404, "NoSuchKey"),
    ],
)
def test_anonymous_object_reads_answer_as_the_store_does(
    rgw_store: Store,
    tapped: tuple[Shim, Tap],
    public: str,
    method: str,
    key: str,
    status: int,
    code: str | None,
) -> None:
    direct, through = both(rgw_store, tapped[0], method, f"/{public}/{key}")
    assert (direct.status, direct.code) == (status, code)
    assert (through.status, through.code) == (direct.status, direct.code)
    assert through.body == direct.body or code is not None  # error bodies carry request ids
    if status == 200:
        assert through.headers["etag"] == direct.headers["etag"]


def test_anonymous_requests_for_a_missing_bucket_get_the_stores_404(
    rgw_store: Store, tapped: tuple[Shim, Tap]
) -> None:
    direct, through = both(rgw_store, tapped[0], "GET", "/no-such-bucket-s3shim/x")
    assert (direct.status, direct.code) == (404, "NoSuchBucket")
    assert (through.status, through.code) == (404, "NoSuchBucket")


def test_anonymous_listing_of_a_public_bucket(
    rgw_store: Store, tapped: tuple[Shim, Tap], public: str
) -> None:
    direct, through = both(rgw_store, tapped[0], "GET", f"/{public}?list-type=2")
    assert direct.status == through.status == 200
    assert b"<Key>open.txt</Key>" in through.body and b"<Key>closed.txt</Key>" in through.body


def test_anonymous_put_into_a_public_bucket_stores_the_same_bytes(
    rgw_store: Store, tapped: tuple[Shim, Tap], public: str, store: BaseClient
) -> None:
    shim, tap = tapped
    body = b"anonymous upload \x00\xff" * 100
    crc = crc32_b64(body)
    headers = {
        "x-amz-checksum-crc32": crc,
        "content-type": "text/plain",
        "content-length": str(len(body)),
    }
    direct = send("PUT", rgw_store.endpoint, f"/{public}/anon-direct", headers, body=body)
    before = len(tap.to_store())
    through = send("PUT", shim.endpoint, f"/{public}/anon-through", headers, body=body)
    assert direct.status == through.status == 200
    assert stored(store, public, "anon-direct") == stored(store, public, "anon-through") == body
    # No credential of any kind reached the store with it.
    wire = tap.to_store()[before:].lower()
    assert b"authorization:" not in wire and b"x-amz-date:" not in wire
    assert b"x-amz-content-sha256:" not in wire
    # The flag drops the (verified) checksum; without it the store gets the client's header.
    assert (b"x-amz-checksum-crc32:" in wire) is not flags_on(shim)


def test_an_anonymous_put_with_a_wrong_checksum_is_refused_and_nothing_stored(
    rgw_store: Store, tapped: tuple[Shim, Tap], public: str, store: BaseClient
) -> None:
    body = b"x" * 1000
    wrong = crc32_b64(b"other")
    through = send(
        "PUT",
        tapped[0].endpoint,
        f"/{public}/anon-bad",
        {"x-amz-checksum-crc32": wrong, "content-length": str(len(body))},
        body=body,
    )
    assert (through.status, through.code) == (400, "BadDigest")
    assert stored(store, public, "anon-bad") is None


def test_anonymous_requests_can_be_refused_by_setting(
    rgw_store: Store, public: str, start_shim: ShimStarter
) -> None:
    with (
        wire_tap(rgw_store.endpoint) as tap,
        start_shim(via=tap.endpoint, env={"S3SHIM_ALLOW_ANONYMOUS": "false"}) as shim,
    ):
        reply = send("GET", shim.endpoint, f"/{public}/open.txt", {})
        assert (reply.status, reply.code) == (403, "AccessDenied")
        assert tap.to_store() == b""


@pytest.mark.parametrize(
    ("origin", "method"), [(ORIGIN, "PUT"), (ORIGIN, "GET"), ("http://evil.test", "PUT")]
)
def test_cors_preflight_is_answered_by_the_store(
    rgw_store: Store, tapped: tuple[Shim, Tap], public: str, origin: str, method: str
) -> None:
    shim, tap = tapped
    headers = {
        "origin": origin,
        "access-control-request-method": method,
        "access-control-request-headers": "content-type,x-amz-checksum-crc32",
    }
    path = f"/{public}/upload.bin"
    direct = send("OPTIONS", rgw_store.endpoint, path, headers)
    before = len(tap.to_store())
    through = send("OPTIONS", shim.endpoint, path, headers)
    assert through.status == direct.status
    assert direct.status == (200 if origin == ORIGIN else 403)
    for name in (
        "access-control-allow-origin",
        "access-control-allow-methods",
        "access-control-allow-headers",
        "access-control-max-age",
    ):
        assert through.headers.get(name) == direct.headers.get(name), name
    wire = tap.to_store()[before:].lower()
    assert wire.startswith(b"options ") and b"authorization:" not in wire


def test_signed_requests_keep_the_stores_cors_response_headers(
    rgw_store: Store, tapped: tuple[Shim, Tap], public: str
) -> None:
    shim = tapped[0]
    path = f"/{public}/open.txt"
    replies = []
    for endpoint, key, secret in (
        (rgw_store.endpoint, rgw_store.access_key, rgw_store.secret_key),
        (shim.endpoint, shim.access_key, shim.secret_key),
    ):
        headers = sign(
            "GET", endpoint, path, access_key=key, secret_key=secret, headers={"origin": ORIGIN}
        )
        replies.append(send("GET", endpoint, path, headers))
    direct, through = replies
    assert direct.status == through.status == 200 and through.body == b"for everyone"
    assert through.headers.get("access-control-allow-origin") == ORIGIN
    assert through.headers.get("access-control-expose-headers") == direct.headers.get(
        "access-control-expose-headers"
    )


@pytest.mark.parametrize("region", ["default", "US", "eu-west-1"])
def test_any_signing_region_works_as_it_does_directly(
    rgw_store: Store, tapped: tuple[Shim, Tap], public: str, region: str
) -> None:
    shim = tapped[0]
    replies = []
    for endpoint in (rgw_store.endpoint, shim.endpoint):
        headers = sign(
            "GET",
            endpoint,
            f"/{public}",
            access_key=shim.access_key,
            secret_key=shim.secret_key,
            region=region,
            headers={"x-amz-content-sha256": EMPTY},
        )
        replies.append(send("GET", endpoint, f"/{public}", headers))
    assert replies[0].status == replies[1].status == 200
    assert b"open.txt" in replies[1].body


def test_a_store_error_carries_one_request_id_in_header_and_body(
    tapped: tuple[Shim, Tap], public: str
) -> None:
    shim = tapped[0]
    path = f"/{public}/missing-signed"
    reply = send(
        "GET",
        shim.endpoint,
        path,
        sign("GET", shim.endpoint, path, access_key=shim.access_key, secret_key=shim.secret_key),
    )
    assert (reply.status, reply.code) == (404, "NoSuchKey")
    rid = reply.headers["x-amz-request-id"]
    assert f"<RequestId>{rid}</RequestId>".encode() in reply.body
    line = next(e for e in shim.log_entries(until=rid) if e.get("upstream_request_id") == rid)
    assert line["request_id"] != rid and line["auth"] == "sigv4"
    anon = send("GET", shim.endpoint, f"/{public}/open.txt", {})
    rid = anon.headers["x-amz-request-id"]
    line = next(e for e in shim.log_entries(until=rid) if e.get("upstream_request_id") == rid)
    assert line["auth"] == "anonymous" and "access_key" not in line


def test_an_s3shim_error_carries_s3shims_own_id(tapped: tuple[Shim, Tap], public: str) -> None:
    shim = tapped[0]
    path = f"/{public}/x"
    headers = sign("GET", shim.endpoint, path, access_key=shim.access_key, secret_key="wrong")
    reply = send("GET", shim.endpoint, path, headers)
    assert (reply.status, reply.code) == (403, "SignatureDoesNotMatch")
    rid = reply.headers["x-amz-request-id"]
    assert f"<RequestId>{rid}</RequestId>".encode() in reply.body
    entries = shim.log_entries(until=rid)
    assert any(e.get("request_id") == rid for e in entries)
    assert json.dumps(entries)  # every line parsed as JSON
