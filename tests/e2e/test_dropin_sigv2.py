"""SigV2 (header and presigned query form) through s3shim works as it does against RGW.

s3shim verifies SigV2 exactly, then re-signs SigV4 for the store. A SigV2 request's query is
forwarded only when it holds nothing but the sub-resources SigV2 signs and listing
parameters (sigv2.accepted_param): anything else could be added to a captured request, and
RGW runs it (GetUsage, metadata search, AppendObject, query x-amz-meta-* as metadata).
The header form's clock is checked before its signature, as RGW does.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from urllib.parse import quote, urlsplit

import boto3
import pytest
from botocore.client import BaseClient
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from s3shim import sigv2
from s3shim.integrity import RECORD_HEADER
from testkit.backends import Store, new_bucket, s3_client
from testkit.helpers import stored
from testkit.rawclient import Reply, send
from testkit.shim import FLAG_IDS, FLAGS, Shim, run_shim, run_shim_flags
from testkit.tap import Tap, wire_tap


def v2_client(endpoint: str, store: Store, **config: object) -> BaseClient:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=store.access_key,
        aws_secret_access_key=store.secret_key,
        region_name="us-east-1",
        config=BotoConfig(signature_version="s3", s3={"addressing_style": "path"}, **config),
    )


def default_presigner(endpoint: str, store: Store) -> BaseClient:
    """boto3 exactly as a user makes it: its presigner then signs SigV2 on a custom endpoint."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=store.access_key,
        aws_secret_access_key=store.secret_key,
        region_name="us-east-1",
    )


def fetch(url: str, method: str = "GET", data: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.fixture(scope="module", params=FLAGS, ids=FLAG_IDS)
def shim2(
    request: pytest.FixtureRequest, rgw_store: Store, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Shim]:
    """s3shim in front of RGW with both flags on, and with both off."""
    with run_shim_flags(
        rgw_store.endpoint,
        rgw_store.access_key,
        rgw_store.secret_key,
        tmp_path_factory.mktemp("sigv2"),
        request.param,
    ) as shim:
        yield shim


@pytest.fixture(scope="module")
def store(rgw_store: Store) -> BaseClient:
    return s3_client(rgw_store)


def test_the_default_presigned_url_is_sigv2_and_works_through_s3shim(
    rgw_store: Store, shim2: Shim, store: BaseClient
) -> None:
    bucket = new_bucket(rgw_store)
    store.put_object(Bucket=bucket, Key="doc.txt", Body=b"presigned v2 body")
    results = []
    for endpoint in (rgw_store.endpoint, shim2.endpoint):
        url = default_presigner(endpoint, rgw_store).generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": "doc.txt"}, ExpiresIn=300
        )
        assert "AWSAccessKeyId=" in url and "Signature=" in url  # SigV2, as users get it
        results.append(fetch(url))
    assert results[0] == results[1] == (200, b"presigned v2 body")
    line = next(
        e for e in shim2.log_entries(until="sigv2-presigned") if e.get("auth") == "sigv2-presigned"
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
    rgw_store: Store, shim2: Shim, store: BaseClient
) -> None:
    bucket = new_bucket(rgw_store)
    for endpoint, key in ((rgw_store.endpoint, "direct"), (shim2.endpoint, "through")):
        url = default_presigner(endpoint, rgw_store).generate_presigned_url(
            "put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300
        )
        assert put_url(url, b"put by url " + key.encode()) == 200
    for key in ("direct", "through"):
        assert (
            store.get_object(Bucket=bucket, Key=key)["Body"].read() == b"put by url " + key.encode()
        )


def test_signed_amz_parameters_of_a_sigv2_url_reach_the_store_as_headers(
    rgw_store: Store, shim2: Shim, store: BaseClient
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
        for endpoint in (rgw_store.endpoint, shim2.endpoint)
    ]
    assert "x-amz-acl=public-read" in urls[1]
    assert put_url(urls[0], b"acl") == 403  # RGW's own quirk, recorded here
    assert put_url(urls[1], b"acl") == 200
    assert store.get_object(Bucket=bucket, Key="acl")["Body"].read() == b"acl"
    assert send("GET", rgw_store.endpoint, f"/{bucket}/acl", {}).status == 200  # public-read


def test_a_tampered_sigv2_url_is_refused_like_the_store_does(
    rgw_store: Store, shim2: Shim, store: BaseClient
) -> None:
    bucket = new_bucket(rgw_store)
    store.put_object(Bucket=bucket, Key="a", Body=b"a")
    store.put_object(Bucket=bucket, Key="b", Body=b"b")
    statuses = []
    for endpoint in (rgw_store.endpoint, shim2.endpoint):
        url = default_presigner(endpoint, rgw_store).generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": "a"}, ExpiresIn=300
        )
        statuses.append(fetch(url.replace(f"/{bucket}/a?", f"/{bucket}/b?"))[0])
    assert statuses == [403, 403]


