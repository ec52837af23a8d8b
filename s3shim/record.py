"""What one request did: the record behind its log line and its metrics. Pure.

The record holds what the request path learnt as values of the project's own types (the
operation, how it was authenticated, the body's framing, the rewrite groups that applied);
:meth:`RequestRecord.log_fields` turns them into the log line's strings, once, and the
metrics take their labels from that line.
"""

from __future__ import annotations

import enum
import itertools
import os
from dataclasses import dataclass
from typing import Any

from .auth import AuthContext
from .chunked import Framing
from .classify import Op
from .postpolicy import AuthKind
from .rewrite import Group


class Auth(enum.Enum):
    """How a request was authenticated, or why it was forwarded with no credentials."""

    SIGV4 = "sigv4"
    PRESIGNED = "presigned"
    SIGV2 = "sigv2"
    SIGV2_PRESIGNED = "sigv2-presigned"
    ANONYMOUS = "anonymous"
    PREFLIGHT = "preflight"
    FORM_SIGV4 = "form-sigv4"
    FORM_SIGV2 = "form-sigv2"
    FORM_ANONYMOUS = "form-anonymous"

    @staticmethod
    def of(ctx: AuthContext) -> Auth:
        return _VERIFIED[ctx.scheme, ctx.presigned]

    @staticmethod
    def of_form(kind: AuthKind) -> Auth:
        return _FORM[kind]


_VERIFIED = {
    ("sigv4", False): Auth.SIGV4,
    ("sigv4", True): Auth.PRESIGNED,
    ("sigv2", False): Auth.SIGV2,
    ("sigv2", True): Auth.SIGV2_PRESIGNED,
}
_FORM = {
    AuthKind.SIGV4: Auth.FORM_SIGV4,
    AuthKind.SIGV2: Auth.FORM_SIGV2,
    AuthKind.ANONYMOUS: Auth.FORM_ANONYMOUS,
}


class _RequestIds:
    """16 upper-case hex digits, as S3 request ids look: a random half drawn once per
    process (again in a forked worker) and a counter. Ids must be unique, not unguessable;
    drawing 8 random bytes from the kernel per request cost a syscall every time."""

    def __init__(self) -> None:
        self._prefix = ""
        self._counter = itertools.count()
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self._prefix = os.urandom(4).hex().upper()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFF:08X}"


new_request_id = _RequestIds()


@dataclass(slots=True)
class RequestRecord:
    """What one request did, filled in as it goes; None: not reached (left out of the line)."""

    request_id: str
    method: str
    op: Op | None = None  # None: not classified (logged as Unknown)
    bucket: str | None = None
    key: str | None = None  # logged only with an integrity failure on a read
    auth: Auth | None = None
    access_key: str | None = None
    framing: Framing | None = None
    rewrites: frozenset[Group] | None = None
    status: int | None = None
    error: str | None = None
    error_message: str | None = None
    auth_failure: str | None = None
    integrity_failure: str | None = None
    upstream_status: int | None = None
    upstream_request_id: str | None = None
    upstream_error: str | None = None
    stream_error: str | None = None
    exc_type: str | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    duration_ms: float = 0.0

    def log_fields(self) -> dict[str, Any]:
        """The log line: every field reached, enums as their names in S3's vocabulary."""
        out: dict[str, Any] = {
            "request_id": self.request_id,
            "method": self.method,
            "op": self.op.value if self.op is not None else "Unknown",
        }
        if self.bucket is not None:
            out["bucket"] = self.bucket
        if self.key is not None:
            out["key"] = self.key
        if self.auth is not None:
            out["auth"] = self.auth.value
        if self.access_key is not None:
            out["access_key"] = self.access_key
        if self.framing is not None:
            out["framing"] = self.framing.value
        if self.rewrites is not None:
            out["rewrites"] = sorted([g.value for g in self.rewrites])
        for name in _PLAIN_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


# Logged as they are, after the fields above (the line's order is the record's).
_PLAIN_FIELDS = (
    "status",
    "error",
    "error_message",
    "auth_failure",
    "integrity_failure",
    "upstream_status",
    "upstream_request_id",
    "upstream_error",
    "stream_error",
    "exc_type",
    "bytes_in",
    "bytes_out",
    "duration_ms",
)
