"""AWS Signature Version 2 for S3 ("Signing and authenticating REST requests"). Pure, no I/O.

Both forms S3 defines are verified here:

* header form: ``Authorization: AWS <AccessKeyId>:<Signature>``;
* query form: ``?AWSAccessKeyId=…&Expires=<epoch seconds>&Signature=…``;

with ``Signature = base64(HMAC-SHA1(secret, UTF-8(StringToSign)))`` and::

    StringToSign = VERB "\\n" Content-MD5 "\\n" Content-Type "\\n" Date "\\n"
                   CanonicalizedAmzHeaders CanonicalizedResource

The Date line is the ``Date`` header, or empty when ``x-amz-date`` is sent (which is then
signed among the amz headers); in the query form it is ``Expires`` as sent. The same code
builds the string for :func:`verify` and for the signer side (:func:`string_to_sign`,
:func:`sign`), so the two cannot drift; the tests cross-check both against botocore's
``HmacV1Auth`` / ``HmacV1QueryAuth`` byte for byte.

Canonicalisation, as S3 and botocore do it:

* CanonicalizedAmzHeaders: every ``x-amz-*`` header, name lowercased, sorted; repeated headers
  joined by ``,`` in arrival order; each value trimmed of spaces and tabs and any line fold
  (whitespace around a line break) replaced by one space; runs of spaces *inside* a value are
  kept, as botocore keeps them. In the query form, ``x-amz-*`` query parameters count as amz
  headers too: botocore's presigner moves every ``x-amz-*`` header it signed into the URL
  (RGW and s3rver read them back the same way).
* CanonicalizedResource: ``/<bucket>`` when the bucket came from the Host (the caller passes
  it), then the path exactly as sent (percent-encoding and case kept), then ``?`` and the
  sub-resources of :data:`SUBRESOURCES` sorted by name (stable), each ``name`` or
  ``name=value`` as sent, the value percent-decoded. Names are matched after decoding, so a
  store that decodes ``%61cl`` as ``acl`` cannot be handed an unsigned sub-resource.
  boto3 signs a path-style bucket request (``GET /bucket``) as ``/bucket/`` (its ``auth_path``),
  so for a path of one segment both spellings are tried; they name the same bucket.

WHAT A SIGV2 SIGNATURE DOES NOT COVER (the proxy must treat all of this as attacker-chosen:
a man in the middle can change it, and anyone holding a captured request can replay it with
other values, within 15 minutes for the header form and until ``Expires`` for the query form,
which SigV2 does not bound):

1. Query parameters other than the sub-resources in :data:`SUBRESOURCES`
   (:func:`uncovered_query` names them). That includes every listing parameter (``prefix``,
   ``marker``, ``max-keys``, ``delimiter``, ``encoding-type``, ``list-type``,
   ``continuation-token``, ``start-after``, ``fetch-owner``, ``key-marker``,
   ``version-id-marker``, ``upload-id-marker``, ``max-uploads``, ``max-parts``,
   ``part-number-marker``, ``x-id``), and every parameter that selects an operation but is
   not on the list (for example ``encryption``, ``publicAccessBlock``, ``ownershipControls``,
   ``policyStatus``, ``legal-hold``, ``retention``, ``attributes``, ``intelligent-tiering``):
   a signed ``GET /bucket/`` can be replayed as ``GET /bucket/?encryption``. In the header
   form ``x-amz-*`` query parameters are not covered either; in the query form they are (as
   amz headers), while ``content-type``/``content-md5`` query parameters (which botocore's
   presigner also writes) are not: the signed values are the *headers* of those names.
2. The body. Only the Content-MD5 header's value is signed, so the body is bound to the
   signature only when Content-MD5 is sent and someone checks the body against it. A signed
   ``x-amz-content-sha256`` is just a signed header value: nothing in SigV2 checks it.
3. The Host header. In path style it is not signed at all; in virtual-hosted style only the
   bucket name taken from it is (through the resource), not the rest of the host.
4. Every header other than Content-MD5, Content-Type, Date and ``x-amz-*``: Content-Length,
   Content-Encoding, Content-Disposition, Content-Language, Cache-Control, Expires (the
   header), Range, If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since,
   Transfer-Encoding, Expect, Origin and the rest. Range and the conditionals change what a
   GET returns; the Content-*/Cache-Control/Expires headers of a PUT become stored metadata.
   ``x-amz-*`` spelt with underscores (``x_amz_acl``, which RGW reads as ``x-amz-acl``) is
   not an amz header to SigV2, so :func:`verify` refuses it like the SigV4 verifier does.
   When ``x-amz-date`` is sent the Date header is not covered (the Date line is empty).
   In the query form, Date and ``x-amz-date`` never date the request; only Expires does.
5. The scheme, port and HTTP version. Only the method and the raw path are.

Because of 1, s3shim forwards a SigV2 request's query only when every parameter in it is on
an allow-list (:func:`refused_query`): the sub-resources SigV2 signs, and the listing and
paging parameters of :data:`READ_PARAMS`, which only shape a read the signature allowed; in
the query form also its own auth parameters, the ``content-type``/``content-md5`` presigners
write, and the ``x-amz-*`` parameters it signs. Anything else may select an operation on
some store (RGW runs ``?usage``, ``?mdsearch``, ``?append&position=``, and stores query
``x-amz-meta-*`` as object metadata), so it is refused, whatever the name.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Literal

from . import errors, sigv4

# Header form only: a captured request is refused this long after (or before) its date.
MAX_SKEW = timedelta(minutes=15)

# botocore's HmacV1Auth.QSAOfInterest exactly (botocore 1.44): the only query parameters a
# SigV2 client signs. It is a superset of the list in S3's documentation (which adds
# accelerate, analytics, defaultObjectAcl, inventory, metrics, object-lock, replication,
# select, select-type, storageClass); a parameter on botocore's list but not on S3's would
# make a botocore signature fail, never pass, so matching botocore is the safe choice.
SUBRESOURCES = frozenset(
    {
        "accelerate",
        "acl",
        "analytics",
        "cors",
        "defaultObjectAcl",
        "delete",
        "inventory",
        "lifecycle",
        "location",
        "logging",
        "metrics",
        "notification",
        "object-lock",
        "partNumber",
        "policy",
        "replication",
        "requestPayment",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "response-content-language",
        "response-content-type",
        "response-expires",
        "restore",
        "select",
        "select-type",
        "storageClass",
        "tagging",
        "torrent",
        "uploadId",
        "uploads",
        "versionId",
        "versioning",
        "versions",
        "website",
    }
)

# Parameters that only shape a read the signature allowed: listing and paging (S3's
# ListObjects/V2, ListObjectVersions, ListMultipartUploads, ListParts), and botocore's and
# the JS SDK's ``x-id`` operation hint, which S3 and RGW 16 ignore. A replay can change
# which keys a listing returns, never which operation runs or what is stored.
READ_PARAMS = frozenset(
    {
        "continuation-token",
        "delimiter",
        "encoding-type",
        "fetch-owner",
        "key-marker",
        "list-type",
        "marker",
        "max-keys",
        "max-parts",
        "max-uploads",
        "part-number-marker",
        "prefix",
        "start-after",
        "upload-id-marker",
        "version-id-marker",
        "x-id",
    }
)

AUTH_PARAMS = ("AWSAccessKeyId", "Expires", "Signature")
# Also written by SigV2 presigners beside the auth parameters; the signed values are the
# headers of those names, and s3shim never forwards these parameters to the store.
PRESIGN_PARAMS = frozenset({*AUTH_PARAMS, "content-type", "content-md5"})
_V4_PARAMS = frozenset({"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature"})
_AMZ = "x-amz-"
_FOLD = re.compile(r"[ \t]*\r?\n[ \t]*")
_EXPIRES = re.compile(r"[0-9]{1,19}")
_SINGLE = ("authorization", "content-md5", "content-type", "date", "x-amz-date")

# The client key table: access key -> secret, or None when the key is unknown (the same shape
# as auth.SecretLookup; not imported, so auth can dispatch to this module without a cycle).
SecretLookup = Callable[[str], str | None]
Headers = Mapping[str, Sequence[str]]  # lowercase name -> every value received
Form = Literal["header", "query"]

# S3's own messages for these refusals.
_ONE_MECHANISM = (
    "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature "
    "query string parameter or the Authorization header should be specified"
)
_ONE_SPACE = "Authorization header is invalid -- one and only one ' ' (space) required"
_KEY_COLON_SIG = "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature"
_NO_DATE = "AWS authentication requires a valid Date or x-amz-date header"
_QUERY_PARAMS = (
    "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters"
)


@dataclass(frozen=True, slots=True)
class V2Context:
    """What a verified SigV2 request proved: exactly the pieces its signature covered."""

    access_key: str
    form: Form
    string_to_sign: str
    resource: str  # the CanonicalizedResource that verified (path as sent + sub-resources)
    subresources: tuple[tuple[str, str | None], ...]  # sorted; None = sent without '='
    amz_headers: tuple[tuple[str, str], ...]  # (lowercase name, canonical value), sorted
    content_md5: str  # "" when absent
    content_type: str  # "" when absent
    date_line: str  # Date header, "" beside x-amz-date, or Expires (query form)
    request_time: datetime | None  # header form: the date that was checked for skew
    expires: int | None  # query form: epoch seconds after which the URL is refused
    uncovered_query: tuple[str, ...]  # query parameter names the signature does not cover

    def __repr__(self) -> str:  # keep the string to sign (paths, metadata) out of logs
        return f"V2Context(access_key={self.access_key!r}, form={self.form!r})"


# -- parsing -------------------------------------------------------------------------------


def parse_raw_query(raw_query: str) -> list[tuple[str, str | None]]:
    """Decoded (name, value) pairs in order; value None when the part had no ``=``.

    SigV2 signs ``acl`` and ``acl=`` differently (botocore keeps what it sent), which
    :func:`sigv4.parse_query` cannot tell apart.
    """
    pairs: list[tuple[str, str | None]] = []
    for part in raw_query.split("&") if raw_query else ():
        if not part:
            continue
        name, eq, value = part.partition("=")
        pairs.append((sigv4.percent_decode(name), sigv4.percent_decode(value) if eq else None))
    return pairs


def _trim(value: str) -> str:
    return _FOLD.sub(" ", value).strip(" \t")


def _single(headers: Headers, name: str) -> str | None:
    values = headers.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise errors.invalid_argument(f"The {name} header must not be repeated.")
    return values[0]


def _lower(headers: Headers) -> dict[str, list[str]]:
    # The proxy already lowercases; the signer side is handed whatever a test or client built.
    out: dict[str, list[str]] = {}
    for name, values in headers.items():
        out.setdefault(name.lower(), []).extend(values)
    return out


def parse_date(value: str) -> datetime | None:
    """A Date / x-amz-date value: any RFC 2616 form (RFC 1123, RFC 850, asctime) or the ISO
    8601 basic form SigV4 clients use; None when it is none of them."""
    value = value.strip(" \t")
    try:
        when = datetime.strptime(value, "%Y%m%dT%H%M%SZ")
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (ValueError, TypeError, IndexError, OverflowError):
            return None
    # asctime and "-0000" carry no zone; HTTP dates are GMT by definition.
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


# -- canonicalisation ----------------------------------------------------------------------


def canonical_amz_headers(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """(name, value) pairs in arrival order -> the sorted canonical amz headers."""
    joined: dict[str, list[str]] = {}
    for name, value in pairs:
        lname = name.lower()
        if lname.startswith(_AMZ):
            joined.setdefault(lname, []).append(_trim(value))
    return tuple((name, ",".join(joined[name])) for name in sorted(joined))


def subresources(raw_query: str) -> tuple[tuple[str, str | None], ...]:
    found = [(n, v) for n, v in parse_raw_query(raw_query) if n in SUBRESOURCES]
    # A stable sort by name, as botocore's (repeated names keep their order).
    return tuple(sorted(found, key=lambda nv: nv[0]))


def canonical_resource(raw_path: str, raw_query: str, bucket_from_host: str | None = None) -> str:
    path = raw_path or "/"
    resource = f"/{bucket_from_host}{path}" if bucket_from_host else path
    return resource + _subresource_suffix(subresources(raw_query))


def _subresource_suffix(subs: Sequence[tuple[str, str | None]]) -> str:
    if not subs:
        return ""
    return "?" + "&".join(n if v is None else f"{n}={v}" for n, v in subs)


def _assemble(
    method: str,
    content_md5: str,
    content_type: str,
    date_line: str,
    amz: Sequence[tuple[str, str]],
    resource: str,
) -> str:
    amz_block = "".join(f"{n}:{v}\n" for n, v in amz)
    return f"{method}\n{content_md5}\n{content_type}\n{date_line}\n{amz_block}{resource}"


def _amz_pairs(headers: Headers, query_amz: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    pairs = [(n, v) for n, values in headers.items() for v in values if n.startswith(_AMZ)]
    return pairs + list(query_amz)


def _query_amz(raw_query: str) -> list[tuple[str, str]]:
    return [
        (n.lower(), v or "") for n, v in parse_raw_query(raw_query) if n.lower().startswith(_AMZ)
    ]


def string_to_sign(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Headers,
    *,
    expires: str | None = None,
    bucket_from_host: str | None = None,
) -> str:
    """The StringToSign of a request (the signer side; :func:`verify` uses the same pieces).

    ``expires`` given: the query form (Date line = Expires; ``x-amz-*`` query parameters are
    amz headers). Otherwise the header form (Date line = Date, or empty beside x-amz-date).
    ``raw_query`` is the request's query as sent; auth parameters in it are ignored.
    """
    hdrs = _lower(headers)
    md5 = _trim(_first(hdrs, "content-md5"))
    ctype = _trim(_first(hdrs, "content-type"))
    if expires is not None:
        date_line, query_amz = expires, _query_amz(raw_query)
    else:
        date_line = "" if "x-amz-date" in hdrs else _trim(_first(hdrs, "date"))
        query_amz = []
    amz = canonical_amz_headers(_amz_pairs(hdrs, query_amz))
    resource = canonical_resource(raw_path, raw_query, bucket_from_host)
    return _assemble(method, md5, ctype, date_line, amz, resource)


def _first(headers: Mapping[str, Sequence[str]], name: str) -> str:
    values = headers.get(name)
    return values[0] if values else ""


def sign(secret: str, to_sign: str) -> str:
    """base64(HMAC-SHA1(secret, UTF-8(to_sign))); bytes a client sent that are not UTF-8
    (kept as surrogate escapes by the HTTP layer) are signed as they arrived."""
    digest = hmac.new(
        secret.encode("utf-8"), to_sign.encode("utf-8", "surrogateescape"), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode("ascii")


# -- what the signature leaves out ---------------------------------------------------------


def uncovered_query(raw_query: str, form: Form = "header") -> list[str]:
    """Names (decoded, first-seen order, each once) of the query parameters a SigV2 signature
    of ``form`` does not cover. The query form's own auth parameters are not listed: the
    signature covers Expires, AWSAccessKeyId chose the key, and Signature is the signature."""
    out: list[str] = []
    for name, _ in parse_raw_query(raw_query):
        if name in SUBRESOURCES or name in out:
            continue
        if form == "query" and (name in AUTH_PARAMS or name.lower().startswith(_AMZ)):
            continue
        out.append(name)
    return out


def accepted_param(name: str, form: Form = "header") -> bool:
    """Whether s3shim forwards a query parameter (its decoded name, case kept) under a SigV2
    signature of ``form``: the allow-list of the module docstring."""
    if name in SUBRESOURCES or name in READ_PARAMS:
        return True
    # The query form signs x-amz-* parameters as amz headers, in any case (botocore
    # lowercases them); the store gets them as headers.
    return form == "query" and (name in PRESIGN_PARAMS or name.lower().startswith(_AMZ))


def refused_query(raw_query: str, form: Form = "header") -> list[str]:
    """Names (decoded, first-seen order, each once) of the query parameters s3shim refuses
    under a SigV2 signature of ``form`` (:func:`accepted_param`)."""
    out: list[str] = []
    for name, _ in parse_raw_query(raw_query):
        if name not in out and not accepted_param(name, form):
            out.append(name)
    return out


def check_query(raw_query: str, form: Form = "header") -> None:
    """Refuse (AccessDenied) a SigV2 request whose query holds anything off the allow-list:
    a captured request could be replayed with it, and s3shim would sign it for the store."""
    refused = refused_query(raw_query, form)
    if refused:
        # The name is attacker-chosen: escaped, and cut short, for the XML error body.
        shown = ascii(refused[0])[1:-1][:64]
        raise errors.access_denied(
            f"SigV2 does not sign the '{shown}' query parameter, and s3shim accepts only the "
            "sub-resources it signs and listing parameters with it; sign with AWS4-HMAC-SHA256."
        )


# -- verification --------------------------------------------------------------------------


def _scheme(headers: Headers) -> str | None:
    values = headers.get("authorization")
    if not values:
        return None
    return values[0].split(" ", 1)[0]


def is_sigv2(headers: Headers, raw_query: str) -> bool:
    """True when the request uses any SigV2 mechanism (``Authorization: AWS …``, or an
    ``AWSAccessKeyId``/``Signature`` query parameter). :func:`verify` then refuses a request
    that also carries another mechanism, with S3's error."""
    if _scheme(headers) == "AWS":
        return True
    return any(n in ("AWSAccessKeyId", "Signature") for n, _ in parse_raw_query(raw_query))


