"""Property tests for the aws-chunked decoder: round trips, and nothing but its own errors."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from s3shim.chunked import (
    AwsChunkedDecoder,
    ChunkedBodyError,
    ChunkSigning,
    Data,
    End,
    Event,
    Framing,
    Limits,
    Trailer,
)
from s3shim.testing import encode_unsigned_trailer_chunk, encode_unsigned_trailer_end, sign_chunks
from testkit.helpers import doc_signing_key

SIGNING = ChunkSigning(
    doc_signing_key("20130524"),
    "20130524T000000Z",
    "20130524/us-east-1/s3/aws4_request",
    "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
)
# Small limits make the bounds reachable by small examples.
LIMITS = Limits(max_size_line=100, max_chunk_size=512, max_trailer_bytes=200)
BOUND = LIMITS.max_chunk_size + LIMITS.max_size_line + 2 + LIMITS.max_trailer_bytes
TRAILER = "x-amz-checksum-crc32"

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def chunked(payload: bytes, sizes: list[int]) -> list[bytes]:
    chunks, pos, i = [], 0, 0
    while pos < len(payload):
        size = sizes[i % len(sizes)] if sizes else len(payload)
        chunks.append(payload[pos : pos + size])
        pos += size
        i += 1
    return chunks


def frame(framing: Framing, chunks: list[bytes], trailers: list[tuple[str, str]]) -> bytes:
    if framing is Framing.UNSIGNED_TRAILER:
        body = b"".join(encode_unsigned_trailer_chunk(c) for c in chunks)
        return body + encode_unsigned_trailer_end(trailers)
    return sign_chunks(chunks, SIGNING, None if framing is Framing.SIGNED else trailers)


def new_decoder(
    framing: Framing, decoded_length: int | None, trailers: set[str]
) -> AwsChunkedDecoder:
    return AwsChunkedDecoder(
        framing,
        SIGNING if framing.signed else None,
        decoded_length=decoded_length,
        expected_trailers=frozenset(trailers),
        limits=LIMITS,
    )


def decode(dec: AwsChunkedDecoder, pieces: list[bytes]) -> list[Event]:
    events: list[Event] = []
    for piece in pieces:
        events += dec.feed(piece)
        assert dec.buffered_bytes <= BOUND
    return events + dec.eof()


trailer_values = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123456789+/=", max_size=24)


@FAST
@given(
    framing=st.sampled_from(list(Framing)),
    payload=st.binary(max_size=3000),
    sizes=st.lists(st.integers(1, LIMITS.max_chunk_size), max_size=6),
    cuts=st.lists(st.integers(0, 10_000), max_size=30),
    value=trailer_values,
)
def test_any_payload_chunking_and_split_round_trips(
    framing: Framing, payload: bytes, sizes: list[int], cuts: list[int], value: str
) -> None:
    trailers = [] if framing is Framing.SIGNED else [(TRAILER, value)]
    body = frame(framing, chunked(payload, sizes), trailers)
    names = {name for name, _ in trailers}
    events = decode(new_decoder(framing, len(payload), names), split(body, cuts))
    assert isinstance(events[-1], End)
    assert b"".join(e.data for e in events if isinstance(e, Data)) == payload
    assert [(e.name, e.value) for e in events if isinstance(e, Trailer)] == trailers


@FUZZ
@given(
    framing=st.sampled_from(list(Framing)),
    data=st.binary(max_size=2000),
    cuts=st.lists(st.integers(0, 3000), max_size=20),
    decoded_length=st.none() | st.integers(0, 3000),
    announce=st.booleans(),
)
def test_arbitrary_bytes_only_raise_the_decoders_error(
    framing: Framing, data: bytes, cuts: list[int], decoded_length: int | None, announce: bool
) -> None:
    trailers = {TRAILER} if announce and framing is not Framing.SIGNED else set()
    try:
        decode(new_decoder(framing, decoded_length, trailers), split(data, cuts))
    except ChunkedBodyError as err:
        event(err.code)


# Text that looks like framing, so random bodies get past the first size line.
_framing_pieces = st.sampled_from(
    [
        b"\r\n",
        b"\n",
        b"\r",
        b"0",
        b"5",
        b"1f",
        b"FFFF",
        b";",
        b";chunk-signature=",
        b"a" * 64,
        b"0" * 64,
        b":",
        b"x-amz-checksum-crc32",
        b"x-amz-trailer-signature",
        b"hello",
        b" ",
    ]
)


@FUZZ
@given(
    framing=st.sampled_from(list(Framing)),
    parts=st.lists(_framing_pieces | st.binary(max_size=8), max_size=60),
    cuts=st.lists(st.integers(0, 3000), max_size=20),
)
def test_framing_like_garbage_only_raises_the_decoders_error(
    framing: Framing, parts: list[bytes], cuts: list[int]
) -> None:
    trailers = set() if framing is Framing.SIGNED else {TRAILER}
    try:
        decode(new_decoder(framing, None, trailers), split(b"".join(parts), cuts))
        event("decoded")
    except ChunkedBodyError as err:
        event(err.code)


@FUZZ
@given(
    framing=st.sampled_from(list(Framing)),
    payload=st.binary(min_size=1, max_size=1500),
    sizes=st.lists(st.integers(1, LIMITS.max_chunk_size), max_size=4),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["flip", "insert", "delete"]),
            st.integers(0, 10_000),
            st.binary(min_size=1, max_size=3),
        ),
        min_size=1,
        max_size=3,
    ),
    cuts=st.lists(st.integers(0, 10_000), max_size=10),
)
def test_a_tampered_body_only_raises_and_a_signed_one_never_yields_other_data(
    framing: Framing,
    payload: bytes,
    sizes: list[int],
    edits: list[tuple[str, int, bytes]],
    cuts: list[int],
) -> None:
    trailers = [] if framing is Framing.SIGNED else [(TRAILER, "AAAAAA==")]
    body = bytearray(frame(framing, chunked(payload, sizes), trailers))
    for kind, at, blob in edits:
        at %= len(body) + (kind == "insert")
        if kind == "flip" and at < len(body):
            body[at] ^= blob[0] or 1
        elif kind == "insert":
            body[at:at] = blob
        elif at < len(body):
            del body[at]
    dec = new_decoder(framing, None, {n for n, _ in trailers})
    try:
        events = decode(dec, split(bytes(body), cuts))
    except ChunkedBodyError as err:
        event(err.code)
        return
    event("decoded despite the edits")
    if not framing.signed:
        return
    # Whatever survived tampering (a hex digit's case, stray blank lines) changes nothing.
    assert b"".join(e.data for e in events if isinstance(e, Data)) == payload
    assert [(e.name, e.value) for e in events if isinstance(e, Trailer)] == trailers
