"""Inbound SigV4 verification: header auth and presigned (query) auth. Pure, no I/O.

s3shim holds the store's keys, so every request must prove it was signed with a client key
s3shim knows before anything is forwarded. Both forms end in the same :class:`AuthContext`,
which the body readers use to check the payload hash and chain chunk signatures.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from . import chunked, errors, sigv2, sigv4

MAX_SKEW = timedelta(minutes=15)
MAX_PRESIGN_EXPIRES = 7 * 24 * 3600
# ASCII digits only (``\d`` would also match other scripts' digits, which int() accepts) and
# fullmatch everywhere (``$`` would let a trailing newline through).
_AMZ_DATE = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_CRED_DATE = re.compile(r"[0-9]{8}")
_SIGV4A = "AWS4-ECDSA-P256-SHA256"

# Query parameters that mark a request as signed: SigV4 presigned, then SigV2 presigned.
# X-Amz-Algorithm counts too: S3 names it as the marker of query auth ("only the
# X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization
# header should be specified").
_V4_QUERY_MARKERS = frozenset({"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature"})
_V2_QUERY_MARKERS = frozenset({"AWSAccessKeyId", "Signature"})
# Headers whose value feeds the verification itself: with two of them the canonical request
# would join them with ',' while the checks read one, so the two could disagree.
_SINGLE_HEADERS = ("x-amz-date", "x-amz-content-sha256")
_ONE_MECHANISM = "Only one auth mechanism allowed."

# The client key table: access key -> secret, or None when the key is unknown.
SecretLookup = Callable[[str], str | None]
Headers = Mapping[str, Sequence[str]]  # lowercase name -> every value received


@dataclass(frozen=True, slots=True)
class AuthContext:
    """What a verified request proved, and what later readers need from it."""

    access_key: str
    presigned: bool
    amz_date: str
    region: str  # the credential scope's region, which the signing key was derived for
    scope: str  # aws-chunked chunk and trailer signatures chain from this same scope
    signing_key: bytes
    signature: str  # the seed signature aws-chunked chunk signatures chain from
    payload_hash: str  # hex sha256, UNSIGNED-PAYLOAD or a STREAMING-* value
    signed_headers: tuple[str, ...]
    scheme: str = "sigv4"  # or "sigv2" (see from_sigv2)

    def __repr__(self) -> str:  # keys and signatures stay out of logs
        return f"AuthContext(access_key={self.access_key!r}, presigned={self.presigned})"

    @property
    def kind(self) -> str:
        """For logs: sigv4, presigned, sigv2 or sigv2-presigned."""
        if self.scheme == "sigv4":
            return "presigned" if self.presigned else "sigv4"
        return self.scheme + ("-presigned" if self.presigned else "")


def from_sigv2(v2: sigv2.V2Context, headers: Headers) -> AuthContext:
    """The context of a verified SigV2 request.

    SigV2 signs no payload hash: the body is unsigned (as with UNSIGNED-PAYLOAD), bound to the
    signature only through a Content-MD5 the store checks. A hex ``x-amz-content-sha256`` is
    an amz header SigV2 did cover, so it stays a promise s3shim checks; a STREAMING value
    would need a SigV4 seed signature to chain from, which SigV2 has not.
    """
    payload_hash = _first(headers, "x-amz-content-sha256") or sigv4.UNSIGNED_PAYLOAD
    if payload_hash != sigv4.UNSIGNED_PAYLOAD and not sigv4.is_hex64(payload_hash):
        raise errors.invalid_request(
            "aws-chunked bodies need AWS4-HMAC-SHA256 (SigV4); SigV2 cannot sign their chunks."
        )
    return AuthContext(
        access_key=v2.access_key,
        presigned=v2.form == "query",
        amz_date="",
        region="",
        scope="",
        signing_key=b"",
        signature="",
        payload_hash=payload_hash,
        # SigV2 canonicalises values its own way: forward them exactly as received.
        signed_headers=(),
        scheme="sigv2",
    )


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


# A client sends the same credential scope all day and the same x-amz-date for a second:
# each is parsed once (only a parse that succeeds is kept; a refusal raises every time).
@lru_cache(maxsize=256)
def _parse_credential(value: str, bad: Callable[[str], errors.S3Error]) -> _Credential:
    parts = value.split("/")
    # The access key itself never contains '/', so exactly five parts are expected.
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise bad(f"The credential '{value.split('/')[0]}/...' is malformed.")
    access_key, date, region, service, _ = parts
    if not access_key or not _CRED_DATE.fullmatch(date) or not region:
        raise bad("The credential is malformed.")
    if service != sigv4.SERVICE:
        raise bad(f"The credential service '{service}' is wrong; expecting 's3'.")
    return _Credential(access_key, date, region, service)


@lru_cache(maxsize=256)
def _parse_amz_date(value: str, bad: Callable[[str], errors.S3Error]) -> datetime:
    # strptime cost a quarter of presigned verification in a profile. The regex has fixed
    # the shape (ASCII digits at fixed places), so int() of each slice cannot fail, and
    # datetime() refuses what strptime refused: month 13, hour 24, second 60, Feb 30, year 0.
    if not _AMZ_DATE.fullmatch(value):
        raise bad(f"Invalid date '{value}': expected yyyyMMddTHHmmssZ.")
    try:
        return datetime(
            int(value[0:4]),
            int(value[4:6]),
            int(value[6:8]),
            int(value[9:11]),
            int(value[11:13]),
            int(value[13:15]),
            tzinfo=UTC,
        )
    except ValueError as exc:
        raise bad(f"Invalid date '{value}'.") from exc


def _expecting(regions: frozenset[str]) -> str:
    return " or ".join(f"'{r}'" for r in sorted(regions))


def _check_scope(
    cred: _Credential,
    amz_date: str,
    regions: frozenset[str] | None,
    bad: Callable[[str], errors.S3Error],
    wrong_region: str,
) -> None:
    if cred.date != amz_date[:8]:
        raise bad("The credential date does not match the request date.")
    # The region is an input of the signing key, so verifying with the scope's own region
    # proves as much as verifying with ours: any region is accepted unless a list is set.
    if regions and cred.region not in regions:
        raise bad(
            f"{wrong_region} the region '{cred.region}' is wrong; expecting {_expecting(regions)}"
        )


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


def _check_payload_hash(value: str) -> None:
    """Only the values S3 defines: anything else must not quietly mean "unsigned"."""
    if value == sigv4.UNSIGNED_PAYLOAD or value in chunked.STREAMING_VALUES:
        return
    if sigv4.HEX64.fullmatch(value):
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
        region=cred.region,
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
        # A repeated field would let two readers of the same header (s3shim and whatever
        # logs or audits it) disagree about which credential signed the request.
        if name in fields:
            raise errors.authorization_header_malformed(
                f"The authorization header is malformed; {name} is given more than once."
            )
        fields[name] = val.strip()
    return algorithm, fields


def _allowed_regions(regions: frozenset[str] | None, region: str | None) -> frozenset[str] | None:
    """The ``regions`` argument, or the deprecated single ``region`` as a one-element set."""
    if isinstance(regions, str):
        # `"us" in "us-east-1"` is a substring test: a bare string must never stand for a set.
        raise TypeError("regions must be a frozenset of region names, not a str")
    if region is None:
        return regions
    if regions is not None:
        raise TypeError("pass regions= or the deprecated region=, not both")
    return frozenset({region})


def _check_single_headers(headers: Headers) -> None:
    for name in _SINGLE_HEADERS:
        if len(headers.get(name, ())) > 1:
            raise errors.invalid_argument(f"Only one {name} header is allowed.")


def verify_header_auth(
    *,
    method: str,
    raw_path: str,
    query: Sequence[tuple[str, str]],
    headers: Headers,
    lookup: SecretLookup,
    regions: frozenset[str] | None = None,
    now: datetime,
) -> AuthContext:
    """Header (Authorization) auth; ``regions`` None or empty accepts any scope region."""
    allowed = _allowed_regions(regions, None)
    bad = errors.authorization_header_malformed
    values = headers.get("authorization", ())
    if len(values) > 1:
        # Which one would count? Proxies and stores differ (first, last, joined): refuse.
        raise errors.invalid_argument(_ONE_MECHANISM)
    _check_single_headers(headers)
    authz = values[0] if values else ""
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
    if not sigv4.HEX64.fullmatch(given):
        raise bad("The signature is malformed.")
    amz_date = _first(headers, "x-amz-date")
    if amz_date is None:
        raise errors.access_denied("AWS authentication requires a valid x-amz-date header.")
    when = _parse_amz_date(amz_date, bad)
    _check_scope(cred, amz_date, allowed, bad, "The authorization header is malformed;")
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
    regions: frozenset[str] | None = None,
    now: datetime,
) -> AuthContext:
    """Query (presigned URL) auth; ``regions`` None or empty accepts any scope region."""
    allowed = _allowed_regions(regions, None)
    bad = errors.authorization_query_malformed
    _check_single_headers(headers)
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
    _check_scope(cred, amz_date, allowed, bad, "Error parsing the X-Amz-Credential parameter;")
    expires_raw = params["X-Amz-Expires"]
    if not (expires_raw.isascii() and expires_raw.isdigit()):
        raise bad("X-Amz-Expires should be a number.")
    expires = int(expires_raw)
    if not 1 <= expires <= MAX_PRESIGN_EXPIRES:
        raise bad("X-Amz-Expires must be between 1 and 604800 seconds.")
    given = params["X-Amz-Signature"]
    if not sigv4.HEX64.fullmatch(given):
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


def is_anonymous(query: Iterable[tuple[str, str]], headers: Headers) -> bool:
    """True when the request tries no auth mechanism at all (header, SigV4 or SigV2 query).

    Anything that looks like an attempt (even an empty Authorization header, or a lone
    X-Amz-Algorithm) is not anonymous: it must go through :func:`verify` and fail there
    rather than reach the store unsigned.
    """
    if "authorization" in headers:
        return False
    return not any(k in _V4_QUERY_MARKERS or k in _V2_QUERY_MARKERS for k, _ in query)


def verify(
    *,
    method: str,
    raw_path: str,
    query: Sequence[tuple[str, str]],
    headers: Headers,
    lookup: SecretLookup,
    regions: frozenset[str] | None = None,
    region: str | None = None,
    now: datetime,
) -> AuthContext:
    """Verify whichever auth form the request uses; anonymous requests are refused.

    ``regions``: the credential-scope regions accepted; None or empty accepts any (the
    region only feeds the signing key, so any region proves the same). ``region`` is a
    deprecated alias meaning ``regions=frozenset({region})``; giving both is a TypeError.
    """
    allowed = _allowed_regions(regions, region)
    has_header = "authorization" in headers
    names = {k for k, _ in query}
    has_v4_query = not names.isdisjoint(_V4_QUERY_MARKERS)
    has_v2_query = not names.isdisjoint(_V2_QUERY_MARKERS)
    if has_header + has_v4_query + has_v2_query > 1:
        raise errors.invalid_argument(_ONE_MECHANISM)
    if has_header:
        return verify_header_auth(
            method=method,
            raw_path=raw_path,
            query=query,
            headers=headers,
            lookup=lookup,
            regions=allowed,
            now=now,
        )
    if has_v4_query:
        return verify_presigned(
            method=method,
            raw_path=raw_path,
            query=query,
            headers=headers,
            lookup=lookup,
            regions=allowed,
            now=now,
        )
    if has_v2_query:
        raise errors.invalid_request(
            "SigV2 presigned URLs are not supported. Please use AWS4-HMAC-SHA256 "
            "(boto3: Config(signature_version='s3v4'))."
        )
    # s3shim never forwards anonymous requests: the store would see them signed by s3shim.
    raise errors.access_denied("Anonymous requests are not accepted.")
