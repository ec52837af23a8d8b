"""multipart/form-data for S3 browser uploads (POST object): parser and head encoder. Pure.

S3 takes the form fields, then the part named ``file`` (matched case-insensitively, as RGW
and MinIO do), whose content is the object; parts after it are ignored. s3shim has to
read every field before the file (to verify and re-sign the policy) but must never hold
the file itself, so :class:`FormParser` is fed the body in whatever pieces the socket gives
and answers with events:

``Field``\\* ``FileStart`` ``FileData``\\* ``Tail``\\+ (``TrailingField``\\*) ``End``

Memory is bounded by :class:`Limits` before the file and after it; while in the file it is
one look-behind shorter than the delimiter (``\\r\\n--<boundary>``, at most 74 bytes).

The store never parses the client's bytes beside s3shim's reading of them: s3shim writes the
store a form of its own (:class:`StoreFormWriter`) with a fresh boundary, every part head
re-emitted from the parsed values (:func:`encode_head`), the file's content as received, and a
close delimiter of its own; parts after the file are not forwarded (S3 ignores them). Only part
heads that every parser reads one way are accepted (:func:`_disposition`): RGW, for one, splits
``Content-Disposition`` on every ``;`` whatever the quoting, so ``name="a;name=file;x="`` would be
a field to s3shim and the file to RGW. The new body's length is known the moment the file
starts (:meth:`StoreFormWriter.content_length`): the client's tail after the file is replaced
by one exactly as long, padded in the epilogue (RFC 2046 ignores it).

Parsing is strict (RFC 2046 / RFC 7578 as browsers write it): CRLF line ends, no header
folding, a delimiter must be followed by ``--`` or optional blanks and CRLF. Anything else
is ``MalformedPOSTRequest``: a lenient parser that disagreed with the store's about where
the file ends would let s3shim vouch (checksums, policy) for bytes the store reads
differently.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeAlias

from . import errors

FILE_FIELD = "file"

# S3: "The form data and boundaries (excluding the contents of the file) cannot exceed
# 20 KB" (sigv4-HTTPPOSTForms), answered with MaxPostPreDataLengthExceededError. Measured
# here exactly like that: every byte before the file's content (preamble, delimiters, part
# headers, values, and the file part's own headers).
MAX_HEAD_BYTES = 20 * 1024
# S3 defines about 30 form fields plus x-amz-meta-* (whose total S3 caps at 2 KB); 128 is
# well above any real form and keeps the per-field work of the policy check small. The byte
# budget above is the real bound; this one stops a 20 KB head of 400 empty fields.
MAX_FIELDS = 128
# One part's header section: Content-Disposition with a long UTF-8 filename is the largest
# real one (a few hundred bytes); 8 KiB is the common per-header-line limit of HTTP servers.
MAX_PART_HEADER_BYTES = 8 * 1024
# After the file S3 reads nothing, but the bytes still pass through s3shim and the parts are
# parsed (to find the body's end), so they get the same budget as the head.
MAX_TAIL_BYTES = 20 * 1024

# RFC 2046 bchars, 1 to 70 of them, not ending in a space.
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BLANKS = b" \t"

Headers: TypeAlias = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Limits:
    head_bytes: int = MAX_HEAD_BYTES
    fields: int = MAX_FIELDS
    part_header_bytes: int = MAX_PART_HEADER_BYTES
    tail_bytes: int = MAX_TAIL_BYTES


@dataclass(frozen=True, slots=True)
class Field:
    """A form field before the file: also what :func:`encode_head` takes and re-emits.

    ``filename`` and ``content_type`` are the part's own (a field s3shim creates has none).
    """

    name: str
    value: bytes
    filename: str | None = None
    content_type: str | None = None

    @property
    def key(self) -> str:
        """The name as S3 compares it (case-insensitively)."""
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class FileStart:
    name: str  # "file" as the client spelled it
    filename: str | None
    content_type: str | None
    head_length: int  # bytes of the original body before the file's content


@dataclass(frozen=True, slots=True)
class FileData:
    data: bytes


@dataclass(frozen=True, slots=True)
class Tail:
    """Raw bytes after the file's content (the store gets s3shim's own tail instead)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class TrailingField:
    """A part after the file (S3 ignores it; reported for logs and tests)."""

    name: str
    value: bytes


@dataclass(frozen=True, slots=True)
class End:
    pass


