"""The SigV4 signer against the AWS documentation's examples and botocore, byte for byte."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from hypothesis import example, given, settings
from hypothesis import strategies as st

from s3shim import sigv4

DOC_KEY = sigv4.Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
DOC_DATE = "20130524T000000Z"


def _doc_sign(method: str, path: str, query: str, headers: dict[str, str], payload: str) -> str:
    return sigv4.sign_headers(
        method=method,
        raw_path=path,
        query=sigv4.parse_query(query),
        host="examplebucket.s3.amazonaws.com",
        headers=headers,
        payload_hash=payload,
        creds=DOC_KEY,
        region="us-east-1",
        amz_date=DOC_DATE,
    ).signature


def test_doc_get_object_range() -> None:
    sig = _doc_sign("GET", "/test.txt", "", {"range": "bytes=0-9"}, sigv4.EMPTY_SHA256)
    # The documented example signs range too; our signer signs only host and x-amz-*,
    # so rebuild the documented canonical request explicitly.
    assert sig  # signer runs; the exact doc value is checked below with the same headers
    headers = {
        "host": ["examplebucket.s3.amazonaws.com"],
        "range": ["bytes=0-9"],
        "x-amz-content-sha256": [sigv4.EMPTY_SHA256],
        "x-amz-date": [DOC_DATE],
    }
    signed = ["host", "range", "x-amz-content-sha256", "x-amz-date"]
    canon = sigv4.canonical_request("GET", "/test.txt", "", headers, signed, sigv4.EMPTY_SHA256)
    key = sigv4.signing_key(DOC_KEY.secret_key, "20130524", "us-east-1")
    scope = sigv4.scope("20130524", "us-east-1")
    assert (
        sigv4.signature(key, sigv4.string_to_sign(DOC_DATE, scope, canon))
        == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


def _doc_signature(
    method: str, path: str, query: str, headers: dict[str, str], payload: str
) -> str:
    hdrs = {k: [v] for k, v in headers.items()}
    signed = sorted(hdrs)
    canon = sigv4.canonical_request(
        method,
        sigv4.canonical_uri(path),
        sigv4.canonical_query(sigv4.parse_query(query)),
        hdrs,
        signed,
        payload,
    )
    key = sigv4.signing_key(DOC_KEY.secret_key, "20130524", "us-east-1")
    return sigv4.signature(
        key, sigv4.string_to_sign(DOC_DATE, sigv4.scope("20130524", "us-east-1"), canon)
    )


def test_doc_put_object() -> None:
    body = b"Welcome to Amazon S3."
    sig = _doc_signature(
        "PUT",
        "/test%24file.text",
        "",
        {
            "date": "Fri, 24 May 2013 00:00:00 GMT",
            "host": "examplebucket.s3.amazonaws.com",
            "x-amz-content-sha256": hashlib.sha256(body).hexdigest(),
            "x-amz-date": DOC_DATE,
            "x-amz-storage-class": "REDUCED_REDUNDANCY",
        },
        hashlib.sha256(body).hexdigest(),
    )
    assert sig == "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"


def test_doc_get_lifecycle() -> None:
    sig = _doc_signature(
        "GET",
        "/",
        "lifecycle",
        {
            "host": "examplebucket.s3.amazonaws.com",
            "x-amz-content-sha256": sigv4.EMPTY_SHA256,
            "x-amz-date": DOC_DATE,
        },
        sigv4.EMPTY_SHA256,
    )
    assert sig == "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"


def test_doc_list_objects() -> None:
    sig = _doc_signature(
        "GET",
        "/",
        "max-keys=2&prefix=J",
        {
            "host": "examplebucket.s3.amazonaws.com",
            "x-amz-content-sha256": sigv4.EMPTY_SHA256,
            "x-amz-date": DOC_DATE,
        },
        sigv4.EMPTY_SHA256,
    )
    assert sig == "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"


def test_doc_presigned_get() -> None:
    query = (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
    )
    sig = _doc_signature(
        "GET", "/test.txt", query, {"host": "examplebucket.s3.amazonaws.com"}, "UNSIGNED-PAYLOAD"
    )
    assert sig == "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"


# Keys, values and paths that trip up hand-written encoders.
AWKWARD = [
    "a b",
    "ünïcödé/ключ",
    "plus+sign",
    "percent%41",
    "eq=amp&",
    "tilde~star*",
    "double//slash",
    "./dots/../x",
    "semi;colon,comma'quote\"",
    "emoji-\U0001f600",
]


def _botocore(
    method: str, key: str, query: dict[str, str], headers: dict[str, str], payload: str
) -> tuple[str, str]:
    url = "http://127.0.0.1:9000/bucket/" + quote(key, safe="/~")
    if query:
        url += "?" + "&".join(
            f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in query.items()
        )
    req = AWSRequest(method=method, url=url, headers=dict(headers))
    req.headers["x-amz-content-sha256"] = payload
    req.context["timestamp"] = DOC_DATE
    req.headers["X-Amz-Date"] = DOC_DATE
    signer = S3SigV4Auth(BotoCredentials("AK", "se cret+/ü"), "s3", "eu-west-3")
    canon = signer.canonical_request(req)
    sts = signer.string_to_sign(req, canon)
    return canon, signer.signature(sts, req)


def _ours(
    method: str, key: str, query: dict[str, str], headers: dict[str, str], payload_hash: str
) -> sigv4.SignedRequest:
    """s3shim's signature of the request _botocore signs."""
    return sigv4.sign_headers(
        method=method,
        raw_path="/bucket/" + quote(key, safe="/~"),
        query=list(query.items()),
        host="127.0.0.1:9000",
        headers=headers,
        payload_hash=payload_hash,
        creds=sigv4.Credentials("AK", "se cret+/ü"),
        region="eu-west-3",
        amz_date=DOC_DATE,
    )


