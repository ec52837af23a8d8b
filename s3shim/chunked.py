"""Incremental, I/O-free decoder for ``Content-Encoding: aws-chunked``.

Bytes go in through :meth:`AwsChunkedDecoder.feed`, events come out: :class:`Data`,
:class:`Trailer`, :class:`End`. The caller calls :meth:`AwsChunkedDecoder.eof` when the
transport has no more bytes. Every problem with the body raises :class:`ChunkedBodyError`
(an :class:`~s3shim.errors.S3Error`), and the decoder stays failed afterwards.

The pieces, each small enough to test on its own:

* :class:`State` names where the decoder is; :data:`TRANSITIONS` is the whole state machine,
  and :class:`AwsChunkedDecoder` dispatches on the state in one place;
* :class:`LineBuffer` cuts size and trailer lines out of the input and owns every bound on
  them (the only bytes the decoder buffers besides one signed chunk);
* :class:`SignatureChain` holds the chunk and trailer strings to sign; the decoder verifies
  with it and the test encoders in :mod:`s3shim.testing` sign with it.

The proxy's own encoder, :class:`OneChunkFraming`, is here too; encoders that only tests and
benchmarks use live in :mod:`s3shim.testing`.

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Final

from s3shim import errors, sigv4
from s3shim.errors import S3Error

__all__ = [
    "SIGV4A_STREAMING_VALUES",
    "STREAMING_VALUES",
    "TRAILER_SIGNATURE_HEADER",
    "TRANSITIONS",
    "AwsChunkedDecoder",
    "ChunkSigning",
    "ChunkedBodyError",
    "Data",
    "End",
    "Event",
    "Framing",
    "Limits",
    "LineBuffer",
    "OneChunkFraming",
    "SignatureChain",
    "State",
    "Trailer",
    "encode_unsigned_trailer_end",
    "framing_for",
]


# -- the x-amz-content-sha256 values -----------------------------------------------------


class Framing(enum.Enum):
    """The aws-chunked framings, named by their ``x-amz-content-sha256`` value."""

    SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
    UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"

    @property
    def signed(self) -> bool:
        return self is not Framing.UNSIGNED_TRAILER


# SigV4a (ECDSA) streaming: S3 defines these, s3shim does not verify them (NotImplemented).
SIGV4A_STREAMING_VALUES: Final = frozenset(
    {"STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD", "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER"}
)
# Every STREAMING-* x-amz-content-sha256 value S3 defines: the one list, for whoever must tell
# a streaming value from a payload hash (the request authenticator does).
STREAMING_VALUES: Final = frozenset(f.value for f in Framing) | SIGV4A_STREAMING_VALUES

_BY_VALUE: Final = {f.value: f for f in Framing}


def framing_for(content_sha256: str) -> Framing | None:
    """The framing an ``x-amz-content-sha256`` value announces, or None for a plain body."""
    framing = _BY_VALUE.get(content_sha256)
    if framing is not None:
        return framing
    if content_sha256 in SIGV4A_STREAMING_VALUES:
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


# -- configuration, events, errors -------------------------------------------------------


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
    # Payload bytes, often a memoryview of the bytes that were fed (never of a caller's
    # mutable buffer: feed() copies those first), so that the payload is not copied on its
    # way to the store; whoever keeps it keeps that input alive.
    data: bytes | memoryview


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


def _incomplete(detail: str) -> ChunkedBodyError:
    return ChunkedBodyError.of(errors.incomplete_body(f"{_TERMINATED}: {detail}."))


def _bad_signature(detail: str) -> ChunkedBodyError:
    return ChunkedBodyError.of(errors.signature_does_not_match(detail))


def _malformed_trailer(detail: str) -> ChunkedBodyError:
    return ChunkedBodyError.of(errors.malformed_trailer(detail))


def _chunk_too_large(size: int, limit: int) -> ChunkedBodyError:
    return ChunkedBodyError.of(errors.invalid_chunk_size(size, limit))


_SIZE_RE: Final = re.compile(rb"[0-9A-Fa-f]{1,16}")
_SIG_RE: Final = re.compile(rb"[0-9a-fA-F]{64}")
_SIG_TEXT_RE: Final = re.compile(r"[0-9a-fA-F]{64}")
# A size line as every SDK writes it, signed or not: parsed by one regex, not step by step.
_COMMON_SIZE_LINE_RE: Final = re.compile(
    rb"([0-9A-Fa-f]{1,16})(?:;chunk-signature=([0-9a-fA-F]{64}))?\r\n"
)
_TOKEN_RE: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")
_VALUE_RE: Final = re.compile(r"[\x20-\x7e\t]*")
TRAILER_SIGNATURE_HEADER: Final = "x-amz-trailer-signature"


# -- the signature chain -----------------------------------------------------------------


class SignatureChain:
    """The signatures of one aws-chunked body, each chained to the one before it.

    The first chunk's string to sign names the Authorization header's signature (the seed),
    every later chunk's names the previous chunk's, and the trailer's names the zero-size
    chunk's. The decoder verifies with this object and :mod:`s3shim.testing` signs with it,
    so each string to sign is written once; tests pin it to AWS's published signatures.

    Each call moves the chain on to the signature it returns. A verifier that finds the
    client's signature differs must not go on with the chain (the decoder fails for good).
    """

    __slots__ = ("_amz_date", "_chunk_head", "_hmac", "_previous", "_scope")

    def __init__(self, signing: ChunkSigning) -> None:
        self._amz_date = signing.amz_date
        self._scope = signing.scope
        self._previous = signing.seed_signature
        # One HMAC key for every chunk of the body: its pads hashed once.
        self._hmac = sigv4.HmacSha256(signing.signing_key).hexdigest
        # The chunk string to sign around the previous signature and the data's hash.
        self._chunk_head = f"{_CHUNK_LABEL}\n{self._amz_date}\n{self._scope}\n"

    @property
    def previous(self) -> str:
        """The last signature of the chain (hex): the seed, until a call moves it on."""
        return self._previous

    def next_chunk(self, data_sha256_hex: str) -> str:
        """The signature of the next chunk, whose data hashes to ``data_sha256_hex``."""
        # "\n".join of: the label, x-amz-date, the scope, the previous signature, the hash of
        # the (empty) chunk headers (there are none), the hash of the chunk's data.
        to_sign = self._chunk_head + self._previous + _EMPTY_HEADERS_LINE + data_sha256_hex
        self._previous = self._hmac(to_sign.encode())
        return self._previous

    def trailer(self, trailers: Iterable[tuple[str, str]]) -> str:
        """The ``x-amz-trailer-signature`` for (lower-case name, value) trailer pairs."""
        canonical = "".join(f"{name}:{value}\n" for name, value in sorted(trailers))
        to_sign = "\n".join(
            (
                "AWS4-HMAC-SHA256-TRAILER",
                self._amz_date,
                self._scope,
                self._previous,
                hashlib.sha256(canonical.encode()).hexdigest(),
            )
        )
        self._previous = self._hmac(to_sign.encode())
        return self._previous


_CHUNK_LABEL: Final = "AWS4-HMAC-SHA256-PAYLOAD"
_EMPTY_HEADERS_LINE: Final = f"\n{sigv4.EMPTY_SHA256}\n"


# -- lines and their bounds --------------------------------------------------------------


class LineBuffer:
    """Cuts LF-terminated lines out of successive feeds and enforces every bound on them.

    Lines are all the decoder ever buffers besides one signed chunk, so these bounds are what
    keeps a client from making it hold bytes without end:

    * a chunk-size line: :attr:`Limits.max_size_line` plus its CRLF (IncompleteBody);
    * the trailer block: :attr:`Limits.max_trailer_bytes` for all its lines together,
      terminators and blank lines included (MalformedTrailerError);
    * stray blank bytes after the end: :attr:`MAX_AFTER_END` (IncompleteBody), a few for
      minio-go, not an endless stream that would hold the request open.

    The search for a line's end is bounded too: a missing terminator is refused once the
    bound is passed, not after scanning (or buffering) all that was fed.
    """

    MAX_AFTER_END: ClassVar[int] = 64

    __slots__ = ("_after_end", "_max_size_line", "_max_trailer_bytes", "_partial", "_trailer_used")

    def __init__(self, limits: Limits) -> None:
        self._max_size_line = limits.max_size_line
        self._max_trailer_bytes = limits.max_trailer_bytes
        self._partial = bytearray()  # the start of an unfinished line
        self._trailer_used = 0  # bytes of the finished lines of the trailer block
        self._after_end = 0  # stray bytes seen after the end

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished line held between feeds."""
        return len(self._partial)

    def size_line(self, data: bytes, pos: int) -> tuple[bytes | None, int]:
        """The chunk-size line at ``data[pos:]`` (with its terminator) and where it ends.

        ``(None, len(data))`` if the line is unfinished: its start is kept for the next feed.
        """
        line = self._take(data, pos, self._max_size_line + 2 - len(self._partial))
        if line is None:
            raise _incomplete(f"the chunk size line exceeds {self._max_size_line} bytes")
        return line

    def trailer_line(self, data: bytes, pos: int) -> tuple[bytes | None, int]:
        """Like :meth:`size_line`, for the next line of the trailer block."""
        room = self._max_trailer_bytes - self._trailer_used - len(self._partial)
        taken = self._take(data, pos, room)
        if taken is None:
            limit = self._max_trailer_bytes
            raise _malformed_trailer(f"the trailer block exceeds {limit} bytes")
        if taken[0] is not None:
            self._trailer_used += len(taken[0])
        return taken

    def after_end(self, data: bytes, pos: int) -> int:
        """Skip ``data[pos:]`` after the end if it is only a few CR and LF bytes; else refuse."""
        self._after_end += len(data) - pos
        if data[pos:].strip(b"\r\n") or self._after_end > self.MAX_AFTER_END:
            raise _incomplete("data follows the end of the aws-chunked body")
        return len(data)

    def clear(self) -> None:
        """Drop an unfinished line (the decoder has ended or failed)."""
        self._partial = bytearray()

    def _take(self, data: bytes, pos: int, room: int) -> tuple[bytes | None, int] | None:
        """The next line and its end; ``(None, len(data))`` if unfinished; None if over room."""
        if room <= 0:
            return None
        end = data.find(b"\n", pos, pos + room)
        if end < 0:
            if len(data) - pos >= room:
                return None
            self._partial += data[pos:]
            return None, len(data)
        line = data[pos : end + 1]
        if self._partial:
            self._partial += line
            line = bytes(self._partial)
            self._partial.clear()
        return line, end + 1


