"""Inbound SigV4 verification: header auth and presigned (query) auth. Pure, no I/O.

s3shim holds the store's keys, so every request must prove it was signed with a client key
s3shim knows before anything is forwarded. Both forms end in the same :class:`AuthContext`,
which the body readers use to check the payload hash and chain chunk signatures.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from . import errors, sigv4

MAX_SKEW = timedelta(minutes=15)
MAX_PRESIGN_EXPIRES = 7 * 24 * 3600
_AMZ_DATE = re.compile(r"^\d{8}T\d{6}Z$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SIGV4A = "AWS4-ECDSA-P256-SHA256"

# The client key table: access key -> secret, or None when the key is unknown.
SecretLookup = Callable[[str], str | None]
Headers = Mapping[str, Sequence[str]]  # lowercase name -> every value received


@dataclass(frozen=True, slots=True)
class AuthContext:
    """What a verified request proved, and what later readers need from it."""

    access_key: str
    presigned: bool
    amz_date: str
    scope: str
    signing_key: bytes
    signature: str  # the seed signature aws-chunked chunk signatures chain from
    payload_hash: str  # hex sha256, UNSIGNED-PAYLOAD or a STREAMING-* value
    signed_headers: tuple[str, ...]

    def __repr__(self) -> str:  # keys and signatures stay out of logs
        return f"AuthContext(access_key={self.access_key!r}, presigned={self.presigned})"


@dataclass(frozen=True, slots=True)
class _Credential:
    access_key: str
    date: str
    region: str
    service: str

    @property
    def scope(self) -> str:
        return sigv4.scope(self.date, self.region, self.service)


def _first(headers: Headers, name: str) -> str | None:
    values = headers.get(name)
    return values[0] if values else None


def _parse_credential(value: str, bad: Callable[[str], errors.S3Error]) -> _Credential:
    parts = value.split("/")
    # The access key itself never contains '/', so exactly five parts are expected.
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise bad(f"The credential '{value.split('/')[0]}/...' is malformed.")
    access_key, date, region, service, _ = parts
    if not access_key or not re.fullmatch(r"\d{8}", date) or not region:
        raise bad("The credential is malformed.")
    if service != sigv4.SERVICE:
        raise bad(f"The credential service '{service}' is wrong; expecting 's3'.")
    return _Credential(access_key, date, region, service)


def _parse_amz_date(value: str, bad: Callable[[str], errors.S3Error]) -> datetime:
    if not _AMZ_DATE.match(value):
        raise bad(f"Invalid date '{value}': expected yyyyMMddTHHmmssZ.")
    try:
        return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError as exc:
        raise bad(f"Invalid date '{value}'.") from exc


def _check_scope(
    cred: _Credential, amz_date: str, region: str, bad: Callable[[str], errors.S3Error]
) -> None:
    if cred.date != amz_date[:8]:
        raise bad("The credential date does not match the request date.")
    if cred.region != region:
        raise bad(f"The authorization region '{cred.region}' is wrong; expecting '{region}'.")


def _check_signed_headers(
    signed: tuple[str, ...], headers: Headers, bad: Callable[[str], errors.S3Error]
) -> None:
    if not signed or list(signed) != sorted(set(signed)) or "host" not in signed:
        raise bad("SignedHeaders must be sorted, lowercase, unique and include host.")
    missing = [h for h in signed if h not in headers]
    if missing:
        raise bad(f"Signed header(s) missing from the request: {', '.join(missing)}.")
    # An unsigned x-amz-* header could be changed in flight and s3shim would then vouch for
    # it with the store's key (think x-amz-copy-source), so every one must be signed. Stores
    # that map header names to CGI variables (RGW) read x_amz_copy_source as
    # x-amz-copy-source, so the underscore spelling counts as the same header.
    unsigned = [h for h in headers if h.replace("_", "-").startswith("x-amz-") and h not in signed]
    if unsigned:
        raise errors.access_denied(
            "There were headers present in the request which were not signed: "
            + ", ".join(sorted(unsigned))
        )


_STREAMING = frozenset(
    {
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD",
        "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER",
    }
)


def _check_payload_hash(value: str) -> None:
    """Only the values S3 defines: anything else must not quietly mean "unsigned"."""
    if value == sigv4.UNSIGNED_PAYLOAD or value in _STREAMING or _HEX64.match(value):
        return
    raise errors.invalid_argument(
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, a STREAMING-* value, "
        "or a valid sha256 value."
    )


def _authenticate(
    *,
    method: str,
    raw_path: str,
    query: Sequence[tuple[str, str]],
    headers: Headers,
    signed: tuple[str, ...],
    payload_hash: str,
    cred: _Credential,
    lookup: SecretLookup,
    amz_date: str,
    given: str,
    presigned: bool,
) -> AuthContext:
    """Recompute the signature with the client's secret; the one place both forms verify."""
    secret = lookup(cred.access_key)
    if secret is None:
        raise errors.invalid_access_key_id()
    canon = sigv4.canonical_request(
        method,
        sigv4.canonical_uri(raw_path),
        sigv4.canonical_query(query),
        headers,
        signed,
        payload_hash,
    )
    key = sigv4.signing_key(secret, cred.date, cred.region, cred.service)
    expected = sigv4.signature(key, sigv4.string_to_sign(amz_date, cred.scope, canon))
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise errors.signature_does_not_match()
    return AuthContext(
        access_key=cred.access_key,
        presigned=presigned,
        amz_date=amz_date,
        scope=cred.scope,
        signing_key=key,
        signature=given,
        payload_hash=payload_hash,
        signed_headers=signed,
    )


