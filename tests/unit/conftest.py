"""Fixtures of the in-process tests: s3shim built in the test's own event loop in front of
the recording fake store (testkit/inprocess.py, testkit/fakestore.py)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog

from s3shim import config as config_mod
from s3shim import logs
from testkit.fakestore import FakeStore
from testkit.inprocess import (
    CLIENT_KEY,
    CLIENT_SECRET,
    STORE_KEY,
    STORE_SECRET,
    Client,
    InProcessShim,
    LogCapture,
    MakeShim,
    serve_in_process,
    shim_env,
)


@pytest.fixture
def log_capture() -> Iterator[LogCapture]:
    """s3shim's own logging setup (logs.configure, JSON), writing into a buffer."""
    was_configured = structlog.is_configured()
    saved = structlog.get_config()
    capture = LogCapture()
    logs.configure("info", "json")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=capture))
    try:
        yield capture
    finally:
        if was_configured:
            structlog.configure(**saved)
        else:
            structlog.reset_defaults()


@pytest.fixture
async def fake_store() -> AsyncIterator[FakeStore]:
    s = FakeStore()
    await s.start()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def make_inproc(
    fake_store: FakeStore, log_capture: LogCapture, tmp_path: Path
) -> AsyncIterator[MakeShim]:
    """``await make_inproc(flags=True, upstream=None, **env)``: an in-process s3shim in
    front of the fake store (or of ``upstream``), both flags set to ``flags``."""
    keys = tmp_path / "client-keys.json"
    keys.write_text(
        json.dumps(
            {
                "clients": [
                    {
                        "access_key_id": CLIENT_KEY,
                        "secret_access_key": CLIENT_SECRET,
                        "upstream_access_key_id": STORE_KEY,
                        "upstream_secret_access_key": STORE_SECRET,
                    }
                ]
            }
        )
    )
    async with contextlib.AsyncExitStack() as stack:

        async def make(
            flags: bool = True, upstream: str | None = None, **env: str
        ) -> InProcessShim:
            cfg = config_mod.load(
                argv=[], env=shim_env(upstream or fake_store.url, keys, flags=flags, **env)
            )
            proxy, metrics, port = await stack.enter_async_context(serve_in_process(cfg))
            endpoint = f"http://127.0.0.1:{port}"
            return InProcessShim(
                endpoint, fake_store, cfg, metrics, proxy, log_capture, Client(endpoint)
            )

        yield make


@pytest.fixture
async def inproc_on(make_inproc: MakeShim) -> InProcessShim:
    """Both flags true (AWS_S3_DISABLE_SSE, AWS_S3_DISABLE_CHECKSUMS): the Convex setup."""
    return await make_inproc(flags=True)


@pytest.fixture
async def inproc_off(make_inproc: MakeShim) -> InProcessShim:
    """Both flags false: SSE and checksum headers reach the store."""
    return await make_inproc(flags=False)


@pytest.fixture(params=[True, False], ids=["flags-on", "flags-off"])
async def inproc(make_inproc: MakeShim, request: pytest.FixtureRequest) -> InProcessShim:
    """Both configurations, for behaviour that must not depend on the flags."""
    return await make_inproc(flags=bool(request.param))
