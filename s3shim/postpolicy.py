"""POST policy (browser form uploads): verify the client's form, re-sign it for the store. Pure.

A form upload carries its own authentication in the form fields (S3 "Browser-based uploads
using POST"): ``policy`` is the base64 of a JSON document ``{"expiration": ..., "conditions":
[...]}`` and the signature is an HMAC of that base64 string, either SigV4
(``x-amz-algorithm``, ``x-amz-credential``, ``x-amz-date``, ``x-amz-signature``: hex
HMAC-SHA256 with the SigV4 signing key) or SigV2 (``AWSAccessKeyId``, ``signature``: base64
HMAC-SHA1 with the secret). A form without a policy is anonymous.

s3shim checks the client's signature and expiration (:func:`verify`), then hands the store a
form signed with the store's key (:func:`rewrite_for_store`): the auth fields and the
conditions on them are replaced (SigV2 becomes SigV4), fields the flags drop
(:meth:`s3shim.rewrite.Policy.is_dropped`, the one place that rule lives) vanish from the
form and from the conditions, and every other condition is kept as the exact text the
client signed. The store then enforces those conditions (content-length-range, starts-with,
the "every field needs a condition" rule) itself. A condition s3shim removes is first
checked against the client's form, so removing it never lets through a form S3 would refuse
for it.

Form field names are matched case-insensitively, as RGW (``ltstr_nocase`` maps) and MinIO
(canonical header keys) do.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from . import checksums, errors, rewrite, sigv4
from .auth import SecretLookup
from .postform import Field

SIGV4A = "AWS4-ECDSA-P256-SHA256"

# Fields that authenticate the form: never forwarded as the client sent them, and the
# conditions on them are replaced by conditions on the store's values.
_ALGORITHM, _CREDENTIAL, _DATE, _SIGNATURE = (
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "x-amz-signature",
)
_V2_KEY, _V2_SIGNATURE = "awsaccesskeyid", "signature"
# s3shim never forwards the client's session token (the store key has none), as for headers.
_SECURITY_TOKEN = "x-amz-security-token"
AUTH_FIELDS = frozenset(
    {"policy", _ALGORITHM, _CREDENTIAL, _DATE, _SIGNATURE, _V2_KEY, _V2_SIGNATURE, _SECURITY_TOKEN}
)

_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")
_HEX64 = re.compile(rb"[0-9a-f]{64}")
_EXPIRATION = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z")
_JSON_WS = " \t\n\r"


class AuthKind(enum.Enum):
    SIGV4 = "sigv4"
    SIGV2 = "sigv2"
    ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class Condition:
    text: str  # exactly as in the client's policy (what the client signed)
    op: str  # "eq", "starts-with" or "content-length-range" (lowercase)
    field: str | None  # lowercase field name without "$"; None for content-length-range
    value: str | None  # the operand of eq / starts-with

    def holds(self, form: Mapping[str, Field]) -> bool:
        """Whether the client's form meets this eq / starts-with condition."""
        if self.field is None or self.value is None:
            return True
        f = form.get(self.field)
        if f is None:
            return False
        actual = f.value.decode("utf-8", "surrogateescape")
        return actual == self.value if self.op == "eq" else actual.startswith(self.value)

    @property
    def names(self) -> frozenset[str]:
        """Every field the condition names: its own, and an operand spelled ``$field``, which
        RGW reads as covering that field too (so such a condition must not survive the
        field's removal)."""
        out = {self.field} if self.field is not None else set()
        if self.value is not None and self.value.startswith("$"):
            out.add(self.value[1:].lower())
        return frozenset(out)

    def describe(self) -> str:
        # S3's rendering in "Policy Condition failed: [...]".
        return json.dumps([self.op, f"${self.field}", self.value])


@dataclass(frozen=True, slots=True)
class PolicyDocument:
    text: str  # the decoded JSON, as the client wrote it
    expiration: datetime
    conditions: tuple[Condition, ...]
    conditions_span: tuple[int, int]  # the conditions array in ``text``, brackets included


