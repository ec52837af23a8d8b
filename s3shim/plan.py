"""The plan: for one request, everything s3shim will do to it. Pure.

The request path asks this module, in order:

1. :func:`read_request`: the parsed head and the classified target;
2. :func:`scheme`: which verification applies (:class:`Scheme`), or a refusal;
3. :func:`verify`: what that verification proved (an ``AuthContext``; None for a request
   forwarded with no credentials), or a refusal;
4. :func:`plan`: an :class:`UpstreamPlan` (frozen), decided before a body byte is read: how
   the body flows (a :class:`BodyMode`), which headers the store gets (those the policy
   keeps, plus the ones s3shim adds), the payload hash to sign, the upstream path and query,
   whether the CompleteMultipartUpload XML is rewritten, which checksum s3shim hands on to
   the store and which one it answers with, who answers ``Expect: 100-continue``, and the
   store key it is re-signed with. A form upload gets a :class:`FormPlan` instead
   (:func:`form_plan`), and its :class:`UpstreamPlan` once its fields are verified
   (:func:`form_request`);
5. :func:`finish_whole` for a body read whole (the one decision that needs its bytes), then
   :func:`store_request`: the store's request target and signed headers;
6. :meth:`UpstreamPlan.respond`: a :class:`ResponsePlan` for the store's answer (the
   client's headers, the read check, whether the body is read whole or streamed).

The aiohttp layer (``proxy.py``) only does ``match plan.body`` and moves bytes.

Shaped like h11's ``_body_framing`` + ``READERS``: one function picks the mode from the
request, one table per mode says how bytes move.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from . import auth, chunked, errors, sigv2, sigv4, sse
from .auth import AuthContext
from .body import BodySpec
from .checksums import (
    HEADER_PREFIX,
    MODE_HEADER,
    SDK_ALGORITHM_HEADER,
    TRAILER_HEADER,
    TYPE_HEADER,
    Algorithm,
    declared_checksum,
    new_checksum,
)
from .classify import Op, Target, bucket_from_host, classify
from .complete_xml import DEFAULT_MAX_SIZE, strip_part_checksums
from .config import ClientKey, Config
from .formupload import FormUpload
from .head import CONTENT_LENGTH, CONTENT_SHA256, DECODED_CONTENT_LENGTH, RequestHead, parse_head
from .http1 import NO_BODY_STATUSES
from .integrity import (
    DEFAULT_ALGORITHM,
    RECORD_HEADER,
    ReadVerifier,
    encode_record,
    parse_record,
    sha256_record,
)
from .rewrite import (
    REQUEST_ID_HEADER,
    RESERVED_HEADERS,
    RESPONSE_DROPS,
    SERVER_NAME,
    Group,
    Policy,
    forward_headers,
    with_aws_chunked_encoding,
)
from .sse import Encryption

SMALL_BODY = 1024 * 1024  # bodies up to this are read whole, verified, then sent signed
MAX_COMPLETE_XML = DEFAULT_MAX_SIZE  # read whole up to complete_xml's own bound
SMALL_RESPONSE = 64 * 1024  # store bodies up to this are answered in one write with the head


class BodyMode(enum.Enum):
    """How the request body travels to the store."""

    # Read whole (bounded), verified, then sent with its real sha256 signed: small bodies,
    # and CompleteMultipartUpload XML that s3shim rewrites.
    WHOLE = "whole"
    # Streamed as it arrives with an exact Content-Length and UNSIGNED-PAYLOAD; the last
    # bytes are held back until the body is verified (a form upload's too: formupload.py).
    STREAM = "stream"
    # As STREAM, but re-framed as one unsigned-trailer aws-chunked chunk so the store gets
    # the verified trailer checksum (flags off, a streamed body whose checksum came last).
    REFRAME = "reframe"


class Continue(enum.Enum):
    """Who tells a client that sent ``Expect: 100-continue`` to send its body."""

    # s3shim, as soon as the head passed its own checks: the body must be read whole before
    # the store's head can be written (the CompleteMultipartUpload rewrite; a small PutObject
    # whose record only its bytes give), or there is no body to hold back.
    SHIM = "shim"
    # The store: the expectation travels with the store's head, and the client is invited
    # only when the store answers 100 Continue (or stays silent for a moment, as a store that
    # ignores the expectation does). A final answer before that reaches the client with none
    # of its body read.
    STORE = "store"


EXPECT_CONTINUE = ("expect", "100-continue")


class FollowUp(enum.Enum):
    """The store requests s3shim adds around this one for an integrity record (attacher.py)."""

    NONE = "none"
    # CompleteMultipartUpload: ListParts before it is forwarded, the record attached once the
    # store committed the object.
    COMPLETE = "multipart"
    # A streamed PutObject with no record of its own: the one s3shim verified (or computed)
    # attached once the store committed it.
    STREAMED_PUT = "put"
    # UploadPart: its verified CRC remembered, for the Complete that lists it.
    PART = "part"


@dataclass(frozen=True, slots=True)
class Settings:
    """What the plan reads from the configuration, resolved once per process."""

    policy: Policy
    lookup: auth.SecretLookup  # a client key's secret, or None
    clients: Mapping[str, ClientKey]  # and the store key each one is re-signed with
    regions: frozenset[str] | None  # credential regions clients may sign for; None: any
    domains: tuple[str, ...]  # virtual-hosted bucket domains
    store_origin: str  # scheme://host[:port]
    store_host: str  # host[:port], as signed and sent in Host
    store_region: str
    client_scheme: str  # how clients reach s3shim: https with a TLS listener

    @classmethod
    def of(cls, config: Config) -> Settings:
        return cls(
            policy=Policy.of(config),
            lookup=config.secret_for,
            clients=config.clients,
            # None, not empty: any region verifies (it only feeds the signing key).
            regions=frozenset(config.allowed_regions) or None,
            domains=config.domains,
            store_origin=config.upstream_url,
            store_host=config.upstream_host,
            store_region=config.upstream_region,
            client_scheme="https" if config.tls_cert else "http",
        )


def read_request(
    method: str,
    raw_path: str,
    headers: Iterable[tuple[str, str]],
    has_body: bool,
    domains: tuple[str, ...],
) -> tuple[RequestHead, Target]:
    """The request's head, parsed once, and what it addresses."""
    head = parse_head(method, raw_path, headers, has_body)
    target = classify(
        head.method, head.host, head.raw_path, head.query, frozenset(head.headers), domains
    )
    return head, target


