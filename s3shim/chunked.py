"""Incremental, I/O-free decoder (and small encoders) for ``Content-Encoding: aws-chunked``.

Bytes go in through :meth:`AwsChunkedDecoder.feed`, events come out: :class:`Data`,
:class:`Trailer`, :class:`End`. The caller calls :meth:`AwsChunkedDecoder.eof` when the
transport has no more bytes. Every problem with the body raises :class:`ChunkedBodyError`
(an :class:`~s3shim.errors.S3Error`), and the decoder stays failed afterwards.

Wire layout, as every SDK we checked writes it (botocore ``AwsChunkedWrapper``, Java SDK v2
``ChunkedEncodedInputStream``/``SigV4TrailerProvider``, Rust ``aws-runtime`` ``AwsChunkedBody``,
JS v3 ``getAwsChunkedEncodingStream``, .NET ``ChunkedUploadWrapperStream``, aws-c-s3
``s3_chunk_stream.c``, minio-go ``request-signature-streaming*.go``)::

    SIGNED            <hex>;chunk-signature=<sig>\\r\\n<data>\\r\\n ...
                      0;chunk-signature=<sig>\\r\\n\\r\\n
    SIGNED_TRAILER    <hex>;chunk-signature=<sig>\\r\\n<data>\\r\\n ...
                      0;chunk-signature=<sig>\\r\\n
                      x-amz-checksum-crc32:<b64>\\r\\n
                      x-amz-trailer-signature:<sig>\\r\\n\\r\\n
    UNSIGNED_TRAILER  <hex>\\r\\n<data>\\r\\n ... 0\\r\\nx-amz-checksum-crc32:<b64>\\r\\n\\r\\n

No blank line separates the zero-size chunk from the trailer lines; a blank line ends the
trailer block. The trailer signature hashes the canonical lines ``name:value\\n`` (LF, not
CRLF), sorted by name, and uses the ``AWS4-HMAC-SHA256-TRAILER`` label. (The AWS trailer
example publishes ``63bddb24…`` as the trailer signature; that value is what the
``-PAYLOAD`` label gives. Every SDK signs with ``-TRAILER``, which gives ``d81f82fc…`` for the
same example, and S3 accepts that.)

Where real clients differ, the decoder accepts all of them:

* hex sizes in either case (Rust and aws-c-s3 write upper case);
* a trailer line ended by LF alone, and blank lines inside the trailer block before it is
  complete (minio-go writes ``x-amz-checksum-…:<b64>\\n\\r\\nx-amz-trailer-signature:…``, and the
  AWS documentation's example shows a blank line after the zero-size chunk);
* blank lines after the end (minio-go's unsigned trailer ends ``<b64>\\n\\r\\n\\r\\n``);
* a body that stops right after the last line of a complete block, without the final blank
  line (the JS v3 SDK ends a stream without a checksum with ``0\\r\\n``).

Anything else is refused, including the double zero-size chunk some SDKs once sent for empty
bodies (S3 refuses it with MalformedTrailerError too).

Error codes (S3's own, as observed and reproduced by other S3 implementations):

* framing that cannot be parsed — a bad hex size, a missing CRLF, a size line over the
  limit, bytes after the end, a body that stops early, chunk sizes that do not add up to
  ``x-amz-decoded-content-length`` — is ``IncompleteBody`` ("The request body terminated
  unexpectedly"), which S3 answers for all of these;
* a bad, missing or malformed chunk or trailer signature is ``SignatureDoesNotMatch`` (403);
* a trailer that was not announced in ``x-amz-trailer``, an announced trailer that never
  came, a duplicate or malformed trailer line is ``MalformedTrailerError`` (400);
* a signed chunk larger than :attr:`Limits.max_chunk_size` (we must buffer it to check its
  signature) is ``InvalidChunkSizeError``, the code and status (403) S3 uses for chunk-size
  violations; a trailer block over :attr:`Limits.max_trailer_bytes` is
  ``MalformedTrailerError``.

S3 also refuses non-final chunks under 8 KiB (``InvalidChunkSizeError``); we do not, because
the store behind the proxy does not care and small chunks cost us nothing.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from s3shim import errors
from s3shim.errors import S3Error

__all__ = [
    "AwsChunkedDecoder",
    "ChunkSigner",
    "ChunkSigning",
    "ChunkedBodyError",
    "Data",
    "End",
    "Event",
    "Framing",
    "Limits",
    "OneChunkFraming",
    "Trailer",
    "chunk_signature",
    "encode_unsigned_trailer_chunk",
    "encode_unsigned_trailer_end",
    "framing_for",
    "sign_chunks",
    "trailer_signature",
]


_MAX_AFTER_END = 64


class Framing(enum.Enum):
    """The aws-chunked framings, named by their ``x-amz-content-sha256`` value."""

    SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
    UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"

    @property
    def signed(self) -> bool:
        return self is not Framing.UNSIGNED_TRAILER


_SIGV4A = frozenset(
    {"STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD", "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER"}
)
_BY_VALUE: Final = {f.value: f for f in Framing}


def framing_for(content_sha256: str) -> Framing | None:
    """The framing an ``x-amz-content-sha256`` value announces, or None for a plain body."""
    framing = _BY_VALUE.get(content_sha256)
    if framing is not None:
        return framing
    if content_sha256 in _SIGV4A:
        raise errors.not_implemented(
            f"SigV4a streaming uploads ({content_sha256}) are not supported; "
            "sign with AWS4-HMAC-SHA256."
        )
    if content_sha256.startswith("STREAMING-"):
        # Clearly meant as a streaming token, but not one S3 defines: say so rather than
        # letting it fail later as a payload-hash mismatch.
        accepted = ", ".join(f.value for f in Framing)
        raise errors.invalid_argument(
            f"Unsupported x-amz-content-sha256 streaming value {content_sha256!r}; "
            f"expected one of {accepted}."
        )
    return None


@dataclass(frozen=True)
class ChunkSigning:
    """What a signed framing needs from the request's verified SigV4 header auth."""

    signing_key: bytes = field(repr=False)
    amz_date: str  # the request's x-amz-date, e.g. 20130524T000000Z
    scope: str  # e.g. 20130524/us-east-1/s3/aws4_request
    seed_signature: str  # the Authorization header's signature (hex)


