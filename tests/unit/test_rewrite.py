"""The rewrite table: what each flag drops, what is always replaced, what is never dropped."""

from __future__ import annotations

import pytest

from s3shim.rewrite import (
    CHECKSUM_HEADERS,
    TRANSPORT_DROPS,
    Group,
    Policy,
    content_encoding_without_aws_chunked,
    forward_headers,
)

CONVEX_CREATE = [
    ("Host", "127.0.0.1:8080"),
    ("Authorization", "AWS4-HMAC-SHA256 ..."),
    ("x-amz-date", "20261125T000000Z"),
    ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
    ("x-amz-server-side-encryption", "AES256"),
    ("x-amz-checksum-algorithm", "CRC32"),
    ("x-amz-checksum-type", "COMPOSITE"),
    ("x-amz-meta-owner", "convex"),
    ("Content-Type", "application/octet-stream"),
]
SSE_C = [
    ("x-amz-server-side-encryption-customer-algorithm", "AES256"),
    ("x-amz-server-side-encryption-customer-key", "a2V5"),
    ("x-amz-server-side-encryption-customer-key-md5", "bWQ1"),
    ("x-amz-copy-source-server-side-encryption-customer-key", "a2V5"),
]


def test_both_off_is_transparent_but_for_transport() -> None:
    out, fired = forward_headers(CONVEX_CREATE, Policy(False, False))
    assert fired == frozenset()
    names = {n for n, _ in out}
    assert names == {n.lower() for n, _ in CONVEX_CREATE} - TRANSPORT_DROPS


def test_disable_sse_drops_sse_s3_and_kms_only() -> None:
    kms = [
        ("x-amz-server-side-encryption", "aws:kms"),
        ("x-amz-server-side-encryption-aws-kms-key-id", "k"),
        ("x-amz-server-side-encryption-context", "e30="),
        ("x-amz-server-side-encryption-bucket-key-enabled", "true"),
    ]
    out, fired = forward_headers(CONVEX_CREATE + kms + SSE_C, Policy(True, False))
    names = {n for n, _ in out}
    assert not {n for n in names if n.startswith("x-amz-server-side-encryption")} - {
        n for n, _ in SSE_C
    }
    assert {n for n, _ in SSE_C} <= names  # SSE-C is never dropped
    assert "x-amz-checksum-algorithm" in names
    assert fired == {Group.SSE}


def test_disable_checksums_drops_every_checksum_header() -> None:
    hdrs = [
        *CONVEX_CREATE,
        ("x-amz-checksum-crc32", "AAAAAA=="),
        ("x-amz-checksum-crc64nvme", "AAAAAAAAAAA="),
        ("x-amz-sdk-checksum-algorithm", "CRC32"),
        ("x-amz-trailer", "x-amz-checksum-crc32"),
        ("x-amz-checksum-mode", "ENABLED"),
        ("Content-MD5", "bWQ1bWQ1bWQ1bWQ1bWQ1bQ=="),
    ]
    out, fired = forward_headers(hdrs, Policy(False, True))
    names = {n for n, _ in out}
    assert not any(n.startswith("x-amz-checksum-") for n in names)
    assert not names & CHECKSUM_HEADERS
    assert "content-md5" in names  # every store checks MD5 itself
    assert "x-amz-server-side-encryption" in names
    assert fired == {Group.CHECKSUM}


def test_decoded_aws_chunked_drops_framing_headers() -> None:
    hdrs = [
        ("Content-Encoding", "aws-chunked,gzip"),
        ("x-amz-trailer", "x-amz-checksum-crc32"),
        ("x-amz-sdk-checksum-algorithm", "CRC32"),
        ("x-amz-decoded-content-length", "5"),
        ("Transfer-Encoding", "chunked"),
    ]
    out, _ = forward_headers(hdrs, Policy(False, False), decoded_aws_chunked=True)
    assert out == [("content-encoding", "gzip")]


@pytest.mark.parametrize(
    "value,expected",
    [
        ("aws-chunked", None),
        ("aws-chunked,gzip", "gzip"),
        ("gzip, aws-chunked", "gzip"),
        ("AWS-CHUNKED", None),
        ("gzip", "gzip"),
        ("br,aws-chunked,gzip", "br,gzip"),
    ],
)
def test_content_encoding(value: str, expected: str | None) -> None:
    assert content_encoding_without_aws_chunked(value) == expected


def test_underscore_and_address_headers_never_forwarded() -> None:
    hdrs = [
        ("x_amz_copy_source", "/b/secret"),
        ("content_disposition", "attachment"),
        ("X-Forwarded-For", "10.0.0.1"),
        ("X-Forwarded-Proto", "https"),
        ("Forwarded", "for=10.0.0.1"),
        ("X-Real-IP", "10.0.0.1"),
        ("Content-Disposition", "inline"),
    ]
    out, _ = forward_headers(hdrs, Policy(False, False))
    assert out == [("content-disposition", "inline")]


def test_with_aws_chunked_encoding() -> None:
    from s3shim.rewrite import with_aws_chunked_encoding

    assert with_aws_chunked_encoding([("a", "1")]) == [
        ("a", "1"),
        ("content-encoding", "aws-chunked"),
    ]
    assert with_aws_chunked_encoding([("content-encoding", "gzip")]) == [
        ("content-encoding", "aws-chunked,gzip")
    ]


def test_the_policy_of_a_configuration_resolves_the_tri_states() -> None:
    from s3shim.config import load
    from s3shim.rewrite import Policy

    base = {
        "S3SHIM_UPSTREAM_URL": "http://h:1",
        "AWS_ACCESS_KEY_ID": "a",
        "AWS_SECRET_ACCESS_KEY": "s",
    }
    on = Policy.of(load([], {**base, "AWS_S3_DISABLE_CHECKSUMS": "true"}))
    assert on.record_checksums and on.verify_reads and on.disable_checksums
    off = Policy.of(load([], base))
    assert not off.record_checksums and not off.verify_reads
    forced = Policy.of(
        load(
            [],
            {
                **base,
                "S3SHIM_RECORD_CHECKSUMS": "true",
                "S3SHIM_ALLOW_ANONYMOUS": "false",
                "S3SHIM_ALLOW_SIGV2": "no",
            },
        )
    )
    assert forced.record_checksums and not forced.verify_reads
    assert not forced.allow_anonymous and not forced.allow_sigv2
