"""The plan: for one authenticated request, everything s3shim will do to it. Pure.

Given the classified target, what authentication proved, the parsed head and the rewrite
policy, :func:`plan` decides — in this one place — how the body flows (a :class:`BodyMode`),
which headers the store gets (those the policy keeps, plus the ones s3shim adds), the
payload hash to sign, the upstream path and query, whether the CompleteMultipartUpload XML
is rewritten, which checksum s3shim hands on to the store, and which one it vouches for in
the response. The aiohttp layer (``proxy.py``) only does ``match plan.body`` and moves bytes;
:func:`finish_whole` and :func:`response_headers` are the two decisions that need bytes or a
response first.

Shaped like h11's ``_body_framing`` + ``READERS``: one function picks the mode from the
request, one table per mode says how bytes move.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from . import chunked, errors, sigv4
from .auth import AuthContext
from .body import BodySpec
from .checksums import (
    SDK_ALGORITHM_HEADER,
    TRAILER_HEADER,
    Algorithm,
    declared_checksum,
    new_checksum,
)
from .classify import Op, Target
from .complete_xml import strip_part_checksums
from .head import CONTENT_LENGTH, DECODED_CONTENT_LENGTH, RequestHead
from .rewrite import (
    RESPONSE_DROPS,
    Group,
    Policy,
    forward_headers,
    with_aws_chunked_encoding,
)

SMALL_BODY = 1024 * 1024  # bodies up to this are read whole, verified, then sent signed
MAX_COMPLETE_XML = 4 * 1024 * 1024
_HEX = frozenset("0123456789abcdef")


class BodyMode(enum.Enum):
    """How the request body travels to the store."""

    # Read whole (bounded), verified, then sent with its real sha256 signed: small bodies,
    # and CompleteMultipartUpload XML that s3shim rewrites.
    WHOLE = "whole"
    # Streamed as it arrives with an exact Content-Length and UNSIGNED-PAYLOAD; the last
    # bytes are held back until the body is verified.
    STREAM = "stream"
    # As STREAM, but re-framed as one unsigned-trailer aws-chunked chunk so the store gets
    # the verified trailer checksum (flags off, a streamed body whose checksum came last).
    REFRAME = "reframe"


@dataclass(frozen=True, slots=True)
class UpstreamPlan:
    op: Op
    body: BodyMode
    spec: BodySpec
    # Every header for the store, except those WHOLE adds once the body is read
    # (content-length, a handed-on checksum): see finish_whole.
    headers: tuple[tuple[str, str], ...]
    payload_hash: str | None  # None for WHOLE: the body's own sha256, once read
    path: str  # path-style raw path on the store
    query: tuple[tuple[str, str], ...]  # decoded; s3shim's own presign parameters removed
    rewrites: frozenset[Group]
    read_limit: int = SMALL_BODY  # WHOLE: bytes of payload s3shim will hold
    strip_xml: bool = False  # WHOLE: drop per-part checksums from the Complete XML
    hand_on: Algorithm | None = None  # a trailer checksum the store still gets (flags off)
    reframing: chunked.OneChunkFraming | None = None  # REFRAME only

    @property
    def vouch(self) -> bool:
        """Whether a verified checksum is returned on success (Convex needs it on UploadPart;
        RGW does not send it)."""
        return self.op.traits.upload and self.spec.checksum is not None


def _is_hex_sha256(value: str) -> bool:
    return len(value) == 64 and set(value.lower()) <= _HEX


def _as_verified(head: RequestHead, signed: tuple[str, ...]) -> list[tuple[str, str]]:
    """One header per name, each signed one exactly as its signature was verified.

    Repeated headers are joined with ',' (as SigV4 and RFC 9110 do), and a signed value is
    forwarded in its canonical form: the store acts on precisely what was verified, not on a
    variant that only canonicalises to it (tabs or other whitespace changed in flight).
    """
    signed_set = frozenset(signed)
    out = []
    for name, values in head.headers.items():
        if name in signed_set:
            out.append((name, ",".join(sigv4.fold_value(v) for v in values)))
        else:
            out.append((name, ",".join(values)))
    return out


def body_spec(op: Op, ctx: AuthContext, head: RequestHead) -> BodySpec:
    """What the (verified) request promises about its body."""
    single = head.single_values()
    framing = chunked.framing_for(ctx.payload_hash)
    raw = single.get(DECODED_CONTENT_LENGTH if framing else CONTENT_LENGTH)
    if framing is not None and raw is None:
        raise errors.missing_content_length()
    length: int | None = None
    if raw is not None:
        if not (raw.isascii() and raw.isdigit()):
            raise errors.invalid_argument("Content-Length must be a number.")
        length = int(raw)
    signing = None
    if framing in (chunked.Framing.SIGNED, chunked.Framing.SIGNED_TRAILER):
        signing = chunked.ChunkSigning(
            signing_key=ctx.signing_key,
            amz_date=ctx.amz_date,
            scope=ctx.scope,
            seed_signature=ctx.signature,
        )
    return BodySpec(
        length=length,
        sha256_hex=ctx.payload_hash.lower() if _is_hex_sha256(ctx.payload_hash) else None,
        checksum=declared_checksum(single) if op.traits.body_checksum else None,
        framing=framing,
        chunk_signing=signing,
        trailers=head.trailers,
    )


def plan(target: Target, ctx: AuthContext, head: RequestHead, policy: Policy) -> UpstreamPlan:
    """Everything s3shim does to this request, decided before a body byte is read."""
    spec = body_spec(target.op, ctx, head)
    fwd, fired = forward_headers(
        _as_verified(head, ctx.signed_headers), policy, decoded_aws_chunked=spec.framing is not None
    )
    # A presigned URL's own parameters authenticated the client; the store gets s3shim's
    # header signature instead.
    query = tuple((k, v) for k, v in head.query if not (ctx.presigned and k.startswith("X-Amz-")))
    length = spec.length if spec.length is not None else (None if head.has_body else 0)
    strip_xml = target.op.traits.complete_xml and policy.disable_checksums
    # s3shim decodes the client's framing, so a trailer checksum the store should still get
    # (flag off) is handed on by s3shim itself, once verified.
    hand_on = (
        spec.checksum.algorithm
        if spec.checksum and spec.checksum.in_trailer and not policy.disable_checksums
        else None
    )
    mode = BodyMode.STREAM
    headers = fwd
    payload_hash: str | None = sigv4.UNSIGNED_PAYLOAD
    reframing = None
    if strip_xml or (length is not None and length <= SMALL_BODY):
        mode, payload_hash = BodyMode.WHOLE, None
    elif length is None:
        # Stores need the length up front (RGW answers 411 to chunked transfer coding).
        raise errors.missing_content_length()
    elif hand_on is not None:
        mode, payload_hash = BodyMode.REFRAME, chunked.Framing.UNSIGNED_TRAILER.value
        reframing = chunked.OneChunkFraming(
            length, hand_on.header, len(new_checksum(hand_on).b64digest())
        )
        headers = [
            *with_aws_chunked_encoding(fwd),
            (CONTENT_LENGTH, str(reframing.framed_length)),
            (DECODED_CONTENT_LENGTH, str(length)),
            (TRAILER_HEADER, hand_on.header),
            (SDK_ALGORITHM_HEADER, hand_on.name),
        ]
    else:
        headers = [*fwd, (CONTENT_LENGTH, str(length))]
    return UpstreamPlan(
        op=target.op,
        body=mode,
        spec=spec,
        headers=tuple(headers),
        payload_hash=payload_hash,
        path=target.upstream_path,
        query=query,
        rewrites=fired,
        read_limit=MAX_COMPLETE_XML if strip_xml else SMALL_BODY,
        strip_xml=strip_xml,
        hand_on=hand_on,
        reframing=reframing,
    )


@dataclass(frozen=True, slots=True)
class WholeBody:
    """A WHOLE body once read and verified: what the store is sent, and how it is signed."""

    body: bytes
    headers: tuple[tuple[str, str], ...]
    payload_hash: str
    rewrites: frozenset[Group]


def finish_whole(
    p: UpstreamPlan, method: str, body: bytes, computed_checksum: str | None
) -> WholeBody:
    """The store's request for a body read whole: rewritten XML, length, real hash."""
    rewrites = p.rewrites
    if p.strip_xml:
        stripped = strip_part_checksums(body)
        if stripped != body:
            rewrites = rewrites | {Group.CHECKSUM}
        body = stripped
    headers = list(p.headers)
    if p.hand_on is not None and computed_checksum:
        # Known before sending: a plain header, as SDKs send it for small bodies.
        headers += [(p.hand_on.header, computed_checksum), (SDK_ALGORITHM_HEADER, p.hand_on.name)]
    if body or method in ("PUT", "POST"):
        headers.append((CONTENT_LENGTH, str(len(body))))
    return WholeBody(body, tuple(headers), hashlib.sha256(body).hexdigest(), rewrites)


def response_headers(
    p: UpstreamPlan,
    status: int,
    upstream: Iterable[tuple[str, str]],
    computed_checksum: str | None,
) -> list[tuple[str, str]]:
    """The store's response headers the client gets, plus what s3shim vouches for."""
    out = [(n, v) for n, v in upstream if n.lower() not in RESPONSE_DROPS]
    if p.vouch and computed_checksum and status == 200 and p.spec.checksum is not None:
        header = p.spec.checksum.algorithm.header
        if not any(n.lower() == header for n, _ in out):
            # s3shim verified this checksum over the bytes the store stored.
            out.append((header, computed_checksum))
    return out