@dataclass(frozen=True)
class Limits:
    """Bounds on what the decoder buffers, whatever the input."""

    max_size_line: int = 4096  # a chunk-size line, extensions included, CRLF excluded
    max_chunk_size: int = 16 * 1024 * 1024  # signed framings buffer one chunk
    max_trailer_bytes: int = 16 * 1024  # the whole trailer block, terminators included

    def __post_init__(self) -> None:
        if min(self.max_size_line, self.max_chunk_size, self.max_trailer_bytes) <= 0:
            raise ValueError("limits must be positive")


@dataclass(frozen=True, slots=True)
class Data:
    data: bytes


@dataclass(frozen=True, slots=True)
class Trailer:
    name: str  # lower case
    value: str


@dataclass(frozen=True, slots=True)
class End:
    pass


Event = Data | Trailer | End


class ChunkedBodyError(S3Error):
    """The aws-chunked body is malformed, too large, or fails its signatures."""

    @classmethod
    def of(cls, err: S3Error) -> ChunkedBodyError:
        return cls(err.code, err.message, err.status)


_TERMINATED = "The request body terminated unexpectedly"
_MALFORMED_TRAILER = (
    "The request contained trailing data that was not well-formed or did not conform to "
    "our published schema."
)


def _incomplete(detail: str) -> ChunkedBodyError:
    return ChunkedBodyError.of(errors.incomplete_body(f"{_TERMINATED}: {detail}."))


def _bad_signature(detail: str) -> ChunkedBodyError:
    return ChunkedBodyError.of(errors.signature_does_not_match(detail))


def _malformed_trailer(detail: str) -> ChunkedBodyError:
    return ChunkedBodyError("MalformedTrailerError", f"{_MALFORMED_TRAILER} ({detail})", 400)


def _chunk_too_large(size: int, limit: int) -> ChunkedBodyError:
    return ChunkedBodyError(
        "InvalidChunkSizeError", f"Chunk size {size} exceeds the maximum of {limit} bytes.", 403
    )


_EMPTY_SHA256: Final = hashlib.sha256(b"").hexdigest().encode()
_SIZE_RE: Final = re.compile(rb"[0-9A-Fa-f]{1,16}")
_SIG_RE: Final = re.compile(rb"[0-9a-fA-F]{64}")
_SIG_TEXT_RE: Final = re.compile(r"[0-9a-fA-F]{64}")
_TOKEN_RE: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")
_VALUE_RE: Final = re.compile(r"[\x20-\x7e\t]*")
_TRAILER_SIGNATURE: Final = "x-amz-trailer-signature"