@dataclass(frozen=True, slots=True)
class VerifiedForm:
    kind: AuthKind
    access_key: str | None  # None when anonymous
    document: PolicyDocument | None  # None when anonymous

    def __repr__(self) -> str:
        return f"VerifiedForm(kind={self.kind.value}, access_key={self.access_key!r})"


@dataclass(frozen=True, slots=True)
class StoreForm:
    """What the store gets instead of the client's fields (all before the file)."""

    fields: tuple[Field, ...]
    policy: bytes | None  # the new base64 policy (None when anonymous)
    signature: str | None
    checksum: checksums.ExpectedChecksum | None  # what the client declared for the file
    dropped: frozenset[rewrite.Group]  # the flag groups that removed something


# -- fields ---------------------------------------------------------------------------------


def by_name(fields: Iterable[Field]) -> dict[str, Field]:
    """The fields keyed by lowercase name; a name sent twice is refused.

    Which of two values a store would use is its own choice (RGW keeps the last): a form
    whose meaning depends on that cannot be vouched for.
    """
    out: dict[str, Field] = {}
    for f in fields:
        if f.key in out:
            raise errors.invalid_argument(f"The form field '{f.name}' appears more than once.")
        out[f.key] = f
    return out


def _missing(name: str) -> errors.S3Error:
    # S3's sentence for a form field it needs but did not find before the file.
    return errors.invalid_argument(
        f"Bucket POST must contain a field named '{name}'.  If it is specified, please "
        "check the order of the fields."
    )


def _text(form: Mapping[str, Field], name: str, spelled: str | None = None) -> str:
    f = form.get(name)
    if f is None:
        raise _missing(spelled or name)
    try:
        return f.value.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.invalid_argument(f"The form field '{f.name}' is not valid UTF-8.") from None


# -- the policy document --------------------------------------------------------------------


class _Invalid(Exception):
    pass


def _bad(detail: str) -> errors.S3Error:
    return errors.invalid_policy_document(f"Invalid Policy: {detail}")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise _Invalid("duplicate key")
    return dict(pairs)


def _reject_constant(name: str) -> Any:
    raise _Invalid(name)  # NaN / Infinity are not JSON


_DECODER = json.JSONDecoder(object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)


def _skip(s: str, i: int) -> int:
    while i < len(s) and s[i] in _JSON_WS:
        i += 1
    return i


def _json_value(s: str, i: int) -> tuple[Any, int]:
    try:
        return _DECODER.raw_decode(s, i)
    except (ValueError, _Invalid):  # JSONDecodeError is a ValueError
        raise _bad("Invalid JSON.") from None


def _expect(s: str, i: int, char: str) -> int:
    if i >= len(s) or s[i] != char:
        raise _bad("Invalid JSON.")
    return _skip(s, i + 1)


def _array_spans(s: str, i: int) -> tuple[list[tuple[Any, int, int]], int, int]:
    """Parse the array at ``s[i]``: its elements with their spans, and its own span."""
    start = i
    i = _expect(s, i, "[")
    items: list[tuple[Any, int, int]] = []
    if i < len(s) and s[i] == "]":
        return items, start, i + 1
    while True:
        value, end = _json_value(s, i)
        items.append((value, i, end))
        i = _skip(s, end)
        if i < len(s) and s[i] == "]":
            return items, start, i + 1
        i = _expect(s, i, ",")


def _expiration(value: Any) -> datetime:
    m = _EXPIRATION.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise _bad(f"Invalid 'expiration' value: '{value}'")
    y, mo, d, h, mi, sec, frac = m.groups()
    try:
        micro = int((frac or "0").ljust(6, "0")[:6])
        return datetime(int(y), int(mo), int(d), int(h), int(mi), int(sec), micro, tzinfo=UTC)
    except ValueError:
        raise _bad(f"Invalid 'expiration' value: '{value}'") from None


