"""The aws-chunked decoder's parts on their own: LineBuffer's bounds, the state machine, the
signature chain, and the list of STREAMING-* values."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3shim.chunked import (
    SIGV4A_STREAMING_VALUES,
    STREAMING_VALUES,
    TRANSITIONS,
    AwsChunkedDecoder,
    ChunkedBodyError,
    ChunkSigning,
    End,
    Framing,
    Limits,
    LineBuffer,
    SignatureChain,
    State,
    framing_for,
)
from s3shim.errors import S3Error
from s3shim.testing import ChunkSigner, encode_unsigned_trailer_chunk, encode_unsigned_trailer_end
from testkit.chunkdecode import DOC_DATE as DATE
from testkit.chunkdecode import DOC_SCOPE as SCOPE
from testkit.chunkdecode import DOC_SIGNING as SIGNING
from testkit.chunkdecode import DOC_TRAILER_SIGNING as TRAILER_SIGNING
from testkit.chunkdecode import new_decoder
from testkit.helpers import doc_signing_key

# The S3 API reference's worked examples (sigv4-streaming, sigv4-streaming-trailers).
KEY = doc_signing_key("20130524")
CHUNK_SHA256 = [hashlib.sha256(b"a" * size).hexdigest() for size in (65536, 1024, 0)]
TRAILER_CHAIN = [
    "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
    "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
    "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
]
# What every SDK signs for that example's trailer (see s3shim/chunked.py on the -TRAILER label).
TRAILER_SIGNATURE = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"
CRC32 = "x-amz-checksum-crc32"

INCOMPLETE = ("IncompleteBody", 400)
MALFORMED_TRAILER = ("MalformedTrailerError", 400)


def code_of(err: pytest.ExceptionInfo[ChunkedBodyError]) -> tuple[str, int]:
    return err.value.code, err.value.status


# --- LineBuffer -------------------------------------------------------------------------------


def test_a_whole_line_is_cut_out_at_pos_and_nothing_is_kept() -> None:
    lines = LineBuffer(Limits())
    data = b"xx5;a=b\r\nhello"
    assert lines.size_line(data, 2) == (b"5;a=b\r\n", 9)
    assert lines.buffered == 0


def test_an_unfinished_line_is_kept_and_completed_by_the_next_feed() -> None:
    lines = LineBuffer(Limits())
    assert lines.size_line(b"1f;chunk-sig", 0) == (None, 12)
    assert lines.buffered == 12
    assert lines.size_line(b"nature=x", 0) == (None, 8)
    assert lines.size_line(b"\r\nrest", 0) == (b"1f;chunk-signature=x\r\n", 2)
    assert lines.buffered == 0


def test_a_line_ended_by_lf_alone_is_returned_as_it_is() -> None:
    # Whether LF alone is acceptable is the decoder's decision, not the buffer's.
    assert LineBuffer(Limits()).size_line(b"5\nhello", 0) == (b"5\n", 2)


@pytest.mark.parametrize("split", [1, 3, 70])
def test_a_size_line_of_exactly_the_limit_plus_crlf_is_accepted(split: int) -> None:
    lines = LineBuffer(Limits(max_size_line=64))
    line = b"5;" + b"x" * 62 + b"\r\n"
    results = [lines.size_line(line[i : i + split], 0) for i in range(0, len(line), split)]
    assert results[-1][0] == line
    assert all(taken is None for taken, _ in results[:-1])


@pytest.mark.parametrize("split", [1, 5, 67])
def test_one_byte_more_than_the_limit_plus_crlf_is_refused(split: int) -> None:
    lines = LineBuffer(Limits(max_size_line=64))
    line = b"5;" + b"x" * 63 + b"\r\n"
    with pytest.raises(ChunkedBodyError) as caught:
        for i in range(0, len(line), split):
            lines.size_line(line[i : i + split], 0)
    assert code_of(caught) == INCOMPLETE
    assert "exceeds 64 bytes" in caught.value.message


def test_a_size_line_without_terminator_is_refused_as_soon_as_it_is_too_long() -> None:
    lines = LineBuffer(Limits(max_size_line=64))
    assert lines.size_line(b"5" * 65, 0) == (None, 65)  # the next byte may still be its LF
    with pytest.raises(ChunkedBodyError) as caught:
        lines.size_line(b"55", 0)
    assert code_of(caught) == INCOMPLETE
    # Nothing of a huge unterminated feed is buffered before it is refused.
    lines = LineBuffer(Limits(max_size_line=64))
    with pytest.raises(ChunkedBodyError):
        lines.size_line(b"5" * 10_000_000, 0)
    assert lines.buffered == 0


def test_the_trailer_budget_is_shared_by_every_line_of_the_block() -> None:
    lines = LineBuffer(Limits(max_trailer_bytes=20))
    assert lines.trailer_line(b"\r\n" * 5, 0) == (b"\r\n", 2)  # a blank line costs 2
    block = b"\r\n" * 4 + b"a:bcdefghi\r\n"  # 8 + 12 = 20 more: 22 in all
    pos, taken = 0, []
    with pytest.raises(ChunkedBodyError) as caught:
        while pos < len(block):
            line, pos = lines.trailer_line(block, pos)
            taken.append(line)
    assert code_of(caught) == MALFORMED_TRAILER
    assert "exceeds 20 bytes" in caught.value.message
    assert taken == [b"\r\n"] * 4  # 10 bytes used; the 12-byte line does not fit the 10 left


def test_a_trailer_block_of_exactly_the_budget_is_accepted() -> None:
    lines = LineBuffer(Limits(max_trailer_bytes=16))
    assert lines.trailer_line(b"x-amz-a:b=\r\n", 0) == (b"x-amz-a:b=\r\n", 12)
    assert lines.trailer_line(b"\r", 0) == (None, 1)
    assert lines.buffered == 1
    assert lines.trailer_line(b"\n\r\n", 0) == (b"\r\n", 1)
    assert lines.trailer_line(b"\n\r\n", 1) == (b"\r\n", 3)  # 16 bytes: the budget, exactly
    with pytest.raises(ChunkedBodyError) as caught:
        lines.trailer_line(b"\r", 0)
    assert code_of(caught) == MALFORMED_TRAILER


def test_an_unfinished_trailer_line_counts_against_the_budget() -> None:
    lines = LineBuffer(Limits(max_trailer_bytes=16))
    assert lines.trailer_line(b"x-amz-a:b=\r\nx-a", 0) == (b"x-amz-a:b=\r\n", 12)
    assert lines.trailer_line(b"x-amz-a:b=\r\nx-a", 12) == (None, 15)  # 3 of the 4 left
    with pytest.raises(ChunkedBodyError) as caught:
        lines.trailer_line(b"\r\n", 0)  # 17 bytes
    assert code_of(caught) == MALFORMED_TRAILER


def test_stray_blank_bytes_after_the_end_are_bounded_in_total() -> None:
    lines = LineBuffer(Limits())
    bound = LineBuffer.MAX_AFTER_END
    assert lines.after_end(b"x" + b"\r\n" * (bound // 4), 1) == 1 + bound // 2
    assert lines.after_end(b"\n" * (bound // 2), 0) == bound // 2  # exactly at the bound
    with pytest.raises(ChunkedBodyError) as caught:
        lines.after_end(b"\r", 0)
    assert code_of(caught) == INCOMPLETE


@pytest.mark.parametrize("stray", [b"x", b"\r\n0", b" ", b"\t"])
def test_anything_but_cr_and_lf_after_the_end_is_refused(stray: bytes) -> None:
    with pytest.raises(ChunkedBodyError) as caught:
        LineBuffer(Limits()).after_end(b"\r\n" + stray, 0)
    assert code_of(caught) == INCOMPLETE


def test_clear_drops_an_unfinished_line() -> None:
    lines = LineBuffer(Limits())
    lines.size_line(b"abc", 0)
    lines.clear()
    assert lines.buffered == 0
    assert lines.size_line(b"5\r\n", 0) == (b"5\r\n", 3)


# --- the state machine ------------------------------------------------------------------------

# Written out here, not taken from the module: the machine the module docstring describes.
EXPECTED_EDGES = {
    (State.SIZE_LINE, State.DATA),
    (State.SIZE_LINE, State.TRAILER),
    (State.DATA, State.DATA_CRLF),
    (State.DATA_CRLF, State.SIZE_LINE),
    (State.TRAILER, State.DONE),
    *((state, State.FAILED) for state in State if state is not State.FAILED),
}


def test_the_transition_table_is_the_documented_machine() -> None:
    assert set(TRANSITIONS) == set(State)
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == EXPECTED_EDGES


def states_bytewise(dec: AwsChunkedDecoder, body: bytes) -> list[State]:
    """The decoder's state after each byte, one feed per byte (a feed of one byte can move
    it at most once), then after eof; a refusal ends the list with FAILED."""
    seen = [dec.state]
    try:
        for i in range(len(body)):
            dec.feed(body[i : i + 1])
            seen.append(dec.state)
        dec.eof()
    except ChunkedBodyError:
        pass
    seen.append(dec.state)
    return seen


def visited(states: list[State]) -> list[State]:
    return [state for state, _ in itertools.groupby(states)]


def test_an_unsigned_trailer_body_walks_every_state_in_order() -> None:
    body = b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n"
    dec = AwsChunkedDecoder(
        Framing.UNSIGNED_TRAILER, None, decoded_length=5, expected_trailers=frozenset({CRC32})
    )
    assert visited(states_bytewise(dec, body)) == [
        State.SIZE_LINE,
        State.DATA,
        State.DATA_CRLF,
        State.SIZE_LINE,
        State.TRAILER,
        State.DONE,
    ]
    assert dec.done


def test_each_state_ends_where_the_framing_says() -> None:
    dec = AwsChunkedDecoder(Framing.UNSIGNED_TRAILER, None, decoded_length=None)
    for piece, state in [
        (b"5\r", State.SIZE_LINE),
        (b"\n", State.DATA),
        (b"hell", State.DATA),
        (b"o", State.DATA_CRLF),
        (b"\r", State.DATA_CRLF),
        (b"\n", State.SIZE_LINE),
        (b"0\r\n", State.TRAILER),
        (b"\r\n", State.DONE),
        (b"\r\n", State.DONE),
    ]:
        dec.feed(piece)
        assert dec.state is state, piece


def test_a_signed_body_walks_the_same_states() -> None:
    signer = ChunkSigner(SIGNING)
    body = signer.chunk(b"hello") + signer.chunk(b"world") + signer.end()
    dec = AwsChunkedDecoder(Framing.SIGNED, SIGNING, decoded_length=10)
    chunk = [State.SIZE_LINE, State.DATA, State.DATA_CRLF]
    end = [State.SIZE_LINE, State.TRAILER, State.DONE]
    assert visited(states_bytewise(dec, body)) == [*chunk, *chunk, *end]


@pytest.mark.parametrize(
    ("body", "failed_in"),
    [
        (b"zz\r\n", State.SIZE_LINE),
        (b"5\r\nhelloXX", State.DATA_CRLF),
        (b"0\r\nbad line\r\n", State.TRAILER),
        (b"0\r\n\r\nx", State.DONE),
    ],
)
def test_a_refusal_moves_to_failed_from_the_state_it_happens_in(
    body: bytes, failed_in: State
) -> None:
    dec = AwsChunkedDecoder(Framing.UNSIGNED_TRAILER, None, decoded_length=None)
    states = states_bytewise(dec, body)
    assert states[-2:] == [failed_in, State.FAILED]
    assert dec.buffered_bytes == 0 and not dec.done


def test_eof_in_the_middle_of_a_chunk_fails() -> None:
    dec = AwsChunkedDecoder(Framing.UNSIGNED_TRAILER, None, decoded_length=None)
    dec.feed(b"5\r\nhel")
    before = dec.state
    with pytest.raises(ChunkedBodyError):
        dec.eof()
    assert (before, dec.state) == (State.DATA, State.FAILED)


def test_a_failure_drops_an_unfinished_line() -> None:
    limits = Limits(max_size_line=64)
    dec = AwsChunkedDecoder(Framing.UNSIGNED_TRAILER, None, decoded_length=None, limits=limits)
    dec.feed(b"5" * 60)
    before = dec.buffered_bytes
    with pytest.raises(ChunkedBodyError):
        dec.feed(b"5" * 10)
    assert (before, dec.state, dec.buffered_bytes) == (60, State.FAILED, 0)


def test_a_failure_drops_a_signed_chunk_held_for_its_signature() -> None:
    body = ChunkSigner(SIGNING).chunk(b"hello world")
    dec = AwsChunkedDecoder(Framing.SIGNED, SIGNING, decoded_length=None)
    assert dec.feed(body[:-5]) == []
    before = dec.buffered_bytes
    with pytest.raises(ChunkedBodyError):
        dec.eof()
    assert (before, dec.state, dec.buffered_bytes) == (8, State.FAILED, 0)


def test_eof_after_a_complete_block_without_its_blank_line_is_done() -> None:
    dec = AwsChunkedDecoder(Framing.UNSIGNED_TRAILER, None, decoded_length=5)
    dec.feed(b"5\r\nhello\r\n0\r\n")
    before = dec.state
    assert dec.eof() == [End()]
    assert (before, dec.state) == (State.TRAILER, State.DONE)


_framing_pieces = st.sampled_from(
    [b"\r\n", b"\n", b"\r", b"0", b"5", b"1f", b";", b"a", b":", b"x-amz-checksum-crc32", b"hi"]
)


@settings(max_examples=300, deadline=None)
@given(
    framing=st.sampled_from(list(Framing)),
    parts=st.lists(_framing_pieces | st.binary(max_size=4), max_size=40),
)
def test_any_input_only_takes_the_documented_transitions(
    framing: Framing, parts: list[bytes]
) -> None:
    trailers = frozenset() if framing is Framing.SIGNED else frozenset({CRC32})
    dec = new_decoder(framing, trailers=trailers)
    states = visited(states_bytewise(dec, b"".join(parts)))
    assert states[0] is State.SIZE_LINE
    assert set(itertools.pairwise(states)) <= EXPECTED_EDGES
    assert states[-1] in {State.DONE, State.FAILED}


@settings(max_examples=100, deadline=None)
@given(
    payload=st.binary(max_size=300),
    size=st.integers(1, 64),
    trailer=st.booleans(),
)
def test_a_well_formed_body_never_fails(payload: bytes, size: int, trailer: bool) -> None:
    chunks = [payload[i : i + size] for i in range(0, len(payload), size)]
    body = b"".join(map(encode_unsigned_trailer_chunk, chunks))
    body += encode_unsigned_trailer_end([(CRC32, "AAAAAA==")] if trailer else [])
    dec = AwsChunkedDecoder(
        Framing.UNSIGNED_TRAILER,
        None,
        decoded_length=len(payload),
        expected_trailers=frozenset({CRC32}) if trailer else frozenset(),
    )
    states = visited(states_bytewise(dec, body))
    assert State.FAILED not in states
    assert states[-1] is State.DONE
    assert states.count(State.DATA) == len(chunks)


def test_a_small_tail_of_a_signed_chunk_does_not_pin_a_large_input() -> None:
    # CPython: a memoryview kept by the decoder holds a reference to the input bytes.
    signer = ChunkSigner(SIGNING)
    first, second = signer.chunk(b"x" * 50_000), signer.chunk(b"y" * 50_000)
    small_tail = first + second[:200]  # the second chunk's head and 100-odd data bytes
    large_tail = second[:40_000]  # most of this input is the chunk's data: kept, not copied
    dec = AwsChunkedDecoder(Framing.SIGNED, SIGNING, decoded_length=None)
    refs = sys.getrefcount(small_tail)
    dec.feed(small_tail)
    assert sys.getrefcount(small_tail) == refs
    dec = AwsChunkedDecoder(Framing.SIGNED, SIGNING, decoded_length=None)
    dec.feed(first)
    refs = sys.getrefcount(large_tail)
    dec.feed(large_tail)
    assert sys.getrefcount(large_tail) > refs


# --- the signature chain ----------------------------------------------------------------------


def test_the_chain_starts_at_the_seed_and_moves_on_with_every_signature() -> None:
    chain = SignatureChain(TRAILER_SIGNING)
    assert chain.previous == TRAILER_SIGNING.seed_signature
    for data_sha256, published in zip(CHUNK_SHA256, TRAILER_CHAIN, strict=True):
        assert chain.next_chunk(data_sha256) == published
        assert chain.previous == published
    assert chain.trailer([("x-amz-checksum-crc32c", "sOO8/Q==")]) == TRAILER_SIGNATURE
    assert chain.previous == TRAILER_SIGNATURE


def test_each_chunk_signature_depends_on_the_one_before() -> None:
    # The second published signature only follows from the first, not from the seed.
    chain = SignatureChain(TRAILER_SIGNING)
    assert chain.next_chunk(CHUNK_SHA256[1]) != TRAILER_CHAIN[1]


def test_the_trailer_signature_does_not_depend_on_the_order_of_the_trailers() -> None:
    trailers = [("x-amz-checksum-crc32c", "sOO8/Q=="), ("x-amz-checksum-crc32", "NhCmhg==")]
    first, second = SignatureChain(SIGNING), SignatureChain(SIGNING)
    assert first.trailer(trailers) == second.trailer(reversed(trailers))
    assert SignatureChain(SIGNING).trailer(trailers[:1]) != SignatureChain(SIGNING).trailer(
        trailers
    )


def test_the_chain_depends_on_key_date_and_scope() -> None:
    base = SignatureChain(SIGNING).next_chunk(CHUNK_SHA256[0])
    for other in (
        ChunkSigning(b"k" * 32, DATE, SCOPE, SIGNING.seed_signature),
        ChunkSigning(KEY, "20130524T000001Z", SCOPE, SIGNING.seed_signature),
        ChunkSigning(KEY, DATE, "20130524/us-west-2/s3/aws4_request", SIGNING.seed_signature),
    ):
        assert SignatureChain(other).next_chunk(CHUNK_SHA256[0]) != base


@settings(max_examples=200, deadline=None)
@given(
    key=st.binary(max_size=150),  # the chain's own HMAC pads: short, block-sized, long keys
    date=st.text(alphabet="0123456789TZ", max_size=20),
    hashes=st.lists(st.binary(min_size=32, max_size=32).map(bytes.hex), max_size=4),
    trailers=st.lists(st.tuples(st.sampled_from([CRC32, "x-amz-checksum-sha1"]), st.text())),
)
def test_the_chain_signs_exactly_as_hmac_does(
    key: bytes, date: str, hashes: list[str], trailers: list[tuple[str, str]]
) -> None:
    chain = SignatureChain(ChunkSigning(key, date, SCOPE, SIGNING.seed_signature))
    previous = SIGNING.seed_signature
    empty = hashlib.sha256(b"").hexdigest()
    for data_sha256 in hashes:
        to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", date, SCOPE, previous, empty, data_sha256])
        previous = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        assert chain.next_chunk(data_sha256) == previous
    canonical = "".join(f"{name}:{value}\n" for name, value in sorted(trailers))
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    to_sign = "\n".join(["AWS4-HMAC-SHA256-TRAILER", date, SCOPE, previous, digest])
    assert chain.trailer(trailers) == hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def test_the_test_signer_writes_the_chains_signatures() -> None:
    signer, chain = ChunkSigner(TRAILER_SIGNING), SignatureChain(TRAILER_SIGNING)
    chunk = signer.chunk(b"a" * 1024)
    assert chunk.startswith(
        b"400;chunk-signature=%b\r\n" % chain.next_chunk(CHUNK_SHA256[1]).encode()
    )
    end = signer.end([("X-Amz-Checksum-CRC32", "NhCmhg==")])  # names are lower-cased
    assert end.startswith(b"0;chunk-signature=%b\r\n" % chain.next_chunk(CHUNK_SHA256[2]).encode())
    signature = chain.trailer([(CRC32, "NhCmhg==")])
    assert end.endswith(f"{CRC32}:NhCmhg==\r\nx-amz-trailer-signature:{signature}\r\n\r\n".encode())


# --- the STREAMING-* values -------------------------------------------------------------------


def test_streaming_values_are_every_value_s3_defines() -> None:
    defined = {
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD",
        "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER",
    }
    assert defined == STREAMING_VALUES
    assert SIGV4A_STREAMING_VALUES < STREAMING_VALUES


@pytest.mark.parametrize("value", sorted(STREAMING_VALUES))
def test_framing_for_decodes_or_refuses_every_streaming_value_by_name(value: str) -> None:
    if value in SIGV4A_STREAMING_VALUES:
        with pytest.raises(S3Error) as caught:
            framing_for(value)
        assert caught.value.code == "NotImplemented"
    else:
        framing = framing_for(value)
        assert framing is not None and framing.value == value