def chunk_signature(signing: ChunkSigning, previous: str, data_sha256_hex: str) -> str:
    """The signature of one chunk whose data hashes to ``data_sha256_hex``."""
    to_sign = "\n".join(
        (
            "AWS4-HMAC-SHA256-PAYLOAD",
            signing.amz_date,
            signing.scope,
            previous,
            _EMPTY_SHA256.decode(),
            data_sha256_hex,
        )
    )
    return hmac.digest(signing.signing_key, to_sign.encode(), "sha256").hex()


def _canonical_trailers(trailers: Iterable[tuple[str, str]]) -> bytes:
    return "".join(f"{name}:{value}\n" for name, value in sorted(trailers)).encode()


def trailer_signature(
    signing: ChunkSigning, previous: str, trailers: Iterable[tuple[str, str]]
) -> str:
    """The ``x-amz-trailer-signature`` value for (lower-case name, value) trailer pairs."""
    to_sign = "\n".join(
        (
            "AWS4-HMAC-SHA256-TRAILER",
            signing.amz_date,
            signing.scope,
            previous,
            hashlib.sha256(_canonical_trailers(trailers)).hexdigest(),
        )
    )
    return hmac.digest(signing.signing_key, to_sign.encode(), "sha256").hex()


# Decoder states.
_SIZE_LINE: Final = 0
_DATA: Final = 1
_DATA_CRLF: Final = 2
_TRAILERS: Final = 3
_DONE: Final = 4


