"""Readiness checks (server.Health): through s3shim's own store client, a new connection and
one TLS context for every check. The "store" here is a local HTTPS listener behind a private
CA that counts requests; what the check proves is s3shim's own reuse, not any store's
behaviour."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from s3shim import config, server
from testkit.tls import make_tls


@pytest.fixture
async def https_store(tmp_path: Path) -> AsyncIterator[tuple[str, str, list[int]]]:
    """(url, CA bundle, request count) of a local HTTPS listener answering 403 like a store."""
    tls = make_tls(tmp_path / "ca")
    seen: list[int] = []

    async def any_request(_: web.Request) -> web.Response:
        seen.append(1)
        return web.Response(status=403)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", any_request)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tls.cert, tls.key)
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    try:
        yield f"https://127.0.0.1:{site.port}", tls.ca, seen
    finally:
        await runner.cleanup()


def _cfg(url: str, ca: str) -> config.Config:
    return config.load(
        [],
        {
            "S3SHIM_UPSTREAM_URL": url,
            "S3SHIM_UPSTREAM_CA_BUNDLE": ca,
            "AWS_ACCESS_KEY_ID": "k",
            "AWS_SECRET_ACCESS_KEY": "s",
        },
    )


async def test_every_check_reuses_one_tls_context(
    https_store: tuple[str, str, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, ca, seen = https_store
    cfg = _cfg(url, ca)
    made: list[ssl.SSLContext] = []
    real: Callable[..., ssl.SSLContext] = ssl.create_default_context

    def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        ctx = real(*args, **kwargs)
        made.append(ctx)
        return ctx

    monkeypatch.setattr(ssl, "create_default_context", counting)  # the module server uses
    monkeypatch.setattr(server, "READY_CACHE_SECONDS", 0.0)  # every call really checks
    health = server.Health(cfg)
    for _ in range(4):
        assert await health.store_answers()  # verified against the private CA
    assert len(seen) == 4  # four real checks, not a cached answer
    assert len(made) == 1 and health.ssl is made[0]


async def test_a_store_that_goes_away_is_not_ready(
    https_store: tuple[str, str, list[int]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url, ca, _ = https_store
    monkeypatch.setattr(server, "READY_CACHE_SECONDS", 0.0)
    health = server.Health(_cfg(url, ca))
    assert await health.store_answers()
    # Same CA file, nothing listening: a new connection per check finds that out.
    health.cfg = _cfg("https://127.0.0.1:9", ca)
    assert not await health.store_answers()
