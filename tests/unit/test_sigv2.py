"""SigV2 (s3shim/sigv2.py) against AWS's documented examples, botocore's own signers
(HmacV1Auth, HmacV1QueryAuth, boto3's clients and its default presigner) and every refusal.

The documented examples come from S3's "Signing and authenticating REST requests" page as
published in github.com/awsdocs: the requests and StringToSigns of the developer guide
(doc_source/RESTAuthentication.md, bucket ``awsexamplebucket1``), with the signatures of the
user guide's copy, which recomputed them for that bucket. Where the page contradicts itself
the test says so and follows the page's normative text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import boto3
import pytest
from botocore.auth import HmacV1Auth, HmacV1QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from s3shim import errors, sigv2

DOC_KEY = "AKIAIOSFODNN7EXAMPLE"
DOC_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
KEY = "AKIDV2CLIENT"
SECRET = "v2 secret/+=&~%ü"
KEYS = {DOC_KEY: DOC_SECRET, KEY: SECRET}
NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
HTTP_DATE = "Wed, 25 Nov 2026 12:00:00 GMT"

Hdrs = dict[str, list[str]]


def _hdrs(*pairs: tuple[str, str]) -> Hdrs:
    out: Hdrs = {}
    for name, value in pairs:
        out.setdefault(name.lower(), []).append(value)
    return out


def _verify(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Hdrs,
    *,
    now: datetime = NOW,
    bucket: str | None = None,
) -> sigv2.V2Context:
    return sigv2.verify(
        method=method,
        raw_path=raw_path,
        raw_query=raw_query,
        headers=headers,
        lookup=KEYS.get,
        now=now,
        bucket_from_host=bucket,
    )


@contextmanager
def _refused(code: str, message: str | None = None) -> Iterator[None]:
    with pytest.raises(errors.S3Error) as info:
        yield
    assert info.value.code == code, info.value
    if message is not None:
        assert info.value.message == message


# -- AWS's documented examples ------------------------------------------------------------

DOC_EXAMPLES: list[dict[str, Any]] = [
    {
        "id": "object-get",
        "method": "GET",
        "path": "/photos/puppy.jpg",
        "query": "",
        "bucket": "awsexamplebucket1",
        "headers": [("Date", "Tue, 27 Mar 2007 19:36:42 +0000")],
        "sts": "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/awsexamplebucket1/photos/puppy.jpg",
        "sig": "qgk2+6Sv9/oM7G3qLEjTH1a1l1g=",
    },
    {
        "id": "object-put",
        "method": "PUT",
        "path": "/photos/puppy.jpg",
        "query": "",
        "bucket": "awsexamplebucket1",
        "headers": [
            ("Content-Type", "image/jpeg"),
            ("Content-Length", "94328"),
            ("Date", "Tue, 27 Mar 2007 21:15:45 +0000"),
        ],
        "sts": "PUT\n\nimage/jpeg\nTue, 27 Mar 2007 21:15:45 +0000\n"
        "/awsexamplebucket1/photos/puppy.jpg",
        "sig": "iqRzw+ileNPu1fhspnRs8nOjjIA=",
    },
    {
        "id": "list",
        "method": "GET",
        "path": "/",
        "query": "prefix=photos&max-keys=50&marker=puppy",
        "bucket": "awsexamplebucket1",
        "headers": [("User-Agent", "Mozilla/5.0"), ("Date", "Tue, 27 Mar 2007 19:42:41 +0000")],
        "sts": "GET\n\n\nTue, 27 Mar 2007 19:42:41 +0000\n/awsexamplebucket1/",
        "sig": "m0WP8eCtspQl5Ahe6L1SozdX9YA=",
    },
    {
        "id": "fetch-acl",
        "method": "GET",
        "path": "/",
        "query": "acl",
        "bucket": "awsexamplebucket1",
        "headers": [("Date", "Tue, 27 Mar 2007 19:44:46 +0000")],
        "sts": "GET\n\n\nTue, 27 Mar 2007 19:44:46 +0000\n/awsexamplebucket1/?acl",
        "sig": "82ZHiFIjc+WbcwFKGUVEQspPn+0=",
    },
    {
        # The developer guide's hosts and addresses (static.awsexamplebucket1.net); the user
        # guide renamed them to example.com but kept this signature, which is for these.
        "id": "upload-metadata",
        "method": "PUT",
        "path": "/db-backup.dat.gz",
        "query": "",
        "bucket": "static.awsexamplebucket1.net",
        "headers": [
            ("User-Agent", "curl/7.15.5"),
            ("Date", "Tue, 27 Mar 2007 21:06:08 +0000"),
            ("x-amz-acl", "public-read"),
            ("content-type", "application/x-download"),
            ("Content-MD5", "4gJE4saaMU4BqNR0kLY+lw=="),
            ("X-Amz-Meta-ReviewedBy", "joe@awsexamplebucket1.net"),
            ("X-Amz-Meta-ReviewedBy", "jane@awsexamplebucket1.net"),
            ("X-Amz-Meta-FileChecksum", "0x02661779"),
            ("X-Amz-Meta-ChecksumAlgorithm", "crc32"),
            ("Content-Disposition", "attachment; filename=database.dat"),
            ("Content-Encoding", "gzip"),
            ("Content-Length", "5913339"),
        ],
        "sts": "PUT\n4gJE4saaMU4BqNR0kLY+lw==\napplication/x-download\n"
        "Tue, 27 Mar 2007 21:06:08 +0000\n"
        "x-amz-acl:public-read\nx-amz-meta-checksumalgorithm:crc32\n"
        "x-amz-meta-filechecksum:0x02661779\n"
        "x-amz-meta-reviewedby:joe@awsexamplebucket1.net,jane@awsexamplebucket1.net\n"
        "/static.awsexamplebucket1.net/db-backup.dat.gz",
        "sig": "dKZcB+bz2EPXgSdXZp9ozGeOM4I=",
    },
    {
        "id": "list-all-buckets",
        "method": "GET",
        "path": "/",
        "query": "",
        "bucket": None,
        "headers": [("Date", "Wed, 28 Mar 2007 01:29:59 +0000")],
        "sts": "GET\n\n\nWed, 28 Mar 2007 01:29:59 +0000\n/",
        "sig": "qGdzdERIC03wnaRNKh6OqZehG9s=",
    },
    {
        "id": "unicode-keys",
        "method": "GET",
        "path": "/dictionary/fran%C3%A7ais/pr%c3%a9f%c3%a8re",
        "query": "",
        "bucket": None,
        "headers": [("Date", "Wed, 28 Mar 2007 01:49:49 +0000")],
        "sts": "GET\n\n\nWed, 28 Mar 2007 01:49:49 +0000\n"
        "/dictionary/fran%C3%A7ais/pr%c3%a9f%c3%a8re",
        "sig": "DNEZGsoieTZ92F3bUfSPQcbGmlM=",
    },
]


def _doc_now(headers: list[tuple[str, str]]) -> datetime:
    date = sigv2.parse_date(dict(headers)["Date"])
    assert date is not None
    return date


@pytest.mark.parametrize("ex", DOC_EXAMPLES, ids=[e["id"] for e in DOC_EXAMPLES])
def test_documented_header_examples(ex: dict[str, Any]) -> None:
    headers = _hdrs(*ex["headers"])
    sts = sigv2.string_to_sign(
        ex["method"], ex["path"], ex["query"], headers, bucket_from_host=ex["bucket"]
    )
    assert sts == ex["sts"]
    assert sigv2.sign(DOC_SECRET, sts) == ex["sig"]
    headers["authorization"] = [f"AWS {DOC_KEY}:{ex['sig']}"]
    ctx = _verify(
        ex["method"],
        ex["path"],
        ex["query"],
        headers,
        now=_doc_now(ex["headers"]),
        bucket=ex["bucket"],
    )
    assert (ctx.access_key, ctx.form, ctx.string_to_sign) == (DOC_KEY, "header", ex["sts"])


def test_documented_list_example_leaves_its_listing_parameters_unsigned() -> None:
    ex = next(e for e in DOC_EXAMPLES if e["id"] == "list")
    assert sigv2.uncovered_query(ex["query"]) == ["prefix", "max-keys", "marker"]
    headers = _hdrs(*ex["headers"], ("Authorization", f"AWS {DOC_KEY}:{ex['sig']}"))
    # The same signature serves any other listing: exactly the gap the docstring describes.
    ctx = _verify(
        "GET",
        "/",
        "prefix=secret&max-keys=1000",
        headers,
        now=_doc_now(ex["headers"]),
        bucket=ex["bucket"],
    )
    assert ctx.uncovered_query == ("prefix", "max-keys")


def test_documented_upload_example_covers_what_it_says() -> None:
    ex = next(e for e in DOC_EXAMPLES if e["id"] == "upload-metadata")
    headers = _hdrs(*ex["headers"], ("Authorization", f"AWS {DOC_KEY}:{ex['sig']}"))
    ctx = _verify("PUT", ex["path"], "", headers, now=_doc_now(ex["headers"]), bucket=ex["bucket"])
    assert ctx.amz_headers == (
        ("x-amz-acl", "public-read"),
        ("x-amz-meta-checksumalgorithm", "crc32"),
        ("x-amz-meta-filechecksum", "0x02661779"),
        ("x-amz-meta-reviewedby", "joe@awsexamplebucket1.net,jane@awsexamplebucket1.net"),
    )
    assert (ctx.content_md5, ctx.content_type) == (
        "4gJE4saaMU4BqNR0kLY+lw==",
        "application/x-download",
    )
    assert ctx.resource == "/static.awsexamplebucket1.net/db-backup.dat.gz"
    # Content-Disposition and Content-Encoding are not signed ("only Content-Type and
    # Content-MD5 ... appear in the StringToSign"): changing them still verifies.
    headers["content-disposition"] = ["attachment; filename=evil.exe"]
    headers["content-encoding"] = ["identity"]
    _verify("PUT", ex["path"], "", headers, now=_doc_now(ex["headers"]), bucket=ex["bucket"])
    # The metadata is: reorder the two reviewers and the signature fails.
    headers["x-amz-meta-reviewedby"].reverse()
    with _refused("SignatureDoesNotMatch"):
        _verify("PUT", ex["path"], "", headers, now=_doc_now(ex["headers"]), bucket=ex["bucket"])


def test_documented_delete_example_follows_the_normative_x_amz_date_rule() -> None:
    """The page's rule: "if you include the x-amz-date header, use the empty string for the
    Date when constructing the StringToSign" (x-amz-date is then an amz header). Its Delete
    example instead prints the x-amz-date value on the Date line with no amz line; that
    pair is self-consistent but contradicts the rule, and the SDKs (Java, JS) follow the
    rule. So the example's signature is refused, and the rule's string verifies."""
    doc_sts = "DELETE\n\n\nTue, 27 Mar 2007 21:20:26 +0000\n/awsexamplebucket1/photos/puppy.jpg"
    doc_sig = "XbyTlbQdu9Xw5o8P4iMwPktxQd8="
    assert sigv2.sign(DOC_SECRET, doc_sts) == doc_sig  # we read the example right
    headers = _hdrs(
        ("User-Agent", "dotnet"),
        ("Date", "Tue, 27 Mar 2007 21:20:27 +0000"),
        ("x-amz-date", "Tue, 27 Mar 2007 21:20:26 +0000"),
    )
    path = "/awsexamplebucket1/photos/puppy.jpg"
    sts = sigv2.string_to_sign("DELETE", path, "", headers)
    assert sts == (
        "DELETE\n\n\n\nx-amz-date:Tue, 27 Mar 2007 21:20:26 +0000\n"
        "/awsexamplebucket1/photos/puppy.jpg"
    )
    when = datetime(2007, 3, 27, 21, 20, 26, tzinfo=UTC)
    with _refused("SignatureDoesNotMatch"):
        _verify(
            "DELETE", path, "", {**headers, "authorization": [f"AWS {DOC_KEY}:{doc_sig}"]}, now=when
        )
    good = {**headers, "authorization": [f"AWS {DOC_KEY}:{sigv2.sign(DOC_SECRET, sts)}"]}
    ctx = _verify("DELETE", path, "", good, now=when)
    assert ctx.date_line == "" and ctx.request_time == when
    # The Date header is then not covered at all.
    good["date"] = ["Thu, 01 Jan 2099 00:00:00 GMT"]
    _verify("DELETE", path, "", good, now=when)


def test_documented_query_string_example() -> None:
    """Both copies of the page print the request for awsexamplebucket1 with the signature
    computed when the bucket was still called johnsmith (the page's original name); that
    pair verifies, and the StringToSign is the page's."""
    raw_query = (
        "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D"
        "&Expires=1175139620"
    )
    before = datetime(2007, 3, 29, 3, 0, 0, tzinfo=UTC)  # Expires is 2007-03-29T03:40:20Z
    ctx = _verify("GET", "/photos/puppy.jpg", raw_query, {}, now=before, bucket="johnsmith")
    assert ctx.string_to_sign == "GET\n\n\n1175139620\n/johnsmith/photos/puppy.jpg"
    assert (ctx.form, ctx.expires, ctx.uncovered_query) == ("query", 1175139620, ())
    assert (
        sigv2.string_to_sign(
            "GET",
            "/photos/puppy.jpg",
            raw_query,
            {},
            expires="1175139620",
            bucket_from_host="awsexamplebucket1",
        )
        == "GET\n\n\n1175139620\n/awsexamplebucket1/photos/puppy.jpg"
    )
    with _refused("SignatureDoesNotMatch"):
        _verify("GET", "/photos/puppy.jpg", raw_query, {}, now=before, bucket="awsexamplebucket1")
    with _refused("AccessDenied", "Request has expired"):
        _verify(
            "GET",
            "/photos/puppy.jpg",
            raw_query,
            {},
            now=datetime.fromtimestamp(1175139621, UTC),
            bucket="johnsmith",
        )


# -- botocore's HmacV1Auth / HmacV1QueryAuth, randomized -----------------------------------


class _FixedDateV1(HmacV1Auth):  # type: ignore[misc]  # botocore is untyped (Any)
    def __init__(self, creds: Credentials, date: str) -> None:
        super().__init__(creds)
        self._date = date

    def _get_date(self) -> str:
        return self._date


class _FixedExpiresV1Query(HmacV1QueryAuth):  # type: ignore[misc]  # botocore is untyped
    def __init__(self, creds: Credentials, expires_at: int) -> None:
        super().__init__(creds)
        self._at = expires_at

    def _get_date(self) -> str:
        return str(self._at)


METHODS = st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD"])
BUCKETS = st.from_regex(r"[a-z0-9][a-z0-9.-]{1,20}[a-z0-9]", fullmatch=True)
# Keys: anything UTF-8 can carry (spaces, '+', '%', '?', '#', '&', '=', unicode, controls).
KEYS_ST = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40)
QUERY_NAMES = st.sampled_from(
    [*sorted(sigv2.SUBRESOURCES), "prefix", "marker", "max-keys", "delimiter", "x-id", "foo"]
)
QUERY_VALUES = st.none() | st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
# Header values as HTTP carries them: visible ASCII and inner spaces, padded with SP/HTAB.
VISIBLE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=10)
PAD = st.text(st.sampled_from(" \t"), max_size=2)
HEADER_VALUES = st.builds(
    lambda a, b, c, lead, trail: lead + (a + "  " + b + " " + c).strip() + trail,
    VISIBLE,
    VISIBLE,
    VISIBLE,
    PAD,
    PAD,
)
AMZ_NAMES = st.sampled_from(
    [
        "x-amz-meta-a",
        "X-Amz-Meta-A",
        "X-AMZ-META-b",
        "x-amz-acl",
        "x-amz-meta-Zz",
        "x-amz-storage-class",
        "x-amz-security-token",
        "x-amz-copy-source",
        "x-amz-meta-with.dot",
        "x-amz-tagging",
    ]
)


