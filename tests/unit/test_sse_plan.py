"""SSE kept as SSE-C in the plan: which requests carry s3shim's keys, signed; what the client
sees of the store's answer. In-process; the store's behaviour is tests/e2e/test_sse_keys.py."""

from __future__ import annotations

import pytest

from s3shim import errors, sigv4
from s3shim.classify import Op
from s3shim.config import ClientKey
from s3shim.head import RequestHead, parse_head
from s3shim.plan import Settings, UpstreamPlan, plan, store_request
from s3shim.rewrite import Policy
from s3shim.ssekeys import COPY_SOURCE_PREFIX, Keyring, MasterKey
from testkit.plans import auth_context, object_target

RING = Keyring((MasterKey("new", bytes(range(32))), MasterKey("old", bytes(range(50, 82)))))
STORE = sigv4.Credentials("STOREKEY", "storesecret")
CLIENTS = {"AK": ClientKey(sigv4.Credentials("AK", "secret"), STORE)}
KEYS = Policy(disable_sse=True, disable_checksums=True, keyring=RING)
CUSTOMER = "x-amz-server-side-encryption-customer-"


def _head(method: str = "PUT", **headers: str) -> RequestHead:
    items = [("Host", "s3shim")] + [(k.replace("_", "-"), v) for k, v in headers.items()]
    return parse_head(method, "/b/k", items, method == "PUT")


def _settings(policy: Policy) -> Settings:
    return Settings(
        policy=policy,
        lookup=lambda key: "secret" if key == "AK" else None,
        clients=CLIENTS,
        regions=None,
        domains=(),
        store_origin="https://rgw:7443",
        store_host="rgw:7443",
        store_region="default",
        client_scheme="http",
    )


def _sent(p: UpstreamPlan, policy: Policy, attempt: int = 0) -> dict[str, str]:
    _, headers = store_request(
        p, p.headers, "UNSIGNED-PAYLOAD", "20261201T000000Z", _settings(policy), attempt
    )
    return dict(headers)


def _put(policy: Policy = KEYS, **headers: str) -> UpstreamPlan:
    h = _head(content_length="5", **headers)
    return plan(object_target(Op.PUT_OBJECT), auth_context(), h, policy, CLIENTS)


@pytest.mark.parametrize("disable_sse", [True, False])
def test_sse_s3_goes_to_the_store_as_sse_c_signed_whatever_the_flag(disable_sse: bool) -> None:
    policy = Policy(disable_sse=disable_sse, disable_checksums=True, keyring=RING)
    p = _put(policy, x_amz_server_side_encryption="AES256")
    sent = _sent(p, policy)
    assert "x-amz-server-side-encryption" not in sent
    key = RING.for_write("b", "k")
    assert sent[CUSTOMER + "key"] == dict(key.headers())[CUSTOMER + "key"]
    signed = sent["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {CUSTOMER + "algorithm", CUSTOMER + "key", CUSTOMER + "key-md5"} <= set(signed)


def test_sse_kms_still_follows_the_flag() -> None:
    p = _put(x_amz_server_side_encryption="aws:kms")
    sent = _sent(p, KEYS)
    assert "x-amz-server-side-encryption" not in sent
    assert not [n for n in sent if n.startswith(CUSTOMER)]


def test_without_keys_nothing_is_added() -> None:
    policy = Policy(disable_sse=True, disable_checksums=True)
    p = _put(policy, x_amz_server_side_encryption="AES256")
    assert p.encryption is None
    assert not [n for n in _sent(p, policy) if n.startswith(CUSTOMER)]


def test_an_unverified_request_carries_no_key() -> None:
    h = _head("GET")
    p = plan(object_target(Op.GET_OBJECT), None, h, KEYS, CLIENTS)
    assert p.encryption is None


def test_reads_try_current_then_old_then_no_key() -> None:
    h = _head("GET")
    p = plan(object_target(Op.GET_OBJECT), auth_context(), h, KEYS, CLIENTS)
    md5 = CUSTOMER + "key-md5"
    tries = [_sent(p, KEYS, attempt).get(md5) for attempt in range(3)]
    current, old = (dict(k.headers())[md5] for k in RING.for_read("b", "k"))
    assert tries == [current, old, None]


def test_the_answer_is_sse_s3_without_any_key_or_md5() -> None:
    p = _put(x_amz_server_side_encryption="AES256")
    store = [
        ("ETag", '"e"'),
        (CUSTOMER + "algorithm", "AES256"),
        (CUSTOMER + "key-md5", "bWQ1"),
    ]
    out = dict(p.respond(200, store, None, "rid").headers)
    assert out["x-amz-server-side-encryption"] == "AES256"
    assert not [n for n in out if n.startswith(CUSTOMER)]


def test_a_copy_into_an_encrypted_object_is_refused() -> None:
    h = _head(
        "PUT", content_length="0", x_amz_copy_source="/b/src", x_amz_server_side_encryption="AES256"
    )
    with pytest.raises(errors.S3Error) as info:
        plan(object_target(Op.COPY_OBJECT), auth_context(), h, KEYS, CLIENTS)
    assert info.value.code == "NotImplemented"


def test_a_copy_carries_its_source_keys() -> None:
    h = _head("PUT", content_length="0", x_amz_copy_source="/b/src%20x")
    p = plan(object_target(Op.COPY_OBJECT), auth_context(), h, KEYS, CLIENTS)
    sent = _sent(p, KEYS)
    source = dict(
        RING.for_read("b", "src x")[0].headers("x-amz-copy-source-server-side-encryption-customer-")
    )
    assert all(sent[n] == v for n, v in source.items())
    assert not [n for n in sent if n.startswith(CUSTOMER)]


def test_a_part_copy_carries_the_upload_key_and_its_source_keys() -> None:
    """As each UploadPart: the upload's key (current, older, none: an upload begun before a
    rotation, or a plain one), and the source's keys in the copy-source headers."""
    h = _head("PUT", content_length="0", x_amz_copy_source="/b/src")
    p = plan(object_target(Op.UPLOAD_PART_COPY), auth_context(), h, KEYS, CLIENTS)
    md5, source_md5 = CUSTOMER + "key-md5", COPY_SOURCE_PREFIX + "key-md5"
    tries = [_sent(p, KEYS, attempt) for attempt in range(3)]
    current, old = (dict(k.headers())[md5] for k in RING.for_read("b", "k"))
    assert [t.get(md5) for t in tries] == [current, old, None]
    src_current, src_old = (dict(k.headers())[md5] for k in RING.for_read("b", "src"))
    assert [t.get(source_md5) for t in tries] == [src_current, src_old, None]
    assert p.encryption is not None and p.encryption.write is None  # it writes no object
