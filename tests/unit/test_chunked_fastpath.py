"""The byte path's shortcuts give exactly what the general steps give.

* The size line every SDK writes is parsed with one regex, anything else step by step: the
  two give the same sizes, signatures and errors on any line.
* A signed chunk whose data is all in one input is hashed and handed on as a view of it, and
  the steps of a chunk are chained without the dispatch: any split of any body, intact or
  broken (bad chunk signature, altered data, wrong trailer, truncation, a flipped bit),
  gives the events and the refusal that feeding it byte by byte gives;
* :class:`~s3shim.body.BodyPipeline` joins those views once per feed: for those bodies and for
  plain ones, every split forwards the same bytes, with the same hold-back, and refuses with
  the same error as byte-by-byte feeding.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from s3shim import errors
from s3shim.body import BodyPipeline, BodySpec
from s3shim.checksums import Algorithm, ExpectedChecksum
from s3shim.chunked import (
    _COMMON_SIZE_LINE_RE,
    AwsChunkedDecoder,
    ChunkedBodyError,
    ChunkSigning,
    Data,
    End,
    Event,
    Framing,
    State,
    Trailer,
    _parse_any_size_line,
    _parse_size_line,
)
from testkit.chunkdecode import frame, new_decoder, split
from testkit.helpers import crc32_b64, doc_signing_key

SETTINGS = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEWER = settings(SETTINGS, max_examples=300)  # each example feeds a body byte by byte

_HEX = "0123456789abcdefABCDEF"
_hex = st.text(alphabet=_HEX, min_size=0, max_size=18)
_signature = st.text(alphabet=_HEX + "g;=", min_size=62, max_size=66) | st.text(
    alphabet=_HEX, min_size=64, max_size=64
)
_extension = st.sampled_from(
    ["", ";chunk-signature=", ";chunk-signature", ";x=1", ";", "; chunk-", ";CHUNK-SIGNATURE="]
)
_end = st.sampled_from(["\r\n", "\n", "", "\r", " \r\n", "\r\n\r\n"])


@st.composite
def common_lines(draw: st.DrawFn) -> bytes:
    """Exactly what the SDKs write: ``<hex>[;chunk-signature=<64 hex>]\r\n``, any case."""
    line = draw(st.text(alphabet=_HEX, min_size=1, max_size=16))
    if draw(st.booleans()):
        line += ";chunk-signature=" + draw(st.text(alphabet=_HEX, min_size=64, max_size=64))
    return (line + "\r\n").encode()


@st.composite
def near_misses(draw: st.DrawFn) -> bytes:
    """Lines close to those, wrong in every way the general parse has a word for."""
    line = draw(_hex)
    extension = draw(_extension)
    if extension:
        line += extension + (draw(_signature) if extension.endswith("=") else "")
    if draw(st.booleans()):
        line += draw(_extension) + draw(st.text(alphabet="0123456789abcdef=;x", max_size=70))
    return (line + draw(_end)).encode()


def outcome(
    parse: Callable[[bytes, bool], tuple[int, str | None]], line: bytes, signed: bool
) -> object:
    try:
        return parse(line, signed)
    except ChunkedBodyError as err:
        return (err.code, err.status, err.message)


@SETTINGS
@given(line=common_lines() | near_misses() | st.binary(max_size=100), signed=st.booleans())
def test_the_one_regex_size_line_parse_agrees_with_the_general_one(
    line: bytes, signed: bool
) -> None:
    common = _COMMON_SIZE_LINE_RE.fullmatch(line) is not None
    event(f"common form: {common}")
    assert outcome(_parse_size_line, line, signed) == outcome(_parse_any_size_line, line, signed)


def test_the_lines_sdks_write_take_the_one_regex() -> None:
    for line in [
        b"10000;chunk-signature="
        + b"ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n",
        b"400;chunk-signature="
        + b"0055627C9E194CB4542BAE2AA5492E3C1575BBB81B612B7D234B86A503EF5497\r\n",
        b"0\r\n",
        b"FFFF\r\n",
    ]:
        assert _COMMON_SIZE_LINE_RE.fullmatch(line) is not None


# --- the decoder: the same outcome whatever the split ------------------------------------------
#
# Bytewise feeding walks the general steps one byte at a time (lines buffered, signed chunks
# collected piece by piece); one whole feed takes every shortcut (a whole signed chunk hashed
# and handed on as a view, the steps chained without the dispatch); random splits mix them.


SIGNING = ChunkSigning(
    doc_signing_key("20261201"), "20261201T000000Z", "20261201/us-east-1/s3/aws4_request", "ab" * 32
)
TRAILER = "x-amz-checksum-crc32"


@dataclass(frozen=True)
class Outcome:
    released: bytes  # payload handed out before the end or the refusal
    signed_chunks: tuple[int, ...]  # signed framings: the size of each Data (one per chunk)
    trailers: tuple[tuple[str, str], ...]
    ended: bool
    error: tuple[str, int, str] | None
    state: State


def decode(dec: AwsChunkedDecoder, pieces: list[bytes]) -> Outcome:
    events: list[Event] = []
    error = None
    try:
        for piece in pieces:
            events += dec.feed(piece)
        events += dec.eof()
    except ChunkedBodyError as err:
        error = (err.code, err.status, err.message)
    data = [e.data for e in events if isinstance(e, Data)]
    return Outcome(
        released=b"".join(data),
        signed_chunks=tuple(len(d) for d in data) if dec.framing.signed else (),
        trailers=tuple((e.name, e.value) for e in events if isinstance(e, Trailer)),
        ended=any(isinstance(e, End) for e in events),
        error=error,
        state=dec.state,
    )


@st.composite
def bodies(draw: st.DrawFn) -> tuple[Framing, bytes, bytes, str]:
    """(framing, payload, framed body, what was done to it): intact or broken on purpose."""
    framing = draw(st.sampled_from(list(Framing)))
    payload = draw(st.binary(max_size=3000))
    sizes = draw(st.lists(st.integers(1, 1200), min_size=1, max_size=5))
    chunks, pos, i = [], 0, 0
    while pos < len(payload):
        chunks.append(payload[pos : pos + sizes[i % len(sizes)]])
        pos += sizes[i % len(sizes)]
        i += 1
    wrong_trailer = draw(st.booleans())
    value = crc32_b64(b"other" if wrong_trailer else payload)
    trailers = [] if framing is Framing.SIGNED else [(TRAILER, value)]
    body = bytearray(frame(framing, chunks, trailers, SIGNING))
    damage = draw(st.sampled_from(["none", "signature", "data", "truncate", "flip"]))
    at = draw(st.integers(0, 10_000))
    signatures = [m.start(1) for m in re.finditer(rb"signature[=:]([0-9a-f]{64})", body)]
    if damage == "signature" and signatures:
        where = signatures[at % len(signatures)] + at % 64
        body[where] = ord("0") if body[where] != ord("0") else ord("1")
    elif damage == "data" and payload:
        starts = [
            m.end() for m in re.finditer(rb"[0-9a-f]+(;chunk-signature=[0-9a-f]{64})?\r\n", body)
        ]
        body[starts[at % len(starts)]] ^= 1
    elif damage == "truncate":
        del body[at % (len(body) + 1) :]
    elif damage == "flip" and body:
        body[at % len(body)] ^= 1 << (at % 8)
    what = damage + (", wrong trailer value" if wrong_trailer and trailers else "")
    return framing, payload, bytes(body), what


@SETTINGS
@given(body=bodies(), cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_every_split_gives_the_events_and_the_refusal_of_bytewise_feeding(
    body: tuple[Framing, bytes, bytes, str], cuts: list[int]
) -> None:
    framing, payload, framed, what = body
    names = frozenset({TRAILER}) if framing is not Framing.SIGNED else frozenset()

    def new() -> AwsChunkedDecoder:
        return new_decoder(framing, decoded_length=len(payload), trailers=names, signing=SIGNING)

    bytewise = decode(new(), [framed[i : i + 1] for i in range(len(framed))])
    event(f"{framing.name}, {what}: {bytewise.error[0] if bytewise.error else 'decoded'}")
    for pieces in ([framed], split(framed, cuts)):
        got = decode(new(), pieces)
        assert (got.error, got.state, got.ended, got.trailers) == (
            bytewise.error,
            bytewise.state,
            bytewise.ended,
            bytewise.trailers,
        )
        if bytewise.error is None:
            assert got.released == bytewise.released
            assert got.signed_chunks == bytewise.signed_chunks
            if framing.signed:  # whatever survived tampering changed no payload byte
                assert got.released == payload
        else:
            # A refused feed returns nothing, so a split may have handed out less; never
            # other bytes, and of a signed body only verified chunks.
            assert bytewise.released.startswith(got.released)
            if framing.signed:
                assert payload.startswith(bytewise.released)


# --- BodyPipeline: the same bytes and refusal whatever the split --------------------------------
#
# The pipeline joins the decoder's views once per feed and holds the last piece back: the same
# bytes to the store, the same error (kept in ``failure``), the same computed checksum as
# byte-by-byte feeding, and the store at least one byte short until finish() said yes.


@dataclass(frozen=True)
class PipelineOutcome:
    released: bytes  # what feed() let through, before finish()
    tail: bytes | None  # what finish() let through; None when the body was refused
    error: tuple[str, int, str] | None
    checksum: str | None  # computed_checksum


def run_pipeline(spec: BodySpec, pieces: list[bytes]) -> PipelineOutcome:
    pipeline = BodyPipeline(spec)
    released: list[bytes] = []
    try:
        for piece in pieces:
            out = pipeline.feed(piece)
            assert type(out) is bytes  # what the proxy forwards, never a view
            released.append(out)
        tail = pipeline.finish()
    except errors.S3Error as err:
        assert pipeline.failure is err
        return PipelineOutcome(b"".join(released), None, (err.code, err.status, err.message), None)
    assert pipeline.failure is None
    return PipelineOutcome(b"".join(released), tail, None, pipeline.computed_checksum)


def check_splits(spec: BodySpec, body: bytes, cuts: list[int]) -> PipelineOutcome:
    bytewise = run_pipeline(spec, [body[i : i + 1] for i in range(len(body))])
    event(bytewise.error[0] if bytewise.error else "forwarded")
    assert spec.length is not None
    for pieces in ([body], split(body, cuts)):
        got = run_pipeline(spec, pieces)
        assert (got.error, got.checksum) == (bytewise.error, bytewise.checksum)
        if got.error is None:
            assert got.released + (got.tail or b"") == bytewise.released + (bytewise.tail or b"")
        # Hold-back: until finish() said yes, the store never had the whole body.
        assert len(got.released) < spec.length or spec.length == 0
        assert bytewise.released.startswith(got.released) or got.error is None
    return bytewise


@FEWER
@given(body=bodies(), cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_aws_chunked_bodies_give_the_same_bytes_and_refusal_for_every_split(
    body: tuple[Framing, bytes, bytes, str], cuts: list[int]
) -> None:
    framing, payload, framed, _ = body
    trailer = framing is not Framing.SIGNED
    spec = BodySpec(
        length=len(payload),
        # A signed body without trailer carries its checksum as a header (the value of the
        # payload): checked all the same.
        checksum=ExpectedChecksum(Algorithm.CRC32, None if trailer else crc32_b64(payload)),
        framing=framing,
        chunk_signing=SIGNING if framing.signed else None,
        trailers=frozenset({TRAILER}) if trailer else frozenset(),
    )
    outcome = check_splits(spec, framed, cuts)
    if outcome.error is None and framing.signed:
        assert outcome.released + (outcome.tail or b"") == payload
        assert outcome.checksum == crc32_b64(payload)


@FEWER
@given(
    payload=st.binary(max_size=3000),
    promise=st.sampled_from(["crc32", "sha256", "both", "none"]),
    wrong=st.sampled_from(["none", "crc32", "sha256", "length"]),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
)
def test_plain_bodies_give_the_same_bytes_and_refusal_for_every_split(
    payload: bytes, promise: str, wrong: str, cuts: list[int]
) -> None:
    crc = crc32_b64(b"other" if wrong == "crc32" else payload)
    sha = hashlib.sha256(b"other" if wrong == "sha256" else payload).hexdigest()
    spec = BodySpec(
        length=len(payload) + (1 if wrong == "length" else 0),
        sha256_hex=sha if promise in ("sha256", "both") else None,
        checksum=ExpectedChecksum(Algorithm.CRC32, crc) if promise in ("crc32", "both") else None,
    )
    outcome = check_splits(spec, payload, cuts)
    if outcome.error is None:
        assert outcome.released + (outcome.tail or b"") == payload