def _check_underscored(headers: Headers) -> None:
    # Not amz headers to SigV2, hence unsigned, yet RGW reads x_amz_acl as x-amz-acl.
    odd = sorted(n for n in headers if "_" in n and n.replace("_", "-").startswith(_AMZ))
    if odd:
        raise errors.access_denied(
            "There were headers present in the request which were not signed: " + ", ".join(odd)
        )


def verify(
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Headers,
    lookup: SecretLookup,
    now: datetime,
    bucket_from_host: str | None = None,
) -> V2Context:
    """Verify a SigV2 request (header or query form; see :func:`is_sigv2`).

    ``raw_path``/``raw_query`` as sent; ``headers`` lowercase name -> every value;
    ``bucket_from_host`` the bucket of a virtual-hosted request (None for path style).
    Refusals, in RGW's order: malformed pieces; the header form's date (AccessDenied when
    missing or unreadable, RequestTimeTooSkewed when more than :data:`MAX_SKEW` away);
    unknown key (InvalidAccessKeyId); signature (SignatureDoesNotMatch); then the query
    form's expiry (AccessDenied "Request has expired"), which tells nobody without the
    secret whether the URL was ever valid.
    """
    hdrs = _lower(headers)
    pairs = parse_raw_query(raw_query)
    names = [n for n, _ in pairs]
    scheme = _scheme(hdrs)
    v2_query = "AWSAccessKeyId" in names or "Signature" in names
    v4_query = any(n in _V4_PARAMS for n in names)
    if (scheme is not None and (v2_query or v4_query)) or (v2_query and v4_query):
        raise errors.invalid_argument(_ONE_MECHANISM)
    for name in _SINGLE:
        _single(hdrs, name)
    _check_underscored(hdrs)
    if scheme == "AWS":
        return _verify_header(method, raw_path, raw_query, hdrs, lookup, now, bucket_from_host)
    if v2_query:
        return _verify_query(method, raw_path, raw_query, hdrs, lookup, now, bucket_from_host)
    raise errors.access_denied("The request is not signed with AWS Signature Version 2.")