class Scheme(enum.Enum):
    """Which verification a request gets."""

    SIGV4 = "sigv4"  # an AWS4-HMAC-SHA256 Authorization header, or a presigned URL
    SIGV2 = "sigv2"  # Authorization: AWS, or the AWSAccessKeyId/Signature query
    # Forwarded without verifying a signature, hence never with a store key. No auth
    # mechanism at all: the store's ACLs and bucket policies decide, as they would without
    # s3shim (public-read objects, public-read-write buckets, the store's own 404).
    ANONYMOUS = "anonymous"
    # A browser's CORS preflight is never signed; the store answers from the bucket's rules.
    PREFLIGHT = "preflight"
    # A browser form upload: verified by its policy fields, read from the body first
    # (formupload.py); the request's head carries no credentials.
    FORM = "form"


def scheme(target: Target, head: RequestHead, policy: Policy) -> Scheme:
    """Which verification applies; an anonymous request is refused here when not accepted.

    Anything that attempts authentication, even badly, is verified (and refused when
    wrong): it never falls back to being forwarded anonymously.
    """
    if target.op.traits.form_upload:
        return Scheme.FORM
    if target.op is Op.CORS_PREFLIGHT:
        return Scheme.PREFLIGHT
    if auth.is_anonymous(head.query, head.headers):
        if not policy.allow_anonymous:
            raise errors.access_denied("Anonymous requests are not accepted.")
        return Scheme.ANONYMOUS
    if _looks_sigv2(head) and sigv2.is_sigv2(head.headers, head.raw_query):
        return Scheme.SIGV2
    return Scheme.SIGV4


def _looks_sigv2(head: RequestHead) -> bool:
    """A cheap first look (sigv2.is_sigv2 re-parses the raw query) on the decoded head."""
    prefix = (head.first("authorization") or "")[:4]
    return prefix == "AWS " or any(k in ("AWSAccessKeyId", "Signature") for k, _ in head.query)


def verify(
    kind: Scheme, head: RequestHead, settings: Settings, now: datetime
) -> AuthContext | None:
    """What the request's signature proves (None: forwarded unverified), or a refusal:
    SigV2 when not accepted, and every way a signature fails."""
    if kind is Scheme.ANONYMOUS or kind is Scheme.PREFLIGHT:
        return None
    if kind is Scheme.SIGV2:
        if not settings.policy.allow_sigv2:
            raise errors.access_denied("SigV2 is not accepted; sign with AWS4-HMAC-SHA256 (SigV4).")
        v2 = sigv2.verify(
            method=head.method,
            raw_path=head.raw_path,
            raw_query=head.raw_query,
            headers=head.headers,
            lookup=settings.lookup,
            now=now,
            bucket_from_host=bucket_from_host(head.host, settings.domains),
        )
        return auth.from_sigv2(v2, head.headers)
    return auth.verify(
        method=head.method,
        raw_path=head.raw_path,
        query=head.query,
        headers=head.headers,
        lookup=settings.lookup,
        regions=settings.regions,
        now=now,
    )