# -- the decoder -------------------------------------------------------------------------


class State(enum.Enum):
    """Where an :class:`AwsChunkedDecoder` is in the body."""

    SIZE_LINE = "size line"  # reading "<hex>[;extensions]\r\n"
    DATA = "data"  # inside a chunk's data
    DATA_CRLF = "data CRLF"  # the CRLF that ends a chunk's data
    TRAILER = "trailer"  # the trailer block, after the zero-size chunk
    DONE = "done"  # End was emitted; only a few stray blank bytes may follow
    FAILED = "failed"  # an error was raised; every later call raises it again

    # Enum's own __hash__ is a Python-level call, and the decoder looks its state up on every
    # step; members are singletons compared by identity, so the identity hash is equivalent.
    __hash__ = object.__hash__


# Plain names for the per-chunk steps: on Python 3.11 every State.X read through the class is
# a Python-level descriptor call, and the decoder changes state three times per chunk.
_SIZE_LINE: Final = State.SIZE_LINE
_DATA: Final = State.DATA
_DATA_CRLF: Final = State.DATA_CRLF
_TRAILER: Final = State.TRAILER

# The whole state machine: the states each state can move to. Any state but FAILED can fail.
TRANSITIONS: Final[Mapping[State, frozenset[State]]] = {
    State.SIZE_LINE: frozenset({State.DATA, State.TRAILER, State.FAILED}),
    State.DATA: frozenset({State.DATA_CRLF, State.FAILED}),
    State.DATA_CRLF: frozenset({State.SIZE_LINE, State.FAILED}),
    State.TRAILER: frozenset({State.DONE, State.FAILED}),
    State.DONE: frozenset({State.FAILED}),
    State.FAILED: frozenset(),
}


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
        if TRAILER_SIGNATURE_HEADER in expected:
            raise errors.invalid_request(
                f"{TRAILER_SIGNATURE_HEADER} cannot be announced in x-amz-trailer."
            )
        self._framing = framing
        self._signed = framing.signed
        self._decoded_length = decoded_length
        self._expected = expected
        self._max_chunk_size = limits.max_chunk_size
        self._state = State.SIZE_LINE
        self._error: ChunkedBodyError | None = None
        self._lines = LineBuffer(limits)  # an unfinished size or trailer line, never data
        self._received = 0  # sum of the chunk sizes announced so far
        self._chunk_left = 0
        self._crlf_seen = 0  # bytes of the CRLF after chunk data matched so far
        # Signed framings: the chunk being buffered until its signature checks out.
        self._chain = SignatureChain(signing) if signing is not None else None
        self._hasher = hashlib.sha256()
        self._pieces: list[bytes | memoryview] = []
        self._pending = 0
        self._chunk_sig = ""  # the current chunk's chunk-signature, lower case
        self._trailers: dict[str, str] = {}
        self._trailer_signed = False
        self._closed_block = False  # the last trailer line was blank

    @property
    def framing(self) -> Framing:
        return self._framing

    @property
    def state(self) -> State:
        """Where the decoder is; it only ever moves along :data:`TRANSITIONS`."""
        return self._state

    @property
    def buffered_bytes(self) -> int:
        """Bytes held between feeds: an unfinished line plus a signed chunk's data."""
        return self._lines.buffered + self._pending

    @property
    def done(self) -> bool:
        return self._state is State.DONE

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
        if self._state is State.DONE:
            return []
        try:
            if self._state is State.TRAILER and not self._lines.buffered:
                # Lenient: a complete trailer block without its closing blank line (the JS
                # SDK ends an unsigned body without trailers with a bare "0\r\n").
                if self._trailers_complete():
                    return self._finish()
                if self._closed_block:
                    # The client ended its trailer block; what is missing was never sent.
                    self._check_announced_trailers()
            raise _incomplete("the aws-chunked body ended before its final chunk")
        except ChunkedBodyError as err:
            self._fail(err)
            raise

    # -- the state machine -----------------------------------------------------------------

    def _enter(self, state: State) -> None:
        assert state in TRANSITIONS[self._state], f"{self._state} -> {state}"
        self._state = state

    def _fail(self, err: ChunkedBodyError) -> None:
        self._enter(State.FAILED)
        self._error = err
        self._lines.clear()
        self._pieces = []
        self._pending = 0

    def _feed(self, data: bytes) -> list[Event]:
        # The one dispatch: each step consumes bytes from pos in its state (possibly moving
        # to another) and returns where it stopped. FAILED never gets here (feed raises).
        events: list[Event] = []
        n = len(data)
        pos = 0
        steps = self._STEPS
        while pos < n:
            pos = steps[self._state](self, data, pos, events)
        if self._pieces:  # only ever non-empty inside a signed chunk's DATA
            # Don't pin a large input buffer for the small tail of a chunk it ends with.
            last = self._pieces[-1]
            if isinstance(last, memoryview) and last.obj is data and len(last) < n // 2:
                self._pieces[-1] = last.tobytes()
        return events

    def _in_size_line(self, data: bytes, pos: int, events: list[Event]) -> int:
        line, pos = self._lines.size_line(data, pos)
        if line is None:
            return pos
        self._on_size_line(line)
        # Straight on into the chunk's data, the step that comes next, rather than back
        # through the dispatch: the same steps, fewer Python calls a chunk.
        if self._state is _DATA and pos < len(data):
            return self._in_data(data, pos, events)
        return pos

    def _in_data(self, data: bytes, pos: int, events: list[Event]) -> int:
        left = self._chunk_left
        take = min(left, len(data) - pos)
        end = pos + take
        piece = data if take == len(data) else memoryview(data)[pos:end]
        self._chunk_left = left - take
        if not self._signed:
            events.append(Data(piece))
        elif take == left and not self._pieces:
            # The whole signed chunk is in this input: verify it and hand its view on, no list.
            # sha256(piece), not sha256().update(piece): update() gives the object a lock of
            # its own (for data over 2 KiB), an allocation per chunk.
            self._verify_chunk(hashlib.sha256(piece).hexdigest())
            events.append(Data(piece))
        else:
            if self._pieces:
                self._hasher.update(piece)
            else:
                self._hasher = hashlib.sha256(piece)
            self._pieces.append(piece)
            self._pending += take
            if take == left:
                events.append(self._release_signed_chunk())
        if take < left:
            return end
        self._crlf_seen = 0
        self._enter(_DATA_CRLF)
        # Straight on to the CRLF when it is here (see _in_size_line).
        return self._in_data_crlf(data, end, events) if end < len(data) else end

    def _in_data_crlf(self, data: bytes, pos: int, events: list[Event]) -> int:
        if self._crlf_seen == 0 and data.startswith(b"\r\n", pos):
            pos += 2
        else:
            if data[pos] != b"\r\n"[self._crlf_seen]:
                raise _incomplete("chunk data is not followed by CRLF")
            pos += 1
            self._crlf_seen += 1
            if self._crlf_seen < 2:
                return pos
        self._enter(_SIZE_LINE)
        return pos

    def _in_trailer(self, data: bytes, pos: int, events: list[Event]) -> int:
        line, pos = self._lines.trailer_line(data, pos)
        if line is not None:
            self._on_trailer_line(line, events)
        return pos

    def _in_done(self, data: bytes, pos: int, events: list[Event]) -> int:
        # Lenient: stray blank lines after the end (minio-go's unsigned trailer).
        return self._lines.after_end(data, pos)

    _STEPS: Final = {
        State.SIZE_LINE: _in_size_line,
        State.DATA: _in_data,
        State.DATA_CRLF: _in_data_crlf,
        State.TRAILER: _in_trailer,
        State.DONE: _in_done,
    }

    # -- what the lines and chunks mean ------------------------------------------------

    def _on_size_line(self, line: bytes) -> None:
        size, signature = _parse_size_line(line, self._signed)
        if signature is not None:
            self._chunk_sig = signature
            if size > self._max_chunk_size:
                raise _chunk_too_large(size, self._max_chunk_size)
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
            self._enter(_DATA)
            return
        if self._decoded_length is not None and total != self._decoded_length:
            raise _incomplete(
                f"chunks carry {total} bytes, "
                f"x-amz-decoded-content-length says {self._decoded_length}"
            )
        if self._signed:
            self._verify_chunk(sigv4.EMPTY_SHA256)
        self._enter(_TRAILER)

    def _release_signed_chunk(self) -> Data:
        self._verify_chunk(self._hasher.hexdigest())
        pieces = self._pieces
        chunk = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        self._pieces = []
        self._pending = 0
        return Data(chunk)

    def _verify_chunk(self, data_sha256_hex: str) -> None:
        assert self._chain is not None  # guaranteed for signed framings by __init__
        expected = self._chain.next_chunk(data_sha256_hex)
        if not hmac.compare_digest(expected, self._chunk_sig):
            raise _bad_signature(
                "The chunk signature we calculated does not match the signature you provided."
            )

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
        if name == TRAILER_SIGNATURE_HEADER:
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
            raise _malformed_trailer(
                f"{TRAILER_SIGNATURE_HEADER} is only valid in a signed trailer"
            )
        if self._trailer_signed:
            raise _malformed_trailer(f"{TRAILER_SIGNATURE_HEADER} was sent twice")
        if _SIG_TEXT_RE.fullmatch(value) is None:
            raise _bad_signature("The trailer signature is malformed.")
        assert self._chain is not None  # guaranteed for signed framings by __init__
        expected = self._chain.trailer(self._trailers.items())
        if not hmac.compare_digest(expected, value.lower()):
            raise _bad_signature(
                "The trailer signature we calculated does not match the signature you provided."
            )
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
            raise _bad_signature(f"The trailer carries no {TRAILER_SIGNATURE_HEADER}.")

    def _finish(self) -> list[Event]:
        self._enter(State.DONE)
        self._lines.clear()
        events: list[Event] = [Trailer(name, value) for name, value in self._trailers.items()]
        events.append(End())
        return events