def _verify_header(
    method: str,
    raw_path: str,
    raw_query: str,
    hdrs: dict[str, list[str]],
    lookup: SecretLookup,
    now: datetime,
    bucket: str | None,
) -> V2Context:
    rest = hdrs["authorization"][0][len("AWS ") :]
    if " " in rest:
        raise errors.invalid_argument(_ONE_SPACE)
    access_key, colon, given = rest.partition(":")
    if not colon or not given or ":" in given:
        raise errors.invalid_argument(_KEY_COLON_SIG)
    # x-amz-date wins when sent, readable or not, as S3's example says.
    amz_date = _first(hdrs, "x-amz-date") if "x-amz-date" in hdrs else None
    when = parse_date(amz_date if amz_date is not None else _first(hdrs, "date"))
    # RGW reads a date before 1970 (as written) as no date at all.
    if when is None or when.year < 1970:
        raise errors.access_denied(_NO_DATE)
    # The clock before the key and the signature, as RGW does: a stale request is
    # refused whoever sent it, and tells nothing about keys.
    if abs(now - when) > MAX_SKEW:
        raise errors.request_time_too_skewed()
    date_line = "" if amz_date is not None else _trim(_first(hdrs, "date"))
    return _authenticate(
        form="header",
        method=method,
        raw_path=raw_path,
        raw_query=raw_query,
        hdrs=hdrs,
        query_amz=[],
        date_line=date_line,
        access_key=access_key,
        given=given,
        lookup=lookup,
        bucket=bucket,
        request_time=when,
        expires=None,
    )


