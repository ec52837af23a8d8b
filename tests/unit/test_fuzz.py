"""Fuzzing kept honest: every parser that reads untrusted bytes, fed arbitrary input.

The contract under fuzzing is the same for each: any input either parses or raises
``S3Error`` (which s3shim answers as S3 XML) — never another exception (a 500, or worse a
hang), and never unbounded buffering. The suite runs a modest number of examples;
``bench/fuzz.py`` runs the same targets for as long as asked (figures in the README).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3shim import auth, chunked, complete_xml, errors, postform, postpolicy, sigv2
from s3shim.chunked import ChunkSigning, Framing
from testkit.chunkdecode import new_decoder

EXAMPLES = int(os.environ.get("S3SHIM_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = datetime(2026, 12, 1, tzinfo=UTC)
SIGNING = ChunkSigning(
    b"k" * 32, "20261201T000000Z", "20261201/us-east-1/s3/aws4_request", "0" * 64
)


def lookup(key: str) -> str | None:
    return "secret" if key == "AK" else None


# Byte soup biased towards what these parsers look for, so fuzzing reaches their depths.
TOKENS = [
    b"\r\n",
    b";chunk-signature=",
    b"0",
    b"a",
    b"ff",
    b"10000",
    b"x-amz-checksum-crc32:",
    b"x-amz-trailer-signature:",
    b"=",
    b"--",
    b"--B",
    b"\r\n--B",
    b"Content-Disposition: ",
    b'form-data; name="file"',
    b'; filename="f"',
    b"<Part>",
    b"</Part>",
    b"<ChecksumCRC32>",
    b"</ChecksumCRC32>",
    b"<PartNumber>1</PartNumber>",
    b"<CompleteMultipartUpload>",
    b"</CompleteMultipartUpload>",
    b"<!DOCTYPE x [",
    b"&x;",
    b"\x00",
    b"\xff",
    b" ",
    b"\t",
    b"0" * 64,
]
soup = st.lists(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=8)), max_size=40).map(
    b"".join
)


def fed_in_cuts(feed: Callable[[bytes], object], data: bytes, cuts: list[int]) -> None:
    """``data`` fed in pieces of the sizes in ``cuts``, then the rest."""
    rest = data
    for n in cuts:
        feed(rest[:n])
        rest = rest[n:]
    feed(rest)


def only_s3_errors(fn: Callable[[], object]) -> None:
    with contextlib.suppress(errors.S3Error):
        fn()


@FUZZ
@given(st.sampled_from(list(Framing)), soup, st.lists(st.integers(1, 50), max_size=6))
def test_the_aws_chunked_decoder(framing: Framing, data: bytes, cuts: list[int]) -> None:
    has_trailer = framing is not Framing.SIGNED
    trailers = frozenset({"x-amz-checksum-crc32"}) if has_trailer else frozenset()
    decoder = new_decoder(framing, trailers=trailers, signing=SIGNING)

    def run() -> None:
        fed_in_cuts(decoder.feed, data, cuts)
        decoder.eof()

    only_s3_errors(run)
    assert decoder.buffered_bytes <= chunked.Limits().max_chunk_size + 8192


@FUZZ
@given(soup)
def test_the_complete_xml_rewrite(data: bytes) -> None:
    only_s3_errors(lambda: complete_xml.strip_part_checksums(data, max_size=4096))


@FUZZ
@given(st.text(max_size=300), st.text(max_size=80), st.text(max_size=80))
def test_the_authorization_header_parser(value: str, date: str, sha: str) -> None:
    headers = {
        "authorization": [value],
        "x-amz-date": [date],
        "x-amz-content-sha256": [sha],
        "host": ["h"],
    }
    only_s3_errors(
        lambda: auth.verify(
            method="GET", raw_path="/b/k", query=[], headers=headers, lookup=lookup, now=NOW
        )
    )


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "X-Amz-Algorithm",
                    "X-Amz-Credential",
                    "X-Amz-Date",
                    "X-Amz-Expires",
                    "X-Amz-SignedHeaders",
                    "X-Amz-Signature",
                    "AWSAccessKeyId",
                    "Signature",
                    "Expires",
                    "acl",
                ]
            ),
            st.text(max_size=40),
        ),
        max_size=8,
    )
)
def test_the_presigned_and_sigv2_query_parsers(query: list[tuple[str, str]]) -> None:
    headers = {"host": ["h"]}
    raw = "&".join(f"{k}={v}" for k, v in query)
    if sigv2.is_sigv2(headers, raw):
        only_s3_errors(
            lambda: sigv2.verify(
                method="GET", raw_path="/b", raw_query=raw, headers=headers, lookup=lookup, now=NOW
            )
        )
    else:
        only_s3_errors(
            lambda: auth.verify(
                method="GET", raw_path="/b", query=query, headers=headers, lookup=lookup, now=NOW
            )
        )


@FUZZ
@given(soup, st.lists(st.integers(1, 64), max_size=6))
def test_the_post_form_parser(data: bytes, cuts: list[int]) -> None:
    parser = postform.FormParser("B")

    def run() -> None:
        fed_in_cuts(parser.feed, data, cuts)
        parser.close()

    only_s3_errors(run)


@FUZZ
@given(st.binary(max_size=400) | st.text(max_size=300).map(str.encode))
def test_the_post_policy_decoder(raw: bytes) -> None:
    import base64

    only_s3_errors(lambda: postpolicy.decode_policy(base64.b64encode(raw)))
    only_s3_errors(lambda: postpolicy.decode_policy(raw))
