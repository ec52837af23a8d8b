"""The aiohttp layer: moves bytes between client and store and calls the pure modules.

Per request: classify -> authenticate -> plan headers and body -> (100-continue) -> stream
the body through :class:`BodyPipeline` to a re-signed upstream request -> stream the
response back, adding what s3shim vouches for. Nothing reaches the store before the
request is authenticated; nothing is committed upstream before the body is verified.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import ssl
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.web_request import BaseRequest
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from . import auth, chunked, errors, logs, sigv4
from .body import BodyPipeline, BodySpec
from .checksums import declared_checksum, new_checksum
from .classify import Op, classify
from .complete_xml import strip_part_checksums
from .config import Config
from .metrics import Metrics
from .rewrite import (
    RESPONSE_DROPS,
    Group,
    Policy,
    forward_headers,
    with_aws_chunked_encoding,
)

SERVER_NAME = "s3shim"  # instead of aiohttp's banner with its and Python's versions
READ_SIZE = 256 * 1024  # measured sweet spot for throughput vs per-stream memory
SMALL_BODY = 1024 * 1024  # bodies up to this are read whole, verified, then sent signed
MAX_COMPLETE_XML = 4 * 1024 * 1024
_UPLOAD_OPS = frozenset({Op.PUT_OBJECT, Op.UPLOAD_PART})
# A declared checksum is verified over every body s3shim forwards (the flag drops it on every
# operation), except where it does not describe this request's body: Complete's is the whole
# object's, and the copies' is the source's.
_NO_BODY_CHECKSUM_OPS = frozenset(
    {Op.COMPLETE_MULTIPART_UPLOAD, Op.COPY_OBJECT, Op.UPLOAD_PART_COPY}
)
_HEX = frozenset("0123456789abcdef")


def newnew_request_id() -> str:
    return secrets.token_hex(8).upper()


def _header_lists(headers: CIMultiDictProxy[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in headers.items():
        out.setdefault(name.lower(), []).append(value)
    return out


def _as_verified(headers: dict[str, list[str]], signed: tuple[str, ...]) -> list[tuple[str, str]]:
    """One header per name, each signed one exactly as its signature was verified.

    Repeated headers are joined with ',' (as SigV4 and RFC 9110 do), and a signed value is
    forwarded in its canonical form: the store acts on precisely what was verified, not on a
    variant that only canonicalises to it (tabs or other whitespace changed in flight).
    """
    signed_set = frozenset(signed)
    out = []
    for name, values in headers.items():
        if name in signed_set:
            out.append((name, ",".join(sigv4.fold_value(v) for v in values)))
        else:
            out.append((name, ",".join(values)))
    return out


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


def _is_hex_sha256(value: str) -> bool:
    return len(value) == 64 and set(value.lower()) <= _HEX


def error_response(
    method: str, err: errors.S3Error, request_id: str, resource: str
) -> web.Response:
    headers = {
        "x-amz-request-id": request_id,
        "Content-Type": "application/xml",
        "Server": SERVER_NAME,
    }
    body = errors.error_xml(err, resource, request_id)
    resp = web.Response(status=err.status, headers=headers, body=None if method == "HEAD" else body)
    # The client's body may be partly unread: never reuse this connection.
    resp.force_close()
    return resp


def body_spec(op: Op, ctx: auth.AuthContext, headers: dict[str, list[str]]) -> BodySpec:
    """What the (verified) request promises about its body."""
    single = {k: v[0] for k, v in headers.items()}
    framing = chunked.framing_for(ctx.payload_hash)
    raw = single.get("x-amz-decoded-content-length" if framing else "content-length")
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
    trailers = single.get("x-amz-trailer", "")
    return BodySpec(
        length=length,
        sha256_hex=ctx.payload_hash.lower() if _is_hex_sha256(ctx.payload_hash) else None,
        checksum=declared_checksum(single) if op not in _NO_BODY_CHECKSUM_OPS else None,
        framing=framing,
        chunk_signing=signing,
        trailers=frozenset(t.strip().lower() for t in trailers.split(",") if t.strip()),
    )


class Proxy:
    def __init__(self, config: Config, metrics: Metrics, session: aiohttp.ClientSession) -> None:
        self.config = config
        self.metrics = metrics
        self.session = session
        self.active = 0  # requests being handled, for draining on SIGTERM
        self.policy = Policy(config.disable_sse, config.disable_checksums)
        self.log = logs.get()

    async def handle(self, request: BaseRequest) -> web.StreamResponse:
        request_id = new_request_id()
        started = time.monotonic()
        raw_path, _, raw_query = request.raw_path.partition("?")
        fields: dict[str, Any] = {"request_id": request_id, "method": request.method}
        self.metrics.in_flight.inc()
        self.active += 1
        try:
            resp = await self._handle(request, request_id, raw_path, raw_query, fields)
        except errors.S3Error as err:
            fields.update(status=err.status, error=err.code, error_message=err.message)
            resp = error_response(request.method, err, request_id, raw_path)
        finally:
            self.metrics.in_flight.dec()
            self.active -= 1
        fields["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
        fields.setdefault("status", resp.status)
        self._record(fields, time.monotonic() - started)
        return resp

    def _record(self, fields: dict[str, Any], duration: float) -> None:
        m = self.metrics
        op = fields.get("op", "Unknown")
        m.requests.labels(op, str(fields["status"])).inc()
        m.latency.labels(op).observe(duration)
        m.bytes_in.labels(op).inc(fields.get("bytes_in", 0))
        m.bytes_out.labels(op).inc(fields.get("bytes_out", 0))
        for kind in fields.get("rewrites", ()):
            m.rewrites.labels(kind).inc()
        if "auth_failure" in fields:
            m.auth_failures.labels(fields["auth_failure"]).inc()
        if "integrity_failure" in fields:
            m.integrity_failures.labels(fields["integrity_failure"]).inc()
        level = "info" if fields["status"] < 500 else "warning"
        getattr(self.log, level)("request", **fields)

    async def _handle(
        self,
        request: BaseRequest,
        request_id: str,
        raw_path: str,
        raw_query: str,
        fields: dict[str, Any],
    ) -> web.StreamResponse:
        cfg = self.config
        headers = _header_lists(request.headers)
        query = sigv4.parse_query(raw_query)
        host = request.headers.get("Host", "")
        target = classify(request.method, host, raw_path, query, frozenset(headers), cfg.domains)
        fields.update(op=target.op.value, bucket=target.bucket)
        try:
            ctx = auth.verify(
                method=request.method,
                raw_path=raw_path,
                query=query,
                headers=headers,
                lookup=cfg.secret_for,
                region=cfg.region,
                now=datetime.now(UTC),
            )
        except errors.S3Error as err:
            fields["auth_failure"] = err.code
            raise
        fields["access_key"] = ctx.access_key
        spec = body_spec(target.op, ctx, headers)
        if spec.framing is not None:
            fields["framing"] = spec.framing.value
        fwd, fired = forward_headers(
            _as_verified(headers, ctx.signed_headers),
            self.policy,
            decoded_aws_chunked=spec.framing is not None,
        )
        fields["rewrites"] = sorted(g.value for g in fired)

        # Authenticated: now, and only now, invite the body. (The low-level server has no
        # router, hence no automatic 100-continue before the handler runs.)
        if request.headers.get("Expect", "").lower() == "100-continue" and request.writer:
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")

        pipeline = BodyPipeline(spec)
        data, payload_hash, fwd = await self._prepare_body(
            request, target.op, spec, pipeline, fwd, fields
        )

        upstream_query = [
            (k, v) for k, v in query if not (ctx.presigned and k.startswith("X-Amz-"))
        ]
        signed = sigv4.sign_headers(
            method=request.method,
            raw_path=target.upstream_path,
            query=upstream_query,
            host=cfg.upstream_host,
            headers=dict(fwd),
            payload_hash=payload_hash,
            creds=cfg.clients[ctx.access_key].upstream,
            region=cfg.upstream_region,
            amz_date=datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        )
        out_headers = CIMultiDict(fwd)
        out_headers.update(signed.headers)
        # Built from the fixed upstream and the canonical path and query the signature
        # covers, sent without re-quoting: what is signed is exactly what is sent.
        qs = sigv4.canonical_query(upstream_query)
        path = sigv4.canonical_uri(target.upstream_path)
        url = URL(cfg.upstream_url + path + ("?" + qs if qs else ""), encoded=True)
        sent = time.monotonic()
        try:
            upstream = await self.session.request(
                request.method,
                url,
                headers=out_headers,
                data=data,
                allow_redirects=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type", "Accept"),
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            if pipeline.failure is not None:
                # The body was refused mid-stream and the upstream request aborted with it.
                fields["integrity_failure"] = pipeline.failure.code
                raise pipeline.failure from None
            fields["upstream_error"] = type(exc).__name__
            self.metrics.upstream_errors.inc()
            raise errors.bad_gateway() from None
        self.metrics.upstream_latency.labels(target.op.value).observe(time.monotonic() - sent)
        fields["upstream_status"] = upstream.status
        if "x-amz-request-id" in upstream.headers:
            fields["upstream_request_id"] = upstream.headers["x-amz-request-id"]
        return await self._respond(request, upstream, request_id, target.op, pipeline, fields)

    async def _prepare_body(
        self,
        request: BaseRequest,
        op: Op,
        spec: BodySpec,
        pipeline: BodyPipeline,
        fwd: list[tuple[str, str]],
        fields: dict[str, Any],
    ) -> tuple[bytes | AsyncIterator[bytes] | None, str, list[tuple[str, str]]]:
        """What the store is sent as the body, the payload hash to sign, and the headers.

        Every body goes through the pipeline, even an empty one: a hex payload hash or a
        checksum header is a promise about it, and RGW 16 checks no flexible checksum.
        """
        cfg = self.config
        length = spec.length if spec.length is not None else (None if request.body_exists else 0)
        strip_xml = op is Op.COMPLETE_MULTIPART_UPLOAD and cfg.disable_checksums
        # A trailer checksum the store should still get (flag off): s3shim decodes the client's
        # framing, so it hands the verified value on itself.
        trailer_alg = (
            spec.checksum.algorithm
            if spec.checksum and spec.checksum.in_trailer and not cfg.disable_checksums
            else None
        )
        data: bytes | AsyncIterator[bytes] | None
        if strip_xml or (length is not None and length <= SMALL_BODY):
            limit = MAX_COMPLETE_XML if strip_xml else SMALL_BODY
            body = await self._read_whole(request, pipeline, limit, fields)
            if strip_xml:
                stripped = strip_part_checksums(body)
                if stripped != body:
                    fields["rewrites"] = sorted({*fields["rewrites"], Group.CHECKSUM.value})
                body = stripped
            if trailer_alg and pipeline.computed_checksum:
                # Known before sending: a plain header, as SDKs send it for small bodies.
                fwd += [
                    (trailer_alg.header, pipeline.computed_checksum),
                    ("x-amz-sdk-checksum-algorithm", trailer_alg.name),
                ]
            # A body sent whole can be signed with its real hash.
            payload_hash = hashlib.sha256(body).hexdigest()
            data = body or None
            if body or request.method in ("PUT", "POST"):
                fwd.append(("content-length", str(len(body))))
        elif length is None:
            # Stores need the length up front (RGW answers 411 to chunked transfer coding).
            raise errors.missing_content_length()
        elif trailer_alg:
            framing = chunked.OneChunkFraming(
                length, trailer_alg.header, len(new_checksum(trailer_alg).b64digest())
            )
            payload_hash = chunked.Framing.UNSIGNED_TRAILER.value
            fwd = with_aws_chunked_encoding(fwd)
            fwd += [
                ("content-length", str(framing.framed_length)),
                ("x-amz-decoded-content-length", str(length)),
                ("x-amz-trailer", trailer_alg.header),
                ("x-amz-sdk-checksum-algorithm", trailer_alg.name),
            ]
            data = self._reframe(framing, self._stream(request, pipeline, fields), pipeline)
        else:
            payload_hash = sigv4.UNSIGNED_PAYLOAD
            fwd.append(("content-length", str(length)))
            data = self._stream(request, pipeline, fields)
        return data, payload_hash, fwd

    async def _client_body(self, request: BaseRequest) -> AsyncIterator[bytes]:
        """The request body as it arrives; a client silent for too long is cut off."""
        content = request.content
        while True:
            try:
                async with asyncio.timeout(self.config.client_timeout):
                    piece = await _next_buffer(content)
            except TimeoutError:
                raise errors.request_timeout() from None
            if piece is None:
                return
            yield piece

    async def _read_whole(
        self, request: BaseRequest, pipeline: BodyPipeline, limit: int, fields: dict[str, Any]
    ) -> bytes:
        parts: list[bytes] = []
        size = received = 0
        try:
            async for piece in self._client_body(request):
                received += len(piece)
                out = pipeline.feed(piece)
                size += len(out)
                if size > limit:
                    raise errors.entity_too_large()
                parts.append(out)
            parts.append(pipeline.finish())
        except errors.S3Error as err:
            fields["integrity_failure"] = err.code
            raise
        finally:
            fields["bytes_in"] = received
        return b"".join(parts)

    async def _stream(
        self, request: BaseRequest, pipeline: BodyPipeline, fields: dict[str, Any]
    ) -> AsyncIterator[bytes]:
        received = 0
        try:
            async for piece in self._client_body(request):
                received += len(piece)
                out = pipeline.feed(piece)
                if out:
                    yield out
            tail = pipeline.finish()
        except errors.S3Error as err:
            pipeline.failure = err
            raise
        except (aiohttp.ClientError, OSError) as exc:
            pipeline.failure = errors.incomplete_body()
            raise aiohttp.ClientPayloadError("the client's body ended early") from exc
        finally:
            fields["bytes_in"] = received
        if tail:
            yield tail

    @staticmethod
    async def _reframe(
        framing: chunked.OneChunkFraming, payload: AsyncIterator[bytes], pipeline: BodyPipeline
    ) -> AsyncIterator[bytes]:
        yield framing.head()
        async for piece in payload:
            yield piece
        # Only reached once the pipeline verified the body (it raises otherwise).
        assert pipeline.computed_checksum is not None
        yield framing.tail(pipeline.computed_checksum)

    async def _respond(
        self,
        request: BaseRequest,
        upstream: aiohttp.ClientResponse,
        request_id: str,
        op: Op,
        pipeline: BodyPipeline,
        fields: dict[str, Any],
    ) -> web.StreamResponse:
        async with upstream:
            resp = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in RESPONSE_DROPS:
                    resp.headers.add(name, value)
            resp.headers["x-amz-request-id"] = request_id
            resp.headers["Server"] = SERVER_NAME
            alg, vouched = pipeline.checksum_algorithm, pipeline.computed_checksum
            if alg and vouched and upstream.status == 200 and op in _UPLOAD_OPS:
                # s3shim verified this checksum over the bytes the store stored; clients
                # such as Convex require it on UploadPart, and RGW does not return it.
                resp.headers.setdefault(alg.header, vouched)
            if "Content-Length" in upstream.headers:
                resp.content_length = int(upstream.headers["Content-Length"])
            await resp.prepare(request)
            sent = 0
            try:
                if request.method != "HEAD" and upstream.status not in (204, 304):
                    while (piece := await _next_buffer(upstream.content)) is not None:
                        sent += len(piece)
                        await resp.write(piece)
                await resp.write_eof()
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                # The status line is out, so no error can be sent any more. Cutting the
                # connection is the one honest signal left: the client sees a short body,
                # never a complete-looking one (which a chunked response would otherwise
                # end as).
                fields["stream_error"] = type(exc).__name__
                if request.transport is not None:
                    request.transport.abort()
            finally:
                fields["bytes_out"] = sent
            return resp


def _upstream_ssl(config: Config) -> ssl.SSLContext | bool:
    if config.upstream_scheme != "https":
        return True
    if config.upstream_insecure:
        return False
    if config.upstream_ca_bundle:
        return ssl.create_default_context(cafile=config.upstream_ca_bundle)
    return True


def new_upstream_session(config: Config) -> aiohttp.ClientSession:
    """The one client session to the store (call inside the running loop)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ssl=_upstream_ssl(config)),
        auto_decompress=False,  # bodies pass through byte for byte
        read_bufsize=READ_SIZE,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300),
        cookie_jar=aiohttp.DummyCookieJar(),
    )
