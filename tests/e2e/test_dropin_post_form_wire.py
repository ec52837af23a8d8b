"""Form uploads as the store reads them: RGW behind a wire tap, compared with RGW directly.

s3shim verifies a form by its own reading of the multipart body, then signs the store's form
with the store key. These tests pin that the store reads exactly what s3shim verified: the
part s3shim took for the file is the part RGW stores, a field s3shim removed cannot reach RGW
in disguise, and nothing the policy leaves unsigned (the URL's query) is signed for the store.
Forms are written by hand here, byte for byte, because the attacks are spellings no encoder
produces; the policy and its signature are botocore's.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from botocore.client import BaseClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3shim import postform
from testkit.backends import Store, new_bucket
from testkit.helpers import sha256_b64, stored
from testkit.shim import PATH_STYLE, Shim, client_of
from testkit.tap import Tap

BOUNDARY = "formwireBoundary7MA4YWxkTrZu0gW"
APPROVED = b"the bytes the policy approved"
ATTACK = b"the attacker's bytes"

pytestmark = pytest.mark.both_flags  # the tapped s3shim: both flags on, then both off


def signed_fields(
    store: Store, endpoint: str, bucket: str, key: str, conditions: Sequence[Any] = ()
) -> dict[str, str]:
    """botocore's SigV4 form fields for ``key`` (the policy names every field given)."""
    client = client_of(store, endpoint=endpoint, signature_version="s3v4", s3=PATH_STYLE)
    form = client.generate_presigned_post(bucket, key, Conditions=list(conditions), ExpiresIn=300)
    fields: dict[str, str] = form["fields"]
    return fields


@dataclass(frozen=True)
class Part:
    head: bytes  # the header section, each line ending in CRLF
    value: bytes


def field(name: str, value: str | bytes) -> Part:
    data = value.encode() if isinstance(value, str) else value
    return Part(f'Content-Disposition: form-data; name="{name}"\r\n'.encode(), data)


def file_part(data: bytes) -> Part:
    head = b'Content-Disposition: form-data; name="file"; filename="f.bin"\r\n'
    return Part(head + b"Content-Type: application/octet-stream\r\n", data)


def body_of(parts: Sequence[Part], boundary: str = BOUNDARY) -> bytes:
    d = b"--" + boundary.encode()
    out = [d + b"\r\n" + p.head + b"\r\n" + p.value + b"\r\n" for p in parts]
    return b"".join(out) + d + b"--\r\n"


def post(endpoint: str, bucket: str, body: bytes, query: str = "") -> requests.Response:
    return requests.post(
        f"{endpoint}/{bucket}{query}",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        timeout=60,
    )


def code(resp: requests.Response) -> str | None:
    body = resp.content
    start = body.find(b"<Code>")
    return body[start + 6 : body.find(b"</Code>")].decode() if start >= 0 else None


def store_field_names(sent: bytes) -> set[str]:
    """The field names of the one form the store was sent (read with s3shim's parser, in the
    boundary of the Content-Type the store got)."""
    head, _, body = sent.partition(b"\r\n\r\n")
    ctype = next(
        line.split(b":", 1)[1].strip().decode()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-type:")
    )
    parser = postform.FormParser(postform.boundary_from_content_type(ctype))
    return {e.key for e in parser.feed(body) if isinstance(e, postform.Field)}


def posts_reaching_the_store(tap: Tap, since: int) -> int:
    return tap.to_store()[since:].count(b"POST /")


def test_a_field_disguised_as_the_file_never_reaches_the_store(
    rgw_store: Store, store: BaseClient, tapped: tuple[Shim, Tap]
) -> None:
    """RGW splits Content-Disposition on every ';': ``name="a;name=file;x="`` is the file to
    RGW and a field to a quoting parser. The policy pins the approved bytes' SHA-256."""
    shim, tap = tapped
    bucket = new_bucket(rgw_store)
    pin = {"x-amz-checksum-sha256": sha256_b64(APPROVED)}
    disguised = Part(b'Content-Disposition: form-data; name="a;name=file;x="\r\n', ATTACK)

    def attack(endpoint: str, key: str) -> requests.Response:
        fields = {"key": key, **pin}
        fields |= signed_fields(rgw_store, endpoint, bucket, key, [pin])
        parts = [field(k, v) for k, v in fields.items()]
        return post(endpoint, bucket, body_of([*parts, disguised, file_part(APPROVED)]))

    direct = attack(rgw_store.endpoint, "direct")
    assert direct.status_code == 204  # RGW's reading: the disguised part is the file
    assert stored(store, bucket, "direct") == ATTACK
    before = len(tap.to_store())
    through = attack(shim.endpoint, "through")
    assert (through.status_code, code(through)) == (400, "MalformedPOSTRequest")
    assert stored(store, bucket, "through") is None
    assert posts_reaching_the_store(tap, before) == 0