@st.composite
def requests(draw: st.DrawFn, *, repeat_amz: bool = True) -> dict[str, Any]:
    bucket = draw(BUCKETS)
    key = draw(st.none() | KEYS_ST)
    quoted = "/" + quote(key, safe="/~") if key is not None else "/"
    params = draw(st.lists(st.tuples(QUERY_NAMES, QUERY_VALUES), max_size=5))
    raw_query = "&".join(n if v is None else f"{n}={quote(v, safe='')}" for n, v in params)
    amz = draw(st.lists(st.tuples(AMZ_NAMES, HEADER_VALUES), max_size=6))
    if not repeat_amz:
        seen: dict[str, tuple[str, str]] = {}
        for name, value in amz:
            seen.setdefault(name.lower(), (name, value))
        amz = list(seen.values())
    std = []
    if draw(st.booleans()):
        std.append(("Content-Type", draw(HEADER_VALUES)))
    if draw(st.booleans()):
        std.append(("Content-MD5", draw(HEADER_VALUES)))
    others = draw(
        st.lists(
            st.tuples(st.sampled_from(["Range", "Cache-Control"]), VISIBLE),
            max_size=2,
            unique_by=lambda t: t[0],
        )
    )
    headers = draw(st.permutations([*amz, *std, *others]))
    return {
        "method": draw(METHODS),
        "bucket": bucket,
        "path": quoted,
        "query": raw_query,
        "headers": headers,
        "virtual": draw(st.booleans()),
    }