class AwsChunkedDecoder:
    """Decodes one aws-chunked request body; see the module docstring for the format."""

    def __init__(
        self,
        framing: Framing,
        signing: ChunkSigning | None,
        *,
        decoded_length: int | None,
        expected_trailers: frozenset[str] = frozenset(),
        limits: Limits = Limits(),  # frozen: sharing the default is safe
    ) -> None:
        if framing.signed and signing is None:
            raise ValueError(f"{framing.value} needs the request's signing context")
        if decoded_length is not None and decoded_length < 0:
            raise ValueError("decoded_length must not be negative")
        expected = frozenset(name.strip().lower() for name in expected_trailers)
        if expected and framing is Framing.SIGNED:
            raise errors.invalid_request(
                "x-amz-trailer requires x-amz-content-sha256 "
                f"{Framing.SIGNED_TRAILER.value} or {Framing.UNSIGNED_TRAILER.value}."
            )
        if _TRAILER_SIGNATURE in expected:
            raise errors.invalid_request(
                f"{_TRAILER_SIGNATURE} cannot be announced in x-amz-trailer."
            )
        self._framing = framing
        self._signed = framing.signed
        self._decoded_length = decoded_length
        self._expected = expected
        self._limits = limits
        self._state = _SIZE_LINE
        self._error: ChunkedBodyError | None = None
        self._after_end = 0  # stray CRLF bytes seen after the final chunk
        self._buf = bytearray()  # an unfinished size or trailer line, never chunk data
        self._received = 0  # sum of the chunk sizes announced so far
        self._chunk_left = 0
        self._crlf_seen = 0  # bytes of the CRLF after chunk data matched so far
        # Signed framings: the chunk being buffered until its signature checks out.
        self._hasher = hashlib.sha256()
        self._pieces: list[bytes | memoryview] = []
        self._pending = 0
        self._chunk_sig = b""
        self._trailer_bytes = 0
        self._trailers: dict[str, str] = {}
        self._trailer_signed = False
        self._closed_block = False  # the last trailer line was blank
        self._signing = signing
        self._key = b""
        self._prev = b""  # the previous signature, hex
        self._chunk_prefix = b""
        if signing is not None:
            self._key = signing.signing_key
            self._prev = signing.seed_signature.encode()
            self._chunk_prefix = (
                f"AWS4-HMAC-SHA256-PAYLOAD\n{signing.amz_date}\n{signing.scope}\n".encode()
            )

    @property
    def framing(self) -> Framing:
        return self._framing

    @property
    def buffered_bytes(self) -> int:
        """Bytes held between feeds: an unfinished line plus a signed chunk's data."""
        return len(self._buf) + self._pending

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Consume the next bytes of the body; return the events they complete."""
        if self._error is not None:
            raise self._error
        if type(data) is not bytes:
            # We may keep views of the input until a chunk is complete: make it immutable.
            data = bytes(data)
        try:
            return self._feed(data)
        except ChunkedBodyError as err:
            self._fail(err)
            raise

    def eof(self) -> list[Event]:
        """The transport has no more bytes: finish, or raise if the framing is incomplete."""
        if self._error is not None:
            raise self._error
        if self._state == _DONE:
            return []
        try:
            # Lenient: a complete trailer block without its closing blank line (the JS SDK
            # ends an unsigned body without trailers with a bare "0\r\n").
            if self._state == _TRAILERS and not self._buf and self._trailers_complete():
                return self._finish()
            if self._state == _TRAILERS and not self._buf and self._closed_block:
                # The client ended its trailer block; what is missing was never sent.
                self._check_announced_trailers()
            raise _incomplete("the aws-chunked body ended before its final chunk")
        except ChunkedBodyError as err:
            self._fail(err)
            raise

    # -- internals -------------------------------------------------------------------------

    def _fail(self, err: ChunkedBodyError) -> None:
        self._error = err
        self._buf = bytearray()
        self._pieces = []
        self._pending = 0

    def _feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        n = len(data)
        pos = 0
        view: memoryview | None = None
        while pos < n:
            state = self._state
            if state == _DATA:
                take = min(self._chunk_left, n - pos)
                if self._signed:
                    if view is None:
                        view = memoryview(data)
                    piece = view[pos : pos + take]
                    self._hasher.update(piece)
                    self._pieces.append(piece)
                    self._pending += take
                else:
                    events.append(Data(data if take == n else data[pos : pos + take]))
                pos += take
                self._chunk_left -= take
                if self._chunk_left == 0:
                    if self._signed:
                        events.append(self._release_signed_chunk())
                    self._state = _DATA_CRLF
                    self._crlf_seen = 0
            elif state == _DATA_CRLF:
                if self._crlf_seen == 0 and data.startswith(b"\r\n", pos):
                    pos += 2
                else:
                    if data[pos] != b"\r\n"[self._crlf_seen]:
                        raise _incomplete("chunk data is not followed by CRLF")
                    pos += 1
                    self._crlf_seen += 1
                    if self._crlf_seen < 2:
                        continue
                self._state = _SIZE_LINE
            elif state == _SIZE_LINE:
                line, pos = self._take_line(
                    data, pos, self._limits.max_size_line + 2, "chunk size line"
                )
                if line is None:
                    break
                self._on_size_line(line)
            elif state == _TRAILERS:
                room = self._limits.max_trailer_bytes - self._trailer_bytes
                line, pos = self._take_line(data, pos, room, "trailer block")
                if line is None:
                    break
                self._trailer_bytes += len(line)
                self._on_trailer_line(line, events)
            else:  # _DONE
                # Lenient: stray blank lines after the end (minio-go's unsigned trailer),
                # but only a few: an endless stream of them would hold the request open.
                self._after_end += n - pos
                if data[pos:].strip(b"\r\n") or self._after_end > _MAX_AFTER_END:
                    raise _incomplete("data follows the end of the aws-chunked body")
                pos = n
        if view is not None and self._state == _DATA and self._pieces:
            # Don't pin a large input buffer for the small tail of a chunk it ends with.
            last = self._pieces[-1]
            if isinstance(last, memoryview) and len(last) < n // 2:
                self._pieces[-1] = last.tobytes()
        return events

    def _take_line(
        self, data: bytes, pos: int, max_len: int, what: str
    ) -> tuple[bytes | None, int]:
        """The next LF-terminated line (with its terminator), or None if it is unfinished.

        The search is bounded, so a missing terminator costs at most ``max_len`` bytes.
        """
        room = max_len - len(self._buf)
        if room <= 0:
            raise self._too_long(what)
        end = data.find(b"\n", pos, pos + room)
        if end < 0:
            if len(data) - pos >= room:
                raise self._too_long(what)
            self._buf += data[pos:]
            return None, len(data)
        line = data[pos : end + 1]
        if self._buf:
            self._buf += line
            line = bytes(self._buf)
            self._buf.clear()
        return line, end + 1

    def _too_long(self, what: str) -> ChunkedBodyError:
        if what == "trailer block":
            limit = self._limits.max_trailer_bytes
            return _malformed_trailer(f"the trailer block exceeds {limit} bytes")
        return _incomplete(f"the {what} exceeds {self._limits.max_size_line} bytes")

    def _on_size_line(self, line: bytes) -> None:
        if not line.endswith(b"\r\n"):
            raise _incomplete("chunk size line is not terminated by CRLF")
        content = line[:-2]
        semi = content.find(b";")
        size_hex = content if semi < 0 else content[:semi]
        if _SIZE_RE.fullmatch(size_hex) is None:
            raise _incomplete(f"invalid chunk size {size_hex[:32]!r}")
        size = int(size_hex, 16)
        if self._signed:
            self._chunk_sig = _chunk_signature_of(content[semi + 1 :] if semi >= 0 else b"")
            if size > self._limits.max_chunk_size:
                raise _chunk_too_large(size, self._limits.max_chunk_size)
        # Unsigned chunks are streamed, never buffered, so their size needs no limit (aws-c-s3
        # and older Rust SDKs send a whole part as one chunk).
        total = self._received + size
        if self._decoded_length is not None and total > self._decoded_length:
            raise _incomplete(
                "chunks carry more than the "
                f"{self._decoded_length} bytes of x-amz-decoded-content-length"
            )
        self._received = total
        if size:
            self._chunk_left = size
            if self._signed:
                self._hasher = hashlib.sha256()
            self._state = _DATA
            return
        if self._decoded_length is not None and total != self._decoded_length:
            raise _incomplete(
                f"chunks carry {total} bytes, "
                f"x-amz-decoded-content-length says {self._decoded_length}"
            )
        if self._signed:
            self._verify_chunk(_EMPTY_SHA256)
        self._state = _TRAILERS

    def _release_signed_chunk(self) -> Data:
        self._verify_chunk(self._hasher.hexdigest().encode())
        pieces = self._pieces
        first = pieces[0]
        chunk = first if len(pieces) == 1 and isinstance(first, bytes) else b"".join(pieces)
        self._pieces = []
        self._pending = 0
        return Data(chunk)

    def _verify_chunk(self, data_sha256_hex: bytes) -> None:
        to_sign = b"".join(
            (self._chunk_prefix, self._prev, b"\n", _EMPTY_SHA256, b"\n", data_sha256_hex)
        )
        expected = hmac.digest(self._key, to_sign, "sha256").hex().encode()
        if not hmac.compare_digest(expected, self._chunk_sig.lower()):
            raise _bad_signature(
                "The chunk signature we calculated does not match the signature you provided."
            )
        self._prev = expected

    def _on_trailer_line(self, line: bytes, events: list[Event]) -> None:
        content = line[:-2] if line.endswith(b"\r\n") else line[:-1]
        self._closed_block = not content
        if not content:
            if self._trailers_complete():
                events.extend(self._finish())
            # Otherwise a blank line before the block is complete: tolerated (see module doc).
            return
        try:
            text = content.decode("ascii")
        except UnicodeDecodeError:
            raise _malformed_trailer("a trailer line is not ASCII") from None
        name, colon, value = text.partition(":")
        name = name.strip(" \t").lower()
        value = value.strip(" \t")
        if not colon or _TOKEN_RE.fullmatch(name) is None or _VALUE_RE.fullmatch(value) is None:
            raise _malformed_trailer(f"malformed trailer line {text[:64]!r}")
        if name == _TRAILER_SIGNATURE:
            self._on_trailer_signature(value)
            return
        if self._trailer_signed:
            raise _malformed_trailer(f"trailer {name} follows x-amz-trailer-signature")
        if name not in self._expected:
            raise _malformed_trailer(f"trailer {name} was not announced in x-amz-trailer")
        if name in self._trailers:
            raise _malformed_trailer(f"trailer {name} was sent twice")
        self._trailers[name] = value

    def _on_trailer_signature(self, value: str) -> None:
        if self._framing is not Framing.SIGNED_TRAILER:
            raise _malformed_trailer(f"{_TRAILER_SIGNATURE} is only valid in a signed trailer")
        if self._trailer_signed:
            raise _malformed_trailer(f"{_TRAILER_SIGNATURE} was sent twice")
        if _SIG_TEXT_RE.fullmatch(value) is None:
            raise _bad_signature("The trailer signature is malformed.")
        assert self._signing is not None  # guaranteed for signed framings by __init__
        expected = trailer_signature(self._signing, self._prev.decode(), self._trailers.items())
        if not hmac.compare_digest(expected.encode(), value.lower().encode()):
            raise _bad_signature(
                "The trailer signature we calculated does not match the signature you provided."
            )
        self._prev = expected.encode()
        self._trailer_signed = True

    def _trailers_complete(self) -> bool:
        if not self._expected.issubset(self._trailers):
            return False
        # Trailer values are only trusted once signed; with none at all, no signature is due
        # (the Rust SDK sends none then).
        signed = self._framing is Framing.SIGNED_TRAILER
        return not signed or self._trailer_signed or not self._trailers

    def _check_announced_trailers(self) -> None:
        missing = sorted(self._expected.difference(self._trailers))
        if missing:
            raise _malformed_trailer(f"announced trailer {', '.join(missing)} is missing")
        if self._framing is Framing.SIGNED_TRAILER and self._trailers and not self._trailer_signed:
            raise _bad_signature(f"The trailer carries no {_TRAILER_SIGNATURE}.")

    def _finish(self) -> list[Event]:
        self._state = _DONE
        self._buf = bytearray()
        events: list[Event] = [Trailer(name, value) for name, value in self._trailers.items()]
        events.append(End())
        return events


def _chunk_signature_of(extensions: bytes) -> bytes:
    """The ``chunk-signature`` extension's value; other extensions are ignored."""
    signature: bytes | None = None
    for extension in extensions.split(b";") if extensions else ():
        name, _, value = extension.partition(b"=")
        if name == b"chunk-signature":
            if signature is not None:
                raise _bad_signature("The chunk carries more than one chunk-signature.")
            signature = value
    if signature is None:
        raise _bad_signature("The chunk carries no chunk-signature.")
    if _SIG_RE.fullmatch(signature) is None:
        raise _bad_signature("The chunk signature is malformed.")
    return signature