def test_boto3_with_sigv2_headers_works_through_s3shim(
    rgw_store: Store, shim2: Shim, store: BaseClient
) -> None:
    bucket = new_bucket(rgw_store)
    body = b"\x00v2\xff" * 1000
    for endpoint, key in ((rgw_store.endpoint, "direct.bin"), (shim2.endpoint, "through.bin")):
        client = v2_client(endpoint, rgw_store)
        client.put_object(Bucket=bucket, Key=key, Body=body, Metadata={"m": "1"})
        assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == body
        assert client.head_object(Bucket=bucket, Key=key)["Metadata"]["m"] == "1"
    for key in ("direct.bin", "through.bin"):
        assert store.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    v2_client(shim2.endpoint, rgw_store).delete_object(Bucket=bucket, Key="through.bin")
    assert [o["Key"] for o in store.list_objects(Bucket=bucket)["Contents"]] == ["direct.bin"]


def test_sigv2_listing_works_through_s3shim(rgw_store: Store, shim2: Shim) -> None:
    """boto3 signs a path-style bucket as '/bucket/' but sends '/bucket': RGW 16 refuses its
    SigV2 listings (SignatureDoesNotMatch); s3shim accepts both spellings of the same bucket."""
    bucket = new_bucket(rgw_store)
    client = v2_client(shim2.endpoint, rgw_store)
    client.put_object(Bucket=bucket, Key="k1", Body=b"1")
    with pytest.raises(ClientError):
        v2_client(rgw_store.endpoint, rgw_store).list_objects(Bucket=bucket)
    listed = client.list_objects(Bucket=bucket, Prefix="k")
    assert [o["Key"] for o in listed["Contents"]] == ["k1"]


def test_a_wrong_sigv2_secret_is_refused_and_nothing_stored(
    rgw_store: Store, shim2: Shim, store: BaseClient
) -> None:
    bucket = new_bucket(rgw_store)
    bad = Store(rgw_store.name, rgw_store.endpoint, rgw_store.access_key, "not-the-secret")
    for endpoint in (rgw_store.endpoint, shim2.endpoint):
        with pytest.raises(ClientError) as info:
            v2_client(endpoint, bad).put_object(Bucket=bucket, Key="x", Body=b"x")
        assert info.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert "Contents" not in store.list_objects(Bucket=bucket)


def test_an_unsigned_sub_resource_is_refused(rgw_store: Store, shim2: Shim) -> None:
    """SigV2 does not sign ?encryption: a captured request could be turned into another
    operation, which s3shim would sign with a store key. Refused (deliberately unlike RGW)."""
    bucket = new_bucket(rgw_store)
    date = formatdate(usegmt=True)
    to_sign = sigv2.string_to_sign("GET", f"/{bucket}", "encryption", {"date": [date]})
    sig = sigv2.sign(rgw_store.secret_key, to_sign)
    headers = {"date": date, "authorization": f"AWS {rgw_store.access_key}:{sig}"}
    reply = send("GET", shim2.endpoint, f"/{bucket}", headers, query=[("encryption", "")])
    assert (reply.status, reply.code) == (403, "AccessDenied")
    # A listing parameter only filters what the signature allowed: it passes.
    to_sign = sigv2.string_to_sign("GET", f"/{bucket}", "", {"date": [date]})
    sig = sigv2.sign(rgw_store.secret_key, to_sign)
    headers["authorization"] = f"AWS {rgw_store.access_key}:{sig}"
    reply = send("GET", shim2.endpoint, f"/{bucket}", headers, query=[("prefix", "x")])
    assert reply.status == 200


def test_sigv2_can_be_refused_by_setting(rgw_store: Store, tmp_path: Path) -> None:
    bucket = new_bucket(rgw_store)
    with run_shim(
        rgw_store.endpoint,
        rgw_store.access_key,
        rgw_store.secret_key,
        tmp_path,
        env={"S3SHIM_ALLOW_SIGV2": "false"},
    ) as shim:
        with pytest.raises(ClientError) as info:
            v2_client(shim.endpoint, rgw_store).list_objects(Bucket=bucket)
        assert info.value.response["Error"]["Code"] == "AccessDenied"


# -- what a replayed SigV2 request may add to its query ------------------------------------