def _botocore_request(r: dict[str, Any]) -> AWSRequest:
    if r["virtual"]:
        url = f"http://{r['bucket']}.s3.test:9000{r['path']}"
        auth_path = f"/{r['bucket']}{r['path']}"
    else:
        url = f"http://127.0.0.1:9000/{r['bucket']}{r['path']}"
        auth_path = None
    if r["query"]:
        url += "?" + r["query"]
    req = AWSRequest(method=r["method"], url=url)
    req.auth_path = auth_path
    for name, value in r["headers"]:
        req.headers[name] = value  # HTTPHeaders appends: repeated headers stay repeated
    return req


def _as_received(req: AWSRequest) -> tuple[str, str, Hdrs]:
    split = urlsplit(req.url)
    return split.path, split.query, _hdrs(*req.headers.items())


@settings(max_examples=300, deadline=None)
@given(requests())
def test_header_form_matches_botocore_hmacv1(r: dict[str, Any]) -> None:
    req = _botocore_request(r)
    signer = _FixedDateV1(Credentials(KEY, SECRET), HTTP_DATE)
    signer.add_auth(req)
    raw_path, raw_query, headers = _as_received(req)
    bucket = r["bucket"] if r["virtual"] else None
    boto_sts = signer.canonical_string(
        req.method, urlsplit(req.url), _copy_headers(req), auth_path=req.auth_path
    )
    ours = sigv2.string_to_sign(r["method"], raw_path, raw_query, headers, bucket_from_host=bucket)
    assert ours == boto_sts
    ctx = _verify(r["method"], raw_path, raw_query, headers, bucket=bucket)
    assert ctx.string_to_sign == boto_sts
    assert ctx.uncovered_query == tuple(sigv2.uncovered_query(raw_query))


@settings(max_examples=300, deadline=None)
@given(requests(repeat_amz=False))
def test_query_form_matches_botocore_hmacv1query(r: dict[str, Any]) -> None:
    """botocore's presigner moves every x-amz-* header it signed (and Content-Type and
    Content-MD5) into the URL; whoever uses the URL sends Content-Type/MD5 as headers."""
    req = _botocore_request(r)
    expires_at = int(NOW.timestamp()) + 3600
    signer = _FixedExpiresV1Query(Credentials(KEY, SECRET), expires_at)
    # botocore's own string, over the headers it was handed (Date = the fixed Expires).
    boto_sts = signer.canonical_string(
        req.method, urlsplit(req.url), _copy_headers(req), auth_path=req.auth_path
    )
    signer.add_auth(req)
    split = urlsplit(req.url)
    sent = _hdrs(*((n, v) for n, v in r["headers"] if n.lower() in ("content-type", "content-md5")))
    bucket = r["bucket"] if r["virtual"] else None
    ctx = _verify(r["method"], split.path, split.query, sent, bucket=bucket)
    assert (ctx.form, ctx.expires, ctx.string_to_sign) == ("query", expires_at, boto_sts)
    with _refused("AccessDenied", "Request has expired"):
        _verify(
            r["method"],
            split.path,
            split.query,
            sent,
            bucket=bucket,
            now=datetime.fromtimestamp(expires_at + 1, UTC),
        )


def _copy_headers(req: AWSRequest) -> Any:
    copy = AWSRequest(method=req.method, url=req.url)
    for name, value in req.headers.items():
        copy.headers[name] = value
    return copy.headers


# -- boto3 itself: clients signing with signature_version="s3", and the default presigner --


class _Captured(Exception):
    def __init__(self, request: Any) -> None:
        self.request = request


def _capture(request: Any, **_: Any) -> None:
    raise _Captured(request)


def _client(**config: Any) -> Any:
    client = boto3.client(
        "s3",
        endpoint_url="http://s3.test:9000",
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
        config=Config(**config) if config else None,
    )
    client.meta.events.register("before-send.s3", _capture)
    return client


@pytest.fixture(scope="module")
def v1_clients() -> dict[str, Any]:
    return {
        style: _client(signature_version="s3", s3={"addressing_style": style})
        for style in ("path", "virtual")
    }


def _sent(call: Any) -> Any:
    with pytest.raises(_Captured) as info:
        call()
    return info.value.request


