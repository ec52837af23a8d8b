"""Recording a checksum after the store committed: the decisions, pure.

A record normally travels with the upload as a request header (integrity.py). Two kinds of
object only get their checksum once the store holds them: a multipart upload (the parts come
on different connections, maybe through different s3shim processes; the whole-object CRC is
combined from the parts' CRCs, which CompleteMultipartUpload lists, and their sizes, which
ListParts gives) and a streamed PutObject whose checksum came last, in an aws-chunked trailer.
Their record is attached afterwards by copying the object onto itself with the record added
to its metadata: conditional on the ETag the upload produced, so it never lands on another
writer's newer object, and carrying every header, metadata value and grant the object had.

Only stores measured to do that copy in place are asked to: Ceph RGW (identified by its
``x-rgw-object-type`` header) rewrites only the head object, keeps the ETag (``…-N`` too) and
honours the precondition, under its own header name ``x-amz-copy-if-match`` (RGW 16 ignores
AWS's ``x-amz-copy-source-if-match``; both are sent). moto (as AWS) gives a multipart object a
new ETag on a self-copy and ignores the precondition; rclone ignores it too: there the object
stays unrecorded, as before. So do objects in a versioning-enabled bucket (a copy would add a
version), tagged objects (RGW 16 drops the tags of a self-copy, whatever the directive),
SSE-C and appendable objects, and any upload whose derivation is not exact. An
unrecorded object is read as before; a wrong record would refuse good data, so every doubt
leaves the object unrecorded.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from xml.parsers import expat

from . import errors
from .checksums import COMBINABLE, HEADER_PREFIX, Algorithm, algorithm_from_header, combine
from .complete_xml import part_checksums
from .integrity import RECORD_HEADER, encode_record

MAX_PARTS_PAGE = 1000  # ListParts' own maximum per page
MAX_XML_ANSWER = 4 * 1024 * 1024  # a ListParts page of 1000 parts is ~250 KB
STORE_FINGERPRINT = "x-rgw-object-type"  # RGW's, on every HEAD/GET of an object


class Outcome(enum.Enum):
    """What became of one attempt to record an object (the metric's label)."""

    RECORDED = "recorded"
    NO_PART_CHECKSUMS = "no_part_checksums"  # a Complete that lists none (or not for all)
    UNCOMBINABLE = "uncombinable"  # SHA checksums, or two algorithms in one upload
    PARTS_UNKNOWN = "parts_unknown"  # ListParts did not give every completed part
    DISAGREES = "disagrees"  # the client's whole-object checksum is another value
    NOT_COMMITTED = "not_committed"  # the store did not answer 200 (or no ETag)
    VERSIONED = "versioned"  # a copy would add a version
    CHANGED = "changed"  # the object is no longer the one uploaded
    STORE = "store"  # the store is not known to copy in place, keeping the ETag
    UNCOPYABLE = "uncopyable"  # SSE-C, appendable, object lock: a copy would change it
    FAILED = "failed"  # the store could not be asked, or refused


class Skip(Exception):
    """The object stays unrecorded, for :attr:`outcome`."""

    def __init__(self, outcome: Outcome, detail: str = "") -> None:
        super().__init__(outcome.value + (": " + detail if detail else ""))
        self.outcome = outcome


# ---------------------------------------------------------------- multipart: the derivation


@dataclass(frozen=True, slots=True)
class PartClaims:
    """The parts a CompleteMultipartUpload names, each with the CRC the client listed."""

    algorithm: Algorithm
    checksums: tuple[tuple[int, str], ...]  # (part number, base64), ascending


def part_claims(complete_body: bytes) -> PartClaims:
    """Every part's checksum, all of one combinable algorithm, or :class:`Skip`."""
    try:
        parts = part_checksums(complete_body)
    except errors.S3Error:
        raise Skip(Outcome.NO_PART_CHECKSUMS, "the store will refuse this XML") from None
    if not parts or any(not sums for sums in parts.values()):
        raise Skip(Outcome.NO_PART_CHECKSUMS)
    algorithms = {alg for sums in parts.values() for alg in sums}
    if len(algorithms) != 1 or not algorithms <= COMBINABLE:
        raise Skip(Outcome.UNCOMBINABLE, ",".join(sorted(a.name for a in algorithms)))
    (alg,) = algorithms
    return PartClaims(alg, tuple((n, sums[alg]) for n, sums in parts.items()))


@dataclass(frozen=True, slots=True)
class StoredPart:
    size: int
    etag: str  # as the store lists it, quotes removed


@dataclass(frozen=True, slots=True)
class PartsPage:
    parts: dict[int, StoredPart]
    next_marker: int | None  # None: this was the last page


def list_parts_query(upload_id: str, marker: int) -> tuple[tuple[str, str], ...]:
    query = [("uploadId", upload_id), ("max-parts", str(MAX_PARTS_PAGE))]
    if marker:
        query.append(("part-number-marker", str(marker)))
    return tuple(query)


def xml_leaves(body: bytes, wanted: frozenset[str]) -> list[tuple[tuple[str, ...], str]]:
    """(element path, text) of every leaf named in ``wanted`` of a store's XML answer (up to
    MAX_XML_ANSWER; no DTDs, no entities); ValueError when it is not one."""
    if len(body) > MAX_XML_ANSWER:
        raise ValueError("answer too large")
    out: list[tuple[tuple[str, ...], str]] = []
    path: list[str] = []
    text: list[str] = []
    parser = expat.ParserCreate()

    def refuse(*_: object) -> None:
        raise ValueError("a DTD or entity in a store answer")

    def start(name: str, _attrs: object) -> None:
        path.append(name.rpartition(":")[2])
        text.clear()

    def end(_name: str) -> None:
        if path[-1] in wanted:
            out.append((tuple(path), "".join(text)))
        path.pop()
        text.clear()

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text.append
    try:
        parser.Parse(body, True)
    except expat.ExpatError as exc:
        raise ValueError(str(exc)) from None
    return out


def parse_list_parts(body: bytes) -> PartsPage:
    """One ListParts page; ValueError when it is not one."""
    leaves = xml_leaves(
        body,
        frozenset({"PartNumber", "Size", "ETag", "IsTruncated", "NextPartNumberMarker"}),
    )
    # moto names the root ListPartsResponse.
    if not leaves or leaves[0][0][0] not in ("ListPartsResult", "ListPartsResponse"):
        raise ValueError("not a ListPartsResult")
    parts: dict[int, StoredPart] = {}
    current: dict[str, str] = {}
    truncated, marker = False, None
    for path, value in leaves:
        if len(path) == 3 and path[1] == "Part":
            current[path[2]] = value.strip()
            if {"PartNumber", "Size", "ETag"} <= current.keys():
                number, size = current["PartNumber"], current["Size"]
                if not (number.isdigit() and size.isdigit()):
                    raise ValueError("a part number or size that is not a number")
                parts[int(number)] = StoredPart(int(size), current["ETag"].strip('"'))
                current = {}
        elif path == ("ListPartsResult", "IsTruncated"):
            truncated = value.strip().lower() == "true"
        elif path == ("ListPartsResult", "NextPartNumberMarker") and value.strip().isdigit():
            marker = int(value.strip())
    if current:
        raise ValueError("a part without its number, size or ETag")
    if truncated and (marker is None or not parts or marker < max(parts)):
        raise ValueError("a truncated page that names no next marker past its parts")
    return PartsPage(parts, marker if truncated else None)


_MD5_HEX = re.compile(r"[0-9a-f]{32}")


def multipart_etag(etags: Sequence[str]) -> str:
    """S3's ETag of a completed upload (RGW's too): MD5 of the parts' MD5s, ``-N``, quoted."""
    digest = hashlib.md5(usedforsecurity=False)
    for etag in etags:
        if not _MD5_HEX.fullmatch(etag):
            raise ValueError("a part ETag that is not an MD5")
        digest.update(bytes.fromhex(etag))
    return f'"{digest.hexdigest()}-{len(etags)}"'


@dataclass(frozen=True, slots=True)
class Pending:
    """A record waiting for the store to commit, and the object it belongs to."""

    record: str  # x-amz-meta-s3shim-checksum's value
    etag: str | None  # the ETag the object must have (quoted); None: the store's answer says


@dataclass(frozen=True, slots=True)
class SeenPart:
    """An UploadPart this process verified: the ETag the store gave it and its checksum."""

    etag: str  # quotes removed
    algorithm: Algorithm
    b64: str


def derive(
    claims: PartClaims,
    stored: Mapping[int, StoredPart],
    request_headers: Mapping[str, str] | None = None,
    seen: Mapping[int, SeenPart] | None = None,
) -> Pending:
    """The whole object's record from the listed part CRCs and the stored part sizes.

    ``request_headers`` (lowercase names) are the Complete request's: a whole-object
    checksum the client sent there must be the derived one, else nothing is recorded.
    ``seen``: the parts of this upload that went through this process. The Complete lists
    the client's word for each part's CRC; where s3shim verified the part the store holds
    (the same ETag), the word must be what s3shim verified.
    """
    pieces, etags = [], []
    for number, b64 in claims.checksums:
        part = stored.get(number)
        if part is None:
            raise Skip(Outcome.PARTS_UNKNOWN, f"part {number}")
        mine = (seen or {}).get(number)
        if (
            mine is not None
            and mine.etag == part.etag
            and (mine.algorithm, mine.b64) != (claims.algorithm, b64)
        ):
            raise Skip(Outcome.DISAGREES, f"part {number}")
        pieces.append((b64, part.size))
        etags.append(part.etag)
    value = combine(claims.algorithm, pieces)
    for name, claimed in (request_headers or {}).items():
        alg = algorithm_from_header(name) if name.startswith(HEADER_PREFIX) else None
        if alg is not None and (alg is not claims.algorithm or claimed.strip() != value):
            raise Skip(Outcome.DISAGREES, alg.name)
    try:
        etag = multipart_etag(etags)
    except ValueError as exc:
        raise Skip(Outcome.STORE, str(exc)) from None
    return Pending(encode_record(claims.algorithm, value), etag)


def streamed_put(alg: Algorithm, b64: str) -> Pending:
    """A streamed PutObject's record, verified over its bytes: bound to the ETag it gets."""
    return Pending(encode_record(alg, b64), None)


# ------------------------------------------------------------------- the store's answer


def committed(pending: Pending, status: int, headers: Mapping[str, str]) -> Pending:
    """The upload's answer (lowercase header names): the record bound to the object's ETag.

    Only a 200 counts. A version id other than ``null`` means versioning is on, where a copy
    would add a version (and make the client's version id no longer the latest).
    """
    if status != 200:
        raise Skip(Outcome.NOT_COMMITTED, str(status))
    version = headers.get("x-amz-version-id")
    if version is not None and version != "null":
        raise Skip(Outcome.VERSIONED)
    if pending.etag is not None:
        return pending
    etag = headers.get("etag")
    if not etag:
        raise Skip(Outcome.NOT_COMMITTED, "no ETag")
    return Pending(pending.record, etag)


# ------------------------------------------------------------------------ the self-copy

# What HEAD shows of an object that CopyObject with REPLACE sets again from headers. (Grants
# are not shown by HEAD: they come from GetObjectAcl.)
CARRIED_HEADERS = frozenset(
    {
        "content-type",
        "content-encoding",
        "content-disposition",
        "content-language",
        "cache-control",
        "expires",
        "x-amz-website-redirect-location",
        "x-amz-storage-class",
        "x-amz-server-side-encryption",
        "x-amz-server-side-encryption-aws-kms-key-id",
        "x-amz-server-side-encryption-bucket-key-enabled",
    }
)
# Object state a self-copy would lose or cannot carry.
_UNCOPYABLE = (
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-object-lock-mode",
    "x-amz-object-lock-legal-hold",
    "x-amz-restore",
)
TAG_COUNT_HEADER = "x-amz-tagging-count"


@dataclass(frozen=True, slots=True)
class Current:
    """The object as HEAD shows it, once found fit for the copy."""

    headers: tuple[tuple[str, str], ...]  # carried over, as the store sent them


def check_current(pending: Pending, head: Iterable[tuple[str, str]]) -> Current | None:
    """Whether to copy: the object is the uploaded one, untouched and fit for an in-place copy.

    None: it already carries this very record (nothing to do). Skip otherwise.
    """
    headers = [(n.lower(), v) for n, v in head]
    names = {n: v for n, v in headers}
    if names.get(STORE_FINGERPRINT, "").lower() != "normal":
        if STORE_FINGERPRINT in names:  # RGW's appendable objects
            raise Skip(Outcome.UNCOPYABLE, STORE_FINGERPRINT)
        raise Skip(Outcome.STORE)
    if names.get("etag") != pending.etag:
        raise Skip(Outcome.CHANGED, "another ETag")
    if any(n in names for n in _UNCOPYABLE):
        raise Skip(Outcome.UNCOPYABLE)
    if RECORD_HEADER in names:
        if names[RECORD_HEADER] == pending.record:
            return None
        raise Skip(Outcome.CHANGED, "another record")
    if names.get(TAG_COUNT_HEADER, "0").strip() not in ("", "0"):
        # RGW 16 drops an object's tags on a self-copy, whatever the tagging directive
        # (measured: COPY, and REPLACE with x-amz-tagging, both leave none).
        raise Skip(Outcome.UNCOPYABLE, "tagged")
    carried = tuple(
        (n, v) for n, v in headers if n in CARRIED_HEADERS or n.startswith("x-amz-meta-")
    )
    return Current(carried)


_GRANT_HEADERS = {
    "READ": "x-amz-grant-read",
    "WRITE": "x-amz-grant-write",
    "READ_ACP": "x-amz-grant-read-acp",
    "WRITE_ACP": "x-amz-grant-write-acp",
    "FULL_CONTROL": "x-amz-grant-full-control",
}
_GRANTEE_KEYS = {"ID": "id", "URI": "uri", "EmailAddress": "emailAddress"}


def grant_headers(acl_body: bytes) -> tuple[tuple[str, str], ...]:
    """GetObjectAcl's grants as the ``x-amz-grant-*`` headers that set exactly them (RGW
    gives a copy a private ACL otherwise: a public-read object would stop being public)."""
    leaves = xml_leaves(
        acl_body, frozenset({"ID", "URI", "EmailAddress", "Permission", "DisplayName"})
    )
    if not leaves or leaves[0][0][0] != "AccessControlPolicy":
        raise ValueError("not an AccessControlPolicy")
    grants: dict[str, list[str]] = {}
    grantee: str | None = None
    for path, value in leaves:
        if path[1:2] != ("AccessControlList",):
            continue
        if path[-1] in _GRANTEE_KEYS and path[-2] == "Grantee":
            if '"' in value or "," in value:
                raise ValueError("a grantee that a header cannot carry")
            grantee = f'{_GRANTEE_KEYS[path[-1]]}="{value.strip()}"'
        elif path[-1] == "Permission":
            header = _GRANT_HEADERS.get(value.strip())
            if header is None or grantee is None:
                raise ValueError("a grant without a grantee, or of an unknown permission")
            grants.setdefault(header, []).append(grantee)
            grantee = None
    return tuple((h, ", ".join(g)) for h, g in sorted(grants.items()))


def copy_headers(
    copy_source: str,
    pending: Pending,
    current: Current,
    grants: Sequence[tuple[str, str]],
) -> tuple[tuple[str, str], ...]:
    """The self-copy's headers: the object's own, the record added, conditional on its ETag.

    ``copy_source`` is the object's store path, encoded as sent (``/bucket/key``).
    """
    assert pending.etag is not None
    return (
        ("x-amz-copy-source", copy_source),
        ("x-amz-metadata-directive", "REPLACE"),
        ("x-amz-copy-source-if-match", pending.etag),
        ("x-amz-copy-if-match", pending.etag),  # the name RGW reads
        *current.headers,
        (RECORD_HEADER, pending.record),
        *grants,
    )


def copied(pending: Pending, status: int, body: bytes) -> None:
    """The copy's answer: a CopyObjectResult with the same ETag, or :class:`Skip`.

    A CopyObject may answer 200 with an error in its body. 412: the object changed.
    """
    if status == 412:
        raise Skip(Outcome.CHANGED, "precondition failed")
    if status != 200:
        raise Skip(Outcome.FAILED, f"copy answered {status}")
    try:
        leaves = xml_leaves(body, frozenset({"ETag", "Code"}))
    except ValueError as exc:
        raise Skip(Outcome.FAILED, str(exc)) from None
    if not leaves or leaves[0][0][0] != "CopyObjectResult":
        raise Skip(Outcome.FAILED, "no CopyObjectResult")
    etag = next((v.strip() for p, v in leaves if p == ("CopyObjectResult", "ETag")), "")
    assert pending.etag is not None
    if etag.strip('"') != pending.etag.strip('"'):
        raise Skip(Outcome.CHANGED, "the copy has another ETag")


# ------------------------------------------------------------- which uploads are followed up


def streamed_put_record(
    record_checksums: bool,
    signed: bool,
    sent_headers: Iterable[tuple[str, str]],
    algorithm: Algorithm | None,
    computed: str | None,
) -> Pending | None:
    """A PutObject streamed without a record (its checksum came last, in a trailer) gets
    the one s3shim verified over its bytes, once the store committed it."""
    if not (record_checksums and signed and algorithm is not None and computed):
        return None
    if any(n.lower() == RECORD_HEADER for n, _ in sent_headers):
        return None  # recorded with the upload itself
    return streamed_put(algorithm, computed)


def verified_part(
    query: Iterable[tuple[str, str]], status: int, etag: str | None
) -> tuple[str, int, str] | None:
    """An UploadPart the store took: (upload id, part number, ETag), or None."""
    params = dict(query)
    number = params.get("partNumber", "")
    if status != 200 or not etag or not number.isdigit() or not params.get("uploadId"):
        return None
    return params["uploadId"], int(number), etag