@pytest.mark.parametrize("key", AWKWARD)
def test_matches_botocore_paths(key: str) -> None:
    query = {"prefix": key, "x-id": "PutObject", "empty": ""}
    headers = {"x-amz-meta-note": "  spaced   out  ", "x-amz-storage-class": "STANDARD"}
    boto_canon, boto_sig = _botocore("PUT", key, query, headers, sigv4.UNSIGNED_PAYLOAD)
    ours = _ours("PUT", key, query, headers, sigv4.UNSIGNED_PAYLOAD)
    assert ours.canonical_request == boto_canon
    assert ours.signature == boto_sig


text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00\r\n"),
    min_size=1,
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(key=text, qv=text, meta=text)
def test_matches_botocore_fuzz(key: str, qv: str, meta: str) -> None:
    meta = meta.strip() or "x"
    query = {"q": qv}
    headers = {"x-amz-meta-m": meta.encode("ascii", "replace").decode()}
    boto_canon, boto_sig = _botocore("GET", key, query, headers, sigv4.EMPTY_SHA256)
    ours = _ours("GET", key, query, headers, sigv4.EMPTY_SHA256)
    assert ours.canonical_request == boto_canon
    assert ours.signature == boto_sig


def test_presigned_matches_botocore() -> None:
    req = AWSRequest(method="GET", url="http://127.0.0.1:9000/bucket/a%20b%2Bc", headers={})
    req.context["timestamp"] = DOC_DATE
    signer = S3SigV4QueryAuth(BotoCredentials("AK", "SK"), "s3", "us-east-1", expires=600)
    signer._modify_request_before_signing(req)  # adds the X-Amz-* query parameters
    canon = signer.canonical_request(req)
    sig = signer.signature(signer.string_to_sign(req, canon), req)
    query = sigv4.parse_query(req.url.split("?", 1)[1])
    ours = sigv4.canonical_request(
        "GET",
        sigv4.canonical_uri("/bucket/a%20b%2Bc"),
        sigv4.canonical_query(query),
        {"host": ["127.0.0.1:9000"]},
        ["host"],
        "UNSIGNED-PAYLOAD",
    )
    assert ours == canon
    key = sigv4.signing_key("SK", "20130524", "us-east-1")
    scope = sigv4.scope("20130524", "us-east-1")
    assert sigv4.signature(key, sigv4.string_to_sign(DOC_DATE, scope, ours)) == sig


def test_credentials_repr_hides_secret() -> None:
    assert "wJalr" not in repr(DOC_KEY)


@given(st.text(), st.booleans())
def test_the_fast_paths_of_percent_coding_agree_with_urllib(value: str, keep_slash: bool) -> None:
    """uri_encode/percent_decode skip urllib for plain values; the answer must not change."""
    from urllib.parse import quote, unquote_to_bytes

    safe = "-_.~/" if keep_slash else "-_.~"
    assert sigv4.uri_encode(value, keep_slash=keep_slash) == quote(
        value, safe=safe, errors="surrogateescape"
    )
    assert sigv4.percent_decode(value) == unquote_to_bytes(value).decode(
        "utf-8", errors="surrogateescape"
    )


_SPACES = (
    " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


@given(st.text(alphabet=st.sampled_from("ab,=" + _SPACES)) | st.text())
@example("a  b")
@example(" a")
@example("a ")
@example("a\u00a0b")
@example("a\u3000b")
def test_fold_value_fast_path_is_the_same_folding(value: str) -> None:
    # The fast path must give exactly what botocore's ' '.join(value.split()) gives.
    assert sigv4.fold_value(value) == " ".join(value.split())


def test_canonical_query_of_nothing() -> None:
    assert sigv4.canonical_query(()) == sigv4.canonical_query(iter(())) == ""


def test_every_whitespace_but_space_is_unprintable() -> None:
    # The premise of fold_value's fast path, over every code point.
    spaces = [chr(c) for c in range(0x110000) if chr(c).isspace()]
    assert [s for s in spaces if s != " " and s.isprintable()] == []
    assert " ".join(f"a{''.join(spaces)}b".split()) == "a b"


@given(key=st.binary(max_size=200), message=st.binary(max_size=300))
@example(key=b"", message=b"")
@example(key=b"k" * 64, message=b"block-sized key")
@example(key=b"k" * 65, message=b"a key longer than a block is hashed first")
def test_hmac_with_hashed_pads_is_rfc_2104_hmac(key: bytes, message: bytes) -> None:
    expected = hmac.digest(key, message, "sha256").hex()
    mac = sigv4.HmacSha256(key)
    assert mac.hexdigest(message) == expected
    assert mac.hexdigest(message) == expected  # the pads are copied, never consumed


def test_signature_is_hmac_of_the_string_to_sign() -> None:
    key = sigv4.signing_key("secret", "20261207", "us-east-1")
    to_sign = "AWS4-HMAC-SHA256\n20261207T000000Z\nscope\n" + "0" * 64
    assert sigv4.signature(key, to_sign) == hmac.digest(key, to_sign.encode(), "sha256").hex()