def _received(request: Any) -> tuple[str, str, str, Hdrs, str | None]:
    split = urlsplit(request.url)
    headers = _hdrs(
        *(
            (k, v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else v)
            for k, v in request.headers.items()
        )
    )
    host = split.hostname or ""
    bucket = host.removesuffix(".s3.test") if host != "s3.test" else None
    return request.method, split.path, split.query, headers, bucket


AWKWARD_KEY = "dir/a b+c%d?e#f&g=h~ü€/😀"
CALLS: dict[str, Any] = {
    "put_object": lambda c: c.put_object(
        Bucket="bkt",
        Key=AWKWARD_KEY,
        Body=b"data",
        ContentType="text/plain",
        Metadata={"Reviewer": "  joe  ", "x": "1"},
        ACL="private",
        Tagging="a=b",
    ),
    "get_object": lambda c: c.get_object(
        Bucket="bkt",
        Key=AWKWARD_KEY,
        VersionId="v 1/+",
        Range="bytes=0-1",
        ResponseContentType="a/b c",
        ResponseContentDisposition="attachment; filename=x",
    ),
    "head_object": lambda c: c.head_object(Bucket="bkt", Key="k", PartNumber=1),
    "delete_object": lambda c: c.delete_object(Bucket="bkt", Key=AWKWARD_KEY),
    "list_objects": lambda c: c.list_objects(
        Bucket="bkt", Prefix="p/", Marker="m", Delimiter="/", MaxKeys=5
    ),
    "list_objects_v2": lambda c: c.list_objects_v2(Bucket="bkt", Prefix="p", StartAfter="s"),
    "list_object_versions": lambda c: c.list_object_versions(Bucket="bkt"),
    "get_bucket_acl": lambda c: c.get_bucket_acl(Bucket="bkt"),
    "put_object_acl": lambda c: c.put_object_acl(Bucket="bkt", Key="k", ACL="public-read"),
    "get_bucket_versioning": lambda c: c.get_bucket_versioning(Bucket="bkt"),
    "create_bucket": lambda c: c.create_bucket(Bucket="bkt"),
    "head_bucket": lambda c: c.head_bucket(Bucket="bkt"),
    "list_buckets": lambda c: c.list_buckets(),
    "create_multipart_upload": lambda c: c.create_multipart_upload(Bucket="bkt", Key="k"),
    "upload_part": lambda c: c.upload_part(
        Bucket="bkt", Key="k", UploadId="up/1+", PartNumber=2, Body=b"x"
    ),
    "delete_objects": lambda c: c.delete_objects(Bucket="bkt", Delete={"Objects": [{"Key": "a"}]}),
    "put_object_tagging": lambda c: c.put_object_tagging(
        Bucket="bkt", Key="k", Tagging={"TagSet": [{"Key": "a", "Value": "b"}]}
    ),
}


@pytest.mark.parametrize("style", ["path", "virtual"])
@pytest.mark.parametrize("op", sorted(CALLS))
def test_boto3_header_signed_requests_verify(
    v1_clients: dict[str, Any], style: str, op: str
) -> None:
    request = _sent(lambda: CALLS[op](v1_clients[style]))
    method, raw_path, raw_query, headers, bucket = _received(request)
    assert headers["authorization"][0].startswith(f"AWS {KEY}:")
    ctx = _verify(method, raw_path, raw_query, headers, now=datetime.now(UTC), bucket=bucket)
    assert ctx.form == "header"
    assert sigv2.refused_query(raw_query, "header") == []  # boto3's queries pass the allow-list
    if op == "list_buckets":
        assert ctx.resource == "/"
    elif op == "list_objects":
        # boto3 signs the bucket with a trailing slash; in path style it sends none.
        assert raw_path == ("/bkt" if style == "path" else "/")
        assert ctx.resource == "/bkt/"
        assert ctx.uncovered_query == ("prefix", "marker", "delimiter", "max-keys", "encoding-type")
    elif op == "get_object":
        assert ctx.subresources == (
            ("response-content-disposition", "attachment; filename=x"),
            ("response-content-type", "a/b c"),
            ("versionId", "v 1/+"),
        )
    elif op == "put_object":
        amz = dict(ctx.amz_headers)
        assert amz["x-amz-meta-reviewer"] == "joe" and amz["x-amz-acl"] == "private"
        assert ctx.content_type == "text/plain"
    # Any byte of what was covered changes the verdict.
    sig = headers["authorization"][0].split(":", 1)[1]
    flipped = ("B" if sig[0] == "A" else "A") + sig[1:]
    tampered = {**headers, "authorization": [f"AWS {KEY}:{flipped}"]}
    with _refused("SignatureDoesNotMatch"):
        _verify(method, raw_path, raw_query, tampered, now=datetime.now(UTC), bucket=bucket)


PRESIGN: dict[str, tuple[str, dict[str, Any]]] = {
    "get_object": ("get_object", {"Bucket": "bkt", "Key": AWKWARD_KEY}),
    "get_object_overrides": (
        "get_object",
        {"Bucket": "bkt", "Key": "k", "VersionId": "v 1", "ResponseContentType": "a/b c"},
    ),
    "put_object": (
        "put_object",
        {
            "Bucket": "bkt",
            "Key": "k",
            "ContentType": "text/plain",
            "Metadata": {"Foo": "bar"},
            "ACL": "private",
        },
    ),
    "list_objects": ("list_objects", {"Bucket": "bkt", "Prefix": "p"}),
    "upload_part": (
        "upload_part",
        {"Bucket": "bkt", "Key": "k", "UploadId": "u1", "PartNumber": 3},
    ),
}


@pytest.mark.parametrize("style", ["path", "virtual"])
@pytest.mark.parametrize("name", sorted(PRESIGN))
def test_boto3_default_presigned_url_is_sigv2_and_verifies(style: str, name: str) -> None:
    """boto3 with no signature_version on a custom endpoint presigns with SigV2 (query)."""
    client = _client(s3={"addressing_style": style}) if style == "virtual" else _client()
    op, params = PRESIGN[name]
    url = client.generate_presigned_url(op, Params=params, ExpiresIn=900)
    split = urlsplit(url)
    assert re.search(r"(^|&)AWSAccessKeyId=AKIDV2CLIENT(&|$)", split.query)
    assert "X-Amz-" not in url and "x-amz-signature" not in url.lower()
    host = split.hostname or ""
    bucket = host.removesuffix(".s3.test") if host != "s3.test" else None
    method = {"put_object": "PUT", "upload_part": "PUT"}.get(op, "GET")
    # The user of the URL sends the Content-Type it was presigned with.
    sent = _hdrs(("Content-Type", "text/plain")) if "ContentType" in params else {}
    ctx = _verify(method, split.path, split.query, sent, now=datetime.now(UTC), bucket=bucket)
    assert ctx.form == "query"
    assert sigv2.refused_query(split.query, "query") == []
    expires = int(dict(p.split("=", 1) for p in split.query.split("&") if "=" in p)["Expires"])
    assert ctx.expires == expires
    if name == "put_object":
        assert dict(ctx.amz_headers) == {"x-amz-acl": "private", "x-amz-meta-foo": "bar"}
        assert ctx.uncovered_query == ("content-type",)
        with _refused("SignatureDoesNotMatch"):  # the Content-Type header is covered
            _verify(
                method,
                split.path,
                split.query,
                _hdrs(("Content-Type", "text/html")),
                now=datetime.now(UTC),
                bucket=bucket,
            )
        tampered = split.query.replace("x-amz-meta-foo=bar", "x-amz-meta-foo=baz")
        with _refused("SignatureDoesNotMatch"):  # and so are the x-amz-* parameters
            _verify(method, split.path, tampered, sent, now=datetime.now(UTC), bucket=bucket)
    if name == "list_objects":
        assert ctx.uncovered_query == ("prefix", "encoding-type")
    if name == "upload_part":
        assert ctx.subresources == (("partNumber", "3"), ("uploadId", "u1"))
    with _refused("AccessDenied", "Request has expired"):
        _verify(
            method,
            split.path,
            split.query,
            sent,
            now=datetime.fromtimestamp(expires + 1, UTC),
            bucket=bucket,
        )