Event: TypeAlias = Field | FileStart | FileData | Tail | TrailingField | End


def _no_file() -> errors.S3Error:
    return errors.invalid_argument("POST requires exactly one file upload per request.")


def _delimiter_line() -> errors.S3Error:
    # Content that opens with "--boundary" puts a delimiter line right after the part's
    # header section (RFC 2046 forbids it in content). Go's mime/multipart, for one, reads
    # it as an empty part followed by a delimiter; refusing it keeps every parser in step.
    return errors.malformed_post_request()


# -- header parameters ----------------------------------------------------------------------


def _parse_params(value: str) -> tuple[str, dict[str, str]]:
    """``type; a=b; c="d"`` -> ("type", {"a": "b", "c": "d"}), names lowercased.

    Quoted values end at the next ``"``: browsers and urllib3 (WHATWG HTML) percent-encode
    a quote inside a name or filename and never backslash-escape, and a Windows path in a
    filename keeps its backslashes.
    """
    head, _, rest = value.partition(";")
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        semi, eq = rest.find(";", i), rest.find("=", i)
        if eq < 0 or 0 <= semi < eq:
            end = semi if semi >= 0 else n
            if rest[i:end].strip():  # a parameter without a value
                raise errors.malformed_post_request()
            i = end + 1  # an empty one (";;" or a trailing ";")
            continue
        name = rest[i:eq].strip().lower()
        j = eq + 1
        while j < n and rest[j] in " \t":
            j += 1
        if j < n and rest[j] == '"':
            close = rest.find('"', j + 1)
            if close < 0:
                raise errors.malformed_post_request()
            val = rest[j + 1 : close]
            semi = rest.find(";", close + 1)
            if rest[close + 1 : semi if semi >= 0 else n].strip():
                raise errors.malformed_post_request()
        else:
            semi = rest.find(";", j)
            val = rest[j : semi if semi >= 0 else n].strip()
        if not _TOKEN.fullmatch(name.encode("utf-8", "surrogateescape")) or name in params:
            raise errors.malformed_post_request()
        params[name] = val
        i = semi + 1 if semi >= 0 else n
    return head.strip().lower(), params


def boundary_from_content_type(content_type: str | None) -> str:
    """The boundary of a POST object request's ``Content-Type``.

    Not multipart/form-data at all is S3's 412 (the request is not a form upload); a
    missing or invalid boundary is a malformed form.
    """
    if content_type is None:
        content_type = ""
    media, params = _parse_params(content_type) if content_type else ("", {})
    if media != "multipart/form-data":
        raise errors.precondition_failed(
            "Bucket POST must be of the enclosure-type multipart/form-data"
        )
    boundary = params.get("boundary")
    if boundary is None or not _BOUNDARY.fullmatch(boundary):
        raise errors.malformed_post_request()
    return boundary


def _parse_headers(section: bytes) -> Headers:
    """Header lines, each ending in CRLF; names checked as tokens, values kept as sent."""
    out: list[tuple[str, str]] = []
    for line in section.split(b"\r\n")[:-1]:
        name, colon, value = line.partition(b":")
        # Folded lines (leading blank) are obsolete and never sent by browsers; a bare CR
        # or LF would make this line mean different things to different parsers.
        if not colon or not _TOKEN.fullmatch(name) or b"\r" in value or b"\n" in value:
            raise errors.malformed_post_request()
        out.append((name.decode("ascii"), value.strip(_BLANKS).decode("utf-8", "surrogateescape")))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class PartHead:
    """What a part's header section says, as s3shim re-emits it."""

    name: str
    filename: str | None
    content_type: str | None


# A field name is an HTTP token: S3's field names are, and nothing in a token is read as a
# separator or quote by any multipart parser.
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# A filename may be any text but what a parser could read as a separator, a quote or an
# escape (';' ends a parameter for RGW whatever the quoting, a backslash escapes for RFC 2045
# parsers), or a control character; it must not start or end with blanks, which some
# parsers trim and others keep. Browsers percent-encode '"', CR and LF in names.
_FILENAME_BAD = re.compile(r'[\x00-\x1f\x7f";\\]')
_CONTENT_TYPE_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\U0010ffff]")
# The only part headers browsers, curl and the SDKs write; anything else would be a header
# s3shim forwards without knowing what the store makes of it.
_PART_HEADERS = frozenset({"content-disposition", "content-type"})
_DISPOSITION_PARAMS = frozenset({"name", "filename"})


