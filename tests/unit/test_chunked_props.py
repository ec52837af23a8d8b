"""Property tests for the aws-chunked decoder: round trips, and nothing but its own errors."""

from __future__ import annotations

import functools

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from s3shim.chunked import (
    ChunkedBodyError,
    Data,
    End,
    Framing,
    Limits,
    Trailer,
)
from testkit.chunkdecode import feed, frame, new_decoder, split

# Small limits make the bounds reachable by small examples.
LIMITS = Limits(max_size_line=100, max_chunk_size=512, max_trailer_bytes=200)
BOUND = LIMITS.max_chunk_size + LIMITS.max_size_line + 2 + LIMITS.max_trailer_bytes
TRAILER = "x-amz-checksum-crc32"
# The decoders here: those limits, never holding more than BOUND bytes between feeds.
decoder = functools.partial(new_decoder, limits=LIMITS)
decode = functools.partial(feed, bound=BOUND)

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def chunked(payload: bytes, sizes: list[int]) -> list[bytes]:
    chunks, pos, i = [], 0, 0
    while pos < len(payload):
        size = sizes[i % len(sizes)] if sizes else len(payload)
        chunks.append(payload[pos : pos + size])
        pos += size
        i += 1
    return chunks


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
    dec = decoder(framing, decoded_length=len(payload), trailers=names)
    events = decode(dec, split(body, cuts))
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
        dec = decoder(framing, decoded_length=decoded_length, trailers=trailers)
        decode(dec, split(data, cuts))
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
        decode(decoder(framing, trailers=trailers), split(b"".join(parts), cuts))
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
    dec = decoder(framing, trailers={n for n, _ in trailers})
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