@pytest.mark.parametrize("disguise", [True, False])
def test_the_checksum_record_cannot_be_planted_through_a_form(
    rgw_store: Store, store: BaseClient, tapped: tuple[Shim, Tap], disguise: bool
) -> None:
    """A policy naming the reserved record only as a ``$`` operand (which RGW counts as
    covering that field), with the field plainly or in disguise."""
    shim, tap = tapped
    bucket = new_bucket(rgw_store)
    record = postform.Field("x-amz-meta-s3shim-checksum", b"CRC32:AAAAAA==")
    cond = ["eq", "$x-ignore-z", "$x-amz-meta-s3shim-checksum"]
    fields = {"key": "planted", "x-ignore-z": "$x-amz-meta-s3shim-checksum"}
    fields |= signed_fields(rgw_store, shim.endpoint, bucket, "planted", [cond])
    name = f"a;name={record.name};x=" if disguise else record.name
    parts = [field(k, v) for k, v in fields.items()]
    parts += [field(name, record.value), file_part(APPROVED)]
    before = len(tap.to_store())
    resp = post(shim.endpoint, bucket, body_of(parts))
    sent = tap.to_store()[before:]
    if disguise:
        assert (resp.status_code, code(resp)) == (400, "MalformedPOSTRequest")
        assert posts_reaching_the_store(tap, before) == 0
    else:
        assert record.name not in store_field_names(sent)
    meta = store.head_object(Bucket=bucket, Key="planted")["Metadata"] if resp.ok else {}
    assert "s3shim-checksum" not in meta
    if resp.ok:  # a full read through s3shim is whole
        got = shim.client().get_object(Bucket=bucket, Key="planted")["Body"].read()
        assert got == APPROVED
    else:
        assert stored(store, bucket, "planted") is None


def test_a_signed_form_s_query_never_reaches_the_store(
    rgw_store: Store, store: BaseClient, tapped: tuple[Shim, Tap]
) -> None:
    """The policy signs fields, never the URL: a store reading the query (RGW's
    map_qs_metadata stores query ``x-amz-meta-*``) must not get it under the store key. RGW 16
    ignores it on a form POST, so dropping it gives the same outcome as directly."""
    shim, tap = tapped
    bucket = new_bucket(rgw_store)
    query = "?x-amz-meta-evil=injected&x-amz-meta-s3shim-checksum=CRC32%3AAAAAAA%3D%3D"

    def send(endpoint: str, key: str) -> requests.Response:
        fields = {"key": key, **signed_fields(rgw_store, endpoint, bucket, key)}
        parts = [*(field(k, v) for k, v in fields.items()), file_part(APPROVED)]
        return post(endpoint, bucket, body_of(parts), query)

    direct = send(rgw_store.endpoint, "direct")
    before = len(tap.to_store())
    through = send(shim.endpoint, "through")
    sent = tap.to_store()[before:]
    assert direct.status_code == through.status_code == 204
    assert sent.startswith(f"POST /{bucket} HTTP/1.1\r\n".encode())
    assert b"evil" not in sent and b"s3shim-checksum" not in sent
    for key in ("direct", "through"):
        assert stored(store, bucket, key) == APPROVED
        assert store.head_object(Bucket=bucket, Key=key)["Metadata"] == {}


def test_an_anonymous_form_s_query_is_filtered_as_every_request_s(
    rgw_store: Store, store: BaseClient, tapped: tuple[Shim, Tap]
) -> None:
    shim, tap = tapped
    bucket = new_bucket(rgw_store)
    store.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    query = "?x-amz-meta-note=kept&x-amz-meta-s3shim-checksum=CRC32%3AAAAAAA%3D%3D"
    outcomes = []
    for endpoint, key in ((rgw_store.endpoint, "direct"), (shim.endpoint, "through")):
        before = len(tap.to_store())
        resp = post(endpoint, bucket, body_of([field("key", key), file_part(APPROVED)]), query)
        outcomes.append(resp.status_code)
    sent = tap.to_store()[before:]
    head = sent.split(b"\r\n\r\n", 1)[0]
    assert head.startswith(f"POST /{bucket}?x-amz-meta-note=kept HTTP/1.1\r\n".encode())
    assert b"Authorization" not in head and b"authorization" not in head
    assert outcomes == [204, 204]
    for key in ("direct", "through"):
        assert stored(store, bucket, key) == APPROVED
    assert "s3shim-checksum" not in store.head_object(Bucket=bucket, Key="through")["Metadata"]


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ("?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=x", {}),
        ("?AWSAccessKeyId=y&Signature=z", {}),
        ("", {"Authorization": "AWS y:z"}),
    ],
    ids=["sigv4-query", "sigv2-query", "authorization"],
)
def test_a_form_with_another_auth_attempt_is_refused_as_directly(
    rgw_store: Store,
    store: BaseClient,
    tapped: tuple[Shim, Tap],
    query: str,
    headers: dict[str, str],
) -> None:
    shim, tap = tapped
    bucket = new_bucket(rgw_store)
    store.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    outcomes = []
    for endpoint, key in ((rgw_store.endpoint, "direct"), (shim.endpoint, "through")):
        before = len(tap.to_store())
        resp = requests.post(
            f"{endpoint}/{bucket}{query}",
            data=body_of([field("key", key), file_part(APPROVED)]),
            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", **headers},
            timeout=60,
        )
        outcomes.append((resp.status_code, code(resp)))
    assert outcomes[0] == outcomes[1] and outcomes[0][0] == 403, outcomes
    assert posts_reaching_the_store(tap, before) == 0
    assert "Contents" not in store.list_objects(Bucket=bucket)


