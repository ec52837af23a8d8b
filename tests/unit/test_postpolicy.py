"""s3shim.postpolicy: verifying a browser form's policy signature and re-signing it for the store.

botocore is the independent signer throughout: ``generate_presigned_post`` (SigV4 and SigV2)
makes the client forms, and botocore's own POST signers (S3SigV4PostAuth, HmacV1Auth) sign
hand-written policies and re-check the signature s3shim computes for the store.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.auth import S3SigV4PostAuth
from botocore.awsrequest import AWSRequest
from botocore.client import BaseClient
from botocore.credentials import Credentials as BotoCredentials
from urllib3 import encode_multipart_formdata

from s3shim import postform as pf
from s3shim import postpolicy as pp
from s3shim.errors import S3Error
from s3shim.rewrite import Group, Policy
from s3shim.sigv4 import Credentials
from testkit.shim import s3_client

REGION = "us-east-1"
CLIENT_KEY, CLIENT_SECRET = "CLIENTKEYEXAMPLE", "client-secret-example"
STORE = Credentials("STOREKEYEXAMPLE", "store-secret-example")
STORE_REGION = "default"  # RGW's zonegroup name
FLAGS_ON, FLAGS_OFF = Policy(True, True), Policy(False, False)
# For hand-made forms: a fixed clock, well before the policies' expiration.
AMZ_DATE = "20300102T030405Z"
NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
LATER = "2031-01-01T00:00:00.000Z"


def lookup(key: str) -> str | None:
    return {CLIENT_KEY: CLIENT_SECRET, STORE.access_key: STORE.secret_key}.get(key)


def client(signature_version: str, token: str | None = None) -> BaseClient:
    return s3_client(
        "http://127.0.0.1:9",
        CLIENT_KEY,
        CLIENT_SECRET,
        region=REGION,
        token=token,
        signature_version=signature_version,
    )


@pytest.fixture(scope="module")
def s3v4() -> BaseClient:
    return client("s3v4")


@pytest.fixture(scope="module")
def s3v2() -> BaseClient:
    return client("s3")


def as_fields(post_fields: dict[str, str]) -> list[pf.Field]:
    return [pf.Field(k, v.encode()) for k, v in post_fields.items()]


def botocore_v4_signature(policy_b64: str, secret: str, amz_date: str, region: str) -> str:
    auth = S3SigV4PostAuth(BotoCredentials("unused", secret), "s3", region)
    request = AWSRequest(method="POST", url="http://127.0.0.1/bucket")
    request.context["timestamp"] = amz_date
    return str(auth.signature(policy_b64, request))


def signed_v4(
    policy: str | dict[str, Any],
    fields: Iterable[tuple[str, str]] = (),
    *,
    access: str = CLIENT_KEY,
    secret: str = CLIENT_SECRET,
    region: str = REGION,
    amz_date: str = AMZ_DATE,
    raw_b64: str | None = None,
) -> list[pf.Field]:
    """A SigV4 form signed by botocore over ``policy`` (JSON text, or a dict to dump)."""
    text = policy if isinstance(policy, str) else json.dumps(policy)
    b64 = raw_b64 if raw_b64 is not None else base64.b64encode(text.encode()).decode()
    auth = {
        "x-amz-algorithm": "AWS4-HMAC-SHA256",
        "x-amz-credential": f"{access}/{amz_date[:8]}/{region}/s3/aws4_request",
        "x-amz-date": amz_date,
        "policy": b64,
        "x-amz-signature": botocore_v4_signature(b64, secret, amz_date, region),
    }
    return as_fields(dict(fields) | auth)


def conditions_for(fields: Iterable[tuple[str, str]]) -> list[Any]:
    """A policy that names every field, as a client must."""
    return [{k: v} for k, v in fields] + [
        {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
        {"x-amz-credential": f"{CLIENT_KEY}/{AMZ_DATE[:8]}/{REGION}/s3/aws4_request"},
        {"x-amz-date": AMZ_DATE},
    ]


def verify(
    fields: Sequence[pf.Field], now: datetime = NOW, region: str = REGION
) -> pp.VerifiedForm:
    return pp.verify(fields, lookup=lookup, region=region, now=now)


def refused(fields: Sequence[pf.Field], now: datetime = NOW) -> S3Error:
    with pytest.raises(S3Error) as exc:
        verify(fields, now)
    return exc.value


def replace(fields: Sequence[pf.Field], name: str, value: str) -> list[pf.Field]:
    return [dataclasses.replace(f, value=value.encode()) if f.name == name else f for f in fields]


def value(fields: Iterable[pf.Field], name: str) -> str:
    return next(f.value.decode() for f in fields if f.key == name)


# -- verification ---------------------------------------------------------------------------


def test_botocore_sigv4_form_verifies(s3v4: BaseClient) -> None:
    post = s3v4.generate_presigned_post(
        "bkt", "up/${filename}", Conditions=[["content-length-range", 1, 1000]]
    )
    verified = verify(as_fields(post["fields"]), datetime.now(UTC))
    assert (verified.kind, verified.access_key) == (pp.AuthKind.SIGV4, CLIENT_KEY)
    assert verified.document is not None
    ops = [(c.op, c.field, c.value) for c in verified.document.conditions]
    assert ops[:3] == [
        ("content-length-range", None, None),
        ("eq", "bucket", "bkt"),
        ("starts-with", "key", "up/"),
    ]
    assert [c.field for c in verified.document.conditions[3:]] == [
        "x-amz-algorithm",
        "x-amz-credential",
        "x-amz-date",
    ]
    assert "secret" not in repr(verified)


def test_botocore_sigv2_form_verifies(s3v2: BaseClient) -> None:
    post = s3v2.generate_presigned_post("bkt", "k")
    assert {"AWSAccessKeyId", "signature"} <= post["fields"].keys()
    verified = verify(as_fields(post["fields"]), datetime.now(UTC))
    assert (verified.kind, verified.access_key) == (pp.AuthKind.SIGV2, CLIENT_KEY)


def test_field_names_are_case_insensitive(s3v4: BaseClient, s3v2: BaseClient) -> None:
    for s3, case in ((s3v4, str.upper), (s3v2, str.title)):
        post = s3.generate_presigned_post("bkt", "k")
        fields = [pf.Field(case(k), v.encode()) for k, v in post["fields"].items()]
        assert verify(fields, datetime.now(UTC)).access_key == CLIENT_KEY


@pytest.mark.parametrize(
    "change",
    [
        lambda sig: sig[:-1] + ("0" if sig[-1] != "0" else "1"),
        str.upper,
        lambda sig: sig[:-2],
        lambda sig: sig + "00",
        lambda sig: "",
    ],
    ids=["one-digit", "upper-case", "short", "long", "empty"],
)
def test_bad_sigv4_signature(s3v4: BaseClient, change: Any) -> None:
    fields = as_fields(s3v4.generate_presigned_post("bkt", "k")["fields"])
    bad = replace(fields, "x-amz-signature", change(value(fields, "x-amz-signature")))
    err = refused(bad, datetime.now(UTC))
    assert (err.code, err.status) == ("SignatureDoesNotMatch", 403)


def test_bad_sigv2_signature(s3v2: BaseClient) -> None:
    fields = as_fields(s3v2.generate_presigned_post("bkt", "k")["fields"])
    sig = base64.b64encode(b"x" * 20).decode()
    err = refused(replace(fields, "signature", sig), datetime.now(UTC))
    assert (err.code, err.status) == ("SignatureDoesNotMatch", 403)


def test_tampered_policy(s3v4: BaseClient, s3v2: BaseClient) -> None:
    for s3 in (s3v4, s3v2):
        fields = as_fields(s3.generate_presigned_post("bkt", "k")["fields"])
        doc = json.loads(base64.b64decode(value(fields, "policy")))
        doc["conditions"].append(["content-length-range", 0, 10**12])
        forged = base64.b64encode(json.dumps(doc).encode()).decode()
        err = refused(replace(fields, "policy", forged), datetime.now(UTC))
        assert err.code == "SignatureDoesNotMatch"


def test_unknown_key(s3v2: BaseClient) -> None:
    policy = {"expiration": LATER, "conditions": conditions_for([])}
    fields = signed_v4(policy, access="NOSUCHKEY")
    assert (refused(fields).code, refused(fields).status) == ("InvalidAccessKeyId", 403)
    fields = as_fields(s3v2.generate_presigned_post("bkt", "k")["fields"])
    err = refused(replace(fields, "AWSAccessKeyId", "NOSUCHKEY"), datetime.now(UTC))
    assert err.code == "InvalidAccessKeyId"


def test_signed_with_another_secret() -> None:
    policy = {"expiration": LATER, "conditions": conditions_for([])}
    assert refused(signed_v4(policy, secret="not-the-secret")).code == "SignatureDoesNotMatch"


def test_expired(s3v4: BaseClient) -> None:
    fields = as_fields(s3v4.generate_presigned_post("bkt", "k", ExpiresIn=60)["fields"])
    document = verify(fields, datetime.now(UTC)).document
    assert document is not None
    expiration = document.expiration
    verify(fields, expiration - timedelta(microseconds=1))
    for now in (expiration, expiration + timedelta(days=1)):
        err = refused(fields, now)
        assert (err.code, err.message, err.status) == (
            "AccessDenied",
            "Invalid according to Policy: Policy expired.",
            403,
        )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2031-01-01T00:00:00Z", datetime(2031, 1, 1, tzinfo=UTC)),
        ("2031-01-01T00:00:00.250Z", datetime(2031, 1, 1, 0, 0, 0, 250_000, tzinfo=UTC)),
        ("2031-01-01T00:00:00.123456789Z", datetime(2031, 1, 1, 0, 0, 0, 123_456, tzinfo=UTC)),
    ],
)
def test_expiration_formats(text: str, expected: datetime) -> None:
    verified = verify(signed_v4({"expiration": text, "conditions": conditions_for([])}))
    assert verified.document is not None and verified.document.expiration == expected


def test_anonymous_forms() -> None:
    fields = as_fields({"key": "k", "acl": "public-read", "x-amz-date": AMZ_DATE})
    verified = verify(fields)
    assert (verified.kind, verified.access_key, verified.document) == (
        pp.AuthKind.ANONYMOUS,
        None,
        None,
    )
    for name in ("x-amz-signature", "Signature", "AWSAccessKeyId", "x-amz-credential"):
        err = refused([*fields, pf.Field(name, b"x")])
        assert err.code == "InvalidArgument" and "'policy'" in err.message


def test_a_field_sent_twice(s3v4: BaseClient) -> None:
    fields = as_fields(s3v4.generate_presigned_post("bkt", "k")["fields"])
    for twice in (pf.Field("KEY", b"other"), pf.Field("x-amz-signature", b"0" * 64)):
        err = refused([*fields, twice], datetime.now(UTC))
        assert err.code == "InvalidArgument" and "more than once" in err.message


def test_algorithms_and_mixed_auth(s3v2: BaseClient) -> None:
    policy = {"expiration": LATER, "conditions": conditions_for([])}
    fields = signed_v4(policy)
    err = refused(replace(fields, "x-amz-algorithm", "AWS4-ECDSA-P256-SHA256"))
    assert (err.code, err.status) == ("NotImplemented", 501)
    assert refused(replace(fields, "x-amz-algorithm", "AWS4-HMAC-SHA1")).code == "InvalidArgument"
    err = refused([*fields, pf.Field("AWSAccessKeyId", CLIENT_KEY.encode())])
    assert (err.code, err.message) == ("InvalidArgument", "Only one auth mechanism allowed.")
    v2 = as_fields(s3v2.generate_presigned_post("bkt", "k")["fields"])
    err = refused([*v2, pf.Field("x-amz-credential", b"x")], datetime.now(UTC))
    assert err.message == "Only one auth mechanism allowed."
    # A policy nobody signed.
    err = refused([f for f in v2 if f.name not in ("AWSAccessKeyId", "signature")])
    assert err.message == (
        "Bucket POST must contain a field named 'AWSAccessKeyId'.  If it is specified, "
        "please check the order of the fields."
    )


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("x-amz-credential", f"{CLIENT_KEY}/20300102/eu-west-1/s3/aws4_request"),
        ("x-amz-credential", f"{CLIENT_KEY}/20300102/{REGION}/ec2/aws4_request"),
        ("x-amz-credential", f"{CLIENT_KEY}/20300102/{REGION}/s3"),
        ("x-amz-credential", f"{CLIENT_KEY}/2030-01-02/{REGION}/s3/aws4_request"),
        ("x-amz-credential", f"/20300102/{REGION}/s3/aws4_request"),
        ("x-amz-date", "20300103T030405Z"),
        ("x-amz-date", "2030-01-02T03:04:05Z"),
        ("x-amz-credential", None),
        ("x-amz-date", None),
        ("x-amz-signature", None),
    ],
)
def test_malformed_sigv4_fields(name: str, bad: str | None) -> None:
    fields = signed_v4({"expiration": LATER, "conditions": conditions_for([])})
    fields = [f for f in fields if f.name != name] if bad is None else replace(fields, name, bad)
    assert refused(fields).code == "InvalidArgument"


def test_non_utf8_field() -> None:
    fields = signed_v4({"expiration": LATER, "conditions": conditions_for([])})
    fields = [pf.Field(f.name, b"\xff") if f.name == "x-amz-date" else f for f in fields]
    assert refused(fields).code == "InvalidArgument"


def test_missing_sigv2_signature(s3v2: BaseClient) -> None:
    fields = [f for f in as_fields(s3v2.generate_presigned_post("bkt", "k")["fields"])]
    assert refused([f for f in fields if f.name != "signature"]).code == "InvalidArgument"


GOOD = json.dumps(conditions_for([]))


def valid_until_later(conditions: str) -> str:
    """A policy document expiring LATER, with these conditions (as JSON text)."""
    return '{"expiration": "' + LATER + '", "conditions": ' + conditions + "}"


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        pytest.param(valid_until_later("["), None, id="not-json"),
        pytest.param("[]", None, id="array"),
        pytest.param('{"expiration": "' + LATER + '", "conditions": []} x', None, id="trailing"),
        pytest.param(
            '{"expiration": "' + LATER + '", "expiration": "' + LATER + '", "conditions": []}',
            "Invalid Policy: Duplicate field 'expiration'.",
            id="duplicate-member",
        ),
        pytest.param(
            valid_until_later('[{"a": "1", "a": "2"}]'),
            None,
            id="duplicate-in-condition",
        ),
        pytest.param(
            valid_until_later('[["content-length-range", 0, NaN]]'),
            None,
            id="nan",
        ),
        pytest.param(
            '{"conditions": []}', "Invalid Policy: Policy missing expiration.", id="no-exp"
        ),
        pytest.param(
            '{"expiration": "' + LATER + '"}',
            "Invalid Policy: Policy missing conditions.",
            id="no-cond",
        ),
        pytest.param(
            valid_until_later('[], "x": 1'),
            "Invalid Policy: Unexpected field 'x'.",
            id="unknown-member",
        ),
        pytest.param(
            '{"expiration": "2031-13-01T00:00:00Z", "conditions": []}', None, id="month-13"
        ),
        pytest.param('{"expiration": "tomorrow", "conditions": []}', None, id="exp-text"),
        pytest.param('{"expiration": 1924992000, "conditions": []}', None, id="exp-number"),
        pytest.param(
            '{"expiration": "2031-01-01 00:00:00Z", "conditions": []}', None, id="exp-space"
        ),
        pytest.param(
            valid_until_later('[{"a": "1", "b": "2"}]'),
            "Invalid Policy: Invalid Simple-Condition: Simple-Conditions must have exactly one "
            "property specified.",
            id="two-properties",
        ),
        pytest.param(
            valid_until_later('[{"success_action_status": 201}]'),
            "Invalid Policy: Invalid Simple-Condition: value must be a string.",
            id="number-value",
        ),
        pytest.param(
            valid_until_later('[["eq", "key", "v"]]'),
            None,
            id="no-dollar",
        ),
        pytest.param(valid_until_later('[["eq", "$key"]]'), None, id="two-items"),
        pytest.param(
            valid_until_later('[["matches", "$key", "v"]]'),
            None,
            id="unknown-op",
        ),
        pytest.param(
            valid_until_later('[["content-length-range", "0", 9]]'),
            None,
            id="range-text",
        ),
        pytest.param(
            valid_until_later('[["content-length-range", true, 9]]'),
            None,
            id="range-bool",
        ),
        pytest.param(valid_until_later('["key"]'), None, id="string"),
        pytest.param(valid_until_later("{}"), None, id="cond-object"),
    ],
)
def test_malformed_policy_documents(policy: str, message: str | None) -> None:
    err = refused(signed_v4(policy))
    assert (err.code, err.status) == ("InvalidPolicyDocument", 400)
    assert err.message.startswith("Invalid Policy: ")
    if message is not None:
        assert err.message == message


@pytest.mark.parametrize(
    "b64",
    [
        "not base64!",
        "eyJ",  # bad padding
        base64.b64encode(b'{"expiration": "\xff"}').decode(),  # not UTF-8
    ],
)
def test_undecodable_policy(b64: str) -> None:
    err = refused(signed_v4("", raw_b64=b64))
    assert err.code == "InvalidPolicyDocument"


def test_signature_is_checked_before_the_policy_is_read() -> None:
    fields = signed_v4("", raw_b64="not base64!")
    assert refused(replace(fields, "x-amz-signature", "0" * 64)).code == "SignatureDoesNotMatch"


def test_wrapped_base64_policy() -> None:
    """Encoders that wrap base64 lines (Ruby's encode64) sign the wrapped text."""
    text = json.dumps({"expiration": LATER, "conditions": conditions_for([("key", "k" * 80)])})
    b64 = base64.b64encode(text.encode()).decode()
    wrapped = "\n".join(b64[i : i + 60] for i in range(0, len(b64), 60)) + "\n"
    verified = verify(signed_v4("", raw_b64=wrapped))
    assert verified.document is not None and verified.document.text == text


# -- the store's form -----------------------------------------------------------------------

SSE_FIELDS = [
    ("x-amz-server-side-encryption", "aws:kms"),
    ("x-amz-server-side-encryption-aws-kms-key-id", "kms-key"),
    ("x-amz-server-side-encryption-bucket-key-enabled", "true"),
]
CHECKSUM_FIELDS = [("x-amz-checksum-crc32", "y/Q5Jg=="), ("x-amz-sdk-checksum-algorithm", "CRC32")]
OTHER_FIELDS = [
    ("key", "uploads/a.txt"),
    ("Content-Type", "text/plain"),
    ("x-amz-meta-owner", "ünïcode"),
    ("x-amz-server-side-encryption-customer-algorithm", "AES256"),  # SSE-C: never dropped
]
ALL_FIELDS = [*OTHER_FIELDS[:2], *SSE_FIELDS, *OTHER_FIELDS[2:], *CHECKSUM_FIELDS]


def client_form(fields: Sequence[tuple[str, str]] = ALL_FIELDS) -> list[pf.Field]:
    # The client's policy as a browser app writes it: odd spacing and an extra constraint.
    conditions = [["content-length-range", 0, 1048576], *conditions_for(fields)]
    body = ",\n   ".join(json.dumps(c, ensure_ascii=False) for c in conditions)
    text = '{ "expiration" : "' + LATER + '",\n  "conditions": [\n   ' + body + "\n  ]\n}"
    return signed_v4(text, fields)


def store_form(fields: Sequence[pf.Field], flags: Policy = FLAGS_ON) -> pp.StoreForm:
    verified = verify(fields)
    return pp.rewrite_for_store(
        fields, verified, creds=STORE, region=STORE_REGION, now=NOW, flags=flags
    )


def check_store_signature(out: pp.StoreForm) -> pp.PolicyDocument:
    """The store's form verifies with the store key, by s3shim and by botocore."""
    assert out.policy is not None and out.signature is not None
    assert value(out.fields, "policy") == out.policy.decode()
    assert value(out.fields, "x-amz-signature") == out.signature
    assert value(out.fields, "x-amz-credential") == (
        f"{STORE.access_key}/{AMZ_DATE[:8]}/{STORE_REGION}/s3/aws4_request"
    )
    assert value(out.fields, "x-amz-date") == AMZ_DATE
    assert out.signature == botocore_v4_signature(
        out.policy.decode(), STORE.secret_key, AMZ_DATE, STORE_REGION
    )
    again = pp.verify(out.fields, lookup=lookup, region=STORE_REGION, now=NOW)
    assert (again.kind, again.access_key) == (pp.AuthKind.SIGV4, STORE.access_key)
    assert again.document is not None
    return again.document


def kept_texts(doc: pp.PolicyDocument, removed: set[str]) -> list[str]:
    return [c.text for c in doc.conditions if c.field not in removed]


AUTH = {"x-amz-algorithm", "x-amz-credential", "x-amz-date"}


def test_flags_on_drop_sse_and_checksums_from_form_and_policy() -> None:
    fields = client_form()
    out = store_form(fields)
    doc = check_store_signature(out)
    dropped = {k for k, _ in SSE_FIELDS + CHECKSUM_FIELDS}
    assert [(f.name, f.value.decode()) for f in out.fields if f.key not in pp.AUTH_FIELDS] == [
        (k, v) for k, v in ALL_FIELDS if k not in dropped
    ]
    original = verify(fields).document
    assert original is not None
    # Every condition not on a dropped or auth field is the exact text the client signed,
    # in the client's order; then the three conditions on the store's auth fields.
    assert [c.text for c in doc.conditions[:-3]] == kept_texts(original, dropped | AUTH)
    assert [c.field for c in doc.conditions[-3:]] == sorted(AUTH)
    assert not {c.field for c in doc.conditions} & dropped
    assert doc.conditions[-2].value == value(out.fields, "x-amz-credential")
    # Outside the conditions array the document is untouched.
    start, end = original.conditions_span
    new_start, new_end = doc.conditions_span
    assert doc.text[:new_start] == original.text[:start]
    assert doc.text[new_end:] == original.text[end:]
    assert out.dropped == {Group.SSE, Group.CHECKSUM}
    assert out.checksum is not None
    assert (out.checksum.algorithm.value, out.checksum.value) == ("crc32", "y/Q5Jg==")


def test_flags_off_keep_everything_but_the_auth() -> None:
    fields = client_form()
    out = store_form(fields, FLAGS_OFF)
    doc = check_store_signature(out)
    assert [(f.name, f.value.decode()) for f in out.fields if f.key not in pp.AUTH_FIELDS] == [
        *ALL_FIELDS
    ]
    original = verify(fields).document
    assert original is not None
    assert [c.text for c in doc.conditions[:-3]] == kept_texts(original, AUTH)
    assert out.dropped == frozenset()
    assert out.checksum is not None and out.checksum.value == "y/Q5Jg=="


def test_each_flag_on_its_own() -> None:
    out = store_form(client_form(), Policy(disable_sse=True, disable_checksums=False))
    names = {f.key for f in out.fields}
    assert "x-amz-checksum-crc32" in names and "x-amz-server-side-encryption" not in names
    assert out.dropped == {Group.SSE}
    out = store_form(client_form(), Policy(disable_sse=False, disable_checksums=True))
    names = {f.key for f in out.fields}
    assert "x-amz-checksum-crc32" not in names and "x-amz-server-side-encryption" in names
    assert out.dropped == {Group.CHECKSUM}


def test_sigv2_form_becomes_sigv4(s3v2: BaseClient) -> None:
    post = s3v2.generate_presigned_post(
        "bkt",
        "k",
        Fields={"x-amz-server-side-encryption": "AES256", "acl": "private"},
        Conditions=[{"x-amz-server-side-encryption": "AES256"}, {"acl": "private"}],
    )
    fields = as_fields(post["fields"])
    now = datetime.now(UTC)
    verified = pp.verify(fields, lookup=lookup, region=REGION, now=now)
    out = pp.rewrite_for_store(
        fields, verified, creds=STORE, region=STORE_REGION, now=now, flags=FLAGS_ON
    )
    names = [f.name for f in out.fields]
    assert "AWSAccessKeyId" not in names and "signature" not in names
    assert "x-amz-server-side-encryption" not in names
    assert names[-4:] == ["x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-signature"]
    again = pp.verify(out.fields, lookup=lookup, region=STORE_REGION, now=now)
    assert again.access_key == STORE.access_key and again.document is not None
    assert verified.document is not None
    assert [c.text for c in again.document.conditions] == [
        '{"acl": "private"}',
        '{"bucket": "bkt"}',
        '{"key": "k"}',
        *[c.text for c in again.document.conditions[-3:]],
    ]


def test_auth_fields_keep_their_place_and_part_heads() -> None:
    fields = client_form([("key", "k")])
    dressed = [
        pf.Field(f.name.upper(), f.value, "a.txt", "text/plain") if f.key in pp.AUTH_FIELDS else f
        for f in fields
    ]
    out = store_form(dressed)
    assert [f.name for f in out.fields] == [f.name for f in dressed]
    for before, after in zip(dressed, out.fields, strict=True):
        assert (after.filename, after.content_type) == (before.filename, before.content_type)
        # (x-amz-date is the same here only because the test's clock is the client's.)
        if before.key in ("x-amz-credential", "x-amz-signature", "policy"):
            assert after.value != before.value
        else:
            assert after.value == before.value
    check_store_signature(out)


@pytest.mark.parametrize(
    ("condition", "form_fields"),
    [
        ({"x-amz-server-side-encryption": "aws:kms"}, [("x-amz-server-side-encryption", "AES256")]),
        (["eq", "$x-amz-server-side-encryption", "AES256"], []),  # the field is missing
        (["starts-with", "$x-amz-checksum-crc32", "AAAA"], [("x-amz-checksum-crc32", "y/Q5Jg==")]),
        ({"x-amz-credential": f"OTHERKEY/{AMZ_DATE[:8]}/{REGION}/s3/aws4_request"}, []),
        (["starts-with", "$x-amz-date", "2029"], []),
    ],
)
def test_a_removed_condition_must_hold_for_the_client_form(
    condition: Any, form_fields: list[tuple[str, str]]
) -> None:
    policy = {"expiration": LATER, "conditions": [*conditions_for(form_fields), condition]}
    fields = signed_v4(policy, form_fields)
    with pytest.raises(S3Error) as exc:
        store_form(fields)
    op, name, operand = (
        ("eq", *next(iter(condition.items()))) if isinstance(condition, dict) else condition
    )
    assert (exc.value.code, exc.value.status) == ("AccessDenied", 403)
    assert exc.value.message == (
        "Invalid according to Policy: Policy Condition failed: "
        + json.dumps([op, "$" + name.removeprefix("$"), operand])
    )


def test_conditions_on_kept_fields_are_the_stores_to_check() -> None:
    # s3shim does not judge conditions it keeps: the store sees them and the form as sent.
    policy = {
        "expiration": LATER,
        "conditions": [*conditions_for([("key", "k")]), {"key": "other"}],
    }
    out = store_form(signed_v4(policy, [("key", "k")]))
    doc = check_store_signature(out)
    assert '{"key": "other"}' in [c.text for c in doc.conditions]
    out = store_form(
        signed_v4(
            {
                "expiration": LATER,
                "conditions": [*conditions_for([]), {"x-amz-server-side-encryption": "x"}],
            },
            [("x-amz-server-side-encryption", "AES256")],
        ),
        FLAGS_OFF,
    )
    assert '{"x-amz-server-side-encryption": "x"}' in [
        c.text for c in check_store_signature(out).conditions
    ]


def test_starts_with_on_a_dropped_field_that_holds() -> None:
    form_fields = [("x-amz-server-side-encryption", "aws:kms")]
    conditions = [*conditions_for([]), ["starts-with", "$x-amz-server-side-encryption", "aws:"]]
    out = store_form(signed_v4({"expiration": LATER, "conditions": conditions}, form_fields))
    doc = check_store_signature(out)
    assert all(c.field != "x-amz-server-side-encryption" for c in doc.conditions)


def test_names_are_matched_in_any_case() -> None:
    form_fields = [("X-Amz-Server-Side-Encryption", "AES256"), ("X-AMZ-CHECKSUM-CRC32", "y/Q5Jg==")]
    conditions = [
        *conditions_for([]),
        ["EQ", "$X-Amz-Server-Side-Encryption", "AES256"],
        {"x-amz-checksum-CRC32": "y/Q5Jg=="},
        ["Starts-With", "$X-Amz-Date", "2030"],
    ]
    out = store_form(signed_v4({"expiration": LATER, "conditions": conditions}, form_fields))
    doc = check_store_signature(out)
    assert {f.key for f in out.fields}.isdisjoint(
        {"x-amz-server-side-encryption", "x-amz-checksum-crc32"}
    )
    texts = [c.text.lower() for c in doc.conditions]
    assert sum("x-amz-date" in t for t in texts) == 1  # only the store's
    assert not [t for t in texts if "server-side-encryption" in t or "checksum" in t]


def test_session_token_is_not_forwarded() -> None:
    s3 = client("s3v4", token="client-session-token")
    post = s3.generate_presigned_post("bkt", "k")
    assert "x-amz-security-token" in post["fields"]
    fields = as_fields(post["fields"])
    now = datetime.now(UTC)
    verified = pp.verify(fields, lookup=lookup, region=REGION, now=now)
    out = pp.rewrite_for_store(
        fields, verified, creds=STORE, region=STORE_REGION, now=now, flags=FLAGS_OFF
    )
    assert "x-amz-security-token" not in {f.key for f in out.fields}
    doc = pp.verify(out.fields, lookup=lookup, region=STORE_REGION, now=now).document
    assert doc is not None and "x-amz-security-token" not in {c.field for c in doc.conditions}


def test_anonymous_form_only_loses_what_the_flags_drop() -> None:
    fields = as_fields(dict(ALL_FIELDS))
    verified = verify(fields)
    out = pp.rewrite_for_store(
        fields, verified, creds=STORE, region=STORE_REGION, now=NOW, flags=FLAGS_ON
    )
    assert (out.policy, out.signature) == (None, None)
    dropped = {k for k, _ in SSE_FIELDS + CHECKSUM_FIELDS}
    assert [f.name for f in out.fields] == [k for k, _ in ALL_FIELDS if k not in dropped]
    assert out.checksum is not None and out.dropped == {Group.SSE, Group.CHECKSUM}


@pytest.mark.parametrize(
    ("form_fields", "expected"),
    [
        ([], None),
        ([("x-amz-checksum-sha256", "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")], "sha256"),
        ([("x-amz-checksum-algorithm", "CRC32")], None),
    ],
)
def test_declared_checksum(form_fields: list[tuple[str, str]], expected: str | None) -> None:
    got = pp.declared_checksum(as_fields(dict(form_fields)))
    assert (got.algorithm.value if got else None) == expected


@pytest.mark.parametrize(
    "form_fields",
    [
        [("x-amz-checksum-crc32", "not-base64")],
        [
            ("x-amz-checksum-crc32", "y/Q5Jg=="),
            ("x-amz-checksum-sha1", "2jmj7l5rSw0yVb/vlWAYkK/YBwk="),
        ],
        [("x-amz-checksum-crc32", "y/Q5Jg=="), ("x-amz-sdk-checksum-algorithm", "SHA256")],
        [("x-amz-checksum-md4", "AAAA")],
    ],
)
def test_bad_declared_checksum_is_refused(form_fields: list[tuple[str, str]]) -> None:
    fields = signed_v4(
        {"expiration": LATER, "conditions": conditions_for(form_fields)}, form_fields
    )
    with pytest.raises(S3Error) as exc:
        store_form(fields)
    assert exc.value.code == "InvalidRequest"


def test_whole_body_through_parser_verifier_and_encoder(s3v4: BaseClient) -> None:
    """A botocore form as urllib3 encodes it -> parse -> verify -> store form -> new body,
    which parses again into a form the store key verifies, with the same file bytes."""
    post = s3v4.generate_presigned_post(
        "bkt",
        "up/${filename}",
        Fields={"x-amz-server-side-encryption": "AES256", "x-amz-checksum-crc32": "y/Q5Jg=="},
        Conditions=[
            {"x-amz-server-side-encryption": "AES256"},
            {"x-amz-checksum-crc32": "y/Q5Jg=="},
            ["content-length-range", 0, 10_000],
        ],
    )
    file = b"\r\n--" + bytes(range(256)) * 10
    body, ctype = encode_multipart_formdata(
        [*post["fields"].items(), ("file", ("a.bin", file, "application/octet-stream"))]
    )
    boundary = pf.boundary_from_content_type(ctype)

    def parse(data: bytes) -> tuple[list[pf.Field], pf.FileStart, bytes, bytes]:
        parser = pf.FormParser(boundary)
        events = [e for i in range(0, len(data), 97) for e in parser.feed(data[i : i + 97])]
        events += parser.close()
        start = next(e for e in events if isinstance(e, pf.FileStart))
        data_ = b"".join(e.data for e in events if isinstance(e, pf.FileData))
        tail = b"".join(e.data for e in events if isinstance(e, pf.Tail))
        return [e for e in events if isinstance(e, pf.Field)], start, data_, tail

    fields, start, data, tail = parse(body)
    now = datetime.now(UTC)
    verified = pp.verify(fields, lookup=lookup, region=REGION, now=now)
    out = pp.rewrite_for_store(
        fields, verified, creds=STORE, region=STORE_REGION, now=now, flags=FLAGS_ON
    )
    store_boundary = pf.new_boundary()
    head = pf.encode_head(store_boundary, out.fields, start)
    new_body = head + data + pf.encode_tail(len(tail), boundary, store_boundary)
    length = pf.store_length(len(body), start.head_length, len(head), boundary, store_boundary)
    assert length == len(new_body)
    boundary = store_boundary
    fields2, start2, data2, _ = parse(new_body)
    assert data2 == data == file
    assert (start2.filename, start2.content_type) == (start.filename, start.content_type)
    assert {f.key for f in fields2}.isdisjoint(
        {"x-amz-server-side-encryption", "x-amz-checksum-crc32"}
    )
    again = pp.verify(fields2, lookup=lookup, region=STORE_REGION, now=now)
    assert again.access_key == STORE.access_key


@pytest.mark.parametrize(
    "condition",
    [
        ["eq", "$x-ignore", "$x-amz-meta-s3shim-checksum"],
        ["starts-with", "$x-ignore", "$X-Amz-Server-Side-Encryption"],
        ["eq", "$x-ignore", "$x-amz-signature"],
    ],
)
def test_a_condition_naming_a_removed_field_as_operand_is_removed(condition: list[str]) -> None:
    """RGW reads a ``$field`` operand as covering that field: such a condition would keep a
    field s3shim removed covered in the store's policy."""
    pairs = [("key", "k"), ("x-ignore", condition[2])]
    policy_doc = {"expiration": LATER, "conditions": [*conditions_for(pairs[:1]), condition]}
    out = store_form(signed_v4(policy_doc, pairs))
    policy = base64.b64decode(value(out.fields, "policy")).decode()
    assert condition[2] not in policy and "x-ignore" not in policy
    check_store_signature(out)
