"""Inbound verification, fed requests signed by botocore itself (not by s3shim's signer)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import example, given
from hypothesis import strategies as st

from s3shim import auth, chunked, errors, sigv4
from testkit.helpers import crc32_b64

KEYS = {"AKIDCLIENT": "client secret/+=&~%ü"}
NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
STAMP = NOW.strftime("%Y%m%dT%H%M%SZ")
US_EAST_1 = frozenset({"us-east-1"})
ZERO_SIG = "0" * 64
ARABIC_2026 = "\u0662\u0660\u0662\u0666"  # digits to int() and strptime, not to S3


def _sign(
    method: str = "PUT",
    url: str = "http://127.0.0.1:8080/bucket/some%20key%2Bplus",
    headers: dict[str, str] | None = None,
    *,
    presign: int | None = None,
    secret: str = KEYS["AKIDCLIENT"],
    access: str = "AKIDCLIENT",
    stamp: str = STAMP,
    payload: str = sigv4.UNSIGNED_PAYLOAD,
    region: str = "us-east-1",
) -> AWSRequest:
    req = AWSRequest(method=method, url=url, headers=dict(headers or {}))
    req.context["timestamp"] = stamp
    creds = Credentials(access, secret)
    if presign is None:
        req.headers["X-Amz-Content-SHA256"] = payload
        signer = S3SigV4Auth(creds, "s3", region)
        req.headers["X-Amz-Date"] = stamp
        canon = signer.canonical_request(req)
        sig = signer.signature(signer.string_to_sign(req, canon), req)
        scope = f"{access}/{stamp[:8]}/{region}/s3/aws4_request"
        req.headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={scope}, "
            f"SignedHeaders={signer.signed_headers(signer.headers_to_sign(req))}, Signature={sig}"
        )
    else:
        qsigner = S3SigV4QueryAuth(creds, "s3", region, expires=presign)
        qsigner._modify_request_before_signing(req)
        canon = qsigner.canonical_request(req)
        sig = qsigner.signature(qsigner.string_to_sign(req, canon), req)
        req.url = req.url + "&X-Amz-Signature=" + sig
    return req


def _headers(req: AWSRequest) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for k, v in req.headers.items():
        headers.setdefault(k.lower(), []).append(v)
    headers.setdefault("host", [urlsplit(req.url).netloc])
    return headers


def _verify(req: AWSRequest, now: datetime = NOW, **overrides: object) -> auth.AuthContext:
    parts = urlsplit(req.url)
    kwargs: dict[str, object] = {
        "method": req.method,
        "raw_path": parts.path,
        "query": sigv4.parse_query(parts.query),
        "headers": _headers(req),
        "lookup": KEYS.get,
        "regions": US_EAST_1,
        "now": now,
    }
    if "region" in overrides:  # the deprecated alias replaces regions=
        del kwargs["regions"]
    kwargs.update(overrides)
    return auth.verify(**kwargs)  # type: ignore[arg-type]  # overrides may be any keyword


def _error(req: AWSRequest, **kw: object) -> errors.S3Error:
    with pytest.raises(errors.S3Error) as info:
        _verify(req, **kw)  # type: ignore[arg-type]  # passed through to auth.verify
    return info.value


def _code(req: AWSRequest, **kw: object) -> str:
    return _error(req, **kw).code


def _key_chain(secret: str, date: str, region: str) -> bytes:
    """The SigV4 signing key, derived here independently of s3shim.sigv4."""
    k = ("AWS4" + secret).encode()
    for part in (date, region, "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


def test_header_auth_accepts_botocore_signature() -> None:
    ctx = _verify(_sign(headers={"x-amz-meta-a": "  b  c "}))
    assert ctx.access_key == "AKIDCLIENT"
    assert not ctx.presigned
    assert ctx.payload_hash == sigv4.UNSIGNED_PAYLOAD
    assert ctx.scope == f"{STAMP[:8]}/us-east-1/s3/aws4_request"
    assert ctx.region == "us-east-1"


def test_presigned_accepts_botocore_url() -> None:
    ctx = _verify(_sign("GET", "http://127.0.0.1:8080/bucket/k?x-id=GetObject", presign=600))
    assert ctx.presigned


def test_wrong_secret() -> None:
    assert _code(_sign(secret="nope")) == "SignatureDoesNotMatch"


def test_unknown_key() -> None:
    assert _code(_sign(access="AKIDOTHER")) == "InvalidAccessKeyId"


def test_skew_both_ways() -> None:
    req = _sign()
    assert _code(req, now=NOW + timedelta(minutes=16)) == "RequestTimeTooSkewed"
    assert _code(req, now=NOW - timedelta(minutes=16)) == "RequestTimeTooSkewed"
    _verify(req, now=NOW + timedelta(minutes=14))


def test_presigned_expiry() -> None:
    req = _sign("GET", "http://h/bucket/k?a=b", presign=60)
    _verify(req, now=NOW + timedelta(seconds=59))
    err = _error(req, now=NOW + timedelta(seconds=61))
    assert (err.code, err.message) == ("AccessDenied", "Request has expired")


def test_presigned_expires_bounds() -> None:
    req = _sign("GET", "http://h/bucket/k?a=b", presign=604801)
    assert _code(req) == "AuthorizationQueryParametersError"


def test_tampered_path_query_header() -> None:
    req = _sign("GET", "http://h/bucket/k?prefix=a", headers={"x-amz-meta-x": "1"})
    assert _code(req, raw_path="/bucket/k2") == "SignatureDoesNotMatch"
    assert _code(req, query=[("prefix", "b")]) == "SignatureDoesNotMatch"
    assert _code(req, method="DELETE") == "SignatureDoesNotMatch"


def test_unsigned_amz_header_refused() -> None:
    req = _sign()
    headers = _headers(req)
    headers["x-amz-copy-source"] = ["/other/secret"]
    assert _code(req, headers=headers) == "AccessDenied"


def test_anonymous_and_both_and_sigv2_and_sigv4a() -> None:
    req = AWSRequest(method="GET", url="http://h/bucket/k", headers={})
    assert _code(req) == "AccessDenied"
    signed = _sign("GET", "http://h/bucket/k?X-Amz-Signature=" + ZERO_SIG)
    assert _code(signed) == "InvalidArgument"
    v2 = AWSRequest(method="GET", url="http://h/b/k?AWSAccessKeyId=a&Signature=x&Expires=1")
    assert _code(v2) == "InvalidRequest"
    v4a = AWSRequest(
        method="GET",
        url="http://h/b/k",
        headers={"Authorization": "AWS4-ECDSA-P256-SHA256 Credential=a/b"},
    )
    assert _code(v4a) == "NotImplemented"


@pytest.mark.parametrize(
    "authorization",
    [
        "AWS4-HMAC-SHA256",
        "AWS4-HMAC-SHA256 Credential=AKIDCLIENT/20261125/us-east-1/s3/aws4_request",
        "AWS4-HMAC-SHA256 Credential=AKIDCLIENT/2026/us-east-1/s3/aws4_request, "
        "SignedHeaders=host, Signature=" + ZERO_SIG,
        "AWS4-HMAC-SHA256 Credential=AKIDCLIENT/20261125/us-east-1/sqs/aws4_request, "
        "SignedHeaders=host, Signature=" + ZERO_SIG,
        "AWS4-HMAC-SHA256 Credential=AKIDCLIENT/20261125/us-east-1/s3/aws4_request, "
        "SignedHeaders=host, Signature=nothex",
        "AWS4-HMAC-SHA256 Credential=AKIDCLIENT/20261125/eu-west-1/s3/aws4_request, "
        "SignedHeaders=host, Signature=" + ZERO_SIG,
        "AWS4-HMAC-SHA256 Credential=AKIDCLIENT/20261125/us-east-1/s3/aws4_request, "
        "SignedHeaders=x-amz-date;host, Signature=" + ZERO_SIG,
    ],
)
def test_malformed_authorization(authorization: str) -> None:
    req = AWSRequest(
        method="GET",
        url="http://h/b/k",
        headers={
            "Authorization": authorization,
            "x-amz-date": STAMP,
            "x-amz-content-sha256": sigv4.EMPTY_SHA256,
        },
    )
    headers = {k.lower(): [v] for k, v in req.headers.items()}
    headers["host"] = ["h"]
    headers["authorization"] = [authorization]  # as sent, not as AWSRequest normalises it
    assert _code(req, headers=headers) == "AuthorizationHeaderMalformed"


def test_presigned_signature_with_trailing_newline_is_malformed() -> None:
    # A `$`-anchored check lets "<hex>\n" through; it must read as malformed, not as a
    # signature to compare.
    req = _sign("GET", "http://h/bucket/k?a=b", presign=600)
    query = [
        (k, v + "\n") if k == "X-Amz-Signature" else (k, v)
        for k, v in sigv4.parse_query(urlsplit(req.url).query)
    ]
    assert _code(req, query=query) == "AuthorizationQueryParametersError"


def test_non_ascii_digits_in_dates_are_malformed() -> None:
    stamp = ARABIC_2026 + STAMP[4:]
    authorization = (
        f"AWS4-HMAC-SHA256 Credential=AKIDCLIENT/{stamp[:8]}/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=" + ZERO_SIG
    )
    headers = {
        "host": ["h"],
        "authorization": [authorization],
        "x-amz-date": [stamp],
        "x-amz-content-sha256": [sigv4.EMPTY_SHA256],
    }
    req = AWSRequest(method="GET", url="http://h/b/k")
    assert _code(req, headers=headers) == "AuthorizationHeaderMalformed"


def test_missing_content_sha256() -> None:
    req = _sign()
    headers = _headers(req)
    del headers["x-amz-content-sha256"]
    assert _code(req, headers=headers) == "InvalidRequest"


def test_context_repr_has_no_secrets() -> None:
    ctx = _verify(_sign())
    assert ctx.signature not in repr(ctx)
    assert "signing_key" not in repr(ctx)


def test_presigned_not_valid_yet() -> None:
    req = _sign("GET", "http://h/bucket/k?a=b", presign=600)
    err = _error(req, now=NOW - timedelta(minutes=16))
    assert (err.code, err.message) == ("AccessDenied", "Request is not valid yet")
    _verify(req, now=NOW - timedelta(minutes=14))


def test_credential_date_must_match_request_date() -> None:
    req = _sign(stamp=STAMP)
    headers = _headers(req)
    headers["authorization"] = [headers["authorization"][0].replace(STAMP[:8], "20261124", 1)]
    assert _code(req, headers=headers) == "AuthorizationHeaderMalformed"


def test_host_must_be_signed() -> None:
    req = AWSRequest(
        method="GET",
        url="http://h/b/k",
        headers={
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDCLIENT/20261125/us-east-1/s3/"
            "aws4_request, SignedHeaders=x-amz-content-sha256;x-amz-date, Signature=" + ZERO_SIG,
            "x-amz-date": STAMP,
            "x-amz-content-sha256": sigv4.EMPTY_SHA256,
        },
    )
    assert _code(req) == "AuthorizationHeaderMalformed"


# --- Regions (issue 8.1) -------------------------------------------------------------------

_CLIENT_REGIONS = ["default", "US", "us-east-1", "eu-central-1"]


@pytest.mark.parametrize("region", _CLIENT_REGIONS)
@pytest.mark.parametrize("regions", [None, frozenset()])
def test_any_region_header(region: str, regions: frozenset[str] | None) -> None:
    ctx = _verify(_sign(region=region), regions=regions)
    assert ctx.region == region
    assert ctx.scope == f"{STAMP[:8]}/{region}/s3/aws4_request"
    # The key the signature was checked with is the scope region's own key.
    assert ctx.signing_key == _key_chain(KEYS["AKIDCLIENT"], STAMP[:8], region)


@pytest.mark.parametrize("region", _CLIENT_REGIONS)
@pytest.mark.parametrize("regions", [None, frozenset()])
def test_any_region_presigned(region: str, regions: frozenset[str] | None) -> None:
    req = _sign("GET", "http://h/bucket/k?a=b", presign=600, region=region)
    ctx = _verify(req, regions=regions)
    assert ctx.presigned
    assert ctx.region == region
    assert ctx.scope == f"{STAMP[:8]}/{region}/s3/aws4_request"


def test_no_regions_argument_accepts_any_region() -> None:
    req = _sign(region="default")
    parts = urlsplit(req.url)
    ctx = auth.verify(
        method=req.method,
        raw_path=parts.path,
        query=sigv4.parse_query(parts.query),
        headers=_headers(req),
        lookup=KEYS.get,
        now=NOW,
    )
    assert ctx.region == "default"


def test_any_region_still_needs_the_right_key() -> None:
    """The region feeds the key: a scope naming another region than was signed fails."""
    req = _sign(region="default")
    headers = _headers(req)
    headers["authorization"] = [headers["authorization"][0].replace("/default/", "/US/", 1)]
    assert _code(req, headers=headers, regions=None) == "SignatureDoesNotMatch"
    presigned = _sign("GET", "http://h/bucket/k?a=b", presign=600, region="default")
    query = [
        (k, v.replace("/default/", "/US/")) if k == "X-Amz-Credential" else (k, v)
        for k, v in sigv4.parse_query(urlsplit(presigned.url).query)
    ]
    assert _code(presigned, query=query, regions=None) == "SignatureDoesNotMatch"


def test_allowed_regions_header_refusal() -> None:
    err = _error(_sign(region="default"), regions=US_EAST_1)
    assert (err.code, err.status) == ("AuthorizationHeaderMalformed", 400)
    assert err.message == (
        "The authorization header is malformed; the region 'default' is wrong; "
        "expecting 'us-east-1'"
    )
    _verify(_sign(region="default"), regions=frozenset({"default", "US"}))
    err = _error(_sign(region="eu-west-1"), regions=frozenset({"default", "US"}))
    assert err.message.endswith("the region 'eu-west-1' is wrong; expecting 'US' or 'default'")


def test_allowed_regions_presigned_refusal() -> None:
    req = _sign("GET", "http://h/bucket/k?a=b", presign=600, region="default")
    err = _error(req, regions=US_EAST_1)
    assert (err.code, err.status) == ("AuthorizationQueryParametersError", 400)
    assert err.message == (
        "Error parsing the X-Amz-Credential parameter; the region 'default' is wrong; "
        "expecting 'us-east-1'"
    )
    assert _verify(req, regions=frozenset({"default"})).region == "default"


def test_deprecated_region_alias() -> None:
    assert _verify(_sign(), region="us-east-1").region == "us-east-1"
    assert _code(_sign(region="default"), region="us-east-1") == "AuthorizationHeaderMalformed"
    presigned = _sign("GET", "http://h/bucket/k?a=b", presign=600, region="default")
    assert _code(presigned, region="us-east-1") == "AuthorizationQueryParametersError"
    with pytest.raises(TypeError):
        _verify(_sign(), region="us-east-1", regions=US_EAST_1)


def test_regions_must_not_be_a_bare_string() -> None:
    # "us" in "us-east-1" is True: a str must not be taken for a set of names.
    with pytest.raises(TypeError):
        _verify(_sign(region="us"), regions="us-east-1")


def _signed_chunked_body(
    data: list[bytes], signing: chunked.ChunkSigning, trailers: list[tuple[str, str]] | None
) -> bytes:
    """A signed aws-chunked body as the SDKs write it, encoded here, not by s3shim."""
    prev = signing.seed_signature

    def sign(label: str, payload_hash: str, *hashes: str) -> str:
        to_sign = "\n".join((label, signing.amz_date, signing.scope, prev, *hashes, payload_hash))
        return hmac.new(signing.signing_key, to_sign.encode(), hashlib.sha256).hexdigest()

    out = b""
    for piece in [*data, b""]:
        prev = sign(
            "AWS4-HMAC-SHA256-PAYLOAD", hashlib.sha256(piece).hexdigest(), sigv4.EMPTY_SHA256
        )
        out += b"%x;chunk-signature=%s\r\n" % (len(piece), prev.encode())
        if piece:
            out += piece + b"\r\n"
    if trailers is None:
        return out + b"\r\n"
    canonical = "".join(f"{name}:{value}\n" for name, value in sorted(trailers))
    prev = sign("AWS4-HMAC-SHA256-TRAILER", hashlib.sha256(canonical.encode()).hexdigest())
    lines = "".join(f"{name}:{value}\r\n" for name, value in trailers)
    return out + f"{lines}x-amz-trailer-signature:{prev}\r\n\r\n".encode()


@pytest.mark.parametrize(
    ("payload", "trailers"),
    [
        ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", None),
        ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", True),
    ],
)
def test_chunk_signatures_chain_from_a_non_default_region(
    payload: str, trailers: bool | None
) -> None:
    """aws-chunked bodies signed under RGW's `default` region decode with the ctx's scope."""
    data = [b"a" * 9000, b"b" * 100]
    whole = b"".join(data)
    crc = crc32_b64(whole)
    trailer_list = [("x-amz-checksum-crc32", crc)] if trailers else None
    extra = {"x-amz-decoded-content-length": str(len(whole)), "content-encoding": "aws-chunked"}
    if trailers:
        extra["x-amz-trailer"] = "x-amz-checksum-crc32"
    req = _sign(payload=payload, region="default", headers=extra)
    ctx = _verify(req, regions=None)
    assert ctx.payload_hash == payload
    # The client's side of the body, built from the key derived here and the seed signature.
    client = chunked.ChunkSigning(
        signing_key=_key_chain(KEYS["AKIDCLIENT"], STAMP[:8], "default"),
        amz_date=STAMP,
        scope=f"{STAMP[:8]}/default/s3/aws4_request",
        seed_signature=req.headers["Authorization"].rsplit("Signature=", 1)[1],
    )
    body = _signed_chunked_body(data, client, trailer_list)
    framing = chunked.framing_for(ctx.payload_hash)
    assert framing is not None
    expected = frozenset({"x-amz-checksum-crc32"}) if trailers else frozenset()

    def decode(signing: chunked.ChunkSigning) -> list[chunked.Event]:
        dec = chunked.AwsChunkedDecoder(
            framing, signing, decoded_length=len(whole), expected_trailers=expected
        )
        return [*dec.feed(body), *dec.eof()]

    from_ctx = chunked.ChunkSigning(
        signing_key=ctx.signing_key,
        amz_date=ctx.amz_date,
        scope=ctx.scope,
        seed_signature=ctx.signature,
    )
    events = decode(from_ctx)
    assert b"".join(e.data for e in events if isinstance(e, chunked.Data)) == whole
    if trailers:
        assert chunked.Trailer("x-amz-checksum-crc32", crc) in events
    # The same body checked against the proxy's configured region instead must fail.
    other = chunked.ChunkSigning(
        signing_key=_key_chain(KEYS["AKIDCLIENT"], STAMP[:8], "us-east-1"),
        amz_date=ctx.amz_date,
        scope=f"{STAMP[:8]}/us-east-1/s3/aws4_request",
        seed_signature=ctx.signature,
    )
    with pytest.raises(errors.S3Error) as info:
        decode(other)
    assert info.value.code == "SignatureDoesNotMatch"


# --- Repeated fields, headers and parameters (issue 11.5) ----------------------------------


@pytest.mark.parametrize("field", ["Credential", "SignedHeaders", "Signature"])
@pytest.mark.parametrize("same", [True, False])
def test_repeated_authorization_field_refused(field: str, same: bool) -> None:
    req = _sign(region="default")
    headers = _headers(req)
    authz = headers["authorization"][0]
    fields = dict(item.strip().split("=", 1) for item in authz.split(" ", 1)[1].split(","))
    # A different second value would win with "last wins"; an identical one is refused too.
    value = fields[field]
    if not same:
        value = {
            "Credential": f"AKIDCLIENT/{STAMP[:8]}/us-east-1/s3/aws4_request",
            "SignedHeaders": "host",
            "Signature": ZERO_SIG,
        }[field]
    headers["authorization"] = [f"{authz}, {field}={value}"]
    err = _error(req, headers=headers, regions=None)
    assert err.code == "AuthorizationHeaderMalformed"
    assert field in err.message


def test_two_authorization_headers_refused() -> None:
    req = _sign()
    headers = _headers(req)
    headers["authorization"] = headers["authorization"] * 2
    err = _error(req, headers=headers)
    assert (err.code, err.message) == ("InvalidArgument", "Only one auth mechanism allowed.")
    # The public header verifier refuses it on its own, too.
    with pytest.raises(errors.S3Error) as info:
        auth.verify_header_auth(
            method=req.method,
            raw_path=urlsplit(req.url).path,
            query=[],
            headers=headers,
            lookup=KEYS.get,
            now=NOW,
        )
    assert info.value.code == "InvalidArgument"


@pytest.mark.parametrize("name", ["x-amz-date", "x-amz-content-sha256"])
@pytest.mark.parametrize("presigned", [False, True])
def test_repeated_single_headers_refused(name: str, presigned: bool) -> None:
    signed_extra = {} if not presigned else {"x-amz-content-sha256": sigv4.UNSIGNED_PAYLOAD}
    if presigned:
        signed_extra["x-amz-date"] = STAMP
        req = _sign("GET", "http://h/bucket/k?a=b", presign=600, headers=signed_extra)
    else:
        req = _sign()
    headers = _headers(req)
    _verify(req, headers=headers)  # valid with one value
    headers[name] = headers[name] * 2
    err = _error(req, headers=headers)
    assert err.code == "InvalidArgument"
    assert name in err.message


@pytest.mark.parametrize(
    "param",
    [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
    ],
)
def test_repeated_presign_parameter_refused(param: str) -> None:
    req = _sign("GET", "http://h/bucket/k?a=b", presign=600)
    query = sigv4.parse_query(urlsplit(req.url).query)
    query += [(k, v) for k, v in query if k == param]
    err = _error(req, query=query)
    assert err.code == "AuthorizationQueryParametersError"
    assert param in err.message


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("AWSAccessKeyId=a", "InvalidArgument"),  # header + SigV2 query
        ("Signature=a", "InvalidArgument"),
        ("X-Amz-Algorithm=AWS4-HMAC-SHA256", "InvalidArgument"),  # header + SigV4 query
        ("X-Amz-Credential=a", "InvalidArgument"),
    ],
)
def test_header_with_query_mechanism_refused(query: str, code: str) -> None:
    req = _sign("GET", f"http://h/bucket/k?{query}")
    err = _error(req)
    assert (err.code, err.message) == (code, "Only one auth mechanism allowed.")


def test_sigv4_and_sigv2_query_together_refused() -> None:
    req = _sign("GET", "http://h/bucket/k?Signature=x", presign=600)
    assert _code(req) == "InvalidArgument"


def test_lone_query_markers() -> None:
    lone_algorithm = AWSRequest(method="GET", url="http://h/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256")
    assert _code(lone_algorithm) == "AuthorizationQueryParametersError"
    lone_v2_signature = AWSRequest(method="GET", url="http://h/b/k?Signature=x")
    assert _code(lone_v2_signature) == "InvalidRequest"


# --- Anonymous detection -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "headers", "anonymous"),
    [
        ([], {"host": ["h"]}, True),
        ([("prefix", "a"), ("x-amz-checksum-crc32", "AAAAAA==")], {"host": ["h"]}, True),
        ([("X-Amz-Date", STAMP), ("X-Amz-Expires", "60")], {}, True),  # no marker among them
        ([("x-amz-signature", "a")], {}, True),  # names are case-sensitive, as S3's are
        ([], {"authorization": ["AWS4-HMAC-SHA256 Credential=a"]}, False),
        ([], {"authorization": [""]}, False),  # an empty header is still an attempt
        ([("X-Amz-Signature", "a")], {}, False),
        ([("X-Amz-Credential", "a")], {}, False),
        ([("X-Amz-Algorithm", "AWS4-HMAC-SHA256")], {}, False),
        ([("AWSAccessKeyId", "a")], {}, False),
        ([("Signature", "a")], {}, False),
    ],
)
def test_is_anonymous(
    query: list[tuple[str, str]], headers: dict[str, list[str]], anonymous: bool
) -> None:
    assert auth.is_anonymous(query, headers) is anonymous


_NAMES = st.sampled_from(
    [
        "X-Amz-Signature",
        "X-Amz-Credential",
        "X-Amz-Algorithm",
        "X-Amz-Date",
        "AWSAccessKeyId",
        "Signature",
        "Expires",
        "prefix",
        "x-amz-signature",
        "uploadId",
    ]
)


@given(
    query=st.lists(st.tuples(_NAMES, st.text(max_size=5)), max_size=4),
    header=st.sampled_from([None, "", "AWS4-HMAC-SHA256 Credential=a", "AWS a:b"]),
)
def test_is_anonymous_is_exactly_what_verify_refuses_as_anonymous(
    query: list[tuple[str, str]], header: str | None
) -> None:
    headers: dict[str, list[str]] = {"host": ["h"]}
    if header is not None:
        headers["authorization"] = [header]
    with pytest.raises(errors.S3Error) as info:
        auth.verify(
            method="GET",
            raw_path="/b/k",
            query=query,
            headers=headers,
            lookup=KEYS.get,
            now=NOW,
        )
    anonymous_refusal = (info.value.code, info.value.message) == (
        "AccessDenied",
        "Anonymous requests are not accepted.",
    )
    assert auth.is_anonymous(query, headers) is anonymous_refusal


# --- Checksum parameters in a presigned query ----------------------------------------------


def test_a_presigned_signature_covers_the_checksum_parameters_in_its_query() -> None:
    """The JS SDK v3's presigned PUT: its checksum parameters are authenticated as query
    parameters (plan.py never reads them as a claim about the body)."""
    crc = crc32_b64(b"hello")
    url = (
        "http://h/bucket/k?x-id=PutObject&x-amz-checksum-crc32="
        + crc.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
        + "&x-amz-sdk-checksum-algorithm=CRC32"
    )
    req = _sign("PUT", url, presign=600)
    query = sigv4.parse_query(urlsplit(req.url).query)
    assert ("x-amz-checksum-crc32", crc) in query
    assert _verify(req).presigned
    tampered = [(k, "AAAAAA==") if k == "x-amz-checksum-crc32" else (k, v) for k, v in query]
    assert _code(req, query=tampered) == "SignatureDoesNotMatch"
    dropped = [(k, v) for k, v in query if k != "x-amz-sdk-checksum-algorithm"]
    assert _code(req, query=dropped) == "SignatureDoesNotMatch"


# --- Cheap verification (issue 9) ----------------------------------------------------------


def _strptime_or_none(value: str) -> datetime | None:
    try:
        return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _fast_or_none(value: str) -> datetime | None:
    try:
        return auth._parse_amz_date(value, errors.authorization_header_malformed)
    except errors.S3Error as err:
        assert err.code == "AuthorizationHeaderMalformed"
        return None


def _stamp(y: int, mo: int, d: int, h: int, mi: int, s: int) -> str:
    return f"{y:04d}{mo:02d}{d:02d}T{h:02d}{mi:02d}{s:02d}Z"


@given(
    y=st.integers(0, 9999),
    mo=st.integers(0, 19),
    d=st.integers(0, 39),
    h=st.integers(0, 29),
    mi=st.integers(0, 69),
    s=st.integers(0, 69),
)
@example(2026, 13, 1, 0, 0, 0)  # month 13
@example(2026, 2, 29, 0, 0, 0)  # not a leap year
@example(2024, 2, 29, 23, 59, 59)  # a leap year
@example(2026, 4, 31, 0, 0, 0)
@example(0, 1, 1, 0, 0, 0)  # year 0
@example(2026, 11, 25, 24, 0, 0)
@example(2026, 11, 25, 23, 60, 0)
@example(2026, 12, 31, 23, 59, 60)  # a leap second: strptime refuses it too
def test_fast_date_parse_equals_strptime(y: int, mo: int, d: int, h: int, mi: int, s: int) -> None:
    value = _stamp(y, mo, d, h, mi, s)
    assert _fast_or_none(value) == _strptime_or_none(value)


@given(st.from_regex(r"[0-9]{8}T[0-9]{6}Z", fullmatch=True))
def test_fast_date_parse_equals_strptime_on_any_digits(value: str) -> None:
    assert _fast_or_none(value) == _strptime_or_none(value)


@pytest.mark.parametrize(
    "value",
    [
        ARABIC_2026 + "1125T120000Z",  # strptime takes these digits; S3 does not
        "20261125T120000Z\n",
        "20261125T120000",
        "20261125 120000Z",
        "2026-11-25T12:00:00Z",
        "",
    ],
)
def test_fast_date_parse_refuses_off_shape_values(value: str) -> None:
    assert _fast_or_none(value) is None


def test_fast_date_parse_value() -> None:
    parsed = _fast_or_none(STAMP)
    assert parsed == NOW
    assert parsed is not None and parsed.tzinfo is UTC


def test_signing_key_cache_hits_in_verify() -> None:
    sigv4.signing_key.cache_clear()
    _verify(_sign())
    first = sigv4.signing_key.cache_info()
    assert (first.hits, first.misses) == (0, 1)
    # Another request, same key, day and region: the derivation is not repeated.
    _verify(_sign("GET", "http://h/bucket/other?a=b", presign=600))
    _verify(_sign(headers={"x-amz-meta-a": "b"}))
    second = sigv4.signing_key.cache_info()
    assert (second.hits, second.misses) == (2, 1)
    # Another region is another key.
    _verify(_sign(region="default"), regions=None)
    third = sigv4.signing_key.cache_info()
    assert (third.hits, third.misses) == (2, 2)


@pytest.mark.parametrize("value", sorted(chunked.STREAMING_VALUES))
def test_every_streaming_value_is_a_payload_hash(value: str) -> None:
    # SigV4a framings pass here and are refused by chunked.framing_for, with their own error.
    assert _verify(_sign(payload=value)).payload_hash == value


@pytest.mark.parametrize("value", ["STREAMING-FOO", "unsigned-payload", "A" * 64, ""])
def test_other_payload_hashes_refused(value: str) -> None:
    assert _code(_sign(payload=value)) == "InvalidArgument"