# -- hand-built requests: coverage and every refusal ---------------------------------------


def _signed(
    method: str = "GET",
    path: str = "/bkt/key",
    query: str = "",
    *pairs: tuple[str, str],
    date: str | None = HTTP_DATE,
    key: str = KEY,
    secret: str = SECRET,
) -> Hdrs:
    headers = _hdrs(*pairs)
    if date is not None and "date" not in headers:
        headers["date"] = [date]
    sig = sigv2.sign(secret, sigv2.string_to_sign(method, path, query, headers))
    headers["authorization"] = [f"AWS {key}:{sig}"]
    return headers


def _presigned(
    method: str = "GET",
    path: str = "/bkt/key",
    query: str = "",
    headers: Hdrs | None = None,
    *,
    expires: int | None = None,
    key: str = KEY,
) -> str:
    exp = str(int(NOW.timestamp()) + 600 if expires is None else expires)
    sig = sigv2.sign(SECRET, sigv2.string_to_sign(method, path, query, headers or {}, expires=exp))
    auth = f"AWSAccessKeyId={key}&Expires={exp}&Signature={quote(sig, safe='')}"
    return f"{query}&{auth}" if query else auth


def test_round_trip_and_context() -> None:
    headers = _signed(
        "PUT",
        "/bkt/k",
        "uploadId=u%2B1&partNumber=7&foo=bar",
        ("Content-Type", " text/plain "),
        ("X-Amz-Meta-A", "1"),
        ("x-amz-meta-a", " 2\t"),
    )
    ctx = _verify("PUT", "/bkt/k", "uploadId=u%2B1&partNumber=7&foo=bar", headers)
    assert ctx.string_to_sign == (
        f"PUT\n\ntext/plain\n{HTTP_DATE}\nx-amz-meta-a:1,2\n/bkt/k?partNumber=7&uploadId=u+1"
    )
    assert ctx.subresources == (("partNumber", "7"), ("uploadId", "u+1"))
    assert ctx.uncovered_query == ("foo",)
    assert ctx.request_time == NOW and ctx.expires is None
    assert "string_to_sign" not in repr(ctx) and SECRET not in repr(ctx)


def test_line_folds_become_one_space_and_inner_runs_stay() -> None:
    assert sigv2.canonical_amz_headers(
        [("X-Amz-Meta-A", "a \r\n\t b"), ("x-amz-meta-b", "a  b"), ("x-amz-meta-c", "a\n b")]
    ) == (("x-amz-meta-a", "a b"), ("x-amz-meta-b", "a  b"), ("x-amz-meta-c", "a b"))


def test_subresource_value_spelling() -> None:
    # "acl" and "acl=" are different strings to sign, as botocore sends them.
    assert sigv2.canonical_resource("/b/", "acl") == "/b/?acl"
    assert sigv2.canonical_resource("/b/", "acl=") == "/b/?acl="
    assert sigv2.canonical_resource("/b/k", "versionId=a%26b&acl") == "/b/k?acl&versionId=a&b"
    # Repeated names keep their order (a stable sort, as botocore's).
    assert sigv2.canonical_resource("/b/k", "tagging=2&acl&tagging=1") == (
        "/b/k?acl&tagging=2&tagging=1"
    )
    headers = _signed("GET", "/b/", "acl")
    with _refused("SignatureDoesNotMatch"):
        _verify("GET", "/b/", "acl=", headers)


def test_percent_encoded_subresource_name_is_still_covered() -> None:
    # A store decodes %61cl to acl: it must not arrive unsigned.
    assert sigv2.uncovered_query("%61cl") == []
    plain = _signed("GET", "/bkt/", "")  # a signature over the bucket alone
    with _refused("SignatureDoesNotMatch"):
        _verify("GET", "/bkt/", "%61cl", plain)
    _verify("GET", "/bkt/", "%61cl", _signed("GET", "/bkt/", "acl"))


def test_what_the_header_form_does_not_cover() -> None:
    headers = _signed("GET", "/bkt/", "prefix=a&acl", ("Range", "bytes=0-1"))
    # Listing parameters, other parameters, x-amz-* query parameters, Host, Range and the
    # conditionals can all change under the same signature (the module docstring, 1 3 4).
    changed = {
        **headers,
        "range": ["bytes=0-999"],
        "host": ["elsewhere.example"],
        "if-none-match": ["*"],
        "content-length": ["5"],
    }
    ctx = _verify("GET", "/bkt/", "prefix=zzz&encryption&x-amz-meta-q=1&acl&max-keys=1", changed)
    assert ctx.uncovered_query == ("prefix", "encryption", "x-amz-meta-q", "max-keys")
    # What is covered: the method, the path as sent, the listed sub-resources.
    for method, path, query in (
        ("PUT", "/bkt/", "prefix=a&acl"),
        ("GET", "/bkt/x", "prefix=a&acl"),
        ("GET", "/bkt/", "prefix=a&acl&policy"),
        ("GET", "/bkt/", "prefix=a"),
        ("GET", "/bk%74/", "prefix=a&acl"),  # same bucket decoded; not the path as signed
    ):
        with _refused("SignatureDoesNotMatch"):
            _verify(method, path, query, headers)


@pytest.mark.parametrize(
    "name,value",
    [
        ("content-type", "text/html"),
        ("content-md5", "1B2M2Y8AsgTpgAmY7PhCfg=="),
        ("date", "Wed, 25 Nov 2026 12:00:01 GMT"),
        ("x-amz-meta-new", "1"),
        ("x-amz-acl", "public-read"),
    ],
)
def test_covered_headers(name: str, value: str) -> None:
    headers = _signed("PUT", "/bkt/k", "", ("x-amz-acl", "private"))
    with _refused("SignatureDoesNotMatch"):
        _verify("PUT", "/bkt/k", "", {**headers, name: [value]})


def test_query_form_coverage() -> None:
    sent = _hdrs(("Content-Type", "text/plain"))
    query = _presigned("PUT", "/bkt/k", "x-amz-meta-a=1&prefix=p", sent)
    ctx = _verify("PUT", "/bkt/k", query, sent)
    assert dict(ctx.amz_headers) == {"x-amz-meta-a": "1"}
    assert ctx.uncovered_query == ("prefix",)
    assert ctx.date_line == str(ctx.expires)
    # Date, x-amz-date and Range headers are not part of a query signature.
    _verify("PUT", "/bkt/k", query, {**sent, "date": ["garbage"], "range": ["bytes=1-2"]})
    for tampered in (
        query.replace("x-amz-meta-a=1", "x-amz-meta-a=2"),
        query.replace("Expires=", "Expires=1"),
        query + "&x-amz-acl=public-read",
    ):
        with _refused("SignatureDoesNotMatch"):
            _verify("PUT", "/bkt/k", tampered, sent)
    with _refused("SignatureDoesNotMatch"):
        _verify("PUT", "/bkt/k", query, {})  # the Content-Type header was signed
    with _refused("SignatureDoesNotMatch"):  # x-amz-* headers count like x-amz-* parameters
        _verify("PUT", "/bkt/k", query, {**sent, "x-amz-acl": ["public-read"]})


