"""The request head, parsed once: method, path, query and headers in one normalised shape. Pure.

Every later step (classify, authenticate, plan) reads this one record, so a header is
looked up the same way everywhere: lowercase name -> every value received, in order.
Headers whose value s3shim *verifies* must arrive once: verifying one value while the store
is sent another (or both, joined) would be a promise nobody checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from . import errors, sigv4
from .checksums import HEADER_PREFIX, SDK_ALGORITHM_HEADER, TRAILER_HEADER

Headers = Mapping[str, list[str]]  # lowercase name -> every value, in arrival order

CONTENT_LENGTH = "content-length"
DECODED_CONTENT_LENGTH = "x-amz-decoded-content-length"
CONTENT_SHA256 = "x-amz-content-sha256"
# Values s3shim checks the body against, or frames it by: one value each, or refused.
_VERIFIED = frozenset(
    {CONTENT_LENGTH, DECODED_CONTENT_LENGTH, CONTENT_SHA256, TRAILER_HEADER, SDK_ALGORITHM_HEADER}
)


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: str
    raw_path: str  # as sent, percent-encoding kept
    raw_query: str
    query: tuple[tuple[str, str], ...]  # decoded pairs, order kept
    headers: Headers
    has_body: bool  # the client announced a body (Content-Length > 0 or chunked)

    def first(self, name: str) -> str | None:
        values = self.headers.get(name)
        return values[0] if values else None

    @property
    def host(self) -> str:
        return self.first("host") or ""

    @property
    def expects_continue(self) -> bool:
        return (self.first("expect") or "").lower() == "100-continue"

    @property
    def trailers(self) -> frozenset[str]:
        """The trailing headers ``x-amz-trailer`` announces, lowercase."""
        raw = self.first(TRAILER_HEADER) or ""
        return frozenset(t.strip().lower() for t in raw.split(",") if t.strip())

    def single_values(self) -> dict[str, str]:
        """One value per header name, refusing a repeat of any header s3shim verifies."""
        out: dict[str, str] = {}
        for name, values in self.headers.items():
            if len(values) > 1 and (name in _VERIFIED or name.startswith(HEADER_PREFIX)):
                if name.startswith(HEADER_PREFIX):
                    raise errors.invalid_request(
                        "Expecting a single x-amz-checksum- header. "
                        "Multiple checksum Types are not allowed."
                    )
                raise errors.invalid_argument(f"The {name} header must be sent only once.")
            out[name] = values[0]
        return out


def parse_head(
    method: str, raw_target: str, header_items: Iterable[tuple[str, str]], has_body: bool
) -> RequestHead:
    raw_path, _, raw_query = raw_target.partition("?")
    headers: dict[str, list[str]] = {}
    for name, value in header_items:
        headers.setdefault(name.lower(), []).append(value)
    return RequestHead(
        method=method,
        raw_path=raw_path,
        raw_query=raw_query,
        query=tuple(sigv4.parse_query(raw_query)),
        headers=headers,
        has_body=has_body,
    )