def _verify_query(
    method: str,
    raw_path: str,
    raw_query: str,
    hdrs: dict[str, list[str]],
    lookup: SecretLookup,
    now: datetime,
    bucket: str | None,
) -> V2Context:
    params: dict[str, str] = {}
    for name, value in parse_raw_query(raw_query):
        if name in AUTH_PARAMS:
            if name in params:
                raise errors.invalid_argument(f"Query parameter {name} appears more than once.")
            params[name] = value or ""
    if any(p not in params for p in AUTH_PARAMS):
        raise errors.access_denied(_QUERY_PARAMS)
    raw_expires = params["Expires"]
    if not _EXPIRES.fullmatch(raw_expires):
        raise errors.access_denied(f"Invalid date (should be seconds since epoch): {raw_expires}")
    query_amz = _query_amz(raw_query)
    both = sorted({n for n, _ in query_amz} & {n for n in hdrs if n.startswith(_AMZ)})
    if both:
        # Which value would the store act on? Neither botocore nor S3 sends both.
        raise errors.invalid_argument(
            f"{', '.join(both)} given both as a header and as a query parameter."
        )
    # The clock first, as in the header form: RGW answers an expired URL AccessDenied
    # whatever its signature.
    if now.timestamp() > int(raw_expires):
        raise errors.request_expired()
    ctx = _authenticate(
        form="query",
        method=method,
        raw_path=raw_path,
        raw_query=raw_query,
        hdrs=hdrs,
        query_amz=query_amz,
        date_line=raw_expires,
        access_key=params["AWSAccessKeyId"],
        given=params["Signature"],
        lookup=lookup,
        bucket=bucket,
        request_time=None,
        expires=int(raw_expires),
    )
    return ctx


