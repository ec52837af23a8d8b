"""What really reaches the store, read off the wire between s3shim and a real RGW."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.backends import Store
from testkit.convex_sequence import MIB, new_bucket, run_sequence
from testkit.rawclient import RawClient, send
from testkit.shim import Shim, shim_for
from testkit.tap import Tap, wire_tap


@pytest.fixture
def tapped(rgw_store: Store, tmp_path: Path) -> Iterator[tuple[Shim, Tap]]:
    with (
        wire_tap(rgw_store.endpoint) as tap,
        shim_for(rgw_store, tmp_path, via=tap.endpoint) as shim,
    ):
        yield shim, tap


_HEAD = re.compile(rb"(?:GET|PUT|POST|DELETE|HEAD) /[^ \r\n]* HTTP/1\.1\r\n(.*?)\r\n\r\n", re.S)


def header_names(wire: bytes) -> set[str]:
    """The header names of every request head on the wire (bodies skipped)."""
    names = set()
    for head in _HEAD.finditer(wire):
        for line in head.group(1).split(b"\r\n"):
            names.add(line.split(b":", 1)[0].decode("latin-1").lower())
    return names


def test_convex_sequence_reaches_the_store_without_aws_only_features(
    tapped: tuple[Shim, Tap],
) -> None:
    shim, tap = tapped
    client = shim.client()
    run_sequence(client, new_bucket(client), 5 * MIB + 1)
    wire = tap.to_store()
    names = header_names(wire)
    assert b"CompleteMultipartUpload" in wire or b"<Part>" in wire  # the XML did pass here
    assert not {n for n in names if n.startswith("x-amz-server-side-encryption")}
    assert not {n for n in names if n.startswith("x-amz-checksum")}
    assert "x-amz-sdk-checksum-algorithm" not in names and "x-amz-trailer" not in names
    assert b"<ChecksumCRC32>" not in wire  # stripped from CompleteMultipartUpload
    assert b"X-Amz-Signature=" not in wire  # presigned auth replaced by s3shim's own
    assert "authorization" in names  # every forwarded request is signed by s3shim


def test_transport_and_address_headers_do_not_reach_the_store(tapped: tuple[Shim, Tap]) -> None:
    shim, tap = tapped
    bucket = new_bucket(shim.client())
    headers = RawClient.of(shim).sign(
        "PUT",
        f"/{bucket}/k",
        body=b"v",
        headers={
            "x-amz-security-token": "session-token",
            "content-length": "1",
            "x-amz-server-side-encryption": "aws:kms",
            "x-amz-server-side-encryption-aws-kms-key-id": "key",
            "x-amz-server-side-encryption-context": "e30=",
            "x-amz-server-side-encryption-bucket-key-enabled": "true",
        },
    )
    headers.update(
        {"X-Forwarded-For": "6.6.6.6", "X-Real-IP": "6.6.6.6", "Forwarded": "for=6.6.6.6"}
    )
    assert send("PUT", shim.endpoint, f"/{bucket}/k", headers, body=b"v").status == 200
    wire = tap.to_store()
    names = header_names(wire)
    assert "authorization" in names and "x-amz-date" in names  # the heads were parsed
    assert "x-amz-security-token" not in names
    assert not {n for n in names if n.startswith("x-amz-server-side-encryption")}
    assert b"6.6.6.6" not in wire
