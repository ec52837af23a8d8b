"""A form upload stored encrypted: the store's form carries the object's derived SSE-C key
in place of the client's SSE-S3 field, as signed fields and exact policy conditions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import boto3
import pytest
import urllib3
from botocore.config import Config as BotoConfig

from s3shim import errors, postform, sigv4, sse
from s3shim.formupload import FormUpload
from s3shim.postform import Field, FileData, FormParser
from s3shim.rewrite import Group, Policy
from s3shim.sse import Encryption
from s3shim.ssekeys import Keyring, parse_keys_file
from testkit.forms import CLIENT, STORE, form_upload

RING: Keyring = parse_keys_file(
    json.dumps({"keys": [{"id": "k1", "key": base64.b64encode(bytes(range(40, 72))).decode()}]}),
    "test",
)
CUSTOMER = "x-amz-server-side-encryption-customer-"
SSE_S3 = {"x-amz-server-side-encryption": "AES256"}


def _form(data: bytes, key: str = "k", **fields: str) -> tuple[bytes, str]:
    s3 = boto3.client(
        "s3",
        endpoint_url="http://s3shim.test",
        aws_access_key_id=CLIENT.access_key,
        aws_secret_access_key=CLIENT.secret_key,
        region_name="default",
        config=BotoConfig(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    conditions: list[object] = [{k: v} for k, v in fields.items()]
    signed = s3.generate_presigned_post(
        "b", key, Fields=fields or None, Conditions=conditions or None
    )
    return urllib3.encode_multipart_formdata([*signed["fields"].items(), ("file", ("f.bin", data))])


def _anonymous(data: bytes, **fields: str) -> tuple[bytes, str]:
    return urllib3.encode_multipart_formdata([("key", "k"), *fields.items(), ("file", data)])


def _sent(body: bytes, ctype: str, policy: Policy) -> tuple[FormUpload, dict[str, bytes], bytes]:
    up = form_upload(body, ctype, policy, bucket="b")
    sent = up.feed(body) + up.finish()
    boundary = postform.boundary_from_content_type(up.content_type)
    events = list(FormParser(boundary).feed(sent))
    fields = {e.key: e.value for e in events if isinstance(e, Field)}
    data = b"".join(e.data for e in events if isinstance(e, FileData))
    return up, fields, data


def _conditions(fields: dict[str, bytes]) -> list[object]:
    conditions: list[object] = json.loads(base64.b64decode(fields["policy"]))["conditions"]
    return conditions


@pytest.mark.parametrize("disable_sse", [True, False])
def test_sse_s3_in_a_form_becomes_the_derived_sse_c_key(disable_sse: bool) -> None:
    body, ctype = _form(b"secret file", **SSE_S3)
    policy = Policy(disable_sse, True, keyring=RING)
    up, fields, data = _sent(body, ctype, policy)
    assert data == b"secret file"
    derived = dict(RING.for_write("b", "k").headers())
    assert {n: v.decode() for n, v in fields.items() if n.startswith(CUSTOMER)} == derived
    assert "x-amz-server-side-encryption" not in fields
    # The store requires a condition for every field: the added ones are exact conditions,
    # and none names the SSE-S3 field the form no longer has.
    conditions = _conditions(fields)
    for name, value in derived.items():
        assert {name: value} in conditions
    named = {n.lower() for c in conditions if isinstance(c, dict) for n in c}
    named |= {str(c[1]).lstrip("$").lower() for c in conditions if isinstance(c, list)}
    assert "x-amz-server-side-encryption" not in named
    # Signed with the store's key, over the policy carrying them.
    key = sigv4.signing_key(STORE.secret_key, fields["x-amz-date"][:8].decode(), "us-east-1")
    assert (
        fields["x-amz-signature"].decode()
        == hmac.new(key, fields["policy"], hashlib.sha256).hexdigest()
    )
    assert up.store_form is not None
    # Replaced, not dropped: only the flag itself counts as having dropped SSE.
    assert (Group.SSE in up.store_form.dropped) is disable_sse


def test_every_form_is_encrypted_when_it_is_the_default() -> None:
    body, ctype = _form(b"x")
    _, fields, _ = _sent(body, ctype, Policy(True, True, keyring=RING, sse_default=True))
    assert (
        fields[CUSTOMER + "key"].decode()
        == dict(RING.for_write("b", "k").headers())[CUSTOMER + "key"]
    )


def test_a_form_not_asking_for_encryption_carries_no_key() -> None:
    body, ctype = _form(b"x")
    _, fields, _ = _sent(body, ctype, Policy(True, True, keyring=RING))
    assert not [n for n in fields if n.startswith(CUSTOMER)]


def test_the_client_own_sse_c_fields_pass_untouched() -> None:
    own = base64.b64encode(bytes(range(32))).decode()
    md5 = base64.b64encode(hashlib.md5(bytes(range(32))).digest()).decode()
    mine = {CUSTOMER + "algorithm": "AES256", CUSTOMER + "key": own, CUSTOMER + "key-md5": md5}
    body, ctype = _form(b"x", **mine)
    _, fields, _ = _sent(body, ctype, Policy(True, True, keyring=RING, sse_default=True))
    assert {n: v.decode() for n, v in fields.items() if n.startswith(CUSTOMER)} == mine


def test_an_anonymous_form_asking_for_encryption_is_refused() -> None:
    body, ctype = _anonymous(b"x", **SSE_S3)
    with pytest.raises(errors.S3Error) as info:
        _sent(body, ctype, Policy(True, True, keyring=RING))
    assert info.value.code == "NotImplemented"


def test_a_key_named_by_the_store_from_the_filename_is_refused() -> None:
    # The store substitutes ${filename}: s3shim would derive the key of another name.
    body, ctype = _form(b"x", key="up/${filename}", **SSE_S3)
    with pytest.raises(errors.S3Error) as info:
        _sent(body, ctype, Policy(True, True, keyring=RING))
    assert info.value.code == "NotImplemented"


def test_without_keys_the_sse_field_follows_the_flag() -> None:
    body, ctype = _form(b"x", **SSE_S3)
    _, kept, _ = _sent(body, ctype, Policy(False, True))
    assert kept["x-amz-server-side-encryption"] == b"AES256"
    _, dropped, _ = _sent(body, ctype, Policy(True, True))
    assert "x-amz-server-side-encryption" not in dropped
    assert not [n for n in kept | dropped if n.startswith(CUSTOMER)]


def test_the_plan_of_an_encrypted_form_adds_no_header_and_answers_sse_s3() -> None:
    enc = Encryption(drop_sse_s3=True, in_form=True)
    assert enc.headers() == []  # the key is in the form's fields, not the request's head
    assert enc.attempts == 1 and not enc.retry_after(0, 400)
    assert [enc.written(s) for s in (200, 201, 204, 400, 403)] == [True] * 3 + [False] * 2
    answer = sse.answer_headers([("ETag", '"e"')], written=enc.written(204))
    assert answer == [("ETag", '"e"'), ("x-amz-server-side-encryption", "AES256")]
