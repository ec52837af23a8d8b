"""Inbound verification, fed requests signed by botocore itself (not by s3shim's signer)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from s3shim import auth, errors, sigv4

KEYS = {"AKIDCLIENT": "client secret/+=&~%ü"}
NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
STAMP = NOW.strftime("%Y%m%dT%H%M%SZ")


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
) -> AWSRequest:
    req = AWSRequest(method=method, url=url, headers=dict(headers or {}))
    req.context["timestamp"] = stamp
    creds = Credentials(access, secret)
    if presign is None:
        req.headers["X-Amz-Content-SHA256"] = payload
        signer = S3SigV4Auth(creds, "s3", "us-east-1")
        req.headers["X-Amz-Date"] = stamp
        canon = signer.canonical_request(req)
        sig = signer.signature(signer.string_to_sign(req, canon), req)
        scope = f"{access}/{stamp[:8]}/us-east-1/s3/aws4_request"
        req.headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={scope}, "
            f"SignedHeaders={signer.signed_headers(signer.headers_to_sign(req))}, Signature={sig}"
        )
    else:
        qsigner = S3SigV4QueryAuth(creds, "s3", "us-east-1", expires=presign)
        qsigner._modify_request_before_signing(req)
        canon = qsigner.canonical_request(req)
        sig = qsigner.signature(qsigner.string_to_sign(req, canon), req)
        req.url = req.url + "&X-Amz-Signature=" + sig
    return req


def _verify(req: AWSRequest, now: datetime = NOW, **overrides: object) -> auth.AuthContext:
    parts = urlsplit(req.url)
    headers: dict[str, list[str]] = {}
    for k, v in req.headers.items():
        headers.setdefault(k.lower(), []).append(v)
    headers.setdefault("host", [parts.netloc])
    kwargs: dict[str, object] = {
        "method": req.method,
        "raw_path": parts.path,
        "query": sigv4.parse_query(parts.query),
        "headers": headers,
        "lookup": KEYS.get,
        "region": "us-east-1",
        "now": now,
    }
    kwargs.update(overrides)
    return auth.verify(**kwargs)  # type: ignore[arg-type]


def _code(req: AWSRequest, **kw: object) -> str:
    with pytest.raises(errors.S3Error) as info:
        _verify(req, **kw)  # type: ignore[arg-type]
    return info.value.code


def test_header_auth_accepts_botocore_signature() -> None:
    ctx = _verify(_sign(headers={"x-amz-meta-a": "  b  c "}))
    assert ctx.access_key == "AKIDCLIENT"
    assert not ctx.presigned
    assert ctx.payload_hash == sigv4.UNSIGNED_PAYLOAD
    assert ctx.scope == f"{STAMP[:8]}/us-east-1/s3/aws4_request"


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
    with pytest.raises(errors.S3Error) as info:
        _verify(req, now=NOW + timedelta(seconds=61))
    assert (info.value.code, info.value.message) == ("AccessDenied", "Request has expired")


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
    headers = {k.lower(): [v] for k, v in req.headers.items()}
    headers["host"] = ["127.0.0.1:8080"]
    headers["x-amz-copy-source"] = ["/other/secret"]
    with pytest.raises(errors.S3Error) as info:
        _verify(req, headers=headers)
    assert info.value.code == "AccessDenied"


def test_anonymous_and_both_and_sigv2_and_sigv4a() -> None:
    req = AWSRequest(method="GET", url="http://h/bucket/k", headers={})
    assert _code(req) == "AccessDenied"
    signed = _sign("GET", "http://h/bucket/k?X-Amz-Signature=" + "0" * 64)
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
        "SignedHeaders=host, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=AKIDCLIENT/20261125/us-east-1/sqs/aws4_request, "
        "SignedHeaders=host, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=AKIDCLIENT/20261125/us-east-1/s3/aws4_request, "
        "SignedHeaders=host, Signature=nothex",
        "AWS4-HMAC-SHA256 Credential=AKIDCLIENT/20261125/eu-west-1/s3/aws4_request, "
        "SignedHeaders=host, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=AKIDCLIENT/20261125/us-east-1/s3/aws4_request, "
        "SignedHeaders=x-amz-date;host, Signature=" + "0" * 64,
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
    assert _code(req) == "AuthorizationHeaderMalformed"


def test_missing_content_sha256() -> None:
    req = _sign()
    headers = {
        k.lower(): [v] for k, v in req.headers.items() if k.lower() != "x-amz-content-sha256"
    }
    headers["host"] = ["127.0.0.1:8080"]
    with pytest.raises(errors.S3Error) as info:
        _verify(req, headers=headers)
    assert info.value.code == "InvalidRequest"


def test_context_repr_has_no_secrets() -> None:
    ctx = _verify(_sign())
    assert ctx.signature not in repr(ctx)
    assert "signing_key" not in repr(ctx)


def test_presigned_not_valid_yet() -> None:
    req = _sign("GET", "http://h/bucket/k?a=b", presign=600)
    with pytest.raises(errors.S3Error) as info:
        _verify(req, now=NOW - timedelta(minutes=16))
    assert (info.value.code, info.value.message) == ("AccessDenied", "Request is not valid yet")
    _verify(req, now=NOW - timedelta(minutes=14))


def test_credential_date_must_match_request_date() -> None:
    req = _sign(stamp=STAMP)
    headers = {k.lower(): [v] for k, v in req.headers.items()}
    headers["host"] = ["127.0.0.1:8080"]
    headers["authorization"] = [headers["authorization"][0].replace(STAMP[:8], "20261124", 1)]
    with pytest.raises(errors.S3Error) as info:
        _verify(req, headers=headers)
    assert info.value.code == "AuthorizationHeaderMalformed"


def test_host_must_be_signed() -> None:
    req = AWSRequest(
        method="GET",
        url="http://h/b/k",
        headers={
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDCLIENT/20261125/us-east-1/s3/"
            "aws4_request, SignedHeaders=x-amz-content-sha256;x-amz-date, Signature=" + "0" * 64,
            "x-amz-date": STAMP,
            "x-amz-content-sha256": sigv4.EMPTY_SHA256,
        },
    )
    assert _code(req) == "AuthorizationHeaderMalformed"