def _condition(value: Any, text: str) -> Condition:
    if isinstance(value, dict):
        if len(value) != 1:
            raise _bad(
                "Invalid Simple-Condition: Simple-Conditions must have exactly one property "
                "specified."
            )
        ((name, operand),) = value.items()
        if not isinstance(operand, str):
            raise _bad("Invalid Simple-Condition: value must be a string.")
        return Condition(text, "eq", name.lower().removeprefix("$"), operand)
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        op = value[0].lower()
        if op == "content-length-range":
            if all(isinstance(v, int) and not isinstance(v, bool) for v in value[1:]):
                return Condition(text, op, None, None)
            raise _bad("Invalid content-length-range: the bounds must be integers.")
        if op in ("eq", "starts-with"):
            name, operand = value[1], value[2]
            if isinstance(name, str) and name.startswith("$") and isinstance(operand, str):
                return Condition(text, op, name[1:].lower(), operand)
    raise _bad(f"Invalid Condition: {text}")


def decode_policy(b64: bytes) -> PolicyDocument:
    """The client's policy field -> its document (InvalidPolicyDocument when it is not one)."""
    # Some encoders wrap base64 lines (Ruby's Base64.encode64); the wrapping carries nothing.
    compact = re.sub(rb"[ \t\r\n]+", b"", b64)
    try:
        raw = base64.b64decode(compact, validate=True)
        s = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        raise _bad("Policy could not be decoded (base64 of UTF-8 JSON expected).") from None
    i = _expect(s, _skip(s, 0), "{")
    members: dict[str, Any] = {}
    span = (0, 0)
    items: list[tuple[Any, int, int]] = []
    if i < len(s) and s[i] == "}":
        i += 1
    else:
        while True:
            key, i = _json_value(s, i)
            if not isinstance(key, str):
                raise _bad("Invalid JSON.")
            i = _expect(s, _skip(s, i), ":")
            if key == "conditions":
                items, start, end = _array_spans(s, i)
                value: Any = [v for v, _, _ in items]
                span = (start, end)
            else:
                value, end = _json_value(s, i)
            if key in members:
                raise _bad(f"Duplicate field '{key}'.")
            members[key] = value
            i = _skip(s, end)
            if i < len(s) and s[i] == "}":
                i += 1
                break
            i = _expect(s, i, ",")
    if _skip(s, i) != len(s):
        raise _bad("Invalid JSON.")
    unknown = sorted(members.keys() - {"expiration", "conditions"})
    if unknown:
        raise _bad(f"Unexpected field '{unknown[0]}'.")
    if "expiration" not in members:
        raise _bad("Policy missing expiration.")
    if "conditions" not in members:
        raise _bad("Policy missing conditions.")
    return PolicyDocument(
        text=s,
        expiration=_expiration(members["expiration"]),
        conditions=tuple(_condition(v, s[a:b]) for v, a, b in items),
        conditions_span=span,
    )


# -- verification ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _V4Credential:
    access_key: str
    date: str
    region: str


def _v4_credential(value: str, region: str | None) -> _V4Credential:
    parts = value.split("/")
    if (
        len(parts) != 5
        or not parts[0]
        or not re.fullmatch(r"\d{8}", parts[1])
        or parts[3] != sigv4.SERVICE
        or parts[4] != "aws4_request"
    ):
        raise errors.invalid_argument(
            "The x-amz-credential form field is malformed; expecting "
            "'<key>/<yyyymmdd>/<region>/s3/aws4_request'."
        )
    if region is not None and parts[2] != region:
        raise errors.invalid_argument(
            f"The authorization region '{parts[2]}' is wrong; expecting '{region}'."
        )
    return _V4Credential(parts[0], parts[1], parts[2])


