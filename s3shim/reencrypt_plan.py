"""What ``s3shim reencrypt`` does to one object, decided from the store's answers. Pure.

An object under the prefix is in one of these states, told by HEADs carrying the keys s3shim
would read it with (the proxy's order: the current key, each older one, none):

- under the current key: the first HEAD answers 200 and names an SSE-C algorithm (one
  request, no body read): skipped, so a second run, or a resumed one, costs a HEAD an object;
- under an older key: a HEAD with that key names the algorithm;
- unencrypted: any HEAD answers 200 without naming an algorithm (RGW returns a plain object
  to a request with a key);
- under a key that is not in the keys file (a client's own SSE-C): no HEAD answers: left alone.

An object to re-encrypt is read with its key and written again under the current one, with
what the object carries (:func:`carried_headers`, its tags and its ACL as headers of the same
PUT), its recorded checksum checked on the way (so the record stays true), guarded by
``If-Match`` on the ETag the HEAD saw.

Measured on RGW 16 over TLS:
- a PUT with ``If-Match`` is carried out only when the ETag matches, and a missing object
  answers 412 too; but RGW compares the header with its stored ETag as it is, so a quoted
  ETag (the RFC form) never matches: the guard sends it unquoted;
- an overwrite keeps neither the tags nor the ACL (S3's own rule): both travel with the PUT
  (``x-amz-tagging``, ``x-amz-grant-*``), read with GetObjectTagging (only when the HEAD
  counts tags) and GetObjectAcl, which need no SSE-C key;
- the ETag of a single-part object is the MD5 of its bytes, encrypted or not;
- CompleteMultipartUpload ignores If-Match (it replaces an object whatever its ETag), so a
  rewrite in parts could not be guarded: an object over one PUT's 5 GiB is reported instead.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

from .attach import CARRIED_HEADERS, grant_headers, xml_leaves
from .integrity import RECORD_HEADER, parse_record
from .rewrite import SSE_HEADERS
from .ssekeys import CUSTOMER_PREFIX, Keyring, ObjectKey

ALGORITHM_ANSWER = CUSTOMER_PREFIX + "algorithm"
# A single PUT: S3's limit, and RGW's default rgw_max_put_size.
MAX_PUT_BYTES = 5 * 1024**3

# What a PUT of the same bytes must carry to leave the object as it was: what a self-copy
# carries (attach.py), its representation headers and its user metadata (x-amz-meta-*,
# s3shim's checksum record among them), but SSE-S3/KMS: the PUT is SSE-C.
_CARRIED = CARRIED_HEADERS - SSE_HEADERS
# What HEAD answers but a PUT cannot set (or must not: the store sets it again itself).
NOT_CARRIED = (
    "the owner (the rewritten object is the store key's user's)",
    "Last-Modified and, for a multipart object, its ETag and part layout",
    "object lock retention and legal hold",
    "older versions in a versioned bucket (they stay as they were)",
)


class State(enum.Enum):
    CURRENT = "current"  # under the current key: nothing to do
    OLDER = "older"  # under an older master key
    PLAIN = "plain"  # stored unencrypted
    UNKNOWN_KEY = "unknown-key"  # encrypted under a key s3shim does not hold
    GONE = "gone"  # deleted since it was listed


class Outcome(enum.Enum):
    """What the run did with one object; the summary counts these."""

    CURRENT = "current"  # already under the current key (skipped)
    REENCRYPTED = "reencrypted"  # read and written again under the current key
    WOULD_REENCRYPT = "would-reencrypt"  # --dry-run
    GONE = "gone"  # deleted since listed (nothing to do)
    UNKNOWN_KEY = "unknown-key"  # left alone: under a key not in the keys file
    MISMATCHED = "mismatched"  # left alone: its bytes do not match s3shim's record
    TOO_LARGE = "too-large"  # left alone: over a single PUT's 5 GiB
    NOT_CARRIED = "acl-not-carried"  # left alone: an ACL grant a PUT cannot carry
    CHANGED = "changed"  # left alone: overwritten during the run (412); run again
    FAILED = "failed"  # the store could not be read or written; run again

    @property
    def problem(self) -> bool:
        """Left as it was for a reason in the object itself: running again does not help."""
        return self in _PROBLEMS

    @property
    def retry(self) -> bool:
        """Left as it was for a passing reason: running again may help."""
        return self in (Outcome.CHANGED, Outcome.FAILED)


_PROBLEMS = frozenset(
    {Outcome.UNKNOWN_KEY, Outcome.MISMATCHED, Outcome.TOO_LARGE, Outcome.NOT_CARRIED}
)


def candidates(keyring: Keyring, bucket: str, key: str) -> tuple[ObjectKey | None, ...]:
    """The keys to try, in the proxy's order: the current one, each older one, none."""
    return keyring.read_attempts(bucket, key)