def _parse_authorization(value: str) -> tuple[str, dict[str, str]]:
    algorithm, _, rest = value.strip().partition(" ")
    fields: dict[str, str] = {}
    for item in rest.split(","):
        name, eq, val = item.strip().partition("=")
        if not eq:
            raise errors.authorization_header_malformed(
                "The authorization header is malformed; expecting Credential, SignedHeaders "
                "and Signature."
            )
        fields[name] = val.strip()
    return algorithm, fields


def verify_header_auth(
    *,
    method: str,
    raw_path: str,
    query: Sequence[tuple[str, str]],
    headers: Headers,
    lookup: SecretLookup,
    region: str,
    now: datetime,
) -> AuthContext:
    bad = errors.authorization_header_malformed
    authz = _first(headers, "authorization") or ""
    algorithm, fields = _parse_authorization(authz)
    if algorithm == _SIGV4A:
        raise errors.not_implemented("SigV4a (AWS4-ECDSA-P256-SHA256) is not supported.")
    if algorithm != sigv4.ALGORITHM:
        raise errors.invalid_request(
            "The authorization mechanism you have provided is not supported. "
            "Please use AWS4-HMAC-SHA256."
        )
    if not {"Credential", "SignedHeaders", "Signature"} <= fields.keys():
        raise bad(
            "The authorization header is malformed; expecting Credential, SignedHeaders "
            "and Signature."
        )
    cred = _parse_credential(fields["Credential"], bad)
    signed = tuple(fields["SignedHeaders"].split(";"))
    given = fields["Signature"]
    if not _HEX64.match(given):
        raise bad("The signature is malformed.")
    amz_date = _first(headers, "x-amz-date")
    if amz_date is None:
        raise errors.access_denied("AWS authentication requires a valid x-amz-date header.")
    when = _parse_amz_date(amz_date, bad)
    _check_scope(cred, amz_date, region, bad)
    payload_hash = _first(headers, "x-amz-content-sha256")
    if payload_hash is None:
        raise errors.invalid_request(
            "Missing required header for this request: x-amz-content-sha256"
        )
    _check_payload_hash(payload_hash)
    _check_signed_headers(signed, headers, bad)
    ctx = _authenticate(
        method=method,
        raw_path=raw_path,
        query=query,
        headers=headers,
        signed=signed,
        payload_hash=payload_hash,
        cred=cred,
        lookup=lookup,
        amz_date=amz_date,
        given=given,
        presigned=False,
    )
    # Skew is checked after the signature so an attacker learns nothing about keys from it,
    # and before anything is forwarded, so a captured request cannot be replayed later.
    if abs(now - when) > MAX_SKEW:
        raise errors.request_time_too_skewed()
    return ctx