def _secret(lookup: SecretLookup, access_key: str) -> str:
    secret = lookup(access_key)
    if secret is None:
        raise errors.invalid_access_key_id()
    return secret


def _verify_v4(
    form: Mapping[str, Field], policy_b64: bytes, lookup: SecretLookup, region: str | None
) -> str:
    cred = _v4_credential(_text(form, _CREDENTIAL), region)
    amz_date = _text(form, _DATE)
    if not _AMZ_DATE.fullmatch(amz_date) or amz_date[:8] != cred.date:
        raise errors.invalid_argument(
            "The x-amz-date form field must be yyyyMMddTHHmmssZ on the credential's date."
        )
    given = form.get(_SIGNATURE)
    if given is None:
        raise _missing(_SIGNATURE)
    key = sigv4.signing_key(_secret(lookup, cred.access_key), cred.date, cred.region)
    expected = hmac.new(key, policy_b64, hashlib.sha256).hexdigest().encode()
    if not _HEX64.fullmatch(given.value) or not hmac.compare_digest(expected, given.value):
        raise errors.signature_does_not_match()
    return cred.access_key


def _verify_v2(form: Mapping[str, Field], policy_b64: bytes, lookup: SecretLookup) -> str:
    access_key = _text(form, _V2_KEY, "AWSAccessKeyId")
    given = form.get(_V2_SIGNATURE)
    if given is None:
        raise _missing("Signature")
    secret = _secret(lookup, access_key)
    expected = base64.b64encode(hmac.digest(secret.encode(), policy_b64, "sha1"))
    if not hmac.compare_digest(expected, given.value):
        raise errors.signature_does_not_match()
    return access_key


def verify(
    fields: Sequence[Field], *, lookup: SecretLookup, region: str | None, now: datetime
) -> VerifiedForm:
    """Check a form's signature and expiration with the client key table.

    ``region``: the one credential region accepted, or None for any (the region only feeds
    the signing key, as with header signatures).

    The signature is checked before the policy is even decoded, so a client without a key
    learns nothing from s3shim about what it would accept.
    """
    form = by_name(fields)
    policy = form.get("policy")
    if policy is None:
        signed = sorted({_SIGNATURE, _V2_SIGNATURE, _V2_KEY, _CREDENTIAL} & form.keys())
        if signed:
            # Signature fields without the policy they sign: S3 would not read them as
            # anonymous, and a store might not either.
            raise _missing("policy")
        return VerifiedForm(AuthKind.ANONYMOUS, None, None)
    if _ALGORITHM in form:
        if _V2_KEY in form or _V2_SIGNATURE in form:
            raise errors.invalid_argument("Only one auth mechanism allowed.")
        algorithm = _text(form, _ALGORITHM)
        if algorithm == SIGV4A:
            raise errors.not_implemented("SigV4a (AWS4-ECDSA-P256-SHA256) is not supported.")
        if algorithm != sigv4.ALGORITHM:
            raise errors.invalid_argument(
                "The x-amz-algorithm form field only supports AWS4-HMAC-SHA256."
            )
        kind, access_key = AuthKind.SIGV4, _verify_v4(form, policy.value, lookup, region)
    elif _V2_KEY in form:
        if _SIGNATURE in form or _CREDENTIAL in form:
            raise errors.invalid_argument("Only one auth mechanism allowed.")
        kind, access_key = AuthKind.SIGV2, _verify_v2(form, policy.value, lookup)
    else:
        raise _missing("AWSAccessKeyId")
    document = decode_policy(policy.value)
    # RGW and MinIO count the expiration instant itself as expired.
    if now >= document.expiration:
        raise errors.access_denied("Invalid according to Policy: Policy expired.")
    return VerifiedForm(kind, access_key, document)


# -- the store's form -----------------------------------------------------------------------