def read_head(
    tried: ObjectKey | None, status: int, headers: Mapping[str, str], current_id: str
) -> State | None:
    """The object's state from a HEAD with ``tried``, or None: try the next candidate.

    ``headers`` are the answer's, with lowercase names. A 400 is a wrong key (RGW: a bodiless
    400; the next candidate is tried, and none is left for a key s3shim does not hold).
    Raises ValueError for any other answer (the store's error, not the object's state).
    """
    if status == 404:
        return State.GONE
    if status == 400:
        return None
    if status != 200:
        raise ValueError(f"HEAD answered HTTP {status}")
    if ALGORITHM_ANSWER not in headers:
        return State.PLAIN
    if tried is None:  # an SSE-C object never answers a HEAD without its key
        raise ValueError("HEAD without a key named an SSE-C algorithm")
    return State.CURRENT if tried.master_id == current_id else State.OLDER


@dataclass(frozen=True, slots=True)
class Rewrite:
    """The GET and PUT that re-encrypt one object, from its HEAD."""

    read_key: ObjectKey | None  # the key it is stored under (None: plain)
    write_key: ObjectKey
    length: int
    etag: str  # unquoted, as RGW compares it
    carried: tuple[tuple[str, str], ...]  # the object's own headers, sent again
    tag_count: int
    record: str | None  # s3shim's checksum record, checked while the bytes stream
    content_md5: str | None  # a plain single-part object's ETag as Content-MD5

    def get_headers(self) -> list[tuple[str, str]]:
        # The bytes of the version the HEAD described, or 412 (a GET takes the RFC form).
        out = [("if-match", f'"{self.etag}"')]
        if self.read_key is not None:
            out += self.read_key.headers()
        return out

    def put_headers(
        self, tagging: str | None, grants: Sequence[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        # Replaced only if still the version read (RGW 16: the ETag unquoted, see above).
        out = [*self.carried, *self.write_key.headers(), ("if-match", self.etag)]
        if self.content_md5 is not None:
            out.append(("content-md5", self.content_md5))
        if tagging:
            out.append(("x-amz-tagging", tagging))
        out += grants
        out.append(("content-length", str(self.length)))
        return out


def carried_headers(headers: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The headers of a HEAD answer that a PUT of the same bytes sends again, as answered."""
    return tuple(
        (name.lower(), value)
        for name, value in headers
        if name.lower() in _CARRIED or name.lower().startswith("x-amz-meta-")
    )


def _md5_of_etag(etag: str) -> str | None:
    # A single-part object's ETag is its MD5 (32 hex digits); a multipart one's is not.
    if len(etag) != 32:
        return None
    try:
        return base64.b64encode(bytes.fromhex(etag)).decode()
    except ValueError:
        return None


def rewrite(
    state: State,
    read_key: ObjectKey | None,
    headers: Iterable[tuple[str, str]],
    write_key: ObjectKey,
) -> Rewrite | Outcome:
    """The rewrite of an object in ``state`` (OLDER or PLAIN) from its HEAD answer's
    ``headers``, or why it is left alone."""
    pairs = [(n.lower(), v) for n, v in headers]
    head = dict(pairs)
    try:
        length = int(head.get("content-length", ""))
    except ValueError:
        return Outcome.FAILED
    if length > MAX_PUT_BYTES:
        return Outcome.TOO_LARGE
    etag = head.get("etag", "").strip().removeprefix("W/").strip('"')
    if not etag:
        return Outcome.FAILED
    try:
        tag_count = int(head.get("x-amz-tagging-count", "0"))
    except ValueError:
        tag_count = 0
    record = head.get(RECORD_HEADER)
    return Rewrite(
        read_key=read_key,
        write_key=write_key,
        length=length,
        etag=etag,
        carried=carried_headers(pairs),
        tag_count=tag_count,
        record=record if record is not None and parse_record(record) is not None else None,
        # Only a plain object's: an encrypted object's ETag is not an MD5 on every store.
        content_md5=_md5_of_etag(etag) if state is State.PLAIN else None,
    )


# ------------------------------------------------------------------- tags and the ACL
def tagging_header(body: bytes) -> str:
    """A GetObjectTagging answer as the ``x-amz-tagging`` value of a PUT (URL-encoded);
    ValueError when it is not one."""
    tags: list[tuple[str, str]] = []
    current: dict[str, str] = {}
    leaves = xml_leaves(body, frozenset({"Key", "Value"}))
    for path, text in leaves:
        if path[-2:-1] == ("Tag",):
            current[path[-1]] = text
            if len(current) == 2:
                tags.append((current["Key"], current["Value"]))
                current = {}
    if current:
        raise ValueError("a tag without its key or value")
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in tags)


def grants(body: bytes) -> tuple[tuple[str, str], ...] | None:
    """A GetObjectAcl answer as the ``x-amz-grant-*`` headers that set exactly its grants, as
    a self-copy carries them (attach.py), or None when a grant cannot travel in a header.

    The owner's own FULL_CONTROL is sent too: the rewritten object is owned by the store
    key's user, who may not be the old owner, and the old owner keeps its grant.
    """
    try:
        return grant_headers(body)
    except ValueError:
        return None


# ------------------------------------------------------------------------ the run
class Watermark:
    """Where a stopped run resumes: the last listed key up to which every object was dealt
    with (an object that may succeed on a new run, CHANGED or FAILED, holds it back).

    Objects finish out of order (several at once); keys are listed in order, so the resume
    point is the key before the first one still open.
    """

    def __init__(self, start_after: str = "") -> None:
        self._keys: dict[int, str] = {}
        self._open: set[int] = set()
        self._next = 0  # the index of the next listed key
        self._low = 0  # every index below it is finished for good
        self._resume = start_after

    def listed(self, key: str) -> int:
        index = self._next
        self._next += 1
        self._keys[index] = key
        self._open.add(index)
        return index

    def finished(self, index: int, outcome: Outcome) -> None:
        if outcome.retry:
            return  # stays open: a resumed run must see it again
        self._open.discard(index)
        while self._low < self._next and self._low not in self._open:
            self._resume = self._keys.pop(self._low)
            self._low += 1

    @property
    def listed_count(self) -> int:
        return self._next

    @property
    def resume_after(self) -> str:
        """Everything up to this key (inclusive) is done; "" when nothing is."""
        return self._resume


@dataclass(slots=True)
class Summary:
    counts: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    left: list[tuple[Outcome, str]] = field(default_factory=list)  # problems and retries, by key
    stopped: bool = False  # by --limit or a signal, before the end of the listing
    listing_error: str | None = None  # the listing failed part way

    def add(self, key: str, outcome: Outcome) -> None:
        self.counts[outcome] += 1
        if outcome.problem or outcome.retry:
            self.left.append((outcome, key))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def exit_status(self) -> int:
        """0 done; 1 objects left for a reason in them; 3 left for a passing one (the store
        or the listing failed, an object changed): run again; 4 stopped early: resume."""
        if self.stopped:
            return 4
        if any(o.problem for o, _ in self.left):
            return 1
        return 3 if self.left or self.listing_error is not None else 0

    def line(self) -> str:
        """The counts, those of the main outcomes always, the others when any."""
        shown = (Outcome.CURRENT, Outcome.REENCRYPTED)
        return " ".join(f"{o.value}={n}" for o, n in self.counts.items() if n or o in shown)