def test_path_style_bucket_root_accepts_both_spellings_only() -> None:
    slash = _hdrs(("Date", HTTP_DATE))
    slash_sig = sigv2.sign(SECRET, "GET\n\n\n" + HTTP_DATE + "\n/bkt/")
    slash["authorization"] = [f"AWS {KEY}:{slash_sig}"]
    assert _verify("GET", "/bkt", "", slash).resource == "/bkt/"
    assert _verify("GET", "/bkt", "", _signed("GET", "/bkt")).resource == "/bkt"
    with _refused("SignatureDoesNotMatch"):  # no such leniency below the bucket
        _verify("GET", "/bkt/k", "", _signed("GET", "/bkt/k/"))
    with _refused("SignatureDoesNotMatch"):  # nor for virtual-hosted requests
        _verify("GET", "/", "", _signed("GET", "/bkt"), bucket="bkt")


def test_surrogate_escaped_bytes_are_signed_as_received() -> None:
    path = "/bkt/\udcff"  # a raw 0xFF byte in the path, as the HTTP layer hands it over
    headers = _signed("GET", path)
    assert _verify("GET", path, "", headers).resource == path


def test_dates_accepted_in_every_rfc2616_form_and_iso8601() -> None:
    for date in (
        "Wed, 25 Nov 2026 12:00:00 GMT",
        "Wed, 25 Nov 2026 12:00:00 +0000",
        "Wednesday, 25-Nov-26 12:00:00 GMT",
        "Wed Nov 25 12:00:00 2026",
        "20261125T120000Z",
        "Wed, 25 Nov 2026 13:00:00 +0100",
    ):
        assert sigv2.parse_date(date) == NOW, date
        _verify("GET", "/bkt/k", "", _signed("GET", "/bkt/k", "", date=date))
    assert sigv2.parse_date("garbage") is None


def test_skew_both_ways_before_the_key_and_the_signature() -> None:
    headers = _signed()
    _verify("GET", "/bkt/key", "", headers, now=NOW + timedelta(minutes=15))
    _verify("GET", "/bkt/key", "", headers, now=NOW - timedelta(minutes=15))
    bad = {**headers, "authorization": [f"AWS {KEY}:AAAAAAAAAAAAAAAAAAAAAAAAAAA="]}
    for now in (NOW + timedelta(minutes=15, seconds=1), NOW - timedelta(minutes=15, seconds=1)):
        # RGW's order: a stale request is refused for its clock, whoever signed it.
        for sent in (headers, bad, _signed(key="NOPE"), _signed(secret="wrong")):
            with _refused("RequestTimeTooSkewed"):
                _verify("GET", "/bkt/key", "", sent, now=now)
    with _refused("SignatureDoesNotMatch"):  # within the skew, the signature decides
        _verify("GET", "/bkt/key", "", bad, now=NOW + timedelta(minutes=15))
    with _refused("InvalidAccessKeyId"):
        _verify("GET", "/bkt/key", "", _signed(key="NOPE"), now=NOW - timedelta(minutes=15))


def test_the_clock_is_checked_before_the_key_is_looked_up() -> None:
    looked_up: list[str] = []

    def lookup(key: str) -> str | None:
        looked_up.append(key)
        return KEYS.get(key)

    with _refused("RequestTimeTooSkewed"):
        sigv2.verify(
            method="GET",
            raw_path="/bkt/key",
            raw_query="",
            headers=_signed(),
            lookup=lookup,
            now=NOW + timedelta(hours=1),
        )
    assert looked_up == []
    with _refused("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header"):
        sigv2.verify(
            method="GET",
            raw_path="/bkt/key",
            raw_query="",
            headers=_signed(date="garbage"),
            lookup=lookup,
            now=NOW,
        )
    assert looked_up == []


def test_malformed_authorization_comes_before_the_clock() -> None:
    headers = {**_signed(), "authorization": [f"AWS {KEY}sig"]}
    with _refused("InvalidArgument"):
        _verify("GET", "/bkt/key", "", headers, now=NOW + timedelta(days=1))


@pytest.mark.parametrize(
    "date",
    [
        "Mon, 01 Jan 1900 00:00:00 GMT",
        "Wed, 31 Dec 1969 23:59:59 GMT",
        "Wed, 31 Dec 1969 23:59:59 -0100",  # 1970 in UTC, 1969 as written: RGW reads 1969
    ],
)
def test_a_date_before_1970_is_no_date_as_rgw_reads_it(date: str) -> None:
    with _refused("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header"):
        _verify("GET", "/bkt/key", "", _signed(date=date))
    epoch = "Thu, 01 Jan 1970 00:00:00 GMT"
    with _refused("RequestTimeTooSkewed"):  # 1970 itself is a date, just far away
        _verify("GET", "/bkt/key", "", _signed(date=epoch))


def test_x_amz_date_is_the_date_that_is_checked() -> None:
    headers = _signed("GET", "/bkt/key", "", ("x-amz-date", HTTP_DATE), date="Mon, 01 Jan 2001")
    _verify("GET", "/bkt/key", "", headers)
    headers = _signed(
        "GET", "/bkt/key", "", ("x-amz-date", "Mon, 01 Jan 2001 00:00:00 GMT"), date=HTTP_DATE
    )
    with _refused("RequestTimeTooSkewed"):
        _verify("GET", "/bkt/key", "", headers)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"date": ["garbage"]},
        {"date": [HTTP_DATE], "x-amz-date": ["garbage"]},  # x-amz-date wins, readable or not
        {"x-amz-date": [""]},
    ],
)
def test_missing_or_unreadable_date(headers: Hdrs) -> None:
    signed = _signed("GET", "/bkt/key", "", *((k, v[0]) for k, v in headers.items()), date=None)
    with _refused("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header"):
        _verify("GET", "/bkt/key", "", signed)


@pytest.mark.parametrize(
    "value,message",
    [
        (
            f"AWS  {KEY}:sig",
            "Authorization header is invalid -- one and only one ' ' (space) required",
        ),
        (
            f"AWS {KEY}:sig extra",
            "Authorization header is invalid -- one and only one ' ' (space) required",
        ),
        (
            f"AWS {KEY}sig",
            "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature",
        ),
        (f"AWS {KEY}:", "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature"),
        (
            f"AWS {KEY}:a:b",
            "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature",
        ),
        ("AWS", "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature"),
    ],
)
def test_malformed_authorization_header(value: str, message: str) -> None:
    headers = _signed()
    headers["authorization"] = [value]
    with _refused("InvalidArgument", message):
        _verify("GET", "/bkt/key", "", headers)


