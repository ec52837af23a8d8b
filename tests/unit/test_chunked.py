"""aws-chunked decoding: AWS's published vectors, real SDK framings, and every refusal."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import random
from collections.abc import Iterable

import pytest
from botocore.httpchecksum import (
    AwsChunkedWrapper,
    Crc32Checksum,
    CrtCrc32cChecksum,
)

from s3shim.chunked import (
    AwsChunkedDecoder,
    ChunkedBodyError,
    Data,
    End,
    Event,
    Framing,
    Limits,
    OneChunkFraming,
    SignatureChain,
    Trailer,
    framing_for,
)
from s3shim.errors import S3Error
from s3shim.testing import (
    ChunkSigner,
    encode_unsigned_trailer_chunk,
    encode_unsigned_trailer_end,
    sign_chunks,
)
from testkit.chunkdecode import DOC_SIGNING as SIGNING
from testkit.chunkdecode import DOC_TRAILER_SIGNING as TRAILER_SIGNING
from testkit.chunkdecode import feed as run
from testkit.chunkdecode import frame
from testkit.chunkdecode import new_decoder as decoder
from testkit.helpers import crc32_b64

# --- the worked examples of the S3 API reference (sigv4-streaming, sigv4-streaming-trailers) ---

DOC_SIGNATURES = (
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
)
# The trailer example's chunk signatures (its own seed: x-amz-trailer is signed too).
TRAILER_DOC_SIGNATURES = (
    "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
    "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
    "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
)
# What every SDK computes for that trailer (label AWS4-HMAC-SHA256-TRAILER). The page prints
# 63bddb24…, which is the same computation under the AWS4-HMAC-SHA256-PAYLOAD label.
TRAILER_SIGNATURE = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"
DOC_PRINTED_TRAILER_SIGNATURE = "63bddb248ad2590c92712055f51b8e78ab024eead08276b24f010b0efd74843f"
DOC_DATA = b"a" * 66560


CRC32C = frozenset({"x-amz-checksum-crc32c"})
CRC32 = frozenset({"x-amz-checksum-crc32"})


def doc_body(signatures: tuple[str, str, str], tail: bytes = b"\r\n") -> bytes:
    """The documented body, written out by hand (not by our encoder)."""
    return b"".join(
        [
            f"10000;chunk-signature={signatures[0]}\r\n".encode(),
            DOC_DATA[:65536],
            f"\r\n400;chunk-signature={signatures[1]}\r\n".encode(),
            DOC_DATA[65536:],
            f"\r\n0;chunk-signature={signatures[2]}\r\n".encode(),
            tail,
        ]
    )


def whole(body: bytes) -> list[bytes]:
    return [body]


def bytewise(body: bytes) -> list[bytes]:
    return [body[i : i + 1] for i in range(len(body))]


def random_split(body: bytes, rng: random.Random, max_piece: int = 9000) -> list[bytes]:
    pieces, pos = [], 0
    while pos < len(body):
        step = rng.randint(0, max_piece)  # empty feeds too
        pieces.append(body[pos : pos + step])
        pos += step
    return pieces


def payload_of(events: list[Event]) -> bytes:
    assert isinstance(events[-1], End)
    assert sum(isinstance(e, End) for e in events) == 1
    return b"".join(e.data for e in events if isinstance(e, Data))


def trailers_of(events: list[Event]) -> dict[str, str]:
    return {e.name: e.value for e in events if isinstance(e, Trailer)}


def refused(dec: AwsChunkedDecoder, pieces: Iterable[bytes], code: str, status: int) -> S3Error:
    with pytest.raises(ChunkedBodyError) as caught:
        run(dec, pieces)
    assert (caught.value.code, caught.value.status) == (code, status), caught.value.message
    return caught.value


# --- the published examples ------------------------------------------------------------------


def test_our_signatures_match_the_published_ones() -> None:
    chain = SignatureChain(SIGNING)
    for size, published in zip((65536, 1024, 0), DOC_SIGNATURES, strict=True):
        assert chain.next_chunk(hashlib.sha256(b"a" * size).hexdigest()) == published
    chain = SignatureChain(TRAILER_SIGNING)
    for size, published in zip((65536, 1024, 0), TRAILER_DOC_SIGNATURES, strict=True):
        assert chain.next_chunk(hashlib.sha256(b"a" * size).hexdigest()) == published
    assert chain.trailer([("x-amz-checksum-crc32c", "sOO8/Q==")]) == TRAILER_SIGNATURE


def test_the_encoder_reproduces_the_documented_body() -> None:
    body = sign_chunks([DOC_DATA[:65536], DOC_DATA[65536:]], SIGNING)
    assert body == doc_body(DOC_SIGNATURES)
    assert len(body) == 66824  # the example's Content-Length


@pytest.mark.parametrize("split", ["whole", "bytewise", "random"])
def test_the_documented_chunked_upload_decodes(split: str) -> None:
    body = doc_body(DOC_SIGNATURES)
    pieces = {"whole": whole, "bytewise": bytewise}.get(split)
    chunks = pieces(body) if pieces else random_split(body, random.Random(7))
    events = run(decoder(Framing.SIGNED, decoded_length=66560), chunks)
    assert payload_of(events) == DOC_DATA
    # One Data per chunk, released only once its signature checked out.
    assert [len(e.data) for e in events if isinstance(e, Data)] == [65536, 1024]


@pytest.mark.parametrize("split", ["whole", "bytewise", "random"])
def test_the_documented_trailer_example_decodes(split: str) -> None:
    tail = f"x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:{TRAILER_SIGNATURE}\r\n\r\n"
    body = doc_body(TRAILER_DOC_SIGNATURES, tail.encode())
    pieces = {"whole": whole, "bytewise": bytewise}.get(split)
    chunks = pieces(body) if pieces else random_split(body, random.Random(8))
    dec = decoder(
        Framing.SIGNED_TRAILER, signing=TRAILER_SIGNING, decoded_length=66560, trailers=CRC32C
    )
    events = run(dec, chunks)
    assert payload_of(events) == DOC_DATA
    assert trailers_of(events) == {"x-amz-checksum-crc32c": "sOO8/Q=="}
    assert base64.b64decode("sOO8/Q==") == _crc32c(DOC_DATA)


def test_the_trailer_signature_printed_in_the_documentation_is_refused() -> None:
    # It is computed with the -PAYLOAD label; no SDK signs trailers that way.
    signature = DOC_PRINTED_TRAILER_SIGNATURE
    tail = f"x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:{signature}\r\n\r\n"
    body = doc_body(TRAILER_DOC_SIGNATURES, tail.encode())
    dec = decoder(
        Framing.SIGNED_TRAILER, signing=TRAILER_SIGNING, decoded_length=66560, trailers=CRC32C
    )
    refused(dec, [body], "SignatureDoesNotMatch", 403)


def test_the_documentation_layout_with_a_blank_line_before_the_trailers_decodes() -> None:
    # The documentation's rendering (and some servers' tests) put a blank line after the
    # zero-size chunk; tolerated while the trailer block is still incomplete.
    tail = (
        f"\r\nx-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:{TRAILER_SIGNATURE}\r\n\r\n"
    )
    body = doc_body(TRAILER_DOC_SIGNATURES, tail.encode())
    dec = decoder(
        Framing.SIGNED_TRAILER, signing=TRAILER_SIGNING, decoded_length=66560, trailers=CRC32C
    )
    assert payload_of(run(dec, [body])) == DOC_DATA


# --- every framing, random chunkings ---------------------------------------------------------


def random_chunks(payload: bytes, rng: random.Random, biggest: int) -> list[bytes]:
    chunks, pos = [], 0
    while pos < len(payload):
        size = rng.choice([1, 2, 7, 100, 8192, 65536, rng.randint(1, biggest)])
        chunks.append(payload[pos : pos + size])
        pos += size
    return chunks


@pytest.mark.parametrize("framing", list(Framing))
@pytest.mark.parametrize("seed", range(4))
def test_random_chunkings_round_trip(framing: Framing, seed: int) -> None:
    rng = random.Random(seed)
    payload = rng.randbytes(rng.choice([0, 1, 5000, 300_000, 2_500_000]))
    chunks = random_chunks(payload, rng, 1024 * 1024)
    crc = crc32_b64(payload)
    trailers = [] if framing is Framing.SIGNED else [("x-amz-checksum-crc32", crc)]
    body = frame(framing, chunks, trailers)
    for pieces in (whole(body), random_split(body, rng), random_split(body, rng, 3)):
        dec = decoder(framing, decoded_length=len(payload), trailers=[n for n, _ in trailers])
        events = run(dec, pieces)
        assert payload_of(events) == payload
        assert trailers_of(events) == dict(trailers)


def test_unsigned_data_is_emitted_as_soon_as_it_arrives() -> None:
    dec = decoder(Framing.UNSIGNED_TRAILER)
    assert dec.feed(b"a\r\nhel") == [Data(b"hel")]
    assert dec.feed(b"lo") == [Data(b"lo")]
    assert dec.buffered_bytes == 0
    assert dec.feed(b"wor") == [Data(b"wor")]
    assert dec.feed(b"ld\r\n0\r\n\r\n") == [Data(b"ld"), End()]
    assert dec.eof() == []


def test_signed_data_is_held_until_its_signature_checks_out() -> None:
    body = sign_chunks([b"hello world"], SIGNING)
    dec = decoder(Framing.SIGNED)
    head = body.index(b"\r\n") + 2
    assert dec.feed(body[: head + 10]) == []
    assert dec.buffered_bytes == 10
    assert dec.feed(body[head + 10 :]) == [Data(b"hello world"), End()]


def test_an_empty_body_decodes_in_every_framing() -> None:
    for framing in Framing:
        body = frame(framing, [], [])
        assert payload_of(run(decoder(framing, decoded_length=0), [body])) == b""


# --- what real clients send ------------------------------------------------------------------


def _crc32c(data: bytes) -> bytes:
    checksum = CrtCrc32cChecksum()
    checksum.update(data)
    return bytes(checksum.digest())


# One-byte chunks only for small bodies: for big ones they slow the suite and prove nothing more.
_SIZE_CHUNK = [
    (size, chunk)
    for size in (0, 1, 8191, 65536, 200_001)
    for chunk in (1, 8192, 65536, None)
    if not (chunk == 1 and size > 8191)
]


@pytest.mark.parametrize(("size", "chunk_size"), _SIZE_CHUNK)
@pytest.mark.parametrize("checksum", [None, Crc32Checksum, CrtCrc32cChecksum])
def test_botocore_aws_chunked_bodies_decode_byte_identically(
    size: int, chunk_size: int | None, checksum: type | None
) -> None:
    rng = random.Random(size)
    payload = rng.randbytes(size)
    name = {Crc32Checksum: "x-amz-checksum-crc32", CrtCrc32cChecksum: "x-amz-checksum-crc32c"}
    trailer = name.get(checksum) if checksum else None
    wrapper = AwsChunkedWrapper(
        io.BytesIO(payload),
        checksum_cls=checksum,
        checksum_name=trailer or "x-amz-checksum",
        chunk_size=chunk_size,
    )
    body = b"".join(iter(lambda: wrapper.read(rng.randint(1, 70000)), b""))
    dec = decoder(
        Framing.UNSIGNED_TRAILER, decoded_length=size, trailers=[trailer] if trailer else []
    )
    events = run(dec, random_split(body, rng))
    assert payload_of(events) == payload
    if checksum is not None and trailer is not None:
        expected = checksum()
        expected.update(payload)
        assert trailers_of(events) == {trailer: expected.b64digest()}
    else:
        assert trailers_of(events) == {}


def test_our_unsigned_encoder_matches_botocore() -> None:
    payload = random.Random(1).randbytes(100_000)
    wrapper = AwsChunkedWrapper(
        io.BytesIO(payload),
        checksum_cls=Crc32Checksum,
        checksum_name="x-amz-checksum-crc32",
        chunk_size=30_000,
    )
    checksum = Crc32Checksum()
    checksum.update(payload)
    ours = b"".join(
        encode_unsigned_trailer_chunk(payload[i : i + 30_000]) for i in range(0, 100_000, 30_000)
    ) + encode_unsigned_trailer_end([("x-amz-checksum-crc32", checksum.b64digest())])
    assert ours == wrapper.read()


def test_an_empty_chunk_is_never_encoded() -> None:
    assert encode_unsigned_trailer_chunk(b"") == b""
    assert ChunkSigner(SIGNING).chunk(b"") == b""


def test_upper_case_hex_sizes_decode() -> None:
    # Rust's AwsChunkedBody and aws-c-s3 (awscrt) write sizes with {:X} / PRIX64.
    body = b"B\r\nHello world\r\n0\r\n\r\n"
    assert payload_of(run(decoder(Framing.UNSIGNED_TRAILER, decoded_length=11), [body])) == (
        b"Hello world"
    )
    payload = b"x" * 0xABCDE
    body = b"ABCDE\r\n" + payload + b"\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"
    dec = decoder(Framing.UNSIGNED_TRAILER, decoded_length=len(payload), trailers=CRC32)
    assert payload_of(run(dec, [body])) == payload


def test_a_signed_body_with_upper_case_sizes_decodes() -> None:
    body = sign_chunks([b"z" * 0xAB], SIGNING).replace(b"ab;chunk", b"AB;chunk", 1)
    assert payload_of(run(decoder(Framing.SIGNED, decoded_length=0xAB), [body])) == b"z" * 0xAB


def test_a_whole_part_as_one_unsigned_chunk_is_not_limited() -> None:
    # aws-c-s3 frames a whole part (up to 5 GiB) as a single chunk; it is streamed, never held.
    limits = Limits(max_chunk_size=1024)
    payload = b"p" * 100_000
    body = b"%X\r\n%b\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n" % (len(payload), payload)
    dec = decoder(
        Framing.UNSIGNED_TRAILER, decoded_length=len(payload), trailers=CRC32, limits=limits
    )
    assert payload_of(run(dec, random_split(body, random.Random(2)))) == payload


def test_the_js_sdk_end_without_a_checksum_decodes() -> None:
    # @smithy/util-stream ends a body without a checksum with "0\r\n" and nothing more.
    body = b"5\r\nhello\r\n0\r\n"
    assert payload_of(run(decoder(Framing.UNSIGNED_TRAILER, decoded_length=5), [body])) == b"hello"


def test_the_js_sdk_end_with_a_checksum_decodes() -> None:
    body = b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n"
    events = run(decoder(Framing.UNSIGNED_TRAILER, decoded_length=5, trailers=CRC32), [body])
    assert trailers_of(events) == {"x-amz-checksum-crc32": "NhCmhg=="}


def test_the_rust_sdk_signed_trailer_without_trailers_decodes() -> None:
    # With no trailing headers the Rust SDK writes no x-amz-trailer-signature either.
    signer = ChunkSigner(SIGNING)
    body = signer.chunk(b"hello") + signer.end(None)
    assert payload_of(run(decoder(Framing.SIGNED_TRAILER, decoded_length=5), [body])) == b"hello"


def test_minio_go_signed_trailer_decodes() -> None:
    # minio-go: "<name>:<value>\n" then "\r\nx-amz-trailer-signature:<sig>\r\n\r\n".
    signer = ChunkSigner(SIGNING)
    head = signer.chunk(b"hello") + signer.end(None)[:-2]  # the zero chunk, no blank line
    last = head.rsplit(b"chunk-signature=", 1)[1][:64].decode()
    trailer = [("x-amz-checksum-crc32", "NhCmhg==")]
    sig = SignatureChain(dataclasses.replace(SIGNING, seed_signature=last)).trailer(trailer)
    body = (
        head + f"x-amz-checksum-crc32:NhCmhg==\n\r\nx-amz-trailer-signature:{sig}\r\n\r\n".encode()
    )
    events = run(decoder(Framing.SIGNED_TRAILER, decoded_length=5, trailers=CRC32), bytewise(body))
    assert payload_of(events) == b"hello"
    assert trailers_of(events) == dict(trailer)


def test_minio_go_unsigned_trailer_decodes() -> None:
    # minio-go: "0\r\n<name>:<value>\n\r\n\r\n" (one blank line too many, which S3 accepts).
    body = b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\n\r\n\r\n"
    events = run(
        decoder(Framing.UNSIGNED_TRAILER, decoded_length=5, trailers=CRC32), bytewise(body)
    )
    assert trailers_of(events) == {"x-amz-checksum-crc32": "NhCmhg=="}


def test_whitespace_around_the_trailer_colon_is_accepted() -> None:
    body = b"5\r\nhello\r\n0\r\nX-Amz-Checksum-CRC32 : NhCmhg== \r\n\r\n"
    events = run(decoder(Framing.UNSIGNED_TRAILER, trailers={"x-amz-checksum-crc32"}), [body])
    assert trailers_of(events) == {"x-amz-checksum-crc32": "NhCmhg=="}


def test_unsigned_chunk_extensions_are_ignored() -> None:
    body = b"5;chunk-signature=nonsense;x=y\r\nhello\r\n0;foo\r\n\r\n"
    assert payload_of(run(decoder(Framing.UNSIGNED_TRAILER), [body])) == b"hello"


def test_other_extensions_next_to_the_chunk_signature_are_ignored() -> None:
    body = sign_chunks([b"hello"], SIGNING).replace(b"5;chunk-signature", b"5;x=1;chunk-signature")
    assert payload_of(run(decoder(Framing.SIGNED), [body])) == b"hello"


# --- refusals --------------------------------------------------------------------------------

INCOMPLETE = ("IncompleteBody", 400)
MISMATCH = ("SignatureDoesNotMatch", 403)
TRAILER = ("MalformedTrailerError", 400)


@pytest.mark.parametrize(
    "size_line", [b"zz", b"", b"+5", b"0x5", b" 5", b"5 ", b"-5", b"5_0", b"\xff", b"1" * 17]
)
def test_a_bad_hex_size_is_incomplete_body(size_line: bytes) -> None:
    refused(decoder(Framing.UNSIGNED_TRAILER), [size_line + b"\r\nhello\r\n0\r\n\r\n"], *INCOMPLETE)


def test_a_size_line_without_cr_is_incomplete_body() -> None:
    refused(decoder(Framing.UNSIGNED_TRAILER), [b"5\nhello\r\n0\r\n\r\n"], *INCOMPLETE)


@pytest.mark.parametrize("after", [b"", b"x", b"\r", b"\n", b"\rx", b"\n\r"])
def test_chunk_data_not_followed_by_crlf_is_incomplete_body(after: bytes) -> None:
    body = b"5\r\nhello" + after + b"0\r\n\r\n"
    refused(decoder(Framing.UNSIGNED_TRAILER), bytewise(body), *INCOMPLETE)


def test_a_size_line_over_the_limit_is_refused_without_waiting_for_its_end() -> None:
    dec = decoder(Framing.UNSIGNED_TRAILER, limits=Limits(max_size_line=64))
    assert dec.feed(b"5;" + b"x" * 62) == []  # exactly at the limit: still waiting
    assert dec.feed(b"y") == []  # the limit counts the line's CRLF too
    with pytest.raises(ChunkedBodyError) as caught:
        dec.feed(b"yy")
    assert caught.value.code == "IncompleteBody"
    dec = decoder(Framing.UNSIGNED_TRAILER, limits=Limits(max_size_line=64))
    refused(dec, [b"5;" + b"x" * 10_000_000], *INCOMPLETE)


def test_a_size_line_at_the_limit_is_accepted() -> None:
    body = b"5;" + b"x" * 62 + b"\r\nhello\r\n0\r\n\r\n"
    dec = decoder(Framing.UNSIGNED_TRAILER, limits=Limits(max_size_line=64))
    assert payload_of(run(dec, bytewise(body))) == b"hello"


def test_a_signed_chunk_over_the_limit_is_refused_before_its_data() -> None:
    body = sign_chunks([b"x" * 2000], SIGNING)
    dec = decoder(Framing.SIGNED, limits=Limits(max_chunk_size=1999))
    with pytest.raises(ChunkedBodyError) as caught:
        dec.feed(body[: body.index(b"\r\n") + 2])
    assert (caught.value.code, caught.value.status) == ("InvalidChunkSizeError", 403)
    dec = decoder(Framing.SIGNED, limits=Limits(max_chunk_size=2000))
    assert payload_of(run(dec, [body])) == b"x" * 2000


@pytest.mark.parametrize("framing", list(Framing))
def test_data_after_the_end_is_incomplete_body(framing: Framing) -> None:
    body = frame(framing, [b"hello"], [])
    refused(decoder(framing), [body + b"5\r\nworld\r\n"], *INCOMPLETE)
    refused(decoder(framing), [body, b"x"], *INCOMPLETE)


@pytest.mark.parametrize("framing", list(Framing))
def test_blank_lines_after_the_end_are_tolerated(framing: Framing) -> None:
    body = frame(framing, [b"hello"], [])
    assert payload_of(run(decoder(framing), [body, b"\r\n", b"\r\n"])) == b"hello"


@pytest.mark.parametrize("which", [0, 1, 2])
def test_a_bad_chunk_signature_is_signature_does_not_match(which: int) -> None:
    signatures = list(DOC_SIGNATURES)
    signatures[which] = signatures[which][:-1] + ("0" if signatures[which][-1] != "0" else "1")
    dec = decoder(Framing.SIGNED, decoded_length=66560)
    events: list[Event] = []
    with pytest.raises(ChunkedBodyError) as caught:
        for piece in bytewise(doc_body((signatures[0], signatures[1], signatures[2]))):
            events += dec.feed(piece)
    assert (caught.value.code, caught.value.status) == MISMATCH
    # Nothing of the forged chunk (or after it) came out.
    assert [len(e.data) for e in events if isinstance(e, Data)] == [65536, 1024][:which]


def test_altered_chunk_data_is_signature_does_not_match() -> None:
    body = doc_body(DOC_SIGNATURES).replace(b"aaaa", b"aaab", 1)
    refused(decoder(Framing.SIGNED), [body], *MISMATCH)


def test_reordered_or_dropped_chunks_are_signature_does_not_match() -> None:
    signer = ChunkSigner(SIGNING)
    one, two, end = signer.chunk(b"one"), signer.chunk(b"two"), signer.end()
    refused(decoder(Framing.SIGNED), [two + one + end], *MISMATCH)
    refused(decoder(Framing.SIGNED), [one + end], *MISMATCH)


@pytest.mark.parametrize(
    "extension",
    [
        b"",
        b";chunk-signature=",
        b";chunk-signature=abc",
        b";chunk-signature=" + b"g" * 64,
        b";signature=" + b"0" * 64,
        b";chunk-signature=" + b"0" * 64 + b";chunk-signature=" + b"0" * 64,
    ],
)
def test_a_missing_or_malformed_chunk_signature_is_signature_does_not_match(
    extension: bytes,
) -> None:
    refused(decoder(Framing.SIGNED), [b"5" + extension + b"\r\nhello\r\n"], *MISMATCH)


def test_the_final_chunk_must_be_signed() -> None:
    body = sign_chunks([b"hello"], SIGNING)
    unsigned_end = body[: body.rindex(b"0;chunk-signature")] + b"0\r\n\r\n"
    refused(decoder(Framing.SIGNED), [unsigned_end], *MISMATCH)


def test_a_bad_trailer_signature_is_signature_does_not_match() -> None:
    body = sign_chunks([b"hello"], SIGNING, [("x-amz-checksum-crc32", "NhCmhg==")])
    altered = body.replace(b"NhCmhg==", b"AAAAAA==")
    refused(decoder(Framing.SIGNED_TRAILER, trailers=CRC32), [altered], *MISMATCH)
    bad = body[:-8] + (b"0" if body[-5:-4] != b"0" else b"1") + body[-7:]
    assert len(bad) == len(body) and bad != body
    refused(decoder(Framing.SIGNED_TRAILER, trailers=CRC32), [bad], *MISMATCH)


def test_a_signed_trailer_without_its_signature_is_signature_does_not_match() -> None:
    signer = ChunkSigner(SIGNING)
    body = signer.chunk(b"hello") + signer.end(None)[:-2] + b"x-amz-checksum-crc32:NhCmhg==\r\n\r\n"
    refused(decoder(Framing.SIGNED_TRAILER, trailers=CRC32), [body], *MISMATCH)


@pytest.mark.parametrize("framing", list(Framing))
def test_a_truncated_body_is_incomplete_body(framing: Framing) -> None:
    trailers = [] if framing is Framing.SIGNED else [("x-amz-checksum-crc32", "NhCmhg==")]
    body = frame(framing, [b"hel", b"lo"], trailers)
    names = [n for n, _ in trailers]
    # The block is complete once its last line is in; only the closing blank line may be
    # missing (see test_the_js_sdk_end_without_a_checksum_decodes).
    complete_at = len(body) - 2
    for cut in range(complete_at):
        dec = decoder(framing, decoded_length=5, trailers=names)
        with pytest.raises(ChunkedBodyError) as caught:
            run(dec, [body[:cut]])
        assert caught.value.code in {"IncompleteBody", "MalformedTrailerError"}, cut
        if cut < body.index(b"0\r\n" if framing is Framing.UNSIGNED_TRAILER else b"0;"):
            assert caught.value.code == "IncompleteBody"
    for cut in (complete_at, len(body)):
        assert payload_of(run(decoder(framing, decoded_length=5, trailers=names), [body[:cut]]))


def test_chunks_adding_up_to_less_than_the_decoded_length_is_incomplete_body() -> None:
    body = sign_chunks([b"hello"], SIGNING)
    refused(decoder(Framing.SIGNED, decoded_length=6), [body], *INCOMPLETE)
    refused(
        decoder(Framing.UNSIGNED_TRAILER, decoded_length=6),
        [b"5\r\nhello\r\n0\r\n\r\n"],
        *INCOMPLETE,
    )


def test_chunks_exceeding_the_decoded_length_are_refused_at_the_size_line() -> None:
    for dec, head in [
        (decoder(Framing.UNSIGNED_TRAILER, decoded_length=4), b"5\r\n"),
        (decoder(Framing.SIGNED, decoded_length=4), sign_chunks([b"hello"], SIGNING)[:85]),
    ]:
        with pytest.raises(ChunkedBodyError) as caught:
            dec.feed(head)
        assert (caught.value.code, caught.value.status) == INCOMPLETE
    dec = decoder(Framing.UNSIGNED_TRAILER, decoded_length=7)
    assert dec.feed(b"5\r\nhello\r\n") == [Data(b"hello")]
    with pytest.raises(ChunkedBodyError):
        dec.feed(b"3\r\n")


def test_an_announced_trailer_that_never_comes_is_malformed_trailer() -> None:
    body = b"5\r\nhello\r\n0\r\n\r\n"
    refused(decoder(Framing.UNSIGNED_TRAILER, trailers=CRC32), [body], *TRAILER)
    body = sign_chunks([b"hello"], SIGNING, [])
    refused(decoder(Framing.SIGNED_TRAILER, trailers=CRC32), [body], *TRAILER)


@pytest.mark.parametrize("framing", list(Framing))
def test_a_trailer_that_was_not_announced_is_malformed_trailer(framing: Framing) -> None:
    if framing is Framing.SIGNED:
        signer = ChunkSigner(SIGNING)
        body = signer.chunk(b"hello") + signer.end()[:-2] + b"x-amz-checksum-crc32:NhCmhg==\r\n\r\n"
    else:
        body = frame(framing, [b"hello"], [("x-amz-checksum-sha256", "x")])
    refused(decoder(framing), [body], *TRAILER)
    if framing is not Framing.SIGNED:
        refused(decoder(framing, trailers=CRC32), [body], *TRAILER)


@pytest.mark.parametrize(
    "lines",
    [
        b"x-amz-checksum-crc32 NhCmhg==\r\n",  # no colon
        b":NhCmhg==\r\n",  # no name
        b"x amz:NhCmhg==\r\n",  # not a token
        b"x-amz-checksum-crc32:Nh\x01mhg==\r\n",  # control character
        b"x-amz-checksum-crc32:\xc3\xa9\r\n",  # not ASCII
        b"x-amz-checksum-crc32:NhCmhg==\r\nx-amz-checksum-crc32:NhCmhg==\r\n",  # twice
        b"x-amz-trailer-signature:" + b"0" * 64 + b"\r\n",  # only for the signed framing
    ],
)
def test_malformed_trailer_lines_are_malformed_trailer(lines: bytes) -> None:
    body = b"5\r\nhello\r\n0\r\n" + lines + b"\r\n"
    refused(decoder(Framing.UNSIGNED_TRAILER, trailers=CRC32), [body], *TRAILER)


def test_a_trailer_after_the_trailer_signature_is_malformed_trailer() -> None:
    body = sign_chunks([b"hello"], SIGNING, [("x-amz-checksum-crc32", "NhCmhg==")])
    body = body[:-2] + b"x-amz-checksum-crc32c:AAAAAA==\r\n\r\n"
    dec = decoder(
        Framing.SIGNED_TRAILER, trailers={"x-amz-checksum-crc32", "x-amz-checksum-crc32c"}
    )
    refused(dec, [body], *TRAILER)


def test_a_second_zero_size_chunk_is_malformed_trailer() -> None:
    # SDKs once framed empty bodies as "0\r\n\r\n0\r\n<trailer>"; S3 refuses that too.
    body = b"0\r\n\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"
    refused(decoder(Framing.UNSIGNED_TRAILER, decoded_length=0, trailers=CRC32), [body], *TRAILER)


def test_a_trailer_block_over_the_limit_is_refused() -> None:
    limits = Limits(max_trailer_bytes=100)
    lines = b"\r\n" * 60  # blank lines count too
    body = b"5\r\nhello\r\n0\r\n" + lines + b"x-amz-checksum-crc32:NhCmhg==\r\n\r\n"
    refused(decoder(Framing.UNSIGNED_TRAILER, trailers=CRC32, limits=limits), [body], *TRAILER)
    value = b"x-amz-checksum-crc32:" + b"A" * 1_000_000
    dec = decoder(Framing.UNSIGNED_TRAILER, trailers=CRC32, limits=limits)
    refused(dec, [b"5\r\nhello\r\n0\r\n", value], *TRAILER)


@pytest.mark.parametrize("framing", list(Framing))
def test_once_failed_the_decoder_keeps_failing(framing: Framing) -> None:
    dec = decoder(framing)
    with pytest.raises(ChunkedBodyError) as first:
        dec.feed(b"zz\r\n")
    with pytest.raises(ChunkedBodyError) as again:
        dec.feed(frame(framing, [b"hello"], []))
    assert again.value is first.value
    with pytest.raises(ChunkedBodyError):
        dec.eof()
    assert dec.buffered_bytes == 0


def test_eof_after_the_end_is_idempotent() -> None:
    dec = decoder(Framing.UNSIGNED_TRAILER)
    assert dec.feed(b"0\r\n\r\n") == [End()]
    assert dec.done
    assert dec.eof() == [] and dec.eof() == []


def test_memory_stays_bounded_by_one_chunk() -> None:
    rng = random.Random(3)
    payload = rng.randbytes(1_000_000)
    body = sign_chunks([payload[i : i + 65536] for i in range(0, len(payload), 65536)], SIGNING)
    dec = decoder(Framing.SIGNED, decoded_length=len(payload))
    out = []
    for piece in random_split(body, rng, 20000):
        out += dec.feed(piece)
        assert dec.buffered_bytes <= 65536
    out += dec.eof()
    assert payload_of(out) == payload


def test_bytearray_and_memoryview_input_is_copied_not_pinned() -> None:
    body = bytearray(sign_chunks([b"hello world"], SIGNING))
    dec = decoder(Framing.SIGNED)
    events = dec.feed(body[:-40])
    body[:] = b"x" * len(body)  # the caller reuses its buffer
    events += dec.feed(memoryview(bytes(sign_chunks([b"hello world"], SIGNING)))[-40:])
    assert payload_of(events + dec.eof()) == b"hello world"


# --- headers ---------------------------------------------------------------------------------


def test_framing_for_recognises_the_streaming_values() -> None:
    for framing in Framing:
        assert framing_for(framing.value) is framing
    for plain in ["UNSIGNED-PAYLOAD", hashlib.sha256(b"").hexdigest(), ""]:
        assert framing_for(plain) is None


@pytest.mark.parametrize(
    "value",
    [
        "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD",
        "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER",
    ],
)
def test_sigv4a_streaming_is_not_implemented(value: str) -> None:
    with pytest.raises(S3Error) as caught:
        framing_for(value)
    assert (caught.value.code, caught.value.status) == ("NotImplemented", 501)


def test_an_unknown_streaming_value_is_invalid_argument() -> None:
    with pytest.raises(S3Error) as caught:
        framing_for("STREAMING-UNSIGNED-PAYLOAD")
    assert caught.value.code == "InvalidArgument"


def test_constructor_checks() -> None:
    with pytest.raises(ValueError):
        AwsChunkedDecoder(Framing.SIGNED, None, decoded_length=None)
    with pytest.raises(S3Error) as caught:
        AwsChunkedDecoder(Framing.SIGNED, SIGNING, decoded_length=None, expected_trailers=CRC32)
    assert caught.value.code == "InvalidRequest"
    with pytest.raises(ValueError):
        Limits(max_chunk_size=0)
    # Announced names are compared case-insensitively.
    dec = AwsChunkedDecoder(
        Framing.UNSIGNED_TRAILER,
        None,
        decoded_length=0,
        expected_trailers=frozenset({"X-Amz-Checksum-CRC32"}),
    )
    events = run(dec, [b"0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"])
    assert trailers_of(events) == {"x-amz-checksum-crc32": "AAAAAA=="}


@pytest.mark.parametrize("size", [0, 1, 70_000])
def test_one_chunk_framing_has_the_promised_length_and_decodes(size: int) -> None:
    data = random.Random(size).randbytes(size)
    value = crc32_b64(data)
    framing = OneChunkFraming(size, "x-amz-checksum-crc32", len(value))
    body = framing.head() + data + framing.tail(value)
    assert len(body) == framing.framed_length
    dec = decoder(
        Framing.UNSIGNED_TRAILER,
        decoded_length=size,
        trailers=["x-amz-checksum-crc32"],
    )
    events = run(dec, [body])
    assert payload_of(events) == data
    assert Trailer("x-amz-checksum-crc32", value) in events


def test_stray_blank_lines_after_the_end_are_bounded() -> None:
    body = frame(Framing.UNSIGNED_TRAILER, [b"abc"], [("x-amz-checksum-crc32", "NSRBwg==")])
    dec = decoder(Framing.UNSIGNED_TRAILER, decoded_length=3, trailers=["x-amz-checksum-crc32"])
    run(dec, [body, b"\r\n" * 4])  # a few are tolerated (minio-go sends one)
    with pytest.raises(S3Error) as info:
        for _ in range(100):
            dec.feed(b"\r\n")
    assert info.value.code == "IncompleteBody"