def _parse_size_line(line: bytes, signed: bool) -> tuple[int, str | None]:
    """A chunk-size line's size and, for signed framings, its chunk signature (lower case)."""
    common = _COMMON_SIZE_LINE_RE.fullmatch(line)
    if common is not None and (common[2] is not None or not signed):
        # What every SDK writes, in one regex: _parse_any_size_line gives the same for it.
        return int(common[1], 16), common[2].decode("ascii").lower() if signed else None
    return _parse_any_size_line(line, signed)


def _parse_any_size_line(line: bytes, signed: bool) -> tuple[int, str | None]:
    """:func:`_parse_size_line` step by step, for any line: extensions, and every error."""
    if not line.endswith(b"\r\n"):
        raise _incomplete("chunk size line is not terminated by CRLF")
    content = line[:-2]
    semi = content.find(b";")
    size_hex = content if semi < 0 else content[:semi]
    if _SIZE_RE.fullmatch(size_hex) is None:
        raise _incomplete(f"invalid chunk size {size_hex[:32]!r}")
    size = int(size_hex, 16)
    if not signed:
        return size, None
    return size, _chunk_signature_of(content[semi + 1 :] if semi >= 0 else b"")


def _chunk_signature_of(extensions: bytes) -> str:
    """The ``chunk-signature`` extension's value, lower case; other extensions are ignored."""
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
    return signature.decode("ascii").lower()


# -- the proxy's encoder -----------------------------------------------------------------


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