def _valid_filename(value: str) -> bool:
    return not _FILENAME_BAD.search(value) and value == value.strip(" \t")


def _disposition(headers: Headers) -> PartHead:
    """A part's name, filename and type, when every parser reads its head the same way.

    Anything else is ``MalformedPOSTRequest``: another header, a repeated one, a disposition
    other than ``form-data``, parameters other than one ``name`` and one ``filename``, or a
    value that needs quoting rules to be read (see :data:`_FILENAME_BAD`).
    """
    found: dict[str, str] = {}
    for hname, value in headers:
        key = hname.lower()
        if key not in _PART_HEADERS or key in found:
            raise errors.malformed_post_request()
        found[key] = value
    disposition = found.get("content-disposition")
    if disposition is None:
        raise errors.malformed_post_request()
    kind, params = _parse_params(disposition)
    name = params.get("name")
    filename = params.get("filename")
    if (
        kind != "form-data"
        or not params.keys() <= _DISPOSITION_PARAMS
        or name is None
        or not _FIELD_NAME.fullmatch(name)
        or (filename is not None and not _valid_filename(filename))
    ):
        raise errors.malformed_post_request()
    content_type = found.get("content-type")
    if content_type is not None and (not content_type or _CONTENT_TYPE_BAD.search(content_type)):
        raise errors.malformed_post_request()
    return PartHead(name, filename, content_type)


def _held_back(buf: bytes, delim: bytes) -> int:
    """Length of the longest suffix of ``buf`` that could start ``delim`` (to keep)."""
    j = buf.find(b"\r", max(0, len(buf) - len(delim) + 1))
    while j >= 0:
        if delim.startswith(buf[j:]):
            return len(buf) - j
        j = buf.find(b"\r", j + 1)
    return 0


# -- the parser -----------------------------------------------------------------------------

_PREAMBLE, _AFTER_DELIM, _HEADERS, _VALUE, _FILE, _EPILOGUE, _ENDED = range(7)


