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
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from . import auth, chunked, errors, logs, sigv4
from .body import BodyPipeline, BodySpec
from .checksums import ExpectedChecksum, declared_checksum
from .classify import Op, Target, classify
from .complete_xml import strip_part_checksums
from .config import Config
from .rewrite import (
    RESPONSE_DROPS,
    Group,
    Policy,
    content_encoding_without_aws_chunked,
    forward_headers,
)

READ_SIZE = 256 * 1024  # measured sweet spot for throughput vs per-stream memory
SMALL_BODY = 1024 * 1024  # bodies up to this are read whole, verified, then sent signed
MAX_COMPLETE_XML = 4 * 1024 * 1024
_UPLOAD_OPS = frozenset({Op.PUT_OBJECT, Op.UPLOAD_PART})
_HEX64 = frozenset("0123456789abcdef")

CONFIG_KEY = web.AppKey("config", Config)
SESSION_KEY = web.AppKey("session", aiohttp.ClientSession)


def _request_id() -> str:
    return secrets.token_hex(8).upper()


def _header_lists(headers: CIMultiDictProxy[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in headers.items():
        out.setdefault(name.lower(), []).append(value)
    return out


def _error_response(
    request: web.Request, err: errors.S3Error, request_id: str, resource: str
) -> web.Response:
    headers = {"x-amz-request-id": request_id, "Content-Type": "application/xml"}
    body = errors.error_xml(err, resource, request_id)
    resp = web.Response(
        status=err.status, headers=headers, body=None if request.method == "HEAD" else body
    )
    # The client's body may be partly unread: never reuse this connection.
    resp.force_close()
    return resp


def _is_hex_sha256(value: str) -> bool:
    return len(value) == 64 and set(value.lower()) <= _HEX64


class Proxy:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.policy = Policy(config.disable_sse, config.disable_checksums)
        self.log = logs.get()

    # ---- planning ------------------------------------------------------------------
    def _body_spec(
        self, target: Target, ctx: auth.AuthContext, headers: dict[str, list[str]]
    ) -> BodySpec:
        single = {k: v[0] for k, v in headers.items()}
        framing = chunked.framing_for(ctx.payload_hash)
        length: int | None = None
        if framing is not None:
            raw = single.get("x-amz-decoded-content-length")
            if raw is None or not raw.isdigit():
                raise errors.missing_content_length()
            length = int(raw)
        elif "content-length" in single:
            raw = single["content-length"]
            if not raw.isdigit():
                raise errors.invalid_argument("Content-Length must be a number.")
            length = int(raw)
        checksum: ExpectedChecksum | None = None
        if target.op in _UPLOAD_OPS:
            checksum = declared_checksum(single)
        trailers = frozenset(
            t.strip().lower() for t in single.get("x-amz-trailer", "").split(",") if t.strip()
        )
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
            checksum=checksum,
            framing=framing,
            chunk_signing=signing,
            trailers=trailers,
        )

    # ---- the handler ---------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        request_id = _request_id()
        started = time.monotonic()
        raw_target = request.raw_path
        raw_path, _, raw_query = raw_target.partition("?")
        fields: dict[str, Any] = {"request_id": request_id, "method": request.method}
        try:
            resp = await self._handle(request, request_id, raw_path, raw_query, fields)
        except errors.S3Error as err:
            fields.update(status=err.status, error=err.code, reason=err.message)
            resp = _error_response(request, err, request_id, raw_path)
        fields["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
        fields.setdefault("status", resp.status)
        level = "info" if fields["status"] < 500 else "warning"
        getattr(self.log, level)("request", **fields)
        return resp

    async def _handle(
        self,
        request: web.Request,
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
        upstream_creds = cfg.clients[ctx.access_key].upstream
        spec = self._body_spec(target, ctx, headers)

        # Forwarded headers: the policy decides what goes; transport headers are re-made.
        fwd, fired = forward_headers(request.headers.items(), self.policy)
        if spec.framing is not None:
            # The store gets the decoded payload; the trailer is verified here instead.
            fwd = [
                (n, v) for n, v in fwd if n not in ("x-amz-trailer", "x-amz-sdk-checksum-algorithm")
            ]
            fwd = [
                (n, v2)
                for n, v in fwd
                if (
                    v2 := (
                        content_encoding_without_aws_chunked(v) if n == "content-encoding" else v
                    )
                )
            ]
        fields["rewrites"] = sorted(g.value for g in fired)

        # Authenticated: now (and only now) invite the body.
        if request.headers.get("Expect", "").lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")

        upstream_query = [
            (k, v) for k, v in query if not (ctx.presigned and k.startswith("X-Amz-"))
        ]
        # Every body goes through the pipeline, even an empty one: a hex payload hash or a
        # checksum header is a promise about it, and RGW does not check either.
        pipeline = BodyPipeline(spec)
        length = spec.length if spec.length is not None else (None if request.body_exists else 0)
        strip_xml = target.op is Op.COMPLETE_MULTIPART_UPLOAD and cfg.disable_checksums
        data: bytes | AsyncIterator[bytes] | None
        if strip_xml or (length is not None and length <= SMALL_BODY):
            body = await self._read_small(
                request, pipeline, MAX_COMPLETE_XML if strip_xml else SMALL_BODY
            )
            if strip_xml:
                new_body = strip_part_checksums(body)
                if new_body != body:
                    fired = fired | {Group.CHECKSUM}
                    fields["rewrites"] = sorted(g.value for g in fired)
                body = new_body
            # Small bodies are sent whole, so they can be signed with their real hash.
            payload_hash = hashlib.sha256(body).hexdigest()
            data = body if body else None
            if body or request.method in ("PUT", "POST"):
                fwd.append(("content-length", str(len(body))))
        elif length is None:
            # Stores need a length up front (RGW answers 411 for chunked transfer coding).
            raise errors.missing_content_length()
        else:
            payload_hash = sigv4.UNSIGNED_PAYLOAD
            fwd.append(("content-length", str(length)))
            data = self._stream(request, pipeline)

        signed = sigv4.sign_headers(
            method=request.method,
            raw_path=target.upstream_path,
            query=upstream_query,
            host=cfg.upstream_host,
            headers=dict(fwd),
            payload_hash=payload_hash,
            creds=upstream_creds,
            region=cfg.upstream_region,
            amz_date=datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        )
        out_headers = CIMultiDict(fwd)
        for k, v in signed.headers.items():
            out_headers[k] = v
        path = sigv4.canonical_uri(target.upstream_path)
        qs = sigv4.canonical_query(upstream_query)
        url = URL(cfg.upstream_url + path + ("?" + qs if qs else ""), encoded=True)
        session = request.app[SESSION_KEY]
        try:
            upstream = await session.request(
                request.method,
                url,
                headers=out_headers,
                data=data,
                allow_redirects=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type", "Accept"),
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            failure = pipeline.failure
            if failure is not None:
                fields["integrity_failure"] = failure.code
                raise failure from None
            fields["upstream_error"] = type(exc).__name__
            raise errors.bad_gateway() from None
        fields["upstream_status"] = upstream.status
        return await self._respond(request, upstream, request_id, target, pipeline)

    async def _read_small(self, request: web.Request, pipeline: BodyPipeline, limit: int) -> bytes:
        parts: list[bytes] = []
        size = 0
        async for piece in request.content.iter_any():
            out = pipeline.feed(piece)
            size += len(out)
            if size > limit:
                raise errors.entity_too_large()
            parts.append(out)
        parts.append(pipeline.finish())
        return b"".join(parts)

    async def _stream(self, request: web.Request, pipeline: BodyPipeline) -> AsyncIterator[bytes]:
        try:
            async for piece in request.content.iter_any():
                out = pipeline.feed(piece)
                if out:
                    yield out
            tail = pipeline.finish()
        except errors.S3Error as err:
            pipeline.failure = err
            raise
        except (aiohttp.ClientError, OSError, asyncio.CancelledError) as exc:
            pipeline.failure = errors.incomplete_body()
            raise aiohttp.ClientPayloadError("client body ended early") from exc
        if tail:
            yield tail

    async def _respond(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        request_id: str,
        target: Target,
        pipeline: BodyPipeline,
    ) -> web.StreamResponse:
        async with upstream:
            resp = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in RESPONSE_DROPS:
                    resp.headers.add(name, value)
            resp.headers.setdefault("x-amz-request-id", request_id)
            vouched = pipeline.computed_checksum
            spec_alg = pipeline.checksum_algorithm
            if (
                vouched
                and spec_alg
                and upstream.status == 200
                and target.op in _UPLOAD_OPS
                and spec_alg.header not in resp.headers
            ):
                # The store did not check or return the checksum; s3shim verified it.
                resp.headers[spec_alg.header] = vouched
            length = upstream.headers.get("Content-Length")
            no_body = request.method == "HEAD" or upstream.status in (204, 304)
            if length is not None:
                resp.content_length = int(length)
            await resp.prepare(request)
            if not no_body:
                async for piece in upstream.content.iter_any():
                    await resp.write(piece)
            await resp.write_eof()
            return resp


def make_app(config: Config) -> web.Application:
    proxy = Proxy(config)
    app = web.Application(client_max_size=0, handler_args={"max_field_size": 16384})
    app[CONFIG_KEY] = config

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        ssl_ctx: ssl.SSLContext | bool = True
        if config.upstream_scheme == "https":
            if config.upstream_insecure:
                ssl_ctx = False
            elif config.upstream_ca_bundle:
                ssl_ctx = ssl.create_default_context(cafile=config.upstream_ca_bundle)
        connector = aiohttp.TCPConnector(limit=0, ssl=ssl_ctx)
        session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            read_bufsize=READ_SIZE,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        app[SESSION_KEY] = session
        yield
        await session.close()

    app.cleanup_ctx.append(session_ctx)

    async def no_auto_continue(request: web.Request) -> None:
        # aiohttp would send 100 Continue before the handler runs; s3shim sends it only
        # after the request is authenticated, so a forged request never uploads its body.
        return None

    app.router.add_route("*", "/{tail:.*}", proxy.handle, expect_handler=no_auto_continue)
    return app