def _resource_paths(raw_path: str, bucket: str | None) -> list[str]:
    path = raw_path or "/"
    if bucket:
        return [f"/{bucket}{path}"]
    # boto3 signs a path-style request on a bucket itself with a trailing slash (auth_path
    # "/bucket/") and sends "/bucket"; other clients sign the path as sent.
    if path.count("/") == 1 and len(path) > 1:
        return [path, path + "/"]
    return [path]


def _authenticate(
    *,
    form: Form,
    method: str,
    raw_path: str,
    raw_query: str,
    hdrs: dict[str, list[str]],
    query_amz: list[tuple[str, str]],
    date_line: str,
    access_key: str,
    given: str,
    lookup: SecretLookup,
    bucket: str | None,
    request_time: datetime | None,
    expires: int | None,
) -> V2Context:
    """Recompute the signature with the client's secret; the one place both forms verify."""
    secret = lookup(access_key)
    if secret is None:
        raise errors.invalid_access_key_id()
    md5 = _trim(_first(hdrs, "content-md5"))
    ctype = _trim(_first(hdrs, "content-type"))
    amz = canonical_amz_headers(_amz_pairs(hdrs, query_amz))
    subs = subresources(raw_query)
    suffix = _subresource_suffix(subs)
    given_bytes = given.encode("utf-8", "surrogateescape")
    matched: tuple[str, str] | None = None
    for path in _resource_paths(raw_path, bucket):
        to_sign = _assemble(method, md5, ctype, date_line, amz, path + suffix)
        # Every candidate is compared (constant time each) so timing does not tell which.
        if hmac.compare_digest(sign(secret, to_sign).encode("ascii"), given_bytes):
            matched = matched or (path + suffix, to_sign)
    if matched is None:
        raise errors.signature_does_not_match()
    resource, to_sign = matched
    return V2Context(
        access_key=access_key,
        form=form,
        string_to_sign=to_sign,
        resource=resource,
        subresources=subs,
        amz_headers=amz,
        content_md5=md5,
        content_type=ctype,
        date_line=date_line,
        request_time=request_time,
        expires=expires,
        uncovered_query=tuple(uncovered_query(raw_query, form)),
    )