def v2_signed(
    store: Store,
    method: str,
    path: str,
    *,
    form: str,
    headers: dict[str, str] | None = None,
    date: str | None = None,
    secret: str | None = None,
    access_key: str | None = None,
    expires: int | None = None,
) -> tuple[dict[str, str], str]:
    """(headers, raw query) of a SigV2 request over ``method`` and ``path`` with no query of
    its own, as a man in the middle captures it. ``form`` "header" (Date unless ``date``) or
    "query" (Expires in 5 minutes unless ``expires``)."""
    h = dict(headers or {})
    key = access_key or store.access_key
    lists = {k: [v] for k, v in h.items()}
    if form == "header":
        h["date"] = date if date is not None else formatdate(usegmt=True)
        lists["date"] = [h["date"]]
        to_sign = sigv2.string_to_sign(method, path, "", lists)
        h["authorization"] = f"AWS {key}:{sigv2.sign(secret or store.secret_key, to_sign)}"
        return h, ""
    when = str(expires if expires is not None else int(time.time()) + 300)
    to_sign = sigv2.string_to_sign(method, path, "", lists, expires=when)
    sig = sigv2.sign(secret or store.secret_key, to_sign)
    return h, f"AWSAccessKeyId={quote(key)}&Expires={when}&Signature={quote(sig, safe='')}"


def replay(
    endpoint: str,
    method: str,
    path: str,
    captured: tuple[dict[str, str], str],
    added: str,
    body: bytes = b"",
) -> Reply:
    """Send a captured SigV2 request with ``added`` (raw) appended to its query."""
    headers, query = captured
    if method == "PUT":
        headers = {**headers, "content-length": str(len(body))}
    raw = "&".join(q for q in (query, added) if q)
    return send(method, endpoint, path, headers, raw_query=raw, body=body)


@pytest.fixture(scope="module")
def tapped(
    rgw_store: Store, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Shim, Tap]]:
    """s3shim in front of RGW through a wire tap that records what RGW gets."""
    with (
        wire_tap(rgw_store.endpoint) as tap,
        run_shim(
            tap.endpoint,
            rgw_store.access_key,
            rgw_store.secret_key,
            tmp_path_factory.mktemp("sigv2-tap"),
        ) as shim,
    ):
        yield shim, tap


def keys(store: BaseClient, bucket: str) -> list[str]:
    return [o["Key"] for o in store.list_objects(Bucket=bucket).get("Contents", [])]


# A captured request, what a replay adds to its query, and what RGW itself does with it
# (status and a piece of its answer): each runs an operation the signature never allowed.
REPLAYS = [
    ("usage", "GET", "/", "usage", 200, b"<Usage>"),
    ("mdsearch", "GET", "/{bucket}", "mdsearch", 200, b"<GetBucketMetaSearchResult>"),
    ("append", "PUT", "/{bucket}/{key}", "append&position=0", 200, b""),
    ("layout", "GET", "/{bucket}/existing", "layout", 403, b"<Code>AccessDenied</Code>"),
    ("query-meta", "PUT", "/{bucket}/{key}", "x-amz-meta-evil=injected", 200, b""),
]


@pytest.mark.parametrize("form", ["header", "query"])
@pytest.mark.parametrize(
    ("added", "method", "template", "raw", "rgw_status", "rgw_says"),
    REPLAYS,
    ids=[r[0] for r in REPLAYS],
)
def test_a_replayed_sigv2_request_with_an_unsigned_parameter_never_reaches_the_store(
    rgw_store: Store,
    tapped: tuple[Shim, Tap],
    store: BaseClient,
    form: str,
    added: str,
    method: str,
    template: str,
    raw: str,
    rgw_status: int,
    rgw_says: bytes,
) -> None:
    """Refused by s3shim, deliberately unlike RGW, which runs what it is handed."""
    shim, tap = tapped
    bucket = new_bucket(rgw_store)
    store.put_object(Bucket=bucket, Key="existing", Body=b"existing")
    body = b"signed body" if method == "PUT" else b""

    def path(key: str) -> str:
        return template.format(bucket=bucket, key=key)

    code = "AccessDenied"
    if form == "query" and raw.startswith("x-amz-"):
        # RGW 16 and s3shim both count a query x-amz-* parameter into a query-form
        # signature: one added to a captured URL fails it, directly and through.
        rgw_status, rgw_says = 403, b"<Code>SignatureDoesNotMatch</Code>"
        code = "SignatureDoesNotMatch"

    direct = replay(
        rgw_store.endpoint,
        method,
        path("direct"),
        v2_signed(rgw_store, method, path("direct"), form=form),
        raw,
        body,
    )
    assert direct.status == rgw_status and rgw_says in direct.body, direct.body[:300]
    before_keys = keys(store, bucket)
    captured = v2_signed(rgw_store, method, path("through"), form=form)
    before = len(tap.to_store())
    through = replay(shim.endpoint, method, path("through"), captured, raw, body)
    assert (through.status, through.code) == (403, code), through.body[:300]
    assert tap.to_store()[before:] == b""  # the store never heard of it
    assert keys(store, bucket) == before_keys
    assert stored(store, bucket, "through") is None
    # The request as signed still works, and does what it was signed for.
    before = len(tap.to_store())
    as_signed = replay(shim.endpoint, method, path("through"), captured, "", body)
    assert as_signed.status == 200, as_signed.body[:300]
    wire = tap.to_store()[before:]
    request_line = wire.split(b"\r\n", 1)[0].decode()
    assert request_line == f"{method} {path('through')} HTTP/1.1"
    if method == "PUT":
        assert stored(store, bucket, "through") == body
        assert signed_metadata(store, bucket, "through") == {}


