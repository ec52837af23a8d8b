"""The form upload state machine: verify, re-sign, stream, hold back — at every split."""

from __future__ import annotations

import hashlib
import hmac
import itertools
from datetime import UTC, datetime

import pytest
import urllib3
from hypothesis import given, settings
from hypothesis import strategies as st

from s3shim import errors, postform, sigv4
from s3shim.formupload import FormUpload
from s3shim.postform import FileData, FileStart, FormParser
from s3shim.rewrite import Policy
from testkit.forms import CLIENT, STORE, form_upload
from testkit.helpers import crc32_b64
from testkit.shim import PATH_STYLE, s3_client

ON = Policy(True, True)


def form(data: bytes, **fields: str) -> tuple[bytes, str]:
    s3 = s3_client(
        "http://s3shim.test",
        CLIENT.access_key,
        CLIENT.secret_key,
        region="default",
        signature_version="s3v4",
        s3=PATH_STYLE,
    )
    signed = s3.generate_presigned_post(
        "b", "k", Fields=fields or None, Conditions=[{k: v} for k, v in fields.items()] or None
    )
    body, ctype = urllib3.encode_multipart_formdata(
        [*signed["fields"].items(), ("file", ("f.bin", data))]
    )
    return body, ctype


def upload(body: bytes, ctype: str, policy: Policy = ON) -> FormUpload:
    return form_upload(body, ctype, policy)


def run(up: FormUpload, body: bytes, cuts: list[int]) -> bytes:
    bounds = sorted({0, len(body), *(c for c in cuts if c <= len(body))})
    out = b"".join(up.feed(body[a:b]) for a, b in itertools.pairwise(bounds))
    return out + up.finish()


def file_of(body: bytes, boundary: str) -> bytes:
    return b"".join(e.data for e in FormParser(boundary).feed(body) if isinstance(e, FileData))


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(0, 4000), max_size=8))
def test_the_store_gets_a_form_signed_with_its_key_and_the_same_file(
    data: bytes, cuts: list[int]
) -> None:
    body, ctype = form(data)
    up = upload(body, ctype)
    sent = run(up, body, cuts)
    assert up.content_length == len(sent)
    boundary = postform.boundary_from_content_type(up.content_type)
    assert boundary != postform.boundary_from_content_type(ctype)  # the store's own
    assert file_of(sent, boundary) == data
    fields = {
        e.key: e.value for e in FormParser(boundary).feed(sent) if isinstance(e, postform.Field)
    }
    assert fields["x-amz-credential"].startswith(b"AKSTORE/")
    # botocore's own POST signer, with the store's key, agrees with the new signature.
    key = sigv4.signing_key(STORE.secret_key, fields["x-amz-date"][:8].decode(), "us-east-1")
    assert (
        fields["x-amz-signature"].decode()
        == hmac.new(key, fields["policy"], hashlib.sha256).hexdigest()
    )


def test_nothing_is_released_before_the_signature_is_verified() -> None:
    body, ctype = form(b"x" * 100)
    up = upload(body, ctype)
    start = body.index(b'name="file"')
    assert up.feed(body[:start]) == b""  # still reading fields
    assert up.store_form is None


def test_a_wrong_signature_or_unknown_key_is_refused_at_the_file() -> None:
    body, ctype = form(b"data")
    sig_at = body.index(b'name="x-amz-signature"')
    value_at = body.index(b"\r\n\r\n", sig_at) + 4
    bad = (
        body[:value_at]
        + (b"0" if body[value_at : value_at + 1] != b"0" else b"1")
        + body[value_at + 1 :]
    )
    with pytest.raises(errors.S3Error) as e:
        upload(bad, ctype).feed(bad)
    assert e.value.code == "SignatureDoesNotMatch"


def test_the_declared_checksum_is_verified_before_the_last_bytes() -> None:
    data = b"z" * 5000
    wrong = crc32_b64(b"no")
    body, ctype = form(data, **{"x-amz-checksum-crc32": wrong})
    up = upload(body, ctype)
    half = len(body) // 2
    out = up.feed(body[:half]) + up.feed(body[half:])
    assert up.content_length is not None and 0 < len(out) < up.content_length
    with pytest.raises(errors.S3Error) as e:
        up.finish()
    assert e.value.code == "BadDigest" and up.failure is e.value
    fields = {
        ev.key
        for ev in FormParser(postform.boundary_from_content_type(up.content_type)).feed(out)
        if isinstance(ev, postform.Field)
    }
    assert "x-amz-credential" in fields
    assert "x-amz-checksum-crc32" not in fields  # dropped with the flag, after verifying


def store_parts(up: FormUpload, sent: bytes) -> list[postform.Event]:
    parser = FormParser(postform.boundary_from_content_type(up.content_type))
    return [*parser.feed(sent), *parser.close()]


def test_the_store_gets_no_part_after_the_file_and_no_client_boundary() -> None:
    signed, ctype = form(b"data")
    boundary = postform.boundary_from_content_type(ctype)
    close = f"\r\n--{boundary}--\r\n".encode()
    assert signed.endswith(close)
    after = f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="key"\r\n\r\nother'
    body = signed[: -len(close)] + after.encode() + close + b"epilogue"
    up = upload(body, ctype)
    sent = run(up, body, [len(body) // 2])
    assert up.content_length == len(sent) and boundary.encode() not in sent
    events = store_parts(up, sent)
    assert not any(isinstance(e, postform.TrailingField) for e in events)
    assert [e.value for e in events if isinstance(e, postform.Field) and e.key == "key"] == [b"k"]


def test_a_short_body_is_incomplete() -> None:
    body, ctype = form(b"abc" * 100)
    up = FormUpload(
        ctype,
        len(body) + 5,
        lookup=lambda k: CLIENT.secret_key,
        store_creds=lambda k: STORE,
        store_region="us-east-1",
        regions=None,
        policy=ON,
        now=datetime.now(UTC),
    )
    up.feed(body)
    with pytest.raises(errors.S3Error) as e:
        up.finish()
    assert e.value.code == "IncompleteBody"


def test_anonymous_forms_follow_the_setting() -> None:
    body, ctype = urllib3.encode_multipart_formdata([("key", "k"), ("file", ("f", b"x"))])
    up = upload(body, ctype)
    run(up, body, [])
    assert up.access_key is None
    with pytest.raises(errors.S3Error) as e:
        upload(body, ctype, Policy(True, True, allow_anonymous=False)).feed(body)
    assert e.value.code == "AccessDenied"


def test_regions_can_be_restricted() -> None:
    body, ctype = form(b"x")  # signed for region 'default'
    up = FormUpload(
        ctype,
        len(body),
        lookup=lambda k: CLIENT.secret_key,
        store_creds=lambda k: STORE,
        store_region="us-east-1",
        regions=frozenset({"us-east-1"}),
        policy=ON,
        now=datetime.now(UTC),
    )
    with pytest.raises(errors.S3Error):
        up.feed(body)


def test_file_start_carries_the_original_head_length() -> None:
    body, ctype = form(b"q")
    events = FormParser(postform.boundary_from_content_type(ctype)).feed(body)
    start = next(e for e in events if isinstance(e, FileStart))
    assert body[start.head_length : start.head_length + 1] == b"q"