def test_unknown_key_and_bad_signature() -> None:
    with _refused("InvalidAccessKeyId"):
        _verify("GET", "/bkt/key", "", _signed(key="UNKNOWNKEY"))
    with _refused("InvalidAccessKeyId"):  # an empty key is just an unknown one
        _verify("GET", "/bkt/key", "", {**_signed(), "authorization": ["AWS :c2ln"]})
    with _refused("SignatureDoesNotMatch"):
        _verify("GET", "/bkt/key", "", _signed(secret="wrong"))
    with _refused("InvalidAccessKeyId"):
        _verify("GET", "/bkt/key", _presigned(key="UNKNOWNKEY"), {})
    query = _presigned()
    sig = re.search(r"Signature=([^&]*)", query)
    assert sig is not None
    with _refused("SignatureDoesNotMatch"):
        _verify("GET", "/bkt/key", query.replace(sig.group(1), "AAAA" + sig.group(1)[4:]), {})
    with _refused("SignatureDoesNotMatch"):
        _verify("GET", "/bkt/other", query, {})


@pytest.mark.parametrize(
    "name", ["authorization", "date", "x-amz-date", "content-type", "content-md5"]
)
def test_repeated_single_headers(name: str) -> None:
    headers = _signed("GET", "/bkt/key", "", ("x-amz-date", HTTP_DATE))
    headers.setdefault(name, ["x"])
    headers[name] = [*headers[name], headers[name][0]]
    with _refused("InvalidArgument"):
        _verify("GET", "/bkt/key", "", headers)


def test_underscored_amz_headers_are_refused() -> None:
    headers = _signed("PUT", "/bkt/k", "", ("x_amz_acl", "public-read"))
    with _refused(
        "AccessDenied", "There were headers present in the request which were not signed: x_amz_acl"
    ):
        _verify("PUT", "/bkt/k", "", headers)
    with _refused("AccessDenied"):
        _verify("PUT", "/bkt/k", _presigned("PUT", "/bkt/k"), _hdrs(("X_Amz_Meta_A", "1")))


ONE = (
    "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature "
    "query string parameter or the Authorization header should be specified"
)


@pytest.mark.parametrize(
    "headers,query",
    [
        ("v2", "AWSAccessKeyId=x"),
        ("v2", "Signature=x"),
        ("v2", "X-Amz-Signature=x"),
        ("v4", "PRESIGNED"),
        ("none", "PRESIGNED&X-Amz-Credential=x"),
        ("none", "PRESIGNED&X-Amz-Algorithm=AWS4-HMAC-SHA256"),
    ],
)
def test_only_one_auth_mechanism(headers: str, query: str) -> None:
    hdrs = {
        "v2": _signed(),
        "v4": _hdrs(("Authorization", "AWS4-HMAC-SHA256 Credential=x")),
        "none": {},
    }[headers]
    query = query.replace("PRESIGNED", _presigned())
    with _refused("InvalidArgument", ONE):
        _verify("GET", "/bkt/key", query, hdrs)


@pytest.mark.parametrize("drop", sigv2.AUTH_PARAMS)
def test_query_form_requires_all_three_parameters(drop: str) -> None:
    query = "&".join(p for p in _presigned().split("&") if not p.startswith(drop + "="))
    with _refused(
        "AccessDenied",
        "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters",
    ):
        _verify("GET", "/bkt/key", query, {})


@pytest.mark.parametrize("expires", ["soon", "-5", "1.5", "", "1" * 20, "\u0661\u0662"])
def test_query_form_expires_must_be_epoch_seconds(expires: str) -> None:
    query = re.sub(r"Expires=[0-9]+", "Expires=" + quote(expires), _presigned())
    with _refused("AccessDenied", f"Invalid date (should be seconds since epoch): {expires}"):
        _verify("GET", "/bkt/key", query, {})


def test_query_form_expiry_is_checked_before_the_signature() -> None:
    at = int(NOW.timestamp())
    _verify("GET", "/bkt/key", _presigned(expires=at), {})  # valid through its last second
    expired = [_presigned(expires=at - 1), _presigned(expires=at - 1, key="NOPE")]
    expired.append(_presigned(path="/bkt/other", expires=at - 1))  # signed for another path
    for query in expired:
        with _refused("AccessDenied", "Request has expired"):
            _verify("GET", "/bkt/key", query, {})
    with _refused("SignatureDoesNotMatch"):
        _verify("GET", "/bkt/other", _presigned(expires=at), {})
    # SigV2 sets no upper bound: ten years ahead is valid (V2Context.expires says so).
    far = at + 10 * 365 * 86400
    assert _verify("GET", "/bkt/key", _presigned(expires=far), {}).expires == far


def test_query_form_repeated_auth_parameter() -> None:
    query = _presigned()
    with _refused("InvalidArgument"):
        _verify("GET", "/bkt/key", query + "&Expires=1", {})


@pytest.mark.parametrize("param", ["x-amz-meta-a", "X-Amz-Meta-A"])
def test_query_form_amz_name_as_header_and_parameter(param: str) -> None:
    query = _presigned("GET", "/bkt/key", f"{param}=1")
    assert _verify("GET", "/bkt/key", query, {}).amz_headers == (("x-amz-meta-a", "1"),)
    with _refused("InvalidArgument"):
        _verify("GET", "/bkt/key", query, _hdrs(("X-Amz-Meta-A", "1")))


def test_not_sigv2_at_all() -> None:
    with _refused("AccessDenied"):
        _verify("GET", "/bkt/key", "", {})
    with _refused("AccessDenied"):
        _verify("GET", "/bkt/key", "", _hdrs(("Authorization", "AWS4-HMAC-SHA256 x")))


def test_is_sigv2() -> None:
    assert sigv2.is_sigv2(_hdrs(("Authorization", "AWS k:s")), "")
    assert sigv2.is_sigv2(_hdrs(("Authorization", "AWS")), "")
    assert sigv2.is_sigv2({}, "AWSAccessKeyId=k&Expires=1&Signature=s")
    assert sigv2.is_sigv2({}, "Signature=s")
    assert sigv2.is_sigv2(_hdrs(("Authorization", "AWS4-HMAC-SHA256 x")), "AWSAccessKeyId=k")
    assert not sigv2.is_sigv2({}, "")
    assert not sigv2.is_sigv2(_hdrs(("Authorization", "AWS4-HMAC-SHA256 Credential=x")), "")
    assert not sigv2.is_sigv2({}, "X-Amz-Signature=s&X-Amz-Credential=c&Expires=1")
    assert not sigv2.is_sigv2(_hdrs(("Authorization", "AWSX k:s")), "")


def test_uncovered_query() -> None:
    q = "prefix=a&acl&prefix=b&x-amz-meta-a=1&AWSAccessKeyId=k&Expires=1&Signature=s&&versions"
    assert sigv2.uncovered_query(q, "header") == [
        "prefix",
        "x-amz-meta-a",
        "AWSAccessKeyId",
        "Expires",
        "Signature",
    ]
    assert sigv2.uncovered_query(q, "query") == ["prefix"]
    assert sigv2.uncovered_query("") == []


def test_subresource_list_is_botocores() -> None:
    assert frozenset(HmacV1Auth.QSAOfInterest) == sigv2.SUBRESOURCES


# -- the allow-list: what s3shim forwards under a SigV2 signature --------------------------