# Query parameters that authenticate a presigned URL (SigV4 X-Amz-*, SigV2's trio): the
# store gets s3shim's own header signature, or (unverified) no credentials at all.
_SIGV2_QUERY = frozenset({"AWSAccessKeyId", "Signature"})
# Also written by SigV2 presigners; the signed values are the headers of those names.
_SIGV2_QUERY_ALSO = frozenset({"Expires", "content-type", "content-md5"})


def _upstream_query(
    head: RequestHead, presigned: bool, policy: Policy
) -> tuple[tuple[tuple[str, str], ...], frozenset[Group]]:
    """The query the store gets, and which flag groups it lost."""
    sigv2 = any(k in _SIGV2_QUERY for k, _ in head.query)
    out = []
    dropped: set[Group] = set()
    for k, v in head.query:
        if presigned and k.startswith("X-Amz-"):
            continue
        if sigv2 and (k in _SIGV2_QUERY or k in _SIGV2_QUERY_ALSO):
            continue
        if k.lower() in RESERVED_HEADERS:
            continue
        # Checksum parameters a presigner signed into the query (the JS SDK v3's CRC32 of an
        # empty body) are no claim about the body: AWS ignores them in a presigned URL, and
        # so does s3shim (body_spec). The flag drops them; without it the store gets them as
        # sent and decides as it would directly.
        group = policy.is_dropped(k.lower())
        if group is not None:
            dropped.add(group)
            continue
        out.append((k, v))
    return tuple(out), frozenset(dropped)


def _own_presign(head: RequestHead, policy: Policy) -> bool:
    """Whether the query presigns with a client key that is the store's own key."""
    keys = [v.split("/", 1)[0] for k, v in head.query if k == "X-Amz-Credential"]
    keys += [v for k, v in head.query if k == "AWSAccessKeyId"]
    return len(keys) == 1 and keys[0] in policy.identity_keys


