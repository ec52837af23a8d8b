"""The aws-chunked decoder as its tests drive it: the S3 API reference's signing context, a
body framed by s3shim's encoders (s3shim/testing.py), a decoder, and feeding it in pieces."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from s3shim.chunked import AwsChunkedDecoder, ChunkSigning, Event, Framing, Limits
from s3shim.testing import encode_unsigned_trailer_chunk, encode_unsigned_trailer_end, sign_chunks

from .helpers import doc_signing_key

# The S3 API reference's worked examples (sigv4-streaming, sigv4-streaming-trailers): the
# trailer example has its own seed (x-amz-trailer is signed too).
DOC_DATE = "20130524T000000Z"
DOC_SCOPE = "20130524/us-east-1/s3/aws4_request"
DOC_SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
DOC_TRAILER_SEED = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
DOC_SIGNING = ChunkSigning(doc_signing_key("20130524"), DOC_DATE, DOC_SCOPE, DOC_SEED)
DOC_TRAILER_SIGNING = ChunkSigning(
    doc_signing_key("20130524"), DOC_DATE, DOC_SCOPE, DOC_TRAILER_SEED
)


def frame(
    framing: Framing,
    chunks: list[bytes],
    trailers: list[tuple[str, str]],
    signing: ChunkSigning = DOC_SIGNING,
) -> bytes:
    """``chunks`` framed as ``framing`` (trailers: none for SIGNED)."""
    if framing is Framing.UNSIGNED_TRAILER:
        body = b"".join(encode_unsigned_trailer_chunk(c) for c in chunks)
        return body + encode_unsigned_trailer_end(trailers)
    return sign_chunks(chunks, signing, None if framing is Framing.SIGNED else trailers)


def new_decoder(
    framing: Framing,
    *,
    decoded_length: int | None = None,
    trailers: Iterable[str] = (),
    signing: ChunkSigning | None = DOC_SIGNING,
    limits: Limits = Limits(),  # noqa: B008 - frozen
) -> AwsChunkedDecoder:
    """A decoder of ``framing`` (the signing context only for a signed one)."""
    return AwsChunkedDecoder(
        framing,
        signing if framing.signed else None,
        decoded_length=decoded_length,
        expected_trailers=frozenset(trailers),
        limits=limits,
    )


def feed(
    dec: AwsChunkedDecoder, pieces: Iterable[bytes], *, bound: int | None = None
) -> list[Event]:
    """Every event of ``pieces`` fed in turn, then of the end; with ``bound``, the decoder
    never holds more than that many bytes between feeds."""
    events: list[Event] = []
    for piece in pieces:
        events += dec.feed(piece)
        assert bound is None or dec.buffered_bytes <= bound
    return events + dec.eof()


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at each of ``cuts`` (modulo its length + 1)."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in itertools.pairwise([0, *points, len(data)])]
