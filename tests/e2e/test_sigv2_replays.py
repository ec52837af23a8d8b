"""Captured SigV2 requests replayed with added query parameters, through s3shim, to RGW.

Each example takes a request botocore really signed (header form with
``signature_version="s3"``, or a URL from boto3's default presigner), for a GET of an
object, a bucket listing or a PUT of an object, and replays it with query parameters drawn
from every parameter S3 and RGW document (sub-resources, listing parameters, RGW's own
selectors and system parameters, x-amz-* headers as parameters, the auth parameters of
both signature versions), near misses of those names, and random names and values,
percent-encoded or not. Whatever was added, one of two things holds:

* s3shim refused it, and the wire tap shows nothing reached the store (nothing stored); or
* every added parameter is on s3shim's SigV2 allow-list (``sigv2.accepted_param``), the
  store was asked exactly the signed path with a query made only of signed sub-resources
  and listing parameters, and it answered or stored what the signature allowed: the
  object's bytes, a listing of that bucket, or the signed body with the signed metadata.

Hand-signed requests pin the operations RGW runs when handed one in the query (GetUsage,
metadata search, AppendObject, query x-amz-meta-* as metadata), refused through s3shim, and
the header form's clock, checked before the signature as RGW does.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any
from urllib.parse import quote, unquote_to_bytes, urlsplit

import pytest
from botocore.client import BaseClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from s3shim import sigv2
from s3shim.integrity import RECORD_HEADER
from testkit.backends import Store, new_bucket
from testkit.helpers import stored
from testkit.rawclient import Reply, send
from testkit.shim import PATH_STYLE, Shim, client_of
from testkit.tap import Tap

OBJECT = b"the object the GET was signed for \x00\xff"
BODY = b"the body the PUT was signed for \x01\xfe"
SIGNED_META = {"m": "signed"}
LISTED = ["a/1", "a/2", "b/1", "obj"]

# Every query parameter S3 or RGW documents (and SDKs send), and some near misses.
S3_SUBRESOURCES = sorted(
    sigv2.SUBRESOURCES
    | set(
        "abac annotation attributes encryption id intelligent-tiering legal-hold "
        "metadataConfiguration metadataTable metadataInventoryTable ownershipControls "
        "policyStatus publicAccessBlock renameObject retention session".split()
    )
)
AUTH = (
    "AWSAccessKeyId Expires Signature X-Amz-Algorithm X-Amz-Credential X-Amz-Date "
    "X-Amz-Expires X-Amz-SignedHeaders X-Amz-Signature X-Amz-Security-Token "
    "x-amz-security-token".split()
)
AMZ = (
    "x-amz-meta-evil X-Amz-Meta-Evil x-amz-meta-m x-amz-acl x-amz-grant-read "
    "x-amz-grant-full-control x-amz-storage-class x-amz-server-side-encryption x-amz-tagging "
    "x-amz-website-redirect-location x-amz-copy-source x-amz-metadata-directive "
    "x-amz-object-lock-mode x-amz-object-lock-retain-until-date x-amz-object-lock-legal-hold "
    "x-amz-request-payer x-amz-expected-bucket-owner x-amz-checksum-crc32 "
    "x-amz-sdk-checksum-algorithm x-amz-content-sha256 x-amz-date "
    "x-amz-decoded-content-length x-amz-bypass-governance-retention".split()
)
RGW = (
    "usage start-date end-date show-entries show-summary mdsearch append position layout "
    "format allow-unordered rgwx-uid rgwx-zonegroup rgwx-source-zone rgwx-prepend-metadata "
    "rgwx-stat rgwx-skip-decrypt rgwx-sync-manifest rgwx-version-id rgwx-versioned-epoch "
    "rgwx-bucket-instance rgwx-copy-if-newer rgwx-no-precondition-error rgwx-tag rgwx-ver "
    "subuser key caps index quota list object sync uid bucket Action Version "
    "PolicyName RoleName TopicArn".split()
)
NEAR = (
    "Prefix PREFIX Max-Keys versionid UploadId response-content-TYPE response-x content-type "
    "content-md5 Content-Type Content-MD5 Cache-Control expires signature x-amz x-ID".split()
)
VOCABULARY = sorted({*S3_SUBRESOURCES, *sigv2.READ_PARAMS, *AUTH, *AMZ, *RGW, *NEAR})
VALUES = ["", "0", "1", "2", "-1", "true", "url", "json", "public-read", "injected", "a/", "x"]

Form = sigv2.Form


@dataclass(frozen=True)
class Captured:
    """A request as a man in the middle saw it: sent again byte for byte, plus what is added."""

    form: Form
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    key: str | None  # the key a PUT writes


@pytest.fixture(scope="module")
def bucket(rgw_store: Store, store: BaseClient) -> str:
    name = new_bucket(rgw_store)
    for key in LISTED:
        store.put_object(Bucket=name, Key=key, Body=OBJECT if key == "obj" else b"x")
    return name


class _Captured(Exception):
    def __init__(self, request: Any) -> None:
        self.request = request


def _abort(request: Any, **_: Any) -> None:
    raise _Captured(request)


@pytest.fixture(scope="module")
def clients(rgw_store: Store, tapped: tuple[Shim, Tap]) -> dict[Form, BaseClient]:
    """botocore's two SigV2 signers, pointed at s3shim: header-form requests are captured
    before they are sent; the default presigner's URLs are the query form."""
    endpoint = tapped[0].endpoint
    header = client_of(rgw_store, endpoint=endpoint, signature_version="s3", s3=PATH_STYLE)
    header.meta.events.register("before-send.s3", _abort)
    query = client_of(rgw_store, endpoint=endpoint)
    return {"header": header, "query": query}