@dataclass(frozen=True, slots=True)
class UpstreamPlan:
    op: Op
    method: str
    body: BodyMode
    spec: BodySpec
    # Every header for the store, except those WHOLE adds once the body is read
    # (content-length, a forwarded checksum): see finish_whole.
    headers: tuple[tuple[str, str], ...]
    payload_hash: str | None  # None for WHOLE: the body's own sha256, once read
    path: str  # path-style raw path on the store
    query: tuple[tuple[str, str], ...]  # decoded; s3shim's own presign parameters removed
    rewrites: frozenset[Group]
    sign: bool = True  # False: forwarded with no credentials at all (see Scheme)
    # The store key it is re-signed with (None when unsigned, or when the plan was made
    # without the client keys, as tests do).
    store_creds: sigv4.Credentials | None = None
    read_limit: int = SMALL_BODY  # WHOLE: bytes of payload s3shim will hold
    strip_xml: bool = False  # WHOLE: drop per-part checksums from the Complete XML
    # A trailer checksum the store still gets (flags off): s3shim decodes the client's
    # framing, so it forwards the checksum itself, once verified.
    forwarded_checksum: Algorithm | None = None
    reframing: chunked.OneChunkFraming | None = None  # REFRAME only
    # Read-side integrity (integrity.py): WHOLE records the checksum it computes; a full GET
    # is checked against the record; GET/HEAD asking for checksums get the recorded one.
    record_whole: bool = False
    verify_read: bool = False
    answer_recorded_checksum: bool = False
    # A form upload's answer names the object by URL: the store writes its own origin there,
    # which s3shim replaces with the one the client used (store origin, client origin).
    relocate: tuple[str, str] | None = None
    # The client sent Expect: 100-continue, and who answers it; None: it expects nothing.
    expect: Continue | None = None
    follow_up: FollowUp = FollowUp.NONE
    # The SSE-C keys s3shim adds (sse.py), signed with the rest by store_request; the
    # store's answer is then AWS's SSE-S3 answer. None: s3shim adds none.
    encryption: Encryption | None = None

    @property
    def answer_verified_checksum(self) -> bool:
        """Whether a verified checksum is returned on success (Convex needs it on UploadPart;
        RGW does not send it)."""
        return self.op.traits.upload and self.spec.checksum is not None

    def respond(
        self,
        status: int,
        upstream: Iterable[tuple[str, str]],
        computed_checksum: str | None,
        request_id: str,
    ) -> ResponsePlan:
        """What the client gets of the store's answer: the store's headers but those never
        forwarded, plus what s3shim answers for; the check of a whole recorded object's
        bytes; whether the body is read whole, streamed, or absent.

        The store's own ``x-amz-request-id`` is kept, so it matches the RequestId in the
        store's error bodies (s3shim's id is in its log line beside it); s3shim's id fills in
        only when the store sent none.
        """
        out: list[tuple[str, str]] = []
        present: set[str] = set()
        length: str | None = None
        record: str | None = None
        relocate = self.relocate
        if self.encryption is not None:  # no key or key MD5 for the client
            upstream = sse.answer_headers(upstream, written=self.encryption.written(status))
        for name, value in upstream:
            lname = name.lower()
            if lname in RESPONSE_DROPS:
                if lname == RECORD_HEADER and record is None:
                    record = value
                continue
            if lname == "content-length" and length is None:
                length = value
            elif lname == "location" and relocate is not None:
                value = relocated(relocate, value.encode()).decode()
            out.append((name, value))
            present.add(lname)
        recorded = (
            parse_record(record)
            if record is not None
            and status == 200
            and (self.answer_recorded_checksum or self.verify_read)
            else None
        )
        if (
            recorded is not None
            and self.answer_recorded_checksum
            and not any(n.startswith(HEADER_PREFIX) for n in present)
        ):
            # The store keeps no checksums; s3shim answers with the one it recorded, so SDKs
            # at their defaults verify the download end to end.
            alg, b64 = recorded
            out += [(alg.header, b64), (TYPE_HEADER, "FULL_OBJECT")]
        if (
            self.answer_verified_checksum
            and computed_checksum
            and status == 200
            and self.spec.checksum is not None
        ):
            header = self.spec.checksum.algorithm.header
            if header not in present:
                # s3shim verified this checksum over the bytes the store stored.
                out.append((header, computed_checksum))
        if REQUEST_ID_HEADER not in present:
            out.append((REQUEST_ID_HEADER, request_id))
        out.append(("Server", SERVER_NAME))
        verifier = ReadVerifier(*recorded) if recorded is not None and self.verify_read else None
        size = int(length) if length is not None and length.isdigit() else None
        if self.method == "HEAD" or status in NO_BODY_STATUSES:
            reply = Reply.NONE
        elif verifier is None and size is not None and size <= SMALL_RESPONSE:
            reply = Reply.WHOLE
        else:
            reply = Reply.STREAM  # a checked body keeps its hold-back
        return ResponsePlan(out, reply, size, verifier, relocate if status == 201 else None)


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


def _unverified_payload_hash(head: RequestHead) -> str:
    """An unsigned request's own x-amz-content-sha256: still a promise s3shim checks."""
    value = head.single_values().get(CONTENT_SHA256, sigv4.UNSIGNED_PAYLOAD)
    if value in (sigv4.UNSIGNED_PAYLOAD, chunked.Framing.UNSIGNED_TRAILER.value) or (
        sigv4.is_hex64(value)
    ):
        return value
    # A signed framing without a signature to chain from cannot be verified.
    raise errors.access_denied("A signed payload needs a signed request.")


def body_spec(op: Op, ctx: AuthContext | None, head: RequestHead) -> BodySpec:
    """What the request (verified, or forwarded unsigned) promises about its body."""
    single = head.single_values()
    payload_hash = ctx.payload_hash if ctx is not None else _unverified_payload_hash(head)
    framing = chunked.framing_for(payload_hash)
    raw = single.get(DECODED_CONTENT_LENGTH if framing else CONTENT_LENGTH)
    if framing is not None and raw is None:
        raise errors.missing_content_length()
    length: int | None = None
    if raw is not None:
        if not (raw.isascii() and raw.isdigit()):
            raise errors.invalid_argument("Content-Length must be a number.")
        length = int(raw)
    signing = None
    if ctx is not None and framing in (chunked.Framing.SIGNED, chunked.Framing.SIGNED_TRAILER):
        signing = chunked.ChunkSigning(
            signing_key=ctx.signing_key,
            amz_date=ctx.amz_date,
            scope=ctx.scope,
            seed_signature=ctx.signature,
        )
    return BodySpec(
        length=length,
        sha256_hex=payload_hash if sigv4.is_hex64(payload_hash) else None,
        # Headers (and trailers) only: a checksum in a presigned query was fixed before the
        # body existed, and AWS does not apply it (_upstream_query).
        checksum=declared_checksum(single) if op.traits.body_checksum else None,
        framing=framing,
        chunk_signing=signing,
        trailers=head.trailers,
    )


