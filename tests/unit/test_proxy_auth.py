"""Authentication at the aiohttp layer: nothing reaches the store, and no body is invited
(``100 Continue``), before the client's signature is verified.

The store is the recording fake: "never contacted" is read off its connection count.
"""

from __future__ import annotations

import pytest

from testkit.chunksign import REGION
from testkit.inprocess import (
    CLIENT_KEY,
    CLIENT_SECRET,
    STORE_KEY,
    Client,
    InProcessShim,
    payload,
    store_signature_valid,
    target,
)
from testkit.rawclient import amz_now
from testkit.shim import PATH_STYLE, client_of


def _tampered(signature_header: str) -> str:
    head, sig = signature_header.rsplit("Signature=", 1)
    return f"{head}Signature={sig[:-1]}{'0' if sig[-1] != '0' else '1'}"


async def test_a_bad_signature_with_expect_100_continue_is_403_without_100_continue(
    inproc: InProcessShim,
) -> None:
    data = payload(1000)
    headers = inproc.client.sign("PUT", "/b/k", body=data)
    headers["authorization"] = _tampered(headers["authorization"])
    headers.update({"content-length": str(len(data)), "expect": "100-continue"})
    conn = await inproc.client.connect()
    try:
        await conn.send_head("PUT", "/b/k", headers)  # and no body: it was never invited
        r = await conn.response("PUT")
        assert (r.status, r.code) == (403, "SignatureDoesNotMatch")
        assert r.interim == [] and b"100 Continue" not in r.raw
        assert r.raw.startswith(b"HTTP/1.1 403 ")
        # The body was never read: the connection must not be reused for another request.
        assert (r.header("connection") or "").lower() == "close"
    finally:
        await conn.close()
    assert inproc.store.connections_opened == 0 and inproc.store.received == []
    assert inproc.metric("s3shim_auth_failures_total", reason="SignatureDoesNotMatch") == 1
    (line,) = await inproc.logs.request_lines()
    assert line["auth_failure"] == "SignatureDoesNotMatch" and line["status"] == 403


async def test_a_good_signature_with_expect_100_continue_is_invited_before_the_store_is_contacted(
    inproc_on: InProcessShim,
) -> None:
    # A small PutObject with no declared checksum, recording on (flags on): s3shim reads it
    # whole to compute its record, so s3shim invites it (the store answers the expectation
    # otherwise: test_proxy_expect.py).
    inproc = inproc_on
    data = payload(1000)
    headers = inproc.client.sign("PUT", "/b/k", body=data)
    headers.update({"content-length": str(len(data)), "expect": "100-continue"})
    interim, opened, r = await inproc.after_continue("PUT", "/b/k", headers, data)
    # Invited, and the store not yet contacted: a small body is verified first.
    assert interim == 100 and opened == 0
    assert r.status == 200
    (rec,) = inproc.store.received
    assert rec.complete and rec.body == data
    assert "expect" not in rec.names


@pytest.mark.parametrize(
    ("how", "status", "code"),
    [
        ("unknown-key", 403, "InvalidAccessKeyId"),
        ("wrong-secret", 403, "SignatureDoesNotMatch"),
        ("skewed", 403, "RequestTimeTooSkewed"),
        ("unsigned-amz-header", 403, "AccessDenied"),
    ],
)
async def test_an_unauthenticated_request_never_reaches_the_store(
    inproc: InProcessShim, how: str, status: int, code: str
) -> None:
    client = inproc.client
    if how == "unknown-key":
        client = Client(client.endpoint, "NOSUCHKEY", CLIENT_SECRET)
    elif how == "wrong-secret":
        client = Client(client.endpoint, CLIENT_KEY, "not-the-secret")
    if how == "skewed":
        headers: dict[str, str] = client.sign("GET", "/b/k", amz_date=amz_now(-3600))
    else:
        headers = client.sign("GET", "/b/k")
    if how == "unsigned-amz-header":
        headers["x-amz-copy-source"] = "other/object"
    r = await inproc.client.send("GET", "/b/k", headers)
    assert (r.status, r.code) == (status, code)
    assert inproc.store.connections_opened == 0 and inproc.store.received == []
    assert inproc.metric("s3shim_auth_failures_total", reason=code) == 1
    assert inproc.metric("s3shim_requests_total", operation="GetObject", status=str(status)) == 1


async def test_an_anonymous_request_reaches_the_store_with_no_credentials_at_all(
    inproc: InProcessShim,
) -> None:
    # The store's own ACLs decide (a public-read bucket); s3shim must not lend it its key.
    rec = await inproc.forwarded(inproc.client.send("GET", "/b/k", {}))
    assert rec.target == "/b/k"
    assert not {"authorization", "x-amz-date", "x-amz-content-sha256"} & rec.names
    assert STORE_KEY not in repr(rec.headers)
    (line,) = await inproc.logs.request_lines()
    assert line["auth"] == "anonymous" and "access_key" not in line
    assert inproc.metric("s3shim_auth_requests_total", auth="anonymous") == 1
    assert inproc.metric("s3shim_auth_requests_total", auth="sigv4") == 0


async def test_a_presigned_get_reaches_the_store_header_signed_without_the_presign_query(
    inproc: InProcessShim,
) -> None:
    # botocore's presigner, not s3shim's signer: an independent client.
    s3 = client_of(inproc.client, region=REGION, signature_version="s3v4", s3=PATH_STYLE)
    url = s3.generate_presigned_url(
        "get_object",
        Params={"Bucket": "b", "Key": "k", "ResponseContentType": "text/plain"},
        ExpiresIn=300,
    )
    path_and_query = url.removeprefix(inproc.endpoint)
    assert "X-Amz-Signature=" in path_and_query
    rec = await inproc.forwarded(inproc.client.send("GET", path_and_query, {}))
    assert rec.target == target("/b/k", [("response-content-type", "text/plain")])
    assert "X-Amz-" not in rec.target
    assert f"Credential={STORE_KEY}/" in (rec.header("authorization") or "")
    assert store_signature_valid(rec)