class FormParser:
    """Incremental multipart/form-data parser for POST object (see the module docstring).

    ``feed`` each piece of the body as it arrives, then ``close`` at the end of the body;
    both return the events the bytes completed and raise :class:`~s3shim.errors.S3Error`
    for a malformed or oversized form.
    """

    def __init__(self, boundary: str, limits: Limits | None = None) -> None:
        if not _BOUNDARY.fullmatch(boundary):
            raise errors.malformed_post_request()
        raw = boundary.encode("ascii")
        self._dash = b"--" + raw  # the first delimiter may open the body without a CRLF
        self._delim = b"\r\n--" + raw
        self._limits = limits or Limits()
        self._state = _PREAMBLE
        self._buf = b""
        self._pos = 0  # body offset of _buf[0] (in _FILE: of the held-back bytes)
        self._received = 0
        self._after_file = False
        self._file_end = 0  # body offset where the file's content ends
        self._fields = 0
        self._file_start = False  # no file byte seen yet (see _delimiter_line)
        self._part = PartHead("", None, None)

    # The public surface --------------------------------------------------------------

    @property
    def received(self) -> int:
        """Bytes of the body fed so far."""
        return self._received

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        if self._state == _ENDED:
            raise RuntimeError("feed() after close()")
        chunk = data if isinstance(data, bytes) else bytes(data)
        out: list[Event] = []
        if not chunk:
            return out
        self._received += len(chunk)
        try:
            if self._state == _FILE:
                self._file(chunk, out)
            else:
                if self._after_file:
                    out.append(Tail(chunk))
                self._buf += chunk
            self._run(out)
            if self._after_file and self._received - self._file_end > self._limits.tail_bytes:
                raise errors.malformed_post_request(
                    "Your POST request fields following the upload file were too large."
                )
        except errors.S3Error:
            self._state = _ENDED  # the body is refused: no further events from it
            raise
        return out

    def close(self) -> list[Event]:
        """The body ended: valid only after the close delimiter."""
        state, self._state = self._state, _ENDED
        if state != _EPILOGUE:
            raise errors.malformed_post_request()
        return [End()]

    # The machine ---------------------------------------------------------------------

    def _consume(self, n: int) -> bytes:
        taken, self._buf = self._buf[:n], self._buf[n:]
        self._pos += n
        if not self._after_file and self._pos > self._limits.head_bytes:
            raise errors.max_post_pre_data_length_exceeded()
        return taken

    def _need_more(self) -> None:
        """Nothing complete in the buffer: stop if what is buffered already breaks a limit."""
        if not self._after_file and self._pos + len(self._buf) > self._limits.head_bytes:
            raise errors.max_post_pre_data_length_exceeded()
        # After the file the tail budget (checked in feed) bounds the buffer.

    def _run(self, out: list[Event]) -> None:
        while True:
            state = self._state
            if state == _PREAMBLE:
                if not self._preamble():
                    return
            elif state == _AFTER_DELIM:
                if not self._after_delimiter():
                    return
            elif state == _HEADERS:
                if not self._part_headers(out):
                    return
            elif state == _VALUE:
                if not self._value(out):
                    return
            elif state == _FILE:
                rest, self._buf = self._buf, b""
                self._file(rest, out)
                if self._state == _FILE:
                    return
            else:  # _EPILOGUE: ignored (already reported as Tail)
                self._pos += len(self._buf)
                self._buf = b""
                return

    def _preamble(self) -> bool:
        if self._pos == 0:
            if self._buf.startswith(self._dash):
                self._consume(len(self._dash))
                self._state = _AFTER_DELIM
                return True
            if self._dash.startswith(self._buf):
                self._need_more()
                return False
        i = self._buf.find(self._delim)
        if i < 0:
            # Preamble is ignored (RFC 2046); keep only what may start the delimiter.
            keep = _held_back(self._buf, self._delim)
            self._consume(len(self._buf) - keep)
            self._need_more()
            return False
        self._consume(i + len(self._delim))
        self._state = _AFTER_DELIM
        return True

    def _after_delimiter(self) -> bool:
        """After ``--boundary``: ``--`` closes the body, blanks and CRLF open a part."""
        buf = self._buf
        if buf.startswith(b"--"):
            self._consume(2)
            if not self._after_file:
                raise _no_file()
            self._state = _EPILOGUE
            return True
        i = buf.find(b"\r\n")
        if i >= 0:
            if buf[:i].strip(_BLANKS):
                raise errors.malformed_post_request()
            self._consume(i + 2)
            self._state = _HEADERS
            return True
        # Incomplete: only "-" (maybe "--") or blanks with maybe the CR of a CRLF may wait.
        pending = buf[:-1] if buf.endswith(b"\r") else buf
        if buf != b"-" and pending.strip(_BLANKS):
            raise errors.malformed_post_request()
        if len(buf) > self._limits.part_header_bytes:
            raise errors.malformed_post_request()
        self._need_more()
        return False

    def _part_headers(self, out: list[Event]) -> bool:
        buf = self._buf
        if buf.startswith(b"\r\n"):
            end, section = 2, b""
        else:
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                if len(buf) > self._limits.part_header_bytes:
                    raise errors.malformed_post_request()
                self._need_more()
                return False
            end, section = i + 4, buf[: i + 2]
        if len(section) > self._limits.part_header_bytes:
            raise errors.malformed_post_request()
        part = _disposition(_parse_headers(section))
        self._consume(end)
        if part.name.lower() == FILE_FIELD:
            if self._after_file:
                raise _no_file()  # a second file
            out.append(FileStart(part.name, part.filename, part.content_type, self._pos))
            self._state = _FILE
            self._file_start = True
            self._fields = 0  # the parts after the file count on their own
            return True
        self._fields += 1
        if self._fields > self._limits.fields:
            if self._after_file:
                raise errors.malformed_post_request(
                    "Your POST request fields following the upload file were too many."
                )
            raise errors.max_post_pre_data_length_exceeded()
        self._part = part
        self._state = _VALUE
        return True

    def _value(self, out: list[Event]) -> bool:
        if self._buf.startswith(self._dash):
            raise _delimiter_line()
        i = self._buf.find(self._delim)
        if i < 0:
            self._need_more()
            return False
        value = self._consume(i)
        self._consume(len(self._delim))
        part = self._part
        if self._after_file:
            out.append(TrailingField(part.name, value))
        else:
            out.append(Field(part.name, value, part.filename, part.content_type))
        self._state = _AFTER_DELIM
        return True

    def _file(self, chunk: bytes, out: list[Event]) -> None:
        """File content: pass it on at once, holding back only a possible delimiter start."""
        held = self._buf
        buf = held + chunk if held else chunk
        if self._file_start:
            if len(buf) < len(self._dash) and self._dash.startswith(buf):
                self._buf = buf  # may still become "--boundary": nothing to report yet
                self._pos += len(buf) - len(held)
                return
            if buf.startswith(self._dash):
                raise _delimiter_line()
            self._file_start = False
        i = buf.find(self._delim)
        if i < 0:
            keep = _held_back(buf, self._delim)
            if len(buf) > keep:
                out.append(FileData(buf[: len(buf) - keep] if keep else buf))
            self._buf = buf[len(buf) - keep :] if keep else b""
            self._pos += len(buf) - keep
            return
        if i:
            out.append(FileData(buf[:i]))
        self._after_file = True
        self._file_end = self._pos + i
        rest = buf[i:]
        out.append(Tail(rest))
        self._pos += i + len(self._delim)
        self._buf = rest[len(self._delim) :]
        self._state = _AFTER_DELIM