def _sigv2_head(head: RequestHead, ctx: AuthContext) -> RequestHead:
    """A SigV2 request as s3shim forwards it, refusing what SigV2 leaves open to tampering.

    SigV2 signs only the sub-resources it knew of in 2006 (``sigv2.SUBRESOURCES``): any other
    parameter could be added to a captured request by anyone, and s3shim would re-sign it
    with a store key (RGW runs ``?usage``, ``?mdsearch``, ``?append``, and stores query
    ``x-amz-meta-*`` as metadata). So the query must hold only what ``sigv2.check_query``
    allows: signed sub-resources, and listing parameters that only shape a read the
    signature allowed (an allow-list: a name no list knows is refused too).
    The query form's ``x-amz-*`` parameters are covered as amz headers: the store gets them
    as headers, since s3shim signs it a header request.
    """
    sigv2.check_query(head.raw_query, "query" if ctx.presigned else "header")
    if not ctx.presigned:
        return head
    hoisted = [(k.lower(), v) for k, v in head.query if k.lower().startswith("x-amz-")]
    if not hoisted:
        return head
    headers = {n: list(v) for n, v in head.headers.items()}
    for name, value in hoisted:
        headers.setdefault(name, []).append(value)
    query = tuple((k, v) for k, v in head.query if not k.lower().startswith("x-amz-"))
    return RequestHead(head.method, head.raw_path, head.raw_query, query, headers, head.has_body)


def plan(
    target: Target,
    ctx: AuthContext | None,
    head: RequestHead,
    policy: Policy,
    clients: Mapping[str, ClientKey] | None = None,
) -> UpstreamPlan:
    """Everything s3shim does to this request, decided before a body byte is read.

    ``ctx`` is what verification proved, or None for a request forwarded unsigned
    (:func:`verify`): the flags and the body checks apply to it all the same. ``clients``:
    the client keys, whose store key signs the request (:attr:`Settings.clients`).
    """
    if ctx is not None and ctx.scheme == "sigv2":
        head = _sigv2_head(head, ctx)
    spec = body_spec(target.op, ctx, head)
    signed = ctx.signed_headers if ctx is not None else ()
    verified = _as_verified(head, signed)
    # Keys only with a verified request: what is forwarded unverified carries no secret.
    enc = _encryption(target, head, policy) if policy.keyring and ctx is not None else None
    if enc is not None and enc.write is not None and target.op is Op.COPY_OBJECT:
        # RGW 16 answers 200 to a copy with the destination's SSE-C key and stores it in
        # plaintext: an encrypted copy would be a lie the client could never see.
        raise errors.not_implemented(
            "A copy cannot be stored encrypted (the store writes copies in plaintext); "
            "copy by GetObject and PutObject."
        )
    if enc is not None and enc.drop_sse_s3:
        # Kept as SSE-C instead: the store is not asked for its own SSE-S3 as well.
        verified = [(n, v) for n, v in verified if n != sse.SSE_HEADER]
    fwd, dropped = forward_headers(verified, policy, decoded_aws_chunked=spec.framing is not None)
    if target.op is Op.CORS_PREFLIGHT and _own_presign(head, policy):
        # The client's own URL, untouched: RGW reads a tenant's bucket from its credential
        # (never checking the signature of a preflight), and the key is the store's already.
        query, query_dropped = head.query, frozenset[Group]()
    else:
        query, query_dropped = _upstream_query(head, ctx is None or ctx.presigned, policy)
    dropped |= query_dropped
    length = spec.length if spec.length is not None else (None if head.has_body else 0)
    strip_xml = target.op.traits.complete_xml and policy.disable_checksums
    # s3shim decodes the client's framing, so a trailer checksum the store should still get
    # (flag off) is forwarded by s3shim itself, once verified.
    forwarded_checksum = (
        spec.checksum.algorithm
        if spec.checksum and spec.checksum.in_trailer and not policy.disable_checksums
        else None
    )
    record = target.op is Op.PUT_OBJECT and policy.record_checksums
    reads = target.op in (Op.GET_OBJECT, Op.HEAD_OBJECT) and policy.verify_reads
    mode = BodyMode.STREAM
    headers = fwd
    payload_hash: str | None = sigv4.UNSIGNED_PAYLOAD
    reframing = None
    expect = (
        _continue_from(target.op, spec, length, strip_xml, record)
        if head.expects_continue
        else None
    )
    if (
        strip_xml or (length is not None and length <= SMALL_BODY)
    ) and expect is not Continue.STORE:
        mode, payload_hash = BodyMode.WHOLE, None
    elif length is None:
        # Stores need the length up front (RGW answers 411 to chunked transfer coding).
        raise errors.missing_content_length()
    elif forwarded_checksum is not None:
        mode, payload_hash = BodyMode.REFRAME, chunked.Framing.UNSIGNED_TRAILER.value
        reframing = chunked.OneChunkFraming(
            length, forwarded_checksum.header, len(new_checksum(forwarded_checksum).b64digest())
        )
        headers = [
            *with_aws_chunked_encoding(fwd),
            (CONTENT_LENGTH, str(reframing.framed_length)),
            (DECODED_CONTENT_LENGTH, str(length)),
            (TRAILER_HEADER, forwarded_checksum.header),
            (SDK_ALGORITHM_HEADER, forwarded_checksum.name),
        ]
    else:
        headers = [*fwd, (CONTENT_LENGTH, str(length))]
    streamed_record = _streamed_record(spec) if record and mode is not BodyMode.WHOLE else None
    if streamed_record is not None:
        headers.append((RECORD_HEADER, streamed_record))
    elif record and mode is not BodyMode.WHOLE and spec.checksum is None:
        # No record can go with the body: s3shim computes one as it streams, attached once
        # the store committed the object (attach.py).
        spec = replace(spec, compute=DEFAULT_ALGORITHM)
    if expect is Continue.STORE:
        headers.append(EXPECT_CONTINUE)
    return UpstreamPlan(
        op=target.op,
        method=head.method,
        body=mode,
        spec=spec,
        headers=tuple(headers),
        payload_hash=payload_hash,
        path=target.upstream_path,
        query=query,
        rewrites=dropped,
        sign=ctx is not None,
        store_creds=(
            clients[ctx.access_key].upstream if ctx is not None and clients is not None else None
        ),
        read_limit=MAX_COMPLETE_XML if strip_xml else SMALL_BODY,
        strip_xml=strip_xml,
        forwarded_checksum=forwarded_checksum,
        reframing=reframing,
        record_whole=record and mode is BodyMode.WHOLE,
        # A ranged read's bytes are not the object's: nothing to compare them with.
        verify_read=reads and target.op is Op.GET_OBJECT and "range" not in head.headers,
        answer_recorded_checksum=reads
        and (head.first(MODE_HEADER) or "").upper() == "ENABLED"
        and "range" not in head.headers,
        expect=expect,
        encryption=enc,
        follow_up=_follow_up(
            target.op, mode, policy.record_checksums, ctx is not None and clients is not None
        ),
    )


