"""Read-side integrity at the aiohttp layer (flags on): PutObject carries the checksum record
s3shim verified, and a full GET whose bytes do not match the record is cut short.

The store is the recording fake, replaying whatever record a test gives it: this shows what
s3shim does with a record, not that a real store keeps one (tests against RGW show that).
"""

from __future__ import annotations

import base64
import hashlib

import pytest

from testkit.fakestore import Reply
from testkit.helpers import crc32_b64
from testkit.inprocess import InProcessShim, payload

RECORD = "x-amz-meta-s3shim-checksum"
MiB = 1024 * 1024


async def test_a_put_with_a_crc32_header_records_it_for_the_store(inproc_on: InProcessShim) -> None:
    data = payload(5000)
    rec = await inproc_on.forwarded(
        inproc_on.client.request(
            "PUT", "/b/k", headers={"x-amz-checksum-crc32": crc32_b64(data)}, body=data
        )
    )
    assert rec.values(RECORD) == [f"CRC32:{crc32_b64(data)}"]


async def test_a_streamed_put_signed_with_its_sha256_records_that(inproc_on: InProcessShim) -> None:
    data = payload(MiB + 1)
    rec = await inproc_on.forwarded(inproc_on.client.request("PUT", "/b/k", body=data))
    digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert rec.values(RECORD) == [f"SHA256:{digest}"]
    assert rec.complete and rec.body == data


async def test_a_record_planted_by_the_client_never_reaches_the_store(
    inproc: InProcessShim,
) -> None:
    data = payload(5000)
    planted = f"CRC32:{crc32_b64(b'something else')}"
    r = await inproc.client.request("PUT", "/b/k", headers={RECORD: planted}, body=data)
    assert r.status == 200  # dropped: only s3shim writes this name
    (rec,) = inproc.store.received
    assert planted not in rec.values(RECORD) and len(rec.values(RECORD)) <= 1


async def test_flags_off_a_put_carries_no_record(inproc_off: InProcessShim) -> None:
    data = payload(5000)
    rec = await inproc_off.forwarded(
        inproc_off.client.request(
            "PUT", "/b/k", headers={"x-amz-checksum-crc32": crc32_b64(data)}, body=data
        )
    )
    assert RECORD not in rec.names


@pytest.mark.parametrize("size", [5000, 3 * MiB])
async def test_a_full_get_matching_its_record_is_delivered_whole(
    inproc_on: InProcessShim, size: int
) -> None:
    body = payload(size)
    inproc_on.store.script(Reply(200, ((RECORD, f"CRC32:{crc32_b64(body)}"),), body))
    r = await inproc_on.client.request("GET", "/b/k")
    assert (r.status, r.complete, r.body) == (200, True, body)
    assert r.header(RECORD) is None  # s3shim's own metadata stays hidden
    (line,) = await inproc_on.logs.request_lines()
    assert "integrity_failure" not in line


@pytest.mark.parametrize("size", [5000, 3 * MiB])
async def test_a_full_get_not_matching_its_record_is_cut_short(
    inproc_on: InProcessShim, size: int
) -> None:
    body = payload(size)
    wrong = crc32_b64(body + b"!")
    inproc_on.store.script(Reply(200, ((RECORD, f"CRC32:{wrong}"),), body))
    r = await inproc_on.client.request("GET", "/b/k")
    assert r.status == 200  # the status line was out before the last byte was checked
    assert not r.complete and len(r.body) < size and body.startswith(r.body)
    (line,) = await inproc_on.logs.request_lines()
    assert line["integrity_failure"] == "StoreChecksumMismatch"
    assert inproc_on.metric("s3shim_integrity_failures_total", code="StoreChecksumMismatch") == 1


async def test_a_ranged_get_is_not_checked_against_the_whole_objects_record(
    inproc_on: InProcessShim,
) -> None:
    part = payload(1000)
    inproc_on.store.script(Reply(206, ((RECORD, f"CRC32:{crc32_b64(b'whole object')}"),), part))
    r = await inproc_on.client.request("GET", "/b/k", headers={"range": "bytes=0-999"})
    assert (r.status, r.complete, r.body) == (206, True, part)


async def test_flags_off_a_get_is_not_checked(inproc_off: InProcessShim) -> None:
    body = payload(5000)
    inproc_off.store.script(Reply(200, ((RECORD, f"CRC32:{crc32_b64(b'other')}"),), body))
    r = await inproc_off.client.request("GET", "/b/k")
    assert (r.status, r.complete, r.body) == (200, True, body)