def declared_checksum(fields: Iterable[Field]) -> checksums.ExpectedChecksum | None:
    """The checksum the client's form declares for the file (x-amz-checksum-<alg>), as
    :func:`s3shim.checksums.declared_checksum` reads it from headers."""
    declared = {
        f.key: f.value.decode("utf-8", "surrogateescape")
        for f in fields
        if f.key.startswith(checksums.HEADER_PREFIX) or f.key == checksums.SDK_ALGORITHM_HEADER
    }
    return checksums.declared_checksum(declared)


def _removed_field(name: str, flags: rewrite.Policy) -> bool:
    return (
        name in AUTH_FIELDS
        or name in rewrite.RESERVED_HEADERS
        or flags.is_dropped(name) is not None
    )


def _removed(cond: Condition, flags: rewrite.Policy) -> bool:
    """Whether the store's policy goes without this condition: it names a field s3shim
    replaces or removes, anywhere (see :attr:`Condition.names`)."""
    return any(_removed_field(name, flags) for name in cond.names)


def rewrite_for_store(
    fields: Sequence[Field],
    verified: VerifiedForm,
    *,
    creds: sigv4.Credentials | None,
    region: str,
    now: datetime,
    flags: rewrite.Policy,
    added: Sequence[tuple[str, str]] = (),
) -> StoreForm:
    """The fields to send the store, in the client's order, signed with ``creds``.

    ``region`` is the store's; ``now`` becomes the form's x-amz-date. ``added``: fields
    s3shim adds to a signed form (the SSE-C key it derives), each an exact condition of the
    store's policy too, as the store requires of every field.
    """
    form = by_name(fields)
    checksum = declared_checksum(fields)
    dropped: set[rewrite.Group] = set()
    kept: list[Field] = []
    for f in fields:
        if f.key in rewrite.RESERVED_HEADERS:
            continue  # a client never plants s3shim's own metadata (integrity.py)
        group = flags.is_dropped(f.key)
        if group is None:
            kept.append(f)
        else:
            dropped.add(group)
    document = verified.document
    if verified.kind is AuthKind.ANONYMOUS or document is None:
        return StoreForm(tuple(kept), None, None, checksum, frozenset(dropped))
    if creds is None:
        raise ValueError("a signed form needs the store's credentials")

    for cond in document.conditions:
        if not _removed(cond, flags):
            continue
        if not cond.holds(form):
            raise errors.access_denied(
                f"Invalid according to Policy: Policy Condition failed: {cond.describe()}"
            )
        for name in cond.names:
            group = flags.is_dropped(name)
            if group is not None:
                dropped.add(group)

    amz_date = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    new_values = {
        _ALGORITHM: sigv4.ALGORITHM,
        _CREDENTIAL: f"{creds.access_key}/{sigv4.scope(amz_date[:8], region)}",
        _DATE: amz_date,
        **dict(added),
    }
    conditions = [c.text for c in document.conditions if not _removed(c, flags)]
    conditions += [json.dumps({name: value}) for name, value in new_values.items()]
    start, end = document.conditions_span
    text = document.text[:start] + "[" + ", ".join(conditions) + "]" + document.text[end:]
    policy_b64 = base64.b64encode(text.encode("utf-8"))
    key = sigv4.signing_key(creds.secret_key, amz_date[:8], region)
    signature = hmac.new(key, policy_b64, hashlib.sha256).hexdigest()
    new_values[_SIGNATURE] = signature

    out: list[Field] = []
    placed: set[str] = set()
    for f in kept:
        if f.key == "policy":
            out.append(replace(f, value=policy_b64))
        elif f.key in new_values:
            out.append(replace(f, value=new_values[f.key].encode()))
            placed.add(f.key)
        elif f.key not in AUTH_FIELDS:
            out.append(f)
        # else: SigV2 fields and the session token are not forwarded
    out += [Field(k, v.encode()) for k, v in new_values.items() if k not in placed]
    return StoreForm(tuple(out), policy_b64, signature, checksum, frozenset(dropped))