_keys = itertools.count()


def capture(clients: dict[Form, BaseClient], form: Form, op: str, bucket: str) -> Captured:
    """A fresh real SigV2 request (``op``: get, list or put; a PUT gets a new key)."""
    key = f"put-{next(_keys)}" if op == "put" else None
    client = clients[form]
    if form == "header":
        calls = {
            "get": lambda: client.get_object(Bucket=bucket, Key="obj"),
            "list": lambda: client.list_objects(Bucket=bucket),
            "put": lambda: client.put_object(
                Bucket=bucket, Key=key, Body=BODY, ContentType="text/plain", Metadata=SIGNED_META
            ),
        }
        with pytest.raises(_Captured) as info:
            calls[op]()
        request = info.value.request
        split = urlsplit(request.url)
        headers = {
            k.lower(): v.decode() if isinstance(v, bytes) else v
            for k, v in request.headers.items()
            if k.lower() != "expect"  # rawclient sends the body at once
        }
        body = request.body if isinstance(request.body, bytes) else BODY if op == "put" else b""
        return Captured(form, request.method, split.path, split.query, headers, body, key)
    params: dict[str, Any] = {"Bucket": bucket}
    if op != "list":
        params["Key"] = key or "obj"
    if op == "put":
        params["Metadata"] = SIGNED_META
    name = {"get": "get_object", "list": "list_objects", "put": "put_object"}[op]
    url = client.generate_presigned_url(name, Params=params, ExpiresIn=300)
    split = urlsplit(url)
    assert "AWSAccessKeyId=" in split.query  # SigV2, as boto3's default presigner makes it
    method = "PUT" if op == "put" else "GET"
    headers = {"content-length": str(len(BODY))} if op == "put" else {}
    return Captured(
        form, method, split.path, split.query, headers, BODY if op == "put" else b"", key
    )


@st.composite
def added_params(draw: st.DrawFn) -> list[tuple[str, str | None, bool]]:
    """1-3 parameters: (name, value or None for a bare name, percent-encode every byte)."""
    # Half of them from the allow-list, so that many replays reach the store at all.
    allowed = st.sampled_from(sorted(sigv2.READ_PARAMS | {"content-type", "content-md5"}))
    names = st.one_of(
        allowed,
        allowed,
        allowed,
        st.sampled_from(VOCABULARY),
        st.sampled_from(VOCABULARY).map(lambda n: n.upper()),
        st.text(st.characters(codec="utf-8", exclude_characters="&="), min_size=1, max_size=12),
    )
    values = st.one_of(st.none(), st.sampled_from(VALUES), st.text(max_size=8))
    return draw(st.lists(st.tuples(names, values, st.booleans()), min_size=1, max_size=3))


def _encode(text: str, every_byte: bool) -> str:
    if every_byte:
        return "".join(f"%{b:02X}" for b in text.encode("utf-8", "surrogateescape"))
    return quote(text, safe="-_.~")


