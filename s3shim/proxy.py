"""The aiohttp layer: moves bytes between client and store; every decision is elsewhere.

Per request, as :mod:`plan` says (its module docstring lists the steps): read the head ->
which verification -> verify -> :func:`plan` -> (100-continue) -> move the body as the plan's
:class:`BodyMode` says, through :class:`BodyPipeline`, to a re-signed upstream request ->
stream the response back as :meth:`UpstreamPlan.respond` says. Nothing reaches the store
before the request is authenticated; nothing is committed upstream before the body is
verified. One :class:`RequestRecord` per request becomes its log line and its metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.web_request import BaseRequest

from . import errors, logs
from .attacher import Attacher
from .body import BodyPipeline
from .config import Config
from .metrics import LabelCache, Metrics
from .plan import (
    BodyMode,
    Continue,
    FollowUp,
    FormPlan,
    Reply,
    ResponsePlan,
    Scheme,
    Settings,
    UpstreamPlan,
    error_headers,
    finish_whole,
    form_plan,
    form_request,
    plan,
    read_request,
    scheme,
    store_request,
    verify,
)
from .record import Auth, RequestRecord, new_request_id
from .upstream import Response, Upstream, UpstreamError

if TYPE_CHECKING:
    from .attach import Pending
    from .classify import Target

READ_SIZE = 256 * 1024  # measured sweet spot for throughput vs per-stream memory
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _write_continue(request: BaseRequest) -> None:
    # Written past aiohttp's response writer, which would otherwise count it as a started
    # response and refuse to send an error. (The low-level server has no router, hence no
    # automatic 100-continue.)
    if request.transport is not None:
        request.transport.write(_CONTINUE)


class _Invitation:
    """A client's ``Expect: 100-continue`` that the store answers (``Continue.STORE``):
    the client is told to continue when its body is first asked for, which the upstream
    client does only once the store said 100 Continue (or stayed silent, ignoring the
    expectation); never when the store gave its final answer first."""

    __slots__ = ("_request", "sent")

    def __init__(self, request: BaseRequest) -> None:
        self._request = request
        self.sent = False

    def send(self) -> None:
        if not self.sent:
            self.sent = True
            _write_continue(self._request)


class _Refusable(Protocol):
    """A request body's checker: why it refused the body, once it has."""

    @property
    def failure(self) -> errors.S3Error | None: ...


class _NoRefusal:
    """A body already read and verified: nothing left to refuse."""

    failure: errors.S3Error | None = None


_NO_REFUSAL = _NoRefusal()

_UNVERIFIED_AUTH = {Scheme.ANONYMOUS: Auth.ANONYMOUS, Scheme.PREFLIGHT: Auth.PREFLIGHT}


async def _next_buffer(stream: StreamReader) -> bytes | None:
    """The next buffer of a body as it was received, or None at its end.

    readchunk() hands buffers over as they arrived; readany()/iter_any() first join whatever
    has queued up into a new bytes object (measured: ~12% of s3shim's CPU on GETs). Its
    (b"", True) marks an HTTP chunk boundary, not the end, except on aiohttp's shared empty
    payload, which answers it forever: hence at_eof().
    """
    while True:
        piece, _ = await stream.readchunk()
        if piece:
            return piece
        if stream.at_eof():
            return None


def error_response(
    method: str, err: errors.S3Error, request_id: str, resource: str
) -> web.Response:
    headers = error_headers(request_id)
    body = errors.error_xml(err, resource, request_id)
    resp = web.Response(status=err.status, headers=headers, body=None if method == "HEAD" else body)
    # The client's body may be partly unread: never reuse this connection.
    resp.force_close()
    return resp


def _where(target: Target) -> dict[str, str]:
    return {"bucket": target.bucket or "", "key": target.key or ""}