# -- generated forms ------------------------------------------------------------------------

NAME_SPELLINGS = ["Content-Disposition", "content-disposition", "CONTENT-DISPOSITION"]


@st.composite
def spelled_part(draw: st.DrawFn, name: str, filename: str | None) -> bytes:
    """A Content-Disposition header for ``name``, spelled in one of the ways parsers differ on:
    header-name case, parameter order, quoting, blanks, and injected parameter text."""
    header = draw(st.sampled_from(NAME_SPELLINGS))
    kind = draw(st.sampled_from(["form-data", "Form-Data", "form-data "]))
    injected = draw(
        st.sampled_from(["", ";name=file", ";name=key", '";name="file', "\\", '\\";name=file'])
    )
    quoted = draw(st.booleans())
    value = name + injected if draw(st.booleans()) else name
    spelled_name = f'"{value}"' if quoted or injected else value
    params = [f"name={spelled_name}"]
    if filename is not None:
        params.append(f'filename="{filename}"')
    if draw(st.booleans()):
        params.reverse()
    sep = draw(st.sampled_from(["; ", ";", " ; ", ";\t"]))
    return f"{header}: {kind}{sep}{sep.join(params)}\r\n".encode()


def s3shim_reading(body: bytes) -> tuple[dict[str, bytes], bytes] | None:
    """The fields and file s3shim reads in ``body``, or None when it refuses the form."""
    parser = postform.FormParser(BOUNDARY)
    try:
        events = [*parser.feed(body), *parser.close()]
    except Exception:
        return None
    fields = {e.key: e.value for e in events if isinstance(e, postform.Field)}
    data = b"".join(e.data for e in events if isinstance(e, postform.FileData))
    return fields, data


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_generated_forms_store_only_what_s3shim_read(
    rgw_store: Store, store: BaseClient, tapped: tuple[Shim, Tap], data: st.DataObject
) -> None:
    """Every generated spelling: refused before the store when s3shim's reading refuses it,
    otherwise stored exactly as s3shim read it (the part s3shim took for the file, under the
    key s3shim read; the decoy a field, covered by the policy)."""
    shim, tap = tapped
    bucket = generated_bucket(rgw_store, store)
    key = f"k{next(_keys)}"  # each example its own key: draws repeat across examples
    decoy_condition = {"x-decoy": ATTACK.decode()}
    fields = {"key": key, **signed_fields(rgw_store, shim.endpoint, bucket, key, [decoy_condition])}
    parts = [field(k, v) for k, v in fields.items()]
    decoy = Part(data.draw(spelled_part("x-decoy", None)), ATTACK)
    position = data.draw(st.integers(0, len(parts)))
    parts.insert(position, decoy)
    real = Part(data.draw(spelled_part("file", "f.bin")), APPROVED)
    body = body_of([*parts, real])
    reading = s3shim_reading(body)
    before = len(tap.to_store())
    resp = post(shim.endpoint, bucket, body)
    sent = tap.to_store()[before:]
    if reading is None:  # refused by s3shim's reading: before anything reached the store
        assert (resp.status_code, code(resp)) == (400, "MalformedPOSTRequest")
        assert posts_reaching_the_store(tap, before) == 0
        assert stored(store, bucket, key) is None
        return
    assert reading[0]["x-decoy"] == ATTACK
    assert resp.status_code == 204, resp.content
    assert BOUNDARY.encode() not in sent  # the store got s3shim's form, not the client's
    assert stored(store, bucket, key) == reading[1] == APPROVED


_buckets: dict[str, str] = {}
_keys = itertools.count()


def generated_bucket(rgw_store: Store, store: BaseClient) -> str:
    """One bucket for all generated examples (a bucket per example costs RGW a second)."""
    if rgw_store.endpoint not in _buckets:
        _buckets[rgw_store.endpoint] = new_bucket(rgw_store)
    return _buckets[rgw_store.endpoint]
