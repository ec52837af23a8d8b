"""s3shim's body modes, seen from both ends: what the client sent, what the store received.

The store is the recording fake (testkit/fakestore.py): these tests prove what s3shim sends,
not that a real store accepts it (tests against RGW and the other real stores do that).
"""

from __future__ import annotations

import pytest

from testkit.chunksign import SIGNED_TRAILER, UNSIGNED_TRAILER
from testkit.fakestore import Received
from testkit.helpers import crc32_b64
from testkit.inprocess import (
    CLIENT_SECRET,
    STORE_KEY,
    InProcessShim,
    aws_chunked,
    payload,
    sha256_hex,
    store_signature_valid,
)

MiB = 1024 * 1024


@pytest.mark.parametrize("size", [0, 1, 1000, MiB], ids=["empty", "1B", "1000B", "1MiB"])
async def test_a_small_body_is_read_whole_and_signed_with_its_real_sha256(
    inproc: InProcessShim, size: int
) -> None:
    data = payload(size)
    # The client does not sign its payload: the sha256 the store sees is s3shim's own.
    rec = await inproc.forwarded(
        inproc.client.request("PUT", "/b/k", body=data, payload_hash="UNSIGNED-PAYLOAD")
    )
    assert rec.complete and rec.body == data
    assert rec.header("content-length") == str(size)
    assert rec.header("x-amz-content-sha256") == sha256_hex(data)
    assert "transfer-encoding" not in rec.names
    assert f"Credential={STORE_KEY}/" in (rec.header("authorization") or "")
    assert store_signature_valid(rec)
    assert not store_signature_valid(rec, secret=CLIENT_SECRET)  # re-signed, not relayed
    (line,) = await inproc.logs.request_lines()
    assert line["op"] == "PutObject" and line["bytes_in"] == size and line["status"] == 200


async def test_a_get_without_a_body_is_signed_as_empty_and_sends_no_length(
    inproc: InProcessShim,
) -> None:
    rec = await inproc.forwarded(inproc.client.request("GET", "/b/k"))
    assert rec.method == "GET" and rec.body == b"" and rec.complete
    assert "content-length" not in rec.names
    assert rec.header("x-amz-content-sha256") == sha256_hex(b"")
    assert store_signature_valid(rec)


@pytest.mark.parametrize("size", [MiB + 1, 3 * MiB], ids=["1MiB+1", "3MiB"])
async def test_a_large_body_is_streamed_unsigned_with_its_exact_length(
    inproc: InProcessShim, size: int
) -> None:
    data = payload(size)
    # Signed with its real sha256 (s3shim verifies it), yet streamed as UNSIGNED-PAYLOAD:
    # s3shim cannot know the hash before the last byte, and the store needs the head first.
    rec = await inproc.forwarded(inproc.client.request("PUT", "/b/k", body=data))
    assert rec.header("x-amz-content-sha256") == "UNSIGNED-PAYLOAD"
    assert rec.header("content-length") == str(size)
    assert "transfer-encoding" not in rec.names
    assert rec.complete and rec.body == data
    assert store_signature_valid(rec)
    (line,) = await inproc.logs.request_lines()
    assert line["bytes_in"] == size


def _one_chunk_reframing(data: bytes) -> bytes:
    """One STREAMING-UNSIGNED-PAYLOAD-TRAILER chunk of the whole payload, by hand."""
    return (
        f"{len(data):x}\r\n".encode()
        + data
        + f"\r\n0\r\nx-amz-checksum-crc32:{crc32_b64(data)}\r\n\r\n".encode()
    )


async def large_trailer_put(inproc: InProcessShim, framing: str) -> tuple[bytes, Received]:
    """A streamed aws-chunked PUT, its CRC32 in the trailer: the payload, what the store got."""
    data = payload(MiB + 4096)
    headers, body = aws_chunked(inproc.client, "/b/k", data, framing, checksum=crc32_b64(data))
    return data, await inproc.forwarded(inproc.client.send("PUT", "/b/k", headers, body))


@pytest.mark.parametrize("framing", [UNSIGNED_TRAILER, SIGNED_TRAILER])
async def test_flags_off_a_large_aws_chunked_body_with_a_trailer_checksum_is_reframed_as_one_chunk(
    inproc_off: InProcessShim, framing: str
) -> None:
    data, rec = await large_trailer_put(inproc_off, framing)
    assert rec.header("x-amz-content-sha256") == UNSIGNED_TRAILER
    assert rec.header("content-encoding") == "aws-chunked"
    assert rec.header("x-amz-decoded-content-length") == str(len(data))
    assert rec.header("x-amz-trailer") == "x-amz-checksum-crc32"
    assert rec.header("x-amz-sdk-checksum-algorithm") == "CRC32"
    assert "x-amz-checksum-crc32" not in rec.names  # it comes as the trailer
    assert rec.complete and rec.body == _one_chunk_reframing(data)
    assert rec.header("content-length") == str(len(rec.body))
    assert store_signature_valid(rec)


@pytest.mark.parametrize("framing", [UNSIGNED_TRAILER, SIGNED_TRAILER])
async def test_flags_on_a_large_aws_chunked_body_reaches_the_store_as_the_plain_payload(
    inproc_on: InProcessShim, framing: str
) -> None:
    data, rec = await large_trailer_put(inproc_on, framing)
    assert rec.header("x-amz-content-sha256") == "UNSIGNED-PAYLOAD"
    assert rec.header("content-length") == str(len(data))
    assert rec.complete and rec.body == data
    gone = {
        "content-encoding",
        "x-amz-decoded-content-length",
        "x-amz-trailer",
        "x-amz-sdk-checksum-algorithm",
        "x-amz-checksum-crc32",
    }
    assert not gone & rec.names
    assert store_signature_valid(rec)
    (line,) = await inproc_on.logs.request_lines()
    assert line["framing"] == framing and line["rewrites"] == ["checksum"]