def raw_added(params: list[tuple[str, str | None, bool]]) -> str:
    return "&".join(
        _encode(n, enc) + ("" if v is None else "=" + _encode(v, enc)) for n, v, enc in params
    )


def _wire_request(wire: bytes) -> tuple[str, str, list[str], dict[str, list[str]]]:
    """Method, raw path, decoded query names and headers of the first request on the wire."""
    head = wire.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    line, *header_lines = head.split("\r\n")
    method, target, _ = line.split(" ")
    path, _, query = target.partition("?")
    names = [
        unquote_to_bytes(p.partition("=")[0]).decode("utf-8", "surrogateescape")
        for p in query.split("&")
        if p
    ]
    headers: dict[str, list[str]] = {}
    for h in header_lines:
        name, _, value = h.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return method, path, names, headers


def signed_metadata(store: BaseClient, bucket: str, key: str) -> dict[str, str]:
    meta = store.head_object(Bucket=bucket, Key=key)["Metadata"]
    return {k: v for k, v in meta.items() if "x-amz-meta-" + k != RECORD_HEADER}


class Replayer:
    """The module's s3shim, tap, store client, bucket and signers. Not a dataclass: hypothesis
    prints a failing example's arguments, and would print every byte the tap holds."""

    def __init__(
        self, shim: Shim, tap: Tap, store: BaseClient, bucket: str, clients: dict[Form, BaseClient]
    ) -> None:
        self.shim, self.tap, self.store, self.bucket, self.clients = (
            shim,
            tap,
            store,
            bucket,
            clients,
        )

    def __repr__(self) -> str:
        return f"Replayer(bucket={self.bucket!r})"


@pytest.fixture(scope="module")
def replayer(
    tapped: tuple[Shim, Tap], store: BaseClient, bucket: str, clients: dict[Form, BaseClient]
) -> Replayer:
    return Replayer(tapped[0], tapped[1], store, bucket, clients)


def check_replay(
    r: Replayer, captured: Captured, params: list[tuple[str, str | None, bool]]
) -> tuple[Reply, bool]:
    shim, tap, store, bucket = r.shim, r.tap, r.store, r.bucket
    added = raw_added(params)
    raw = "&".join(q for q in (captured.query, added) if q)
    before = len(tap.to_store())
    reply = send(
        captured.method,
        shim.endpoint,
        captured.path,
        captured.headers,
        raw_query=raw,
        body=captured.body,
    )
    wire = tap.to_store()[before:]
    names = [n for n, _ in sigv2.parse_raw_query(added)]
    all_accepted = all(sigv2.accepted_param(n, captured.form) for n in names)
    if not wire:
        # Refused by s3shim, before anything reached the store.
        assert 400 <= reply.status < 500 and reply.code, (raw, reply.status, reply.body[:300])
        if captured.key is not None:
            assert stored(store, bucket, captured.key) is None
        return reply, False
    assert all_accepted, (raw, reply.status)  # anything else never reaches the store
    method, path, wire_names, wire_headers = _wire_request(wire)
    assert (method, path) == (captured.method, captured.path)
    # The store's query: only what SigV2 signs, and listing parameters.
    assert all(n in sigv2.SUBRESOURCES or n in sigv2.READ_PARAMS for n in wire_names), wire_names
    meta_sent = {n for n in wire_headers if n.startswith("x-amz-meta-")}
    assert meta_sent <= {"x-amz-meta-m", RECORD_HEADER}, meta_sent
    if captured.method == "PUT":
        assert captured.key is not None
        if reply.status == 200:
            assert stored(store, bucket, captured.key) == BODY
            assert signed_metadata(store, bucket, captured.key) == SIGNED_META
            got = store.head_object(Bucket=bucket, Key=captured.key)["ContentType"]
            assert got == captured.headers.get("content-type", "binary/octet-stream")
        else:
            assert (reply.status, reply.code) == (403, "SignatureDoesNotMatch"), (raw, reply.body)
            assert len(set(wire_names)) < len(wire_names), (raw, wire_names)  # as below
            assert stored(store, bucket, captured.key) is None
    elif reply.status == 200 and captured.path.endswith("/obj"):
        assert reply.body == OBJECT, (raw, reply.body[:300])
    elif reply.status == 200:  # the listing of this bucket
        assert b"<ListBucketResult" in reply.body, reply.body[:300]
        assert f"<Name>{bucket}</Name>".encode() in reply.body, reply.body[:300]
    else:  # the store's refusal, nothing done
        assert 400 <= reply.status < 500 and reply.code, (raw, reply.status, reply.body[:300])
        if reply.code == "SignatureDoesNotMatch":
            # Only for a repeated name: RGW 16 keeps one value per name, so s3shim's SigV4
            # signature over both does not match what RGW canonicalises.
            assert len(set(wire_names)) < len(wire_names), (raw, wire_names)
    return reply, True


