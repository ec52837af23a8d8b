"""The rewrite policy: every header s3shim drops or adds, in one table. Pure.

A reader looking for "where does header X go" finds it here and nowhere else:
``REQUEST_DROPS`` names what each flag removes for each operation, ``TRANSPORT_DROPS`` what
s3shim always replaces because it re-signs and re-frames the request, and
``RESPONSE_DROPS`` what never goes back to the client.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .checksums import HEADER_PREFIX, SDK_ALGORITHM_HEADER, SETTING_HEADERS, TRAILER_HEADER
from .integrity import RECORD_HEADER

if TYPE_CHECKING:
    from .config import Config
    from .ssekeys import Keyring


class Group(enum.Enum):
    SSE = "sse"  # SSE-S3 / SSE-KMS: the store encrypts with a key it manages
    CHECKSUM = "checksum"  # flexible checksums (CRC32, CRC32C, CRC64NVME, SHA1, SHA256)


SSE_HEADERS = frozenset(
    {
        "x-amz-server-side-encryption",
        "x-amz-server-side-encryption-aws-kms-key-id",
        "x-amz-server-side-encryption-context",
        "x-amz-server-side-encryption-bucket-key-enabled",
    }
)
# SSE-C (x-amz-server-side-encryption-customer-*, and the x-amz-copy-source-... twins) is
# deliberately absent: the client supplies its own key and believes the object is encrypted
# with it. Dropping it would store plaintext, so SSE-C always reaches the store, which either
# honours it or refuses the request (RGW over plain http answers InvalidRequest).

CHECKSUM_HEADERS = SETTING_HEADERS | {SDK_ALGORITHM_HEADER, TRAILER_HEADER}
CHECKSUM_PREFIX = HEADER_PREFIX  # x-amz-checksum-crc32, -crc32c, -crc64nvme, -sha1, ...

# Each flag drops its group on *every* operation, not only those S3 documents it for
# (SSE: PutObject, CopyObject, CreateMultipartUpload; checksums: also UploadPart, Complete,
# GetObject/HeadObject's x-amz-checksum-mode): a stray AWS-only header is refused by the
# store wherever it appears, and a per-operation list would only add ways to miss one.

# Replaced by s3shim on every forwarded request: auth (re-signed), framing (re-computed),
# hop-by-hop (RFC 9110 section 7.6.1), and the Host (fixed by config; no SSRF).
TRANSPORT_DROPS = frozenset(
    {
        "authorization",
        "x-amz-date",
        "x-amz-content-sha256",
        "x-amz-security-token",
        "x-amz-decoded-content-length",
        "host",
        "content-length",
        "transfer-encoding",
        "expect",
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        # The client's claims about addresses: a store configured to trust them (RGW's
        # rgw_remote_addr_param) would let a client choose its own aws:SourceIp.
        "forwarded",
        "x-real-ip",
    }
)
TRANSPORT_DROP_PREFIXES = ("x-forwarded-",)
# Names only s3shim writes: a client must never plant a checksum record (see integrity.py).
RESERVED_HEADERS = frozenset({RECORD_HEADER})
SERVER_NAME = "s3shim"  # sent instead of the store's banner (and never aiohttp's)
REQUEST_ID_HEADER = "x-amz-request-id"
RESPONSE_DROPS = (
    frozenset(
        {
            "connection",
            "keep-alive",
            "proxy-authenticate",
            "transfer-encoding",
            "te",
            "trailer",
            "upgrade",
            "server",
            "date",
        }
    )
    | RESERVED_HEADERS
)


@dataclass(frozen=True, slots=True)
class Policy:
    """The settings every per-request decision reads: the one holder of the flags."""

    disable_sse: bool
    disable_checksums: bool
    # Forward requests that carry no auth at all, unsigned (the store's ACLs decide).
    allow_anonymous: bool = True
    # Verify SigV2 (header and query) and re-sign it as SigV4; off: refuse it.
    allow_sigv2: bool = True
    # Store s3shim's checksum with each object it verified (integrity.py), and check full
    # reads against it.
    record_checksums: bool = False
    verify_reads: bool = False
    # Client keys that sign as themselves at the store (identity mapping): a preflight of
    # their presigned URL may carry the URL's own parameters, which the store reads to find
    # the bucket's tenant (plan.plan).
    identity_keys: frozenset[str] = frozenset()
    # Master keys: SSE-S3 kept as SSE-C (sse.py); with sse_default, every write encrypted.
    keyring: Keyring | None = None
    sse_default: bool = False

    @classmethod
    def of(cls, config: Config) -> Policy:
        """The policy a configuration asks for; tri-state settings resolved here, once."""
        auto = config.disable_checksums  # what the integrity settings follow by default
        return cls(
            config.disable_sse,
            config.disable_checksums,
            allow_anonymous=config.allow_anonymous,
            allow_sigv2=config.allow_sigv2,
            record_checksums=auto if config.record_checksums is None else config.record_checksums,
            verify_reads=auto if config.verify_reads is None else config.verify_reads,
            identity_keys=frozenset(
                key for key, entry in config.clients.items() if entry.upstream == entry.client
            ),
            keyring=config.sse_keyring,
            sse_default=config.sse_default,
        )

    def is_dropped(self, name: str) -> Group | None:
        """Why a (lowercase) client header is dropped, or None when it is forwarded."""
        if self.disable_sse and name in SSE_HEADERS:
            return Group.SSE
        if self.disable_checksums and (
            name in CHECKSUM_HEADERS or name.startswith(CHECKSUM_PREFIX)
        ):
            return Group.CHECKSUM
        return None


# Headers that describe an aws-chunked body. s3shim decodes and verifies the framing and
# sends the store the plain payload, so they would describe a body the store never sees.
FRAMING_HEADERS = frozenset({TRAILER_HEADER, SDK_ALGORITHM_HEADER})


def forward_headers(
    headers: Iterable[tuple[str, str]], policy: Policy, *, decoded_aws_chunked: bool = False
) -> tuple[list[tuple[str, str]], frozenset[Group]]:
    """The client headers the store gets, and which flag groups dropped something."""
    out: list[tuple[str, str]] = []
    dropped: set[Group] = set()
    for name, value in headers:
        lname = name.lower()
        if lname in TRANSPORT_DROPS or lname.startswith(TRANSPORT_DROP_PREFIXES):
            continue
        if lname in RESERVED_HEADERS:
            continue
        if "_" in lname:
            # Stores that map names to CGI variables (RGW) read x_amz_acl as x-amz-acl: an
            # underscore name could smuggle in a header nobody signed. Dropped, like nginx.
            continue
        group = policy.is_dropped(lname)
        if group is not None:
            dropped.add(group)
            continue
        if decoded_aws_chunked:
            if lname in FRAMING_HEADERS:
                continue
            if lname == "content-encoding":
                kept = content_encoding_without_aws_chunked(value)
                if kept is None:
                    continue
                value = kept
        out.append((lname, value))
    return out, frozenset(dropped)


def content_encoding_without_aws_chunked(value: str) -> str | None:
    """``aws-chunked,gzip`` -> ``gzip``; only ``aws-chunked`` -> None (drop the header)."""
    codings = (c.strip() for c in value.split(","))
    kept = [c for c in codings if c and c.lower() != "aws-chunked"]
    return ",".join(kept) or None


def with_aws_chunked_encoding(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Mark a body s3shim re-framed itself: ``aws-chunked`` first, other codings kept."""
    others = [v for n, v in headers if n == "content-encoding"]
    rest = [(n, v) for n, v in headers if n != "content-encoding"]
    return [*rest, ("content-encoding", ",".join(["aws-chunked", *others]))]
