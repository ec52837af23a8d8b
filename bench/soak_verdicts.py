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
    or either (an interrupted request: acknowledged and stored, or not and absent)."""

    mode: str  # store | refuse | either
    status: int = 0
    codes: frozenset[str] = frozenset()


def expectation(fault: str, variant: str = "") -> Expect:
    if fault in ("none", "slow_client", "slow_store"):
        return Expect("store")
    if fault == "wrong_checksum":
        return Expect("refuse", 400, frozenset({"BadDigest"}))
    if fault == "wrong_sha256":
        return Expect("refuse", 400, frozenset({"XAmzContentSHA256Mismatch"}))
    if fault == "forged_signature":
        code = "InvalidAccessKeyId" if variant == "unknown-key" else "SignatureDoesNotMatch"
        return Expect("refuse", 403, frozenset({code}))
    return Expect("either")  # client_cut, store_reset, sigterm


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
    cls: str | None, found: Digest, new: Digest | None, old: Digest | None
) -> tuple[str, str]:
    """An object still there at the end of the run, after its operation (class ``cls``)
    had checked and removed its key: what it means, by its bytes."""
    if cls is None:
        return "ERROR", "an object no operation wrote"
    if cls == "ERROR":
        return "ERROR", "left by an operation that failed"
    if new is not None and new.same_bytes(found):
        if cls == "IDENTICAL":
            return "HALF-STORED", "the object came back after it was checked and removed"
        return "HALF-STORED", "the refused or cut object was committed after its check"
    if old is not None and old.same_bytes(found):
        return "ERROR", "the earlier version was not removed (a harness fault)"
    return "CORRUPT", f"{found.size} B of other bytes present at the end"


def worst(a: tuple[str, str], b: tuple[str, str]) -> tuple[str, str]:
    return a if RANK[a[0]] <= RANK[b[0]] else b
