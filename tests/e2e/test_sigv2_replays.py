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
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote_to_bytes, urlsplit

import boto3
import pytest
from botocore.client import BaseClient
from botocore.config import Config as BotoConfig
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from s3shim import sigv2
from s3shim.integrity import RECORD_HEADER
from testkit.backends import Store, new_bucket, s3_client
from testkit.helpers import stored
from testkit.rawclient import Reply, send
from testkit.shim import Shim, run_shim
from testkit.tap import Tap, wire_tap

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
def store(rgw_store: Store) -> BaseClient:
    return s3_client(rgw_store)


@pytest.fixture(scope="module")
def tapped(
    rgw_store: Store, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Shim, Tap]]:
    with (
        wire_tap(rgw_store.endpoint) as tap,
        run_shim(
            tap.endpoint,
            rgw_store.access_key,
            rgw_store.secret_key,
            tmp_path_factory.mktemp("sigv2-replays"),
        ) as shim,
    ):
        yield shim, tap


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
    keys = {
        "aws_access_key_id": rgw_store.access_key,
        "aws_secret_access_key": rgw_store.secret_key,
        "region_name": "us-east-1",
    }
    header = boto3.client(
        "s3",
        endpoint_url=endpoint,
        config=BotoConfig(signature_version="s3", s3={"addressing_style": "path"}),
        **keys,
    )
    header.meta.events.register("before-send.s3", _abort)
    query = boto3.client("s3", endpoint_url=endpoint, **keys)
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