class Proxy:
    def __init__(self, config: Config, metrics: Metrics, upstream: Upstream) -> None:
        self.config = config
        self.metrics = metrics
        self.upstream = upstream
        self.active = 0  # requests being handled, for draining on SIGTERM
        self.settings = Settings.of(config)
        self.policy = self.settings.policy
        self.log = logs.get()
        m = metrics
        self._requests, self._latency = LabelCache(m.requests), LabelCache(m.latency)
        self._bytes_in, self._bytes_out = LabelCache(m.bytes_in), LabelCache(m.bytes_out)
        self._upstream_latency, self._auth = LabelCache(m.upstream_latency), LabelCache(m.auth)
        self._rewrites, self._auth_failures = LabelCache(m.rewrites), LabelCache(m.auth_failures)
        self._integrity_failures = LabelCache(m.integrity_failures)
        self._amz_date = (0, "")  # the store's x-amz-date, formatted once a second
        # Records attached after the store committed (multipart, trailer-checksum PUTs).
        self.attacher = Attacher(
            upstream,
            host=config.upstream_host,
            region=config.upstream_region,
            registry=metrics.registry,
            log=self.log,
        )

    async def handle(self, request: BaseRequest) -> web.StreamResponse:
        rec = RequestRecord(new_request_id(), request.method)
        resource = request.raw_path.partition("?")[0]
        started = time.monotonic()
        self.metrics.in_flight.inc()
        self.active += 1
        exc_info: BaseException | None = None
        try:
            resp = await self._handle(request, rec)
        except errors.S3Error as err:
            rec.status, rec.error, rec.error_message = err.status, err.code, err.message
            resp = error_response(request.method, err, rec.request_id, resource)
        except Exception as exc:  # a bug of s3shim's: still one answer, one line, one count
            exc_info, rec.exc_type = exc, type(exc).__name__
            internal = errors.internal_error()
            rec.status, rec.error = internal.status, internal.code
            resp = error_response(request.method, internal, rec.request_id, resource)
        finally:
            self.metrics.in_flight.dec()
            self.active -= 1
        duration = time.monotonic() - started
        rec.duration_ms = round(duration * 1000, 1)
        if rec.status is None:
            rec.status = resp.status
        self._record(rec, duration, exc_info)
        return resp

    def _record(self, rec: RequestRecord, duration: float, exc: BaseException | None) -> None:
        line = rec.log_fields()  # the record's values as strings, once: the metrics' labels too
        op = line["op"]
        self._requests(op, str(rec.status)).inc()
        self._latency(op).observe(duration)
        if rec.bytes_in:
            self._bytes_in(op).inc(rec.bytes_in)
        if rec.bytes_out:
            self._bytes_out(op).inc(rec.bytes_out)
        if rec.auth is not None:
            self._auth(line["auth"]).inc()
        for kind in line.get("rewrites", ()):
            self._rewrites(kind).inc()
        if rec.auth_failure is not None:
            self._auth_failures(rec.auth_failure).inc()
        if rec.integrity_failure is not None:
            self._integrity_failures(rec.integrity_failure).inc()
        if exc is not None:
            self.log.error("request", exc_info=exc, **line)
        elif (rec.status is not None and rec.status >= 500) or rec.integrity_failure:
            self.log.warning("request", **line)
        else:
            self.log.info("request", **line)

    def _store_date(self) -> str:
        now = int(time.time())
        if self._amz_date[0] != now:
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
            self._amz_date = (now, stamp)
        return self._amz_date[1]

    async def _handle(self, request: BaseRequest, rec: RequestRecord) -> web.StreamResponse:
        head, target = read_request(
            request.method,
            request.raw_path,
            request.headers.items(),
            request.body_exists,
            self.settings.domains,
        )
        rec.op, rec.bucket = target.op, target.bucket
        kind = scheme(target, head, self.policy)
        if kind is Scheme.FORM:
            form = form_plan(target, head, self.settings, datetime.now(UTC))
            return await self._post_object(request, form, rec)
        try:
            ctx = verify(kind, head, self.settings, datetime.now(UTC))
        except errors.S3Error as err:
            rec.auth_failure = err.code
            raise
        if ctx is None:
            rec.auth = _UNVERIFIED_AUTH[kind]
        else:
            rec.access_key, rec.auth = ctx.access_key, Auth.of(ctx)
        planned = plan(target, ctx, head, self.policy, self.settings.clients)
        rec.framing, rec.rewrites = planned.spec.framing, planned.rewrites

        # Authenticated: now, and only now, may the body be invited; by s3shim itself when
        # it reads the body before the store's head goes out, else once the store asks.
        invitation = None
        if planned.expect is Continue.SHIM:
            _write_continue(request)
        elif planned.expect is Continue.STORE:
            invitation = _Invitation(request)

        pipeline = BodyPipeline(planned.spec)
        pending: Pending | None = None
        data: bytes | AsyncIterator[bytes] | None
        match planned.body:
            case BodyMode.WHOLE:
                raw = await self._read_whole(request, pipeline, planned.read_limit, rec)
                whole = finish_whole(planned, head.method, raw, pipeline.computed_checksum)
                rec.rewrites = whole.rewrites
                if planned.follow_up is FollowUp.COMPLETE:
                    pending = await self._before_complete(
                        planned, head.single_values(), raw, target
                    )
                data, headers, payload_hash = whole.body or None, whole.headers, whole.payload_hash
            case BodyMode.STREAM:
                assert planned.payload_hash is not None
                data = self._stream(request, pipeline, rec, invitation)
                headers, payload_hash = planned.headers, planned.payload_hash
            case BodyMode.REFRAME:
                assert planned.payload_hash is not None
                stream = self._stream(request, pipeline, rec, invitation)
                data = self._reframe(planned, stream, pipeline)
                headers, payload_hash = planned.headers, planned.payload_hash
        upstream = await self._send(planned, headers, payload_hash, data, pipeline, rec)
        if planned.encryption is not None and upstream.status == 400:
            upstream = await self._next_keys(planned, headers, payload_hash, data, upstream, rec)
        checked = planned.spec.checksum
        if planned.follow_up is FollowUp.STREAMED_PUT:
            alg = checked.algorithm if checked is not None else planned.spec.compute
            pending = self.attacher.streamed_put(headers, alg, pipeline.computed_checksum)
        elif planned.follow_up is FollowUp.PART:
            self.attacher.part_answered(
                planned.path,
                planned.query,
                upstream.status,
                upstream.headers.get("ETag"),
                checked.algorithm if checked is not None else None,
                pipeline.computed_checksum,
            )
        if pending is not None:
            await self._attach_after(planned, pending, upstream, target)
        # The store answered before it asked for the body: the client still holds all of it,
        # so the connection closes after the answer (RFC 9110 10.1.1); its bytes can never be
        # read as a next request, nor waited for.
        uninvited = invitation is not None and not invitation.sent
        answer = await self._respond(
            request, upstream, planned, pipeline.computed_checksum, rec, target.key, close=uninvited
        )
        return answer

    async def _next_keys(
        self,
        planned: UpstreamPlan,
        headers: tuple[tuple[str, str], ...],
        payload_hash: str,
        data: bytes | AsyncIterator[bytes] | None,
        upstream: Response,
        rec: RequestRecord,
    ) -> Response:
        """The request again with each next SSE-C key while the store answers "wrong key",
        when its body is still in hand (none, or read whole); a streamed body is gone."""
        enc = planned.encryption
        assert enc is not None
        attempt = 0
        while enc.retry_after(attempt, upstream.status) and not isinstance(data, AsyncIterator):
            async with upstream:
                await upstream.read()  # a small error body: the connection is kept
            attempt += 1
            self.metrics.sse_key_retries.inc()
            upstream = await self._send(
                planned, headers, payload_hash, data, _NO_REFUSAL, rec, attempt=attempt
            )
        return upstream

    async def _before_complete(
        self, planned: UpstreamPlan, request_headers: dict[str, str], body: bytes, target: Target
    ) -> Pending | None:
        """The record a Complete will get once the store commits it: from its part CRCs and
        the part sizes the store lists (ListParts, before the Complete is forwarded)."""
        creds = planned.store_creds
        assert creds is not None  # FollowUp.COMPLETE: re-signed with a store key
        upload_id = next((v for k, v in planned.query if k == "uploadId"), "")
        return await self.attacher.before_complete(
            creds, planned.path, upload_id, body, request_headers, _where(target)
        )

    async def _attach_after(
        self, planned: UpstreamPlan, pending: Pending, upstream: Response, target: Target
    ) -> None:
        """The record attached once the store answered, before the client gets the answer
        (never failing it: see Attacher.after_commit)."""
        assert planned.store_creds is not None
        kind = planned.follow_up.value
        headers = {n.lower(): v for n, v in reversed(list(upstream.headers.items()))}
        await self.attacher.after_commit(
            kind,
            planned.store_creds,
            planned.path,
            pending,
            upstream.status,
            headers,
            _where(target),
        )

    async def _post_object(
        self, request: BaseRequest, form: FormPlan, rec: RequestRecord
    ) -> web.StreamResponse:
        """A browser form upload: authenticated by its fields, which are read first."""
        upload = form.upload
        # The form's signature is in the body: there is nothing to check before it is read.
        if form.expect is Continue.SHIM:
            _write_continue(request)
        body = aiter(self._client_body(request, rec))
        first = b""
        try:
            async for piece in body:
                first += upload.feed(piece)
                if upload.store_form is not None:
                    break
            else:
                upload.finish()  # the body ended before a file: refused
        except errors.S3Error as err:
            if upload.verified is None:
                rec.auth_failure = err.code
            else:
                rec.integrity_failure = err.code
            raise
        assert upload.verified is not None
        planned = form_request(form)
        rec.access_key, rec.auth = upload.access_key, Auth.of_form(upload.verified.kind)
        rec.rewrites = planned.rewrites

        async def data() -> AsyncIterator[bytes]:
            try:
                if first:
                    yield first
                async for piece in body:
                    out = upload.feed(piece)
                    if out:
                        yield out
                tail = upload.finish()
            except errors.S3Error as err:
                upload.refuse(err)  # a timeout: the one refusal not raised by upload itself
                raise
            except (aiohttp.ClientError, OSError) as exc:
                upload.client_ended_early()
                raise aiohttp.ClientPayloadError("the client's body ended early") from exc
            if tail:
                yield tail

        upstream = await self._send(planned, planned.headers, "", data(), upload, rec)
        return await self._respond(request, upstream, planned, None, rec, None)

    async def _send(
        self,
        planned: UpstreamPlan,
        headers: tuple[tuple[str, str], ...],
        payload_hash: str,
        data: bytes | AsyncIterator[bytes] | None,
        body: _Refusable,
        rec: RequestRecord,
        attempt: int = 0,
    ) -> Response:
        amz_date = self._store_date() if planned.store_creds is not None else ""
        target, headers = store_request(
            planned, headers, payload_hash, amz_date, self.settings, attempt
        )
        sent = time.monotonic()
        try:
            upstream = await self.upstream.request(planned.method, target, headers, data)
        except UpstreamError as exc:
            if body.failure is not None:
                # The body was refused mid-stream and the upstream request aborted with it.
                rec.integrity_failure = body.failure.code
                raise body.failure from None
            rec.upstream_error = type(exc.__cause__ or exc).__name__
            self.metrics.upstream_errors.inc()
            raise errors.service_unavailable() from None
        self._upstream_latency(planned.op.value).observe(time.monotonic() - sent)
        rec.upstream_status = upstream.status
        rec.upstream_request_id = upstream.headers.get("x-amz-request-id")
        return upstream

    async def _client_body(self, request: BaseRequest, rec: RequestRecord) -> AsyncIterator[bytes]:
        """The request body as it arrives, counted; a client silent for too long is cut off."""
        content = request.content
        while True:
            try:
                async with asyncio.timeout(self.config.client_timeout):
                    piece = await _next_buffer(content)
            except TimeoutError:
                raise errors.request_timeout() from None
            if piece is None:
                return
            rec.bytes_in += len(piece)
            yield piece

    async def _read_whole(
        self, request: BaseRequest, pipeline: BodyPipeline, limit: int, rec: RequestRecord
    ) -> bytes:
        parts: list[bytes] = []
        size = 0
        try:
            if not request.body_exists:  # nothing to wait for, but the checks still run
                return pipeline.finish()
            async for piece in self._client_body(request, rec):
                out = pipeline.feed(piece)
                size += len(out)
                if size > limit:
                    raise errors.entity_too_large()
                parts.append(out)
            parts.append(pipeline.finish())
        except errors.S3Error as err:
            rec.integrity_failure = err.code
            raise
        return b"".join(parts)

    async def _stream(
        self,
        request: BaseRequest,
        pipeline: BodyPipeline,
        rec: RequestRecord,
        invitation: _Invitation | None = None,
    ) -> AsyncIterator[bytes]:
        if invitation is not None:
            invitation.send()  # first asked for by the upstream client: the store wants it
        try:
            async for piece in self._client_body(request, rec):
                out = pipeline.feed(piece)
                if out:
                    yield out
            tail = pipeline.finish()
        except errors.S3Error as err:
            # A timeout is the one refusal not raised by the pipeline itself.
            pipeline.refuse(err)
            raise
        except (aiohttp.ClientError, OSError) as exc:
            pipeline.client_ended_early()
            raise aiohttp.ClientPayloadError("the client's body ended early") from exc
        if tail:
            yield tail

    @staticmethod
    async def _reframe(
        planned: UpstreamPlan, payload: AsyncIterator[bytes], pipeline: BodyPipeline
    ) -> AsyncIterator[bytes]:
        framing = planned.reframing
        assert framing is not None
        yield framing.head()
        async for piece in payload:
            yield piece
        # Only reached once the pipeline verified the body (it raises otherwise).
        assert pipeline.computed_checksum is not None
        yield framing.tail(pipeline.computed_checksum)

    @staticmethod
    async def _cut(
        request: BaseRequest, upstream: Response, answer: ResponsePlan
    ) -> web.StreamResponse:
        """The store failed mid-body: send the head, then cut, so the body is seen short."""
        resp = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for name, value in answer.headers:
            resp.headers.add(name, value)
        if answer.length is not None:
            resp.content_length = answer.length
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            await resp.prepare(request)
        if request.transport is not None:
            request.transport.abort()
        return resp

    async def _respond(
        self,
        request: BaseRequest,
        upstream: Response,
        planned: UpstreamPlan,
        computed_checksum: str | None,
        rec: RequestRecord,
        key: str | None,
        *,
        close: bool = False,
    ) -> web.StreamResponse:
        """The store's answer, streamed to the client; ``close``: with Connection: close."""
        async with upstream:
            answer = planned.respond(
                upstream.status, upstream.headers.items(), computed_checksum, rec.request_id
            )
            if answer.body is Reply.WHOLE:
                try:
                    body = await upstream.read()
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    rec.stream_error = type(exc).__name__
                    return await self._cut(request, upstream, answer)
                if answer.relocate is not None:
                    body = answer.relocated(body)
                whole = web.Response(status=upstream.status, reason=upstream.reason, body=body)
                if close:
                    whole.force_close()
                for name, value in answer.headers:
                    if name.lower() != "content-length":  # aiohttp's: the body's own length
                        whole.headers.add(name, value)
                try:  # sent here, not by aiohttp after the handler, so a failure is logged
                    # web.Response holds its head back until the body: one write for both
                    # (a StreamResponse sends its head at prepare(): two, measured).
                    await whole.prepare(request)
                    await whole.write_eof()
                    rec.bytes_out += len(body)
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    rec.stream_error = type(exc).__name__
                return whole
            resp = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            if close:
                resp.force_close()
            for name, value in answer.headers:
                resp.headers.add(name, value)
            if answer.length is not None:
                resp.content_length = answer.length
            verifier = answer.verifier
            try:
                await resp.prepare(request)
                if answer.body is Reply.STREAM:
                    while (piece := await upstream.next_buffer()) is not None:
                        if verifier is not None:
                            piece = verifier.feed(piece)
                        rec.bytes_out += len(piece)
                        await resp.write(piece)
                    if verifier is not None:
                        piece = verifier.finish()
                        rec.bytes_out += len(piece)
                        await resp.write(piece)
                await resp.write_eof()
            except errors.S3Error as err:
                # The store's bytes differ from what s3shim recorded: the held-back tail is
                # never sent, so the client sees a cut body, not a complete-looking bad one.
                rec.integrity_failure, rec.key = err.code, key
                if request.transport is not None:
                    request.transport.abort()
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                # The status line is out, so no error can be sent any more. Cutting the
                # connection is the one honest signal left: the client sees a short body,
                # never a complete-looking one (which a chunked response would otherwise
                # end as).
                rec.stream_error = type(exc).__name__
                if request.transport is not None:
                    request.transport.abort()
            return resp


