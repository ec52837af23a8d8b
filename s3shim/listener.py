"""The client-facing listener: aiohttp's low-level server with S3-style answers.

Everything that happens to a connection before a request reaches :class:`~s3shim.proxy.Proxy`
lives here: what aiohttp refuses itself (malformed or oversize heads) is answered as S3 XML,
and connections beyond the cap are closed on arrival.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_request import BaseRequest

from . import errors, logs
from .proxy import error_response, new_request_id


class S3RequestHandler(web.RequestHandler):
    """aiohttp's connection handler, answering what it rejects itself in S3's terms.

    Requests aiohttp refuses before any handler runs (oversize header section, malformed
    request line) and unexpected exceptions get an S3 XML error instead of aiohttp's
    plain-text page, which would echo part of the request back.
    """

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer is not None and request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send an error")
        if isinstance(exc, LineTooLong):
            err = errors.header_too_large()
        elif status < 500:
            err = errors.S3Error("BadRequest", "The request could not be parsed.", 400)
        else:
            err = errors.S3Error("InternalError", "We encountered an internal error.", 500)
        request_id = new_request_id()
        logs.get().warning(
            "request_rejected",
            request_id=request_id,
            status=err.status,
            error=err.code,
            exc_type=type(exc).__name__ if exc else None,
        )
        return error_response("GET", err, request_id, "/")


class S3Server(web.Server):
    """A low-level aiohttp server (no router: every path is S3's) using S3RequestHandler,
    closing connections beyond ``max_connections`` on arrival."""

    def __init__(self, *args: Any, max_connections: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_connections = max_connections

    def __call__(self) -> web.RequestHandler:
        # Same construction as web.Server.__call__, with our handler class.
        return S3RequestHandler(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        if len(self.connections) >= self.max_connections:
            logs.get().warning("connection_refused", reason="max_connections")
            transport.close()
            return
        super().connection_made(handler, transport)