async def test_flags_off_a_small_aws_chunked_trailer_checksum_is_handed_on_as_a_header(
    inproc_off: InProcessShim,
) -> None:
    data = payload(200_000)
    headers, body = aws_chunked(
        inproc_off.client, "/b/k", data, UNSIGNED_TRAILER, checksum=crc32_b64(data)
    )
    rec = await inproc_off.forwarded(inproc_off.client.send("PUT", "/b/k", headers, body))
    assert rec.complete and rec.body == data
    assert rec.header("x-amz-content-sha256") == sha256_hex(data)
    assert rec.header("x-amz-checksum-crc32") == crc32_b64(data)
    assert rec.header("x-amz-sdk-checksum-algorithm") == "CRC32"
    assert not {"content-encoding", "x-amz-trailer", "x-amz-decoded-content-length"} & rec.names
    assert store_signature_valid(rec)


async def test_a_streamed_body_without_a_length_is_411_and_never_reaches_the_store(
    inproc: InProcessShim,
) -> None:
    headers = inproc.client.sign("PUT", "/b/k", payload_hash="UNSIGNED-PAYLOAD")
    headers["transfer-encoding"] = "chunked"
    r = await inproc.client.send("PUT", "/b/k", headers, b"5\r\nhello\r\n0\r\n\r\n")
    assert (r.status, r.code) == (411, "MissingContentLength")
    assert inproc.store.connections_opened == 0 and inproc.store.received == []
    (line,) = await inproc.logs.request_lines()
    assert line["status"] == 411 and line["error"] == "MissingContentLength"


async def test_aws_chunked_without_a_decoded_length_is_411_and_never_reaches_the_store(
    inproc: InProcessShim,
) -> None:
    data = payload(1000)
    headers, body = aws_chunked(inproc.client, "/b/k", data, UNSIGNED_TRAILER, checksum="")
    # Re-signed without x-amz-decoded-content-length (the header must be signed to be sent).
    signed = inproc.client.sign(
        "PUT",
        "/b/k",
        headers={"content-encoding": "aws-chunked", "x-amz-trailer": "x-amz-checksum-crc32"},
        payload_hash=UNSIGNED_TRAILER,
    )
    signed["content-length"] = headers["content-length"]
    r = await inproc.client.send("PUT", "/b/k", signed, body)
    assert (r.status, r.code) == (411, "MissingContentLength")
    assert inproc.store.connections_opened == 0 and inproc.store.received == []


def _complete_xml(parts: int) -> bytes:
    items = "".join(
        f"<Part><PartNumber>{n}</PartNumber><ETag>&quot;{n:032x}&quot;</ETag>"
        f"<ChecksumCRC32>AAAAAA==</ChecksumCRC32></Part>"
        for n in range(1, parts + 1)
    )
    return f"<CompleteMultipartUpload>{items}</CompleteMultipartUpload>".encode()


COMPLETE = [("uploadId", "upload-1")]


@pytest.mark.parametrize("parts", [2, 10_000], ids=["2-parts", "10000-parts"])
async def test_flags_on_complete_xml_is_read_whole_stripped_and_signed_with_its_sha256(
    inproc_on: InProcessShim, parts: int
) -> None:
    xml = _complete_xml(parts)
    assert (len(xml) > MiB) == (parts > 2)  # past the small-body bound, still read whole
    r = await inproc_on.client.request("POST", "/b/k", query=COMPLETE, body=xml)
    assert r.status == 200
    # (ListParts comes first: the part sizes of the checksum recorded after the Complete.)
    (rec,) = [x for x in inproc_on.store.received if x.method == "POST"]
    assert rec.complete and b"Checksum" not in rec.body
    assert rec.body.count(b"<Part>") == parts
    assert f"<PartNumber>{parts}</PartNumber>".encode() in rec.body
    assert rec.header("x-amz-content-sha256") == sha256_hex(rec.body)
    assert rec.header("content-length") == str(len(rec.body))
    assert store_signature_valid(rec)
    (line,) = await inproc_on.logs.request_lines()
    assert line["op"] == "CompleteMultipartUpload" and line["rewrites"] == ["checksum"]


async def test_flags_off_complete_xml_is_forwarded_as_sent(inproc_off: InProcessShim) -> None:
    xml = _complete_xml(10_000)
    rec = await inproc_off.forwarded(
        inproc_off.client.request("POST", "/b/k", query=COMPLETE, body=xml)
    )
    assert rec.complete and rec.body == xml
    assert rec.header("x-amz-content-sha256") == "UNSIGNED-PAYLOAD"  # large: streamed


async def test_flags_on_complete_xml_over_its_bound_never_reaches_the_store(
    inproc_on: InProcessShim,
) -> None:
    xml = _complete_xml(32_000)
    assert len(xml) > 4 * MiB
    r = await inproc_on.client.request("POST", "/b/k", query=COMPLETE, body=xml)
    assert (r.status, r.code) == (400, "EntityTooLarge"), r.code
    assert inproc_on.store.connections_opened == 0 and inproc_on.store.received == []
