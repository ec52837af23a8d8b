"""The two flags at the aiohttp layer: SSE and flexible-checksum headers dropped (flags on)
or forwarded untouched (flags off), counted and logged; transport headers always replaced.

The store is the recording fake: what it received is what s3shim sent, nothing more.
"""

from __future__ import annotations

from testkit.helpers import crc32_b64
from testkit.inprocess import InProcessShim, payload, store_signature_valid

SSE = {
    "x-amz-server-side-encryption": "aws:kms",
    "x-amz-server-side-encryption-aws-kms-key-id": "key-1",
    "x-amz-server-side-encryption-context": "e30=",
    "x-amz-server-side-encryption-bucket-key-enabled": "true",
}
# SSE-C: the client's own key. Never dropped (dropping it would store plaintext).
SSE_C = {
    "x-amz-server-side-encryption-customer-algorithm": "AES256",
    "x-amz-server-side-encryption-customer-key": "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U=",
    "x-amz-server-side-encryption-customer-key-md5": "bWQ1bWQ1bWQ1bWQ1bWQ1bQ==",
}
DATA = payload(5000)
CHECKSUM = {"x-amz-checksum-crc32": crc32_b64(DATA), "x-amz-sdk-checksum-algorithm": "CRC32"}
OTHER = {"x-amz-meta-colour": "blue", "content-type": "text/plain", "cache-control": "no-cache"}


async def _put_with_everything(inproc: InProcessShim) -> None:
    headers = {**SSE, **SSE_C, **CHECKSUM, **OTHER}
    r = await inproc.client.request("PUT", "/b/k", headers=headers, body=DATA)
    assert r.status == 200


async def test_flags_on_sse_and_checksum_headers_are_dropped_and_counted(
    inproc_on: InProcessShim,
) -> None:
    await _put_with_everything(inproc_on)
    (rec,) = inproc_on.store.received
    assert not (SSE.keys() | CHECKSUM.keys()) & rec.names
    for name, value in {**SSE_C, **OTHER}.items():
        assert rec.values(name) == [value], name
    assert rec.body == DATA and store_signature_valid(rec)
    assert inproc_on.metric("s3shim_rewrites_total", kind="sse") == 1
    assert inproc_on.metric("s3shim_rewrites_total", kind="checksum") == 1
    (line,) = await inproc_on.logs.request_lines()
    assert line["rewrites"] == ["checksum", "sse"]


async def test_flags_off_sse_and_checksum_headers_reach_the_store_unchanged(
    inproc_off: InProcessShim,
) -> None:
    await _put_with_everything(inproc_off)
    (rec,) = inproc_off.store.received
    for name, value in {**SSE, **SSE_C, **CHECKSUM, **OTHER}.items():
        assert rec.values(name) == [value], name
    assert rec.body == DATA and store_signature_valid(rec)
    assert inproc_off.metric("s3shim_rewrites_total", kind="sse") == 0
    assert inproc_off.metric("s3shim_rewrites_total", kind="checksum") == 0
    (line,) = await inproc_off.logs.request_lines()
    assert line["rewrites"] == []


async def test_flags_on_a_get_loses_its_checksum_mode(inproc_on: InProcessShim) -> None:
    rec = await inproc_on.forwarded(
        inproc_on.client.request("GET", "/b/k", headers={"x-amz-checksum-mode": "ENABLED"})
    )
    assert "x-amz-checksum-mode" not in rec.names


async def test_flags_off_a_get_keeps_its_checksum_mode(inproc_off: InProcessShim) -> None:
    rec = await inproc_off.forwarded(
        inproc_off.client.request("GET", "/b/k", headers={"x-amz-checksum-mode": "ENABLED"})
    )
    assert rec.values("x-amz-checksum-mode") == ["ENABLED"]


async def test_transport_and_address_headers_are_replaced_never_forwarded(
    inproc: InProcessShim,
) -> None:
    headers = inproc.client.sign("GET", "/b/k")
    headers.update(
        {
            "x-forwarded-for": "10.0.0.1",
            "forwarded": "for=10.0.0.1",
            "x-real-ip": "10.0.0.1",
            "proxy-authorization": "Basic Zm9vOmJhcg==",
            "te": "trailers",
        }
    )
    rec = await inproc.forwarded(inproc.client.send("GET", "/b/k", headers))
    assert not {"x-forwarded-for", "forwarded", "x-real-ip", "proxy-authorization", "te"} & (
        rec.names
    )
    assert rec.header("host") == inproc.config.upstream_host
    assert rec.values("authorization") != [headers["authorization"]]
    assert store_signature_valid(rec)
