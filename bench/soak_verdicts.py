"""The soak's verdicts: what one write or read through s3shim means, from its answer and what
the store holds afterwards (bench/soak.py's docstring lists the classes)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

CLASSES = (
    "IDENTICAL",
    "ABSENT",
    "READ-OK",
    "READ-CUT",
    "LOST",
    "CORRUPT",
    "HALF-STORED",
    "WRONG-STATUS",
    "ERROR",
)
DEFECTS = ("LOST", "CORRUPT", "HALF-STORED")
# Worst first: an operation with several findings is reported by its worst one (and a read
# that was cut by its fault is reported as cut even when the other reads were fine).
RANK = {
    c: i
    for i, c in enumerate(
        (
            "LOST",
            "CORRUPT",
            "HALF-STORED",
            "WRONG-STATUS",
            "ERROR",
            "READ-CUT",
            "ABSENT",
            "READ-OK",
            "IDENTICAL",
        )
    )
}
FINDINGS = (*DEFECTS, "WRONG-STATUS", "ERROR")


@dataclass(frozen=True)
class Digest:
    size: int
    sha256: str
    encoding: str | None = None  # the stored Content-Encoding

    @classmethod
    def of(cls, data: bytes, encoding: str | None = None) -> Digest:
        return cls(len(data), hashlib.sha256(data).hexdigest(), encoding)

    def same_bytes(self, other: Digest | None) -> bool:
        return other is not None and (self.size, self.sha256) == (other.size, other.sha256)


@dataclass(frozen=True)
class Expect:
    """What an operation's fault allows: store it, refuse it (with this status and code),
    or either (an interrupted request: acknowledged and stored, or not and absent).

    ``good``: the client sent the request whole and unspoiled (no fault, a slow client or
    store, s3shim restarted under it). Stored, such a request is what its client asked for,
    never HALF-STORED; but s3shim carried it out, so it owed the client its answer.
    """

    mode: str  # store | refuse | either
    status: int = 0
    codes: frozenset[str] = frozenset()
    good: bool = False


def expectation(fault: str, variant: str = "") -> Expect:
    if fault in ("none", "slow_client", "slow_store"):
        return Expect("store", good=True)
    if fault == "wrong_checksum":
        return Expect("refuse", 400, frozenset({"BadDigest"}))
    if fault == "wrong_sha256":
        return Expect("refuse", 400, frozenset({"XAmzContentSHA256Mismatch"}))
    if fault == "forged_signature":
        code = "InvalidAccessKeyId" if variant == "unknown-key" else "SignatureDoesNotMatch"
        return Expect("refuse", 403, frozenset({code}))
    if fault == "sigterm":
        return Expect("either", good=True)
    return Expect("either")  # client_cut, store_reset: part of the request never got there


# A multipart upload's object is made by its CompleteMultipartUpload alone, always a good
# request (a faulty part is uploaded again cleanly first).
COMPLETE = Expect("store", good=True)


def classify_write(
    expect: Expect,
    status: int,
    code: str | None,
    found: Digest | None,
    new: Digest,
    old: Digest | None,
    disturbed: bool = False,
) -> tuple[str, str]:
    """(class, detail) of one write, from the answer and what the store holds afterwards.

    ``old`` is the good version the key held before (overwrites), ``disturbed`` says that
    s3shim was restarted while the operation ran (then a refusal of a good request is no
    wrong status: the client saw a connection error).
    """
    acked = 200 <= status < 300
    if found is not None and new.same_bytes(found):
        if found.encoding and "aws-chunked" in found.encoding.lower():
            return "CORRUPT", f"stored with Content-Encoding {found.encoding!r}"
        if not acked and expect.good:
            # Disturbed or not: s3shim carried the request out, so the client was owed 2xx.
            return "WRONG-STATUS", f"stored, but answered {status} {code or ''}".rstrip()
        if not acked:
            return "HALF-STORED", f"answered {status} {code or ''} but the new object is stored"
        data_class = "IDENTICAL"
    elif found is None:
        if acked:
            return "LOST", f"answered {status} but the store has no object"
        if old is not None:
            return "LOST", "the earlier acknowledged version vanished"
        data_class = "ABSENT"
    elif old is not None and old.same_bytes(found):
        if acked:
            return "LOST", f"answered {status} but the store kept the earlier version"
        data_class = "ABSENT"
    else:
        return "CORRUPT", (
            f"stored {found.size} B sha256 {found.sha256[:16]}, sent {new.size} B "
            f"sha256 {new.sha256[:16]}"
        )
    if expect.mode == "store" and not acked and not (disturbed and status in (0, 502, 503)):
        return "WRONG-STATUS", f"a good request answered {status} {code or ''}"
    if expect.mode == "refuse":
        wanted = f"{expect.status} {'/'.join(sorted(expect.codes))}"
        if acked:
            return "WRONG-STATUS", f"accepted ({status}) what must be refused with {wanted}"
        right = status == expect.status and code in expect.codes
        if not right and not (disturbed and status in (0, 502, 503)):
            return "WRONG-STATUS", f"answered {status} {code or ''}, expected {wanted}"
    return data_class, ""


def classify_read(
    *,
    expected_status: int,
    expected_range: str | None,
    expected: bytes,
    status: int,
    content_range: str | None,
    body: bytes | None,
    faulted: bool,
) -> tuple[str, str]:
    """(class, detail) of one read through s3shim; ``body`` None = the read was cut."""
    if body is None:
        if faulted:
            return "READ-CUT", ""
        return "WRONG-STATUS", f"read cut without an injected fault (status {status})"
    if status != expected_status:
        if faulted and status >= 500:
            return "READ-CUT", ""
        return "WRONG-STATUS", f"read answered {status}, expected {expected_status}"
    if body != expected:
        return "CORRUPT", f"read {len(body)} B, expected {len(expected)} B, bytes differ"
    if expected_range is not None and content_range != expected_range:
        return "WRONG-STATUS", f"Content-Range {content_range!r}, expected {expected_range!r}"
    return "READ-OK", ""


def judge_leftover(
    cls: str | None,
    found: Digest,
    new: Digest | None,
    old: Digest | None,
    *,
    seen: bool,
    good: bool,
) -> tuple[str, str]:
    """An object still there at the end of the run, after its operation (class ``cls``)
    had checked and removed its key: what it means, by its bytes.

    ``seen``: that check found these new bytes (and removed them). ``good``: they are a good
    request's (Expect.good; every multipart upload's, made by its Complete).
    """
    if cls is None:
        return "ERROR", "an object no operation wrote"
    if cls == "ERROR":
        return "ERROR", "left by an operation that failed"
    if new is not None and new.same_bytes(found):
        if seen:
            return "HALF-STORED", "the object came back after it was checked and removed"
        if good:
            # Absent when checked, after a failed answer: committed once the client had
            # heard it failed. What the client asked for, yet not what it was told.
            return "WRONG-STATUS", "a good request was committed after its failed answer"
        return "HALF-STORED", "the refused or cut object was committed after its check"
    if old is not None and old.same_bytes(found):
        return "ERROR", "the earlier version was not removed (a harness fault)"
    return "CORRUPT", f"{found.size} B of other bytes present at the end"


def worst(a: tuple[str, str], b: tuple[str, str]) -> tuple[str, str]:
    return a if RANK[a[0]] <= RANK[b[0]] else b