def _follow_up(op: Op, mode: BodyMode, record: bool, signed: bool) -> FollowUp:
    # Only a request re-signed with a store key may lead to more store requests.
    if not record or not signed:
        return FollowUp.NONE
    if op is Op.COMPLETE_MULTIPART_UPLOAD:
        return FollowUp.COMPLETE
    if op is Op.PUT_OBJECT and mode is not BodyMode.WHOLE:
        return FollowUp.STREAMED_PUT
    if op is Op.UPLOAD_PART:
        return FollowUp.PART
    return FollowUp.NONE


def _encryption(target: Target, head: RequestHead, policy: Policy) -> Encryption | None:
    single = head.single_values()
    return sse.decide(
        target.op,
        target.bucket or "",
        target.key or "",
        single,
        policy.keyring,
        encrypt_by_default=policy.sse_default,
        copy_source=sse.copy_source(single.get("x-amz-copy-source")),
    )


def _continue_from(
    op: Op, spec: BodySpec, length: int | None, strip_xml: bool, record: bool
) -> Continue:
    """Who answers a client's ``Expect: 100-continue`` (see :class:`Continue`).

    A body up to :data:`SMALL_BODY`, otherwise read whole, streams instead when that changes
    nothing but the order (the store sees the head before the client sends a byte): as every
    larger body, with ``UNSIGNED-PAYLOAD``, its exact Content-Length and its last bytes held
    back until verified. Only uploads do, and a PutObject only when its record is the same
    either way (a checksum declared in a header). The small bodies of other operations
    (configuration XML, DeleteObjects) keep being read whole, signed with their real SHA-256.
    """
    if not length or strip_xml:
        return Continue.SHIM
    if length > SMALL_BODY:
        return Continue.STORE
    if not op.traits.upload:
        return Continue.SHIM
    if record and (spec.checksum is None or spec.checksum.value is None):
        return Continue.SHIM  # its record is computed over the bytes read whole
    return Continue.STORE


