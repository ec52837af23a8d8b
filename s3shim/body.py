"""The request body pipeline: client bytes in, store bytes out, every promise checked. Pure.

One object per request body. It decodes aws-chunked framing (when present), checks the hex
``x-amz-content-sha256`` and the declared flexible checksum, and **holds back the last
bytes** until every check has passed: the store is sent a Content-Length it never receives
in full unless the body is proven good, so on a mismatch the upstream request is aborted
and the store keeps nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from . import chunked, errors
from .checksums import Algorithm, Checksum, ExpectedChecksum, new_checksum


@dataclass(frozen=True, slots=True)
class BodySpec:
    """What the request promised about its body (all from verified headers)."""

    length: int | None  # payload bytes after any framing is removed; None = unknown
    sha256_hex: str | None = None  # a hex x-amz-content-sha256 to check the raw body against
    checksum: ExpectedChecksum | None = None
    framing: chunked.Framing | None = None
    chunk_signing: chunked.ChunkSigning | None = None
    trailers: frozenset[str] = frozenset()
    # A checksum s3shim computes over a body that declared none (its record, attached once
    # the store committed it); ignored when the body declares one.
    compute: Algorithm | None = None


class BodyPipeline:
    """Feed raw body bytes; forward what :meth:`feed` returns; then :meth:`finish`."""

    def __init__(self, spec: BodySpec) -> None:
        self._spec = spec
        self._sha256 = hashlib.sha256() if spec.sha256_hex is not None else None
        algorithm = spec.checksum.algorithm if spec.checksum is not None else spec.compute
        self._checksum: Checksum | None = new_checksum(algorithm) if algorithm is not None else None
        self._decoder = (
            chunked.AwsChunkedDecoder(
                spec.framing,
                spec.chunk_signing,
                decoded_length=spec.length,
                expected_trailers=spec.trailers,
            )
            if spec.framing is not None
            else None
        )
        # The last payload piece, released only by the next feed or finish(). For aws-chunked
        # bodies it is a view of the decoder's input, so one input stays alive between feeds
        # (as a plain body's last input does).
        self._held: bytes | memoryview = b""
        self._seen = 0  # payload bytes produced so far
        self._trailers: dict[str, str] = {}
        self._ended = self._decoder is None
        self.computed_checksum: str | None = None  # base64, set by finish()
        # Why the body was refused, kept for the I/O layer: the exception itself is
        # swallowed by the HTTP client when it aborts the upstream request. Set here only.
        self.failure: errors.S3Error | None = None

    def _payload(self, data: bytes | memoryview) -> bytes | memoryview:
        """Account for payload bytes and return the part that may be released now."""
        self._seen += len(data)
        if self._spec.length is not None and self._seen > self._spec.length:
            raise errors.incomplete_body("The body is longer than its declared length.")
        if self._checksum is not None:
            self._checksum.update(data)
        # Release the previously held piece, hold the new one: the store is always at
        # least one byte short of complete until finish() says the body is good.
        out, self._held = self._held, data
        return out

    def feed(self, data: bytes) -> bytes:
        """The bytes that may be forwarded now (raises S3Error, kept in :attr:`failure`)."""
        try:
            return self._feed(data)
        except errors.S3Error as err:
            self.failure = err
            raise

    def finish(self) -> bytes:
        """The client's body ended: verify everything, then return the held-back tail."""
        try:
            return self._finish()
        except errors.S3Error as err:
            self.failure = err
            raise

    def client_ended_early(self) -> errors.S3Error:
        """The client's connection failed mid-body: the body is refused as incomplete."""
        return self.refuse(errors.incomplete_body())

    def refuse(self, err: errors.S3Error) -> errors.S3Error:
        """The body is refused for a reason found outside the pipeline (a client timeout);
        the first reason stands."""
        if self.failure is None:
            self.failure = err
        return self.failure

    def _feed(self, data: bytes) -> bytes:
        if not data:
            return b""
        if self._sha256 is not None:
            self._sha256.update(data)
        if self._decoder is None:
            return bytes(self._payload(data))  # the held previous input: bytes(), no copy
        parts = []
        for event in self._decoder.feed(data):
            if isinstance(event, chunked.Data):
                if event.data:
                    parts.append(self._payload(event.data))
            elif isinstance(event, chunked.Trailer):
                self._trailers[event.name] = event.value
            else:
                self._ended = True
        # The decoder's Data are mostly views of its input: the one copy of the payload.
        return b"".join(parts) if len(parts) != 1 else bytes(parts[0])

    def _finish(self) -> bytes:
        if self._decoder is not None:
            for event in self._decoder.eof():
                if isinstance(event, chunked.Trailer):
                    self._trailers[event.name] = event.value
                elif isinstance(event, chunked.End):
                    self._ended = True
                elif event.data:
                    self._payload(event.data)
            if not self._ended:
                raise errors.incomplete_body("The aws-chunked body ended early.")
        if self._spec.length is not None and self._seen != self._spec.length:
            raise errors.incomplete_body()
        if self._sha256 is not None and self._spec.sha256_hex is not None:
            digest = self._sha256.hexdigest()
            if not hmac.compare_digest(digest, self._spec.sha256_hex.lower()):
                raise errors.content_sha256_mismatch()
        if self._checksum is not None and self._spec.checksum is not None:
            expected = self._spec.checksum
            trailer = self._trailers.get(expected.algorithm.header)
            expected.verify(self._checksum.digest(), trailer)
            self.computed_checksum = self._checksum.b64digest()
        elif self._checksum is not None:
            self.computed_checksum = self._checksum.b64digest()
        tail, self._held = self._held, b""
        return bytes(tail)