def signed_metadata(store: BaseClient, bucket: str, key: str) -> dict[str, str]:
    """The object's user metadata on the store, less the checksum s3shim records itself."""
    meta = store.head_object(Bucket=bucket, Key=key)["Metadata"]
    return {k: v for k, v in meta.items() if "x-amz-meta-" + k != RECORD_HEADER}


def _hour_ago() -> str:
    return formatdate(time.time() - 3600, usegmt=True)


@pytest.mark.parametrize(
    ("date", "code"),
    [
        (_hour_ago, "RequestTimeTooSkewed"),
        (lambda: formatdate(time.time() + 3600, usegmt=True), "RequestTimeTooSkewed"),
        (lambda: "garbage", "AccessDenied"),  # unreadable: RGW's AccessDenied
        (lambda: "Mon, 01 Jan 1900 00:00:00 GMT", "AccessDenied"),  # before 1970: unreadable
    ],
    ids=["an-hour-ago", "an-hour-ahead", "garbage", "1900"],
)
@pytest.mark.parametrize("signature", ["good", "wrong-secret", "unknown-key"])
def test_the_sigv2_clock_is_checked_before_the_signature_like_rgw(
    rgw_store: Store,
    tapped: tuple[Shim, Tap],
    store: BaseClient,
    date: object,
    code: str,
    signature: str,
) -> None:
    """RGW answers a header-form request out of its clock without looking at the key or the
    signature; so does s3shim, before anything reaches the store."""
    shim, tap = tapped
    bucket = new_bucket(rgw_store)
    assert callable(date)
    secret = "not-the-secret" if signature == "wrong-secret" else None
    key = "NOSUCHKEY0000000" if signature == "unknown-key" else None
    outcomes = []
    for endpoint in (rgw_store.endpoint, shim.endpoint):
        captured = v2_signed(
            rgw_store,
            "PUT",
            f"/{bucket}/k",
            form="header",
            date=date(),
            secret=secret,
            access_key=key,
        )
        before = len(tap.to_store())
        reply = replay(endpoint, "PUT", f"/{bucket}/k", captured, "", b"late")
        if endpoint == shim.endpoint:
            assert tap.to_store()[before:] == b""
        outcomes.append((reply.status, reply.code))
    assert outcomes == [(403, code), (403, code)]
    assert stored(store, bucket, "k") is None


@pytest.mark.parametrize(
    ("secret", "access_key"),
    [(None, None), ("not-the-secret", None), (None, "NOSUCHKEY")],
    ids=["signed", "wrong-secret", "unknown-key"],
)
def test_an_expired_sigv2_url_is_refused_like_rgw(
    rgw_store: Store,
    tapped: tuple[Shim, Tap],
    store: BaseClient,
    secret: str | None,
    access_key: str | None,
) -> None:
    """The clock first: RGW answers an expired URL AccessDenied whatever signed it."""
    shim, tap = tapped
    bucket = new_bucket(rgw_store)
    outcomes = []
    for endpoint in (rgw_store.endpoint, shim.endpoint):
        captured = v2_signed(
            rgw_store,
            "PUT",
            f"/{bucket}/k",
            form="query",
            expires=int(time.time()) - 60,
            secret=secret,
            access_key=access_key,
        )
        before = len(tap.to_store())
        reply = replay(endpoint, "PUT", f"/{bucket}/k", captured, "", b"late")
        if endpoint == shim.endpoint:
            assert tap.to_store()[before:] == b""
        outcomes.append((reply.status, reply.code))
    assert outcomes == [(403, "AccessDenied"), (403, "AccessDenied")]
    assert stored(store, bucket, "k") is None