BASES = [(form, op) for form in ("header", "query") for op in ("get", "list", "put")]


@pytest.mark.parametrize(("form", "op"), BASES, ids=[f"{f}-{o}" for f, o in BASES])
def test_every_documented_parameter_alone(replayer: Replayer, form: Form, op: str) -> None:
    """Each name of the vocabulary, added alone (a value, '='-less every third one), to a
    fresh capture; the allow-list's names reach the store, nothing else does."""
    reached = []
    for i, name in enumerate(VOCABULARY):
        captured = capture(replayer.clients, form, op, replayer.bucket)
        value = None if i % 3 == 0 else VALUES[i % len(VALUES)]
        if check_replay(replayer, captured, [(name, value, False)])[1]:
            reached.append(name)
    # Signed sub-resources fail their signature when added; what reaches the store is the
    # listing parameters (and, in the query form, presigners' own content-type/content-md5).
    expected = set(sigv2.READ_PARAMS)
    if form == "query":
        expected |= {"content-type", "content-md5"}
    assert set(reached) == expected


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(base=st.sampled_from(BASES), params=added_params())
def test_generated_replays_reach_the_store_only_on_the_allow_list(
    replayer: Replayer, base: tuple[Form, str], params: list[tuple[str, str | None, bool]]
) -> None:
    form, op = base
    reply, reached = check_replay(
        replayer, capture(replayer.clients, form, op, replayer.bucket), params
    )
    event(f"{form} {op}: " + (f"reached the store, {reply.status}" if reached else "refused"))


# -- hand-signed SigV2 requests: an operation added to the query, the clock ---------------


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


def refused_both_ways(
    rgw_store: Store,
    tapped: tuple[Shim, Tap],
    path: str,
    *,
    form: str,
    date: Callable[[], str] | None = None,
    expires: Callable[[], int] | None = None,
    secret: str | None = None,
    access_key: str | None = None,
) -> list[tuple[int, str | None]]:
    """A SigV2 PUT signed afresh (its ``date`` or ``expires`` then) and sent directly, then
    through s3shim, where nothing reaches the store: each answer's status and code."""
    shim, tap = tapped
    outcomes = []
    for endpoint in (rgw_store.endpoint, shim.endpoint):
        captured = v2_signed(
            rgw_store,
            "PUT",
            path,
            form=form,
            date=date() if date else None,
            expires=expires() if expires else None,
            secret=secret,
            access_key=access_key,
        )
        before = len(tap.to_store())
        reply = replay(endpoint, "PUT", path, captured, "", b"late")
        if endpoint == shim.endpoint:
            assert tap.to_store()[before:] == b""
        outcomes.append((reply.status, reply.code))
    return outcomes


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
    date: Callable[[], str],
    code: str,
    signature: str,
) -> None:
    """RGW answers a header-form request out of its clock without looking at the key or the
    signature; so does s3shim, before anything reaches the store."""
    bucket = new_bucket(rgw_store)
    outcomes = refused_both_ways(
        rgw_store,
        tapped,
        f"/{bucket}/k",
        form="header",
        date=date,
        secret="not-the-secret" if signature == "wrong-secret" else None,
        access_key="NOSUCHKEY0000000" if signature == "unknown-key" else None,
    )
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
    bucket = new_bucket(rgw_store)
    outcomes = refused_both_ways(
        rgw_store,
        tapped,
        f"/{bucket}/k",
        form="query",
        expires=lambda: int(time.time()) - 60,
        secret=secret,
        access_key=access_key,
    )
    assert outcomes == [(403, "AccessDenied"), (403, "AccessDenied")]
    assert stored(store, bucket, "k") is None
