"""aws-chunked encoders for tests and benchmarks; the proxy does not use this module.

They frame bodies the way the SDKs do (see :mod:`s3shim.chunked` for the layout). Signed
framings are signed with :class:`~s3shim.chunked.SignatureChain`, the object the decoder
verifies with, so the strings to sign exist once; the unit tests pin that chain to AWS's
published example signatures, so sharing it cannot hide a mistake from them.

:func:`~s3shim.chunked.encode_unsigned_trailer_end` is re-exported here so that tests find
every encoder in one place; it lives in :mod:`s3shim.chunked` because the proxy's
:class:`~s3shim.chunked.OneChunkFraming` uses it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from s3shim.chunked import (
    TRAILER_SIGNATURE_HEADER,
    ChunkSigning,
    SignatureChain,
    encode_unsigned_trailer_end,
)

__all__ = [
    "ChunkSigner",
    "encode_unsigned_trailer_chunk",
    "encode_unsigned_trailer_end",
    "sign_chunks",
]


def encode_unsigned_trailer_chunk(data: bytes) -> bytes:
    """One STREAMING-UNSIGNED-PAYLOAD-TRAILER chunk; empty data gives nothing.

    An empty chunk would read as the final one, so it is never written.
    """
    if not data:
        return b""
    return b"%x\r\n%b\r\n" % (len(data), data)


class ChunkSigner:
    """Frames a body as STREAMING-AWS4-HMAC-SHA256-PAYLOAD(-TRAILER), chunk by chunk."""

    def __init__(self, signing: ChunkSigning) -> None:
        self._chain = SignatureChain(signing)

    def chunk(self, data: bytes) -> bytes:
        """One signed chunk; empty data gives nothing (it would read as the final chunk)."""
        if not data:
            return b""
        return self._signed(data) + data + b"\r\n"

    def end(self, trailers: list[tuple[str, str]] | None = None) -> bytes:
        """The signed zero-size chunk, then (for the -TRAILER framing) the signed trailers.

        ``trailers=None`` ends a STREAMING-AWS4-HMAC-SHA256-PAYLOAD body; a list, even an
        empty one, ends a -TRAILER body and always carries ``x-amz-trailer-signature``.
        """
        last = self._signed(b"")
        if trailers is None:
            return last + b"\r\n"
        pairs = [(name.lower(), value) for name, value in trailers]
        signature = self._chain.trailer(pairs)
        lines = "".join(f"{name}:{value}\r\n" for name, value in pairs)
        return last + f"{lines}{TRAILER_SIGNATURE_HEADER}:{signature}\r\n\r\n".encode()

    def _signed(self, data: bytes) -> bytes:
        signature = self._chain.next_chunk(hashlib.sha256(data).hexdigest())
        return b"%x;chunk-signature=%b\r\n" % (len(data), signature.encode())


def sign_chunks(
    chunks: Iterable[bytes],
    signing: ChunkSigning,
    trailers: list[tuple[str, str]] | None = None,
) -> bytes:
    """A whole signed aws-chunked body from its data chunks (see :meth:`ChunkSigner.end`)."""
    signer = ChunkSigner(signing)
    return b"".join([*(signer.chunk(c) for c in chunks), signer.end(trailers)])