def verify_presigned(
    *,
    method: str,
    raw_path: str,
    query: Sequence[tuple[str, str]],
    headers: Headers,
    lookup: SecretLookup,
    region: str,
    now: datetime,
) -> AuthContext:
    bad = errors.authorization_query_malformed
    params: dict[str, str] = {}
    for name, value in query:
        if name.startswith("X-Amz-"):
            if name in params:
                raise bad(f"Query parameter {name} appears more than once.")
            params[name] = value
    required = (
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
    )
    missing = [p for p in required if p not in params]
    if missing:
        raise bad(f"Query-string authentication requires {', '.join(missing)}.")
    if params["X-Amz-Algorithm"] == _SIGV4A:
        raise errors.not_implemented("SigV4a (AWS4-ECDSA-P256-SHA256) is not supported.")
    if params["X-Amz-Algorithm"] != sigv4.ALGORITHM:
        raise bad('X-Amz-Algorithm only supports "AWS4-HMAC-SHA256".')
    cred = _parse_credential(params["X-Amz-Credential"], bad)
    amz_date = params["X-Amz-Date"]
    when = _parse_amz_date(amz_date, bad)
    _check_scope(cred, amz_date, region, bad)
    expires_raw = params["X-Amz-Expires"]
    if not (expires_raw.isascii() and expires_raw.isdigit()):
        raise bad("X-Amz-Expires should be a number.")
    expires = int(expires_raw)
    if not 1 <= expires <= MAX_PRESIGN_EXPIRES:
        raise bad("X-Amz-Expires must be between 1 and 604800 seconds.")
    given = params["X-Amz-Signature"]
    if not _HEX64.match(given):
        raise bad("X-Amz-Signature is malformed.")
    signed = tuple(params["X-Amz-SignedHeaders"].split(";"))
    _check_signed_headers(signed, headers, bad)
    payload_hash = sigv4.UNSIGNED_PAYLOAD
    if "x-amz-content-sha256" in signed:
        payload_hash = _first(headers, "x-amz-content-sha256") or sigv4.UNSIGNED_PAYLOAD
        _check_payload_hash(payload_hash)
    ctx = _authenticate(
        method=method,
        raw_path=raw_path,
        query=[(k, v) for k, v in query if k != "X-Amz-Signature"],
        headers=headers,
        signed=signed,
        payload_hash=payload_hash,
        cred=cred,
        lookup=lookup,
        amz_date=amz_date,
        given=given,
        presigned=True,
    )
    if now > when + timedelta(seconds=expires):
        raise errors.request_expired()
    if when - now > MAX_SKEW:
        raise errors.access_denied("Request is not valid yet")
    return ctx


def verify(
    *,
    method: str,
    raw_path: str,
    query: Sequence[tuple[str, str]],
    headers: Headers,
    lookup: SecretLookup,
    region: str,
    now: datetime,
) -> AuthContext:
    """Verify whichever auth form the request uses; anonymous requests are refused."""
    has_header = "authorization" in headers
    has_query = any(k in ("X-Amz-Signature", "X-Amz-Credential") for k, _ in query)
    if has_header and has_query:
        raise errors.invalid_argument("Only one auth mechanism allowed.")
    if has_header:
        return verify_header_auth(
            method=method,
            raw_path=raw_path,
            query=query,
            headers=headers,
            lookup=lookup,
            region=region,
            now=now,
        )
    if has_query:
        return verify_presigned(
            method=method,
            raw_path=raw_path,
            query=query,
            headers=headers,
            lookup=lookup,
            region=region,
            now=now,
        )
    if any(k == "AWSAccessKeyId" for k, _ in query):
        raise errors.invalid_request(
            "SigV2 presigned URLs are not supported. Please use AWS4-HMAC-SHA256 "
            "(boto3: Config(signature_version='s3v4'))."
        )
    # s3shim never forwards anonymous requests: the store would see them signed by s3shim.
    raise errors.access_denied("Anonymous requests are not accepted.")