# name -> (accepted in the header form, accepted in the query form)
ALLOW_TABLE: dict[str, tuple[bool, bool]] = {
    # Sub-resources SigV2 signs, response overrides among them (exact names only).
    **{name: (True, True) for name in sorted(sigv2.SUBRESOURCES)},
    # Listing and paging parameters: they only shape a read the signature allowed.
    **{name: (True, True) for name in sorted(sigv2.READ_PARAMS)},
    # The query form's own parameters, and the headers presigners hoist beside them.
    "AWSAccessKeyId": (False, True),
    "Expires": (False, True),
    "Signature": (False, True),
    "content-type": (False, True),
    "content-md5": (False, True),
    # x-amz-* parameters: signed as amz headers in the query form only (any case).
    "x-amz-meta-evil": (False, True),
    "X-Amz-Meta-Evil": (False, True),
    "x-amz-acl": (False, True),
    "x-amz-server-side-encryption": (False, True),
    # RGW's own selectors and system parameters: never.
    "usage": (False, False),
    "mdsearch": (False, False),
    "append": (False, False),
    "position": (False, False),
    "layout": (False, False),
    "start-date": (False, False),
    "end-date": (False, False),
    "rgwx-uid": (False, False),
    "rgwx-source-zone": (False, False),
    "format": (False, False),
    "allow-unordered": (False, False),
    "Action": (False, False),
    # Sub-resources S3 added after SigV2: they select operations and are not signed.
    "encryption": (False, False),
    "publicAccessBlock": (False, False),
    "policyStatus": (False, False),
    "ownershipControls": (False, False),
    "intelligent-tiering": (False, False),
    "legal-hold": (False, False),
    "retention": (False, False),
    "attributes": (False, False),
    "renameObject": (False, False),
    "session": (False, False),
    # Near misses: case, spelling, other response-* names, SigV4's parameters.
    "Prefix": (False, False),
    "MAX-KEYS": (False, False),
    "versionid": (False, False),
    "UploadId": (False, False),
    "response-content-TYPE": (False, False),
    "response-x": (False, False),
    "Content-Type": (False, False),
    "Content-MD5": (False, False),
    "expires": (False, False),
    "prefix ": (False, False),
    "": (False, False),
    "x-amz": (False, False),
    "X-Amz-Date": (False, True),  # an amz header to a query signature, like any x-amz-*
}


@pytest.mark.parametrize("name", sorted(ALLOW_TABLE))
def test_the_allow_list(name: str) -> None:
    header, query = ALLOW_TABLE[name]
    assert sigv2.accepted_param(name, "header") is header
    assert sigv2.accepted_param(name, "query") is query
    raw = quote(name, safe="") + "=v"
    assert sigv2.refused_query(raw, "header") == ([] if header else [name])
    assert sigv2.refused_query(raw, "query") == ([] if query else [name])


def test_the_allow_list_is_what_the_module_says() -> None:
    listing = """prefix marker max-keys delimiter encoding-type list-type continuation-token
        start-after fetch-owner key-marker version-id-marker upload-id-marker max-uploads
        max-parts part-number-marker x-id"""
    assert frozenset(listing.split()) == sigv2.READ_PARAMS
    assert sigv2.READ_PARAMS.isdisjoint(sigv2.SUBRESOURCES)
    overrides = {n for n in sigv2.SUBRESOURCES if n.startswith("response-")}
    assert overrides == {
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "response-content-language",
        "response-content-type",
        "response-expires",
    }


@pytest.mark.parametrize(
    "raw,header,query",
    [
        ("%70refix=a", [], []),  # decoded before it is judged: prefix
        ("%75sage", ["usage"], ["usage"]),  # ... and so is usage
        ("%78-amz-meta-a=1", ["x-amz-meta-a"], []),
        ("usage%3Dx", ["usage=x"], ["usage=x"]),  # RGW decodes first, then splits: refused
        ("prefix%3Dx", ["prefix=x"], ["prefix=x"]),
        ("pre+fix=a", ["pre+fix"], ["pre+fix"]),  # '+' is no space here, and RGW's "pre fix"
        ("Prefix=a&prefix=b", ["Prefix"], ["Prefix"]),
        ("%FFusage", ["\udcffusage"], ["\udcffusage"]),
        ("prefix=a%26usage", [], []),  # a value, however it decodes
        ("usage&usage=1&layout", ["usage", "layout"], ["usage", "layout"]),  # each once, in order
        ("=x", [""], [""]),
        ("&&prefix&", [], []),  # empty parts are no parameters
        ("AWSAccessKeyId=k&Expires=1&Signature=s", ["AWSAccessKeyId", "Expires", "Signature"], []),
        ("x-amz-acl=public-read&content-type=t", ["x-amz-acl", "content-type"], []),
    ],
)
def test_names_are_judged_decoded_and_case_sensitively(
    raw: str, header: list[str], query: list[str]
) -> None:
    assert sigv2.refused_query(raw, "header") == header
    assert sigv2.refused_query(raw, "query") == query


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=12), st.text(max_size=6)), max_size=5))
def test_refused_is_exactly_what_the_allow_list_leaves_out(pairs: list[tuple[str, str]]) -> None:
    raw = "&".join(f"{quote(n, safe='')}={quote(v, safe='')}" for n, v in pairs)
    for form in ("header", "query"):
        names = [n for n, _ in sigv2.parse_raw_query(raw)]
        left_out = [n for n in names if not sigv2.accepted_param(n, form)]
        assert sigv2.refused_query(raw, form) == list(dict.fromkeys(left_out))
        # The query form accepts everything the header form does, and more.
        assert set(sigv2.refused_query(raw, "query")) <= set(sigv2.refused_query(raw, "header"))


@pytest.mark.parametrize("form", ["header", "query"])
def test_check_query_refuses_with_access_denied(form: sigv2.Form) -> None:
    sigv2.check_query("prefix=a&max-keys=2&acl&versionId=v", form)
    with _refused("AccessDenied"):
        sigv2.check_query("prefix=a&usage", form)
    with pytest.raises(errors.S3Error) as info:
        sigv2.check_query("acl&mdsearch&usage", form)
    assert (info.value.status, info.value.code) == (403, "AccessDenied")
    assert "'mdsearch'" in info.value.message  # the first one refused is named


def test_a_refused_name_is_escaped_for_the_error_body() -> None:
    with pytest.raises(errors.S3Error) as info:
        sigv2.check_query("%FF%00%3C%26" + "x" * 200)
    message = info.value.message
    assert message.isascii() and message.isprintable()
    assert "\\udcff\\x00<&" in message and "x" * 65 not in message
    # It renders as an S3 error body without trouble.
    body = errors.error_xml(info.value, "/b", "id")
    assert b"&lt;&amp;" in body


@pytest.mark.parametrize(
    "raw",
    ["usage", "mdsearch", "append&position=0", "layout", "x-amz-meta-evil=injected", "Prefix=a"],
)
def test_verify_passes_a_replay_that_check_query_then_refuses(raw: str) -> None:
    """Nothing in the header form's signature covers these: verification alone passes a
    replay that adds them, which is why the allow-list must stand between it and the store."""
    headers = _signed("GET", "/bkt/key")
    ctx = _verify("GET", "/bkt/key", raw, headers)
    assert ctx.form == "header"
    with _refused("AccessDenied"):
        sigv2.check_query(raw, ctx.form)