# -- the writer -----------------------------------------------------------------------------

# The store's boundary: fresh for every form and never shown to the client, so no file
# content can contain the store's delimiter except by guessing 128 random bits.
STORE_BOUNDARY_PREFIX = "s3shim-form-"


def new_boundary() -> str:
    return STORE_BOUNDARY_PREFIX + secrets.token_hex(16)


def _part_head(name: str, filename: str | None, content_type: str | None) -> bytes:
    if not _FIELD_NAME.fullmatch(name) or (filename is not None and not _valid_filename(filename)):
        raise ValueError(f"field {name!r} cannot be written unambiguously")
    line = f'Content-Disposition: form-data; name="{name}"'
    if filename is not None:
        line += f'; filename="{filename}"'
    out = line.encode("utf-8", "surrogateescape") + b"\r\n"
    if content_type is not None:
        if _CONTENT_TYPE_BAD.search(content_type):
            raise ValueError(f"field {name!r} has an unwritable Content-Type")
        out += b"Content-Type: " + content_type.encode("ascii") + b"\r\n"
    return out


def encode_head(boundary: str, fields: Iterable[Field], file: FileStart) -> bytes:
    """The store's body up to the file's content, in ``boundary``: every field, then the file
    part's head, each written from its parsed values."""
    raw = boundary.encode("ascii")
    delim = b"\r\n--" + raw
    parts: list[bytes] = []
    for f in fields:
        # The delimiter has no border (it starts with CR, a boundary never ends with one),
        # so a value is safe exactly when it neither contains the delimiter nor opens with
        # the delimiter line (see _delimiter_line).
        if delim in f.value or f.value.startswith(delim[2:]):
            raise ValueError(f"field {f.name!r} contains the boundary")
        parts += [b"--", raw, b"\r\n", _part_head(f.name, f.filename, f.content_type), b"\r\n"]
        parts += [f.value, b"\r\n"]
    parts += [b"--", raw, b"\r\n", _part_head(FILE_FIELD, file.filename, file.content_type)]
    parts.append(b"\r\n")
    return b"".join(parts)


def _tail_growth(client_boundary: str, store_boundary: str) -> int:
    # The store's tail is the client's, delimiter for delimiter, plus a CRLF after its close
    # delimiter (the client's may end without one).
    return len(store_boundary) - len(client_boundary) + 2


def store_length(
    client_length: int,
    client_head_length: int,
    store_head_length: int,
    client_boundary: str,
    store_boundary: str,
) -> int:
    """Content-Length of the store's body: new head + the file + a tail as long as the
    client's tail, in the store's boundary. Known as soon as the file starts."""
    if not 0 <= client_head_length <= client_length or store_head_length < 0:
        raise ValueError("head longer than the body")
    growth = _tail_growth(client_boundary, store_boundary)
    return client_length - client_head_length + store_head_length + growth


def encode_tail(client_tail_length: int, client_boundary: str, store_boundary: str) -> bytes:
    """The store's bytes after the file's content: its close delimiter, then an epilogue
    padding the body to :func:`store_length` (the client's tail held its own delimiters,
    parts after the file, which S3 ignores, and its epilogue)."""
    close = b"\r\n--" + store_boundary.encode("ascii") + b"--\r\n"
    pad = client_tail_length + _tail_growth(client_boundary, store_boundary) - len(close)
    if pad < 0:
        raise ValueError("the client's tail is shorter than a close delimiter")
    return close + b" " * pad