def _streamed_record(spec: BodySpec) -> str | None:
    """A streamed body's record, known before it is sent: a header checksum (verified before
    the store commits: the last bytes are held back) or the body's signed hex SHA-256.
    (A body read whole gets its record once read: see finish_whole.)"""
    if spec.checksum is not None and spec.checksum.value is not None:
        return encode_record(spec.checksum.algorithm, spec.checksum.value)
    if spec.sha256_hex is not None:
        return sha256_record(spec.sha256_hex)
    return None


@dataclass(frozen=True, slots=True)
class WholeBody:
    """A WHOLE body once read and verified: what the store is sent, and how it is signed."""

    body: bytes
    headers: tuple[tuple[str, str], ...]
    payload_hash: str
    rewrites: frozenset[Group]


def finish_whole(
    planned: UpstreamPlan, method: str, body: bytes, computed_checksum: str | None
) -> WholeBody:
    """The store's request for a body read whole: rewritten XML, length, real hash."""
    rewrites = planned.rewrites
    if planned.strip_xml:
        stripped = strip_part_checksums(body)
        if stripped != body:
            rewrites = rewrites | {Group.CHECKSUM}
        body = stripped
    headers = list(planned.headers)
    if planned.record_whole:
        if planned.spec.checksum is not None and computed_checksum:
            record = encode_record(planned.spec.checksum.algorithm, computed_checksum)
        else:
            c = new_checksum(DEFAULT_ALGORITHM)
            c.update(body)
            record = encode_record(DEFAULT_ALGORITHM, c.b64digest())
        headers.append((RECORD_HEADER, record))
    if planned.forwarded_checksum is not None and computed_checksum:
        # Known before sending: a plain header, as SDKs send it for small bodies.
        headers += [
            (planned.forwarded_checksum.header, computed_checksum),
            (SDK_ALGORITHM_HEADER, planned.forwarded_checksum.name),
        ]
    if body or method in ("PUT", "POST"):
        headers.append((CONTENT_LENGTH, str(len(body))))
    return WholeBody(body, tuple(headers), hashlib.sha256(body).hexdigest(), rewrites)


class Reply(enum.Enum):
    """How the store's response body reaches the client."""

    NONE = "none"  # HEAD, 204, 304: no body, whatever the headers say
    # Up to SMALL_RESPONSE, with a known length and unchecked: read whole and answered in one
    # write with the head (a streamed response sends its head on its own).
    WHOLE = "whole"
    STREAM = "stream"  # as it arrives; through the ReadVerifier when there is one


@dataclass(frozen=True, slots=True)
class ResponsePlan:
    """The client's answer to one store response (see :meth:`UpstreamPlan.respond`)."""

    headers: list[tuple[str, str]]
    body: Reply
    length: int | None  # the store's Content-Length, when it is a number
    verifier: ReadVerifier | None  # checks a whole object s3shim recorded
    # A form upload's PostResponse (201) names the object by the store's URL: (store
    # origin, client origin) to replace it in the body; None: the body goes as it is.
    relocate: tuple[str, str] | None

    def relocated(self, body: bytes) -> bytes:
        return relocated(self.relocate, body) if self.relocate is not None else body


def relocated(relocate: tuple[str, str], value: bytes) -> bytes:
    """A Location header or PostResponse body with the store's origin replaced by the
    client's (only where it starts a URL: the Location header, or a <Location> element)."""
    store, client = (s.encode() for s in relocate)
    if value.startswith(store + b"/"):
        return client + value[len(store) :]
    return value.replace(b"<Location>" + store + b"/", b"<Location>" + client + b"/")