# -- encoders ----------------------------------------------------------------------------


def encode_unsigned_trailer_chunk(data: bytes) -> bytes:
    """One STREAMING-UNSIGNED-PAYLOAD-TRAILER chunk; empty data gives nothing.

    An empty chunk would read as the final one, so it is never written.
    """
    if not data:
        return b""
    return b"%x\r\n%b\r\n" % (len(data), data)


def encode_unsigned_trailer_end(trailers: list[tuple[str, str]]) -> bytes:
    """The zero-size chunk, the trailer lines and the closing blank line."""
    lines = "".join(f"{name}:{value}\r\n" for name, value in trailers)
    return b"0\r\n" + lines.encode() + b"\r\n"


@dataclass(frozen=True, slots=True)
class OneChunkFraming:
    """A payload of known length re-framed as ONE STREAMING-UNSIGNED-PAYLOAD-TRAILER chunk.

    Lets s3shim hand a store that supports checksums the client's trailer checksum while
    streaming: the framed length is known before the first byte (the trailer value has a
    fixed size per algorithm), so the store still gets a Content-Length. aws-c-s3 frames
    whole parts the same way.
    """

    length: int
    trailer_name: str
    trailer_value_size: int  # characters of the base64 value

    def head(self) -> bytes:
        return b"%x\r\n" % self.length if self.length else b""

    def tail(self, trailer_value: str) -> bytes:
        if len(trailer_value) != self.trailer_value_size:
            raise ValueError("trailer value has the wrong size")
        end = encode_unsigned_trailer_end([(self.trailer_name, trailer_value)])
        return (b"\r\n" if self.length else b"") + end

    @property
    def framed_length(self) -> int:
        return len(self.head()) + self.length + len(self.tail("=" * self.trailer_value_size))


class ChunkSigner:
    """Frames a body as STREAMING-AWS4-HMAC-SHA256-PAYLOAD(-TRAILER), chunk by chunk."""

    def __init__(self, signing: ChunkSigning) -> None:
        self._signing = signing
        self._prev = signing.seed_signature

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
        self._prev = trailer_signature(self._signing, self._prev, pairs)
        lines = "".join(f"{name}:{value}\r\n" for name, value in pairs)
        return last + f"{lines}{_TRAILER_SIGNATURE}:{self._prev}\r\n\r\n".encode()

    def _signed(self, data: bytes) -> bytes:
        self._prev = chunk_signature(self._signing, self._prev, hashlib.sha256(data).hexdigest())
        return b"%x;chunk-signature=%b\r\n" % (len(data), self._prev.encode())


def sign_chunks(
    chunks: Iterable[bytes],
    signing: ChunkSigning,
    trailers: list[tuple[str, str]] | None = None,
) -> bytes:
    """A whole signed aws-chunked body from its data chunks (see :meth:`ChunkSigner.end`)."""
    signer = ChunkSigner(signing)
    return b"".join([*(signer.chunk(c) for c in chunks), signer.end(trailers)])