UPSTREAM_CONNECT_TIMEOUT = 10.0
UPSTREAM_READ_TIMEOUT = 300.0  # no byte from the store for this long: an error, or a cut body
# A store silent this long after a head with Expect: 100-continue ignores the expectation: the
# body goes anyway (the client is then invited). curl's wait, and botocore's.
UPSTREAM_CONTINUE_TIMEOUT = 1.0


def new_upstream(
    config: Config,
    *,
    tls: ssl.SSLContext | None = None,
    connect_timeout: float = UPSTREAM_CONNECT_TIMEOUT,
    read_timeout: float = UPSTREAM_READ_TIMEOUT,
) -> Upstream:
    """A client to the store as configured (call inside the running loop): the proxy's one
    pool, and readiness's and scrub's. ``tls``: a context built already (config's
    store_ssl_context), else one is built."""
    parts = urlsplit(config.upstream_url)
    https = parts.scheme == "https"
    assert parts.hostname is not None  # config.http_origin refuses a URL without one
    return Upstream(
        host=parts.hostname,
        port=parts.port or (443 if https else 80),
        host_header=config.upstream_host,
        ssl=tls or config.store_ssl_context(),
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        read_size=READ_SIZE,
        continue_timeout=UPSTREAM_CONTINUE_TIMEOUT,
    )