def store_request(
    planned: UpstreamPlan,
    headers: tuple[tuple[str, str], ...],
    payload_hash: str,
    amz_date: str,
    settings: Settings,
    attempt: int = 0,
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The store's request target and head: signed with the plan's store key, or (forwarded
    unverified) with no credentials at all. The canonical path and query the signature
    covers are sent without re-quoting: what is signed is exactly what is sent. ``attempt``:
    which of the plan's SSE-C keys it carries (the next one after a wrong-key answer)."""
    if planned.encryption is not None:
        headers = (*headers, *planned.encryption.headers(attempt))
    if planned.store_creds is not None:
        signed = sigv4.sign_headers(
            method=planned.method,
            raw_path=planned.path,
            query=planned.query,
            host=settings.store_host,
            headers=dict(headers),
            payload_hash=payload_hash,
            creds=planned.store_creds,
            region=settings.store_region,
            amz_date=amz_date,
        )
        # Appended, not merged: the plan never forwards these names (TRANSPORT_DROPS).
        # Host is left out: the upstream client sends the store_host signed.
        headers = (*headers, *((n, v) for n, v in signed.headers.items() if n != "host"))
    qs = sigv4.canonical_query(planned.query)
    return sigv4.canonical_uri(planned.path) + ("?" + qs if qs else ""), headers


def error_headers(request_id: str) -> dict[str, str]:
    """The head of an error s3shim answers itself (its body: errors.error_xml)."""
    return {
        REQUEST_ID_HEADER: request_id,
        "Content-Type": "application/xml",
        "Server": SERVER_NAME,
    }


# The head headers a form upload keeps. The policy signs fields, not the head, so the store
# gets only what shapes the answer (CORS, the store's own logs and bucket-policy conditions on
# Referer / User-Agent); the framing headers are s3shim's own (form_headers).
FORM_HEAD_HEADERS = frozenset({"origin", "referer", "user-agent", "accept", "accept-language"})


@dataclass(frozen=True, slots=True)
class FormPlan:
    """A browser form upload before its fields are read (see :func:`form_plan`)."""

    op: Op
    method: str
    headers: tuple[tuple[str, str], ...]  # of the head: FORM_HEAD_HEADERS only
    path: str
    query: tuple[tuple[str, str], ...]  # as every request's is filtered (_upstream_query)
    rewrites: frozenset[Group]
    relocate: tuple[str, str] | None
    expect: Continue | None  # SHIM: the body is read before anything reaches the store
    upload: FormUpload  # reads the fields, verifies them, writes the store's form


def form_plan(target: Target, head: RequestHead, settings: Settings, now: datetime) -> FormPlan:
    """A browser form upload: the head carries no credentials (the form's own fields carry
    the store's signature, see formupload.py) and only :data:`FORM_HEAD_HEADERS`; the query is
    filtered as every request's is; the body's type and length are the store form's, known
    once its fields are read (:func:`form_request`)."""
    policy = settings.policy
    if not auth.is_anonymous(head.query, head.headers):
        # The store reads an Authorization header or presign parameters on a form POST as
        # an attempt to authenticate, and refuses it; forwarding the form without them would
        # accept what the store refuses.
        raise errors.access_denied(
            "A form upload is authenticated by its policy fields, not by the request's "
            "Authorization header or query."
        )
    fwd = [(n, v) for n, v in _as_verified(head, ()) if n in FORM_HEAD_HEADERS]
    query, dropped = _upstream_query(head, True, policy)
    length = head.single_values().get(CONTENT_LENGTH)
    if length is None or not (length.isascii() and length.isdigit()):
        raise errors.missing_content_length()
    clients = settings.clients
    upload = FormUpload(
        head.first("content-type"),
        int(length),
        lookup=settings.lookup,
        store_creds=lambda key: clients[key].upstream,
        store_region=settings.store_region,
        regions=settings.regions,
        policy=policy,
        now=now,
        bucket=target.bucket or "",
    )
    return FormPlan(
        op=target.op,
        method=head.method,
        headers=tuple(fwd),
        path=target.upstream_path,
        query=query,
        rewrites=dropped,
        relocate=(settings.store_origin, f"{settings.client_scheme}://{head.host}")
        if head.host
        else None,
        expect=Continue.SHIM if head.expects_continue else None,
        upload=upload,
    )


def form_request(form: FormPlan) -> UpstreamPlan:
    """The store's request for a form whose fields were read (``form.upload.store_form`` set):
    the store's form streams with its own type and exact length. A form s3shim verified and
    re-signs with a store key loses its URL's query: the policy signs fields, never the URL,
    and a store may act on a query (RGW reads a form POST's query ``x-amz-meta-*`` as metadata
    in some releases); the store then reads only what was verified, as RGW 16 does directly
    (it ignores the query)."""
    upload = form.upload
    assert upload.store_form is not None and upload.content_length is not None
    return UpstreamPlan(
        op=form.op,
        method=form.method,
        body=BodyMode.STREAM,
        spec=BodySpec(length=None),
        headers=(
            *form.headers,
            ("content-type", upload.content_type),
            (CONTENT_LENGTH, str(upload.content_length)),
        ),
        payload_hash=None,
        path=form.path,
        query=() if upload.access_key is not None else form.query,
        rewrites=form.rewrites | upload.store_form.dropped,
        sign=False,  # the form's fields carry the store's signature
        relocate=form.relocate,
        # The key travels in the form's fields; this only makes the answer AWS's SSE-S3.
        encryption=Encryption(drop_sse_s3=True, in_form=True) if upload.encrypted else None,
    )
