"""Process setup: listeners (S3 and admin), signals and draining, allocator tuning."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import dataclasses
import os
import signal
import ssl
import time

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import logs
from .config import Config
from .listener import S3Server
from .metrics import Metrics
from .proxy import READ_SIZE, Proxy, new_upstream_session

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
READY_CACHE_SECONDS = 2.0


def tune_malloc() -> None:
    """Pin glibc's mmap/trim thresholds.

    aiohttp allocates a fresh ~256 KiB buffer per socket read; glibc's *dynamic* mmap
    threshold can leave a process mapping and unmapping each one (measured: 1.7x the CPU per
    GiB, at random from one start to the next). Fixed thresholds remove that, same peak RSS.
    """
    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(_M_MMAP_THRESHOLD, 8 * 1024 * 1024)
        libc.mallopt(_M_TRIM_THRESHOLD, 256 * 1024 * 1024)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def _ssl_context(cfg: Config) -> ssl.SSLContext | None:
    if not cfg.tls_cert or not cfg.tls_key:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
    return ctx


class Health:
    """Liveness, and readiness = not draining and the store answered recently."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.draining = False
        self._checked_at = -1e9
        self._ready = False
        self._lock = asyncio.Lock()

    async def store_answers(self) -> bool:
        async with self._lock:
            if time.monotonic() - self._checked_at < READY_CACHE_SECONDS:
                return self._ready
            # Any HTTP answer (even 403 to this unsigned request) means the store is up.
            try:
                timeout = aiohttp.ClientTimeout(total=2)
                async with (
                    aiohttp.ClientSession(timeout=timeout) as session,
                    session.get(self.cfg.upstream_url + "/", ssl=self._ssl()) as resp,
                ):
                    self._ready = resp.status < 500
            except (aiohttp.ClientError, OSError, TimeoutError):
                self._ready = False
            self._checked_at = time.monotonic()
            return self._ready

    def _ssl(self) -> ssl.SSLContext | bool:
        if self.cfg.upstream_insecure:
            return False
        if self.cfg.upstream_ca_bundle:
            return ssl.create_default_context(cafile=self.cfg.upstream_ca_bundle)
        return True


def make_admin_app(health: Health, metrics: Metrics) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        if health.draining:
            return web.Response(status=503, text="draining\n")
        if not await health.store_answers():
            return web.Response(status=503, text="store unreachable\n")
        return web.Response(text="ready\n")

    async def metrics_view(_: web.Request) -> web.Response:
        resp = web.Response(body=generate_latest(metrics.registry))
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    return app


async def run(cfg: Config) -> None:
    log = logs.get()
    metrics = Metrics()
    health = Health(cfg)
    session = new_upstream_session(cfg)
    try:
        proxy = Proxy(cfg, metrics, session)
        server = S3Server(
            proxy.handle,
            handler_cancellation=False,  # a client hang-up must not cancel an upstream commit
            access_log=None,  # the proxy logs one structured line per request itself
            read_bufsize=READ_SIZE,
            # S3 itself refuses header sections over 8 KB; these bound what an
            # unauthenticated peer can make s3shim buffer per connection.
            max_field_size=8190,
            max_headers=64,
            keepalive_timeout=cfg.client_timeout,  # also the deadline for a request head
            max_connections=cfg.max_connections,
        )
        # Only what outlived the grace period is left when aiohttp's shutdown runs (see below).
        runner = web.ServerRunner(server, shutdown_timeout=1.0)
        await runner.setup()
        tls = _ssl_context(cfg)
        await web.TCPSite(
            runner,
            cfg.listen_host,
            cfg.listen_port,
            ssl_context=tls,
            backlog=1024,
            reuse_port=cfg.workers > 1,
        ).start()
        admin: web.AppRunner | None = None
        if cfg.admin_port:
            admin = web.AppRunner(make_admin_app(health, metrics), access_log=None)
            await admin.setup()
            await web.TCPSite(admin, cfg.admin_host, cfg.admin_port).start()
        if cfg.upstream_insecure:
            log.warning("upstream_tls_unverified", upstream_url=cfg.upstream_url)
        log.info("started", **cfg.describe())

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            # The loop's handler replaces the forwarding one in the first process; keep both.
            previous = signal.getsignal(sig)

            def on_signal(sig: int = sig, previous: object = previous) -> None:
                if callable(previous):
                    previous(sig, None)
                stop.set()

            loop.add_signal_handler(sig, on_signal)
        previous_hup = signal.getsignal(signal.SIGHUP)  # forwards to workers, if any

        def reload_tls() -> None:
            if callable(previous_hup):
                previous_hup(signal.SIGHUP, None)
            # New handshakes use the new pair; connections already open keep theirs. Without
            # TLS there is nothing to reload, but SIGHUP must not kill the process either.
            if tls is None or not cfg.tls_cert or not cfg.tls_key:
                log.info("sighup_ignored", reason="no TLS listener")
                return
            try:
                tls.load_cert_chain(cfg.tls_cert, cfg.tls_key)
            except (OSError, ssl.SSLError) as exc:
                log.error("tls_reload_failed", error=str(exc))
            else:
                log.info("tls_reloaded", cert=cfg.tls_cert)

        loop.add_signal_handler(signal.SIGHUP, reload_tls)
        await stop.wait()

        # Drain: readiness fails at once and the listener closes (new connections are
        # refused); requests in flight get up to the grace period. aiohttp's own graceful
        # shutdown is not used for this: it stops reading from connections it is closing,
        # which would starve an upload in flight of the rest of its body.
        health.draining = True
        log.info("draining", in_flight=proxy.active, grace_seconds=cfg.shutdown_grace)
        for site in list(runner.sites):
            await site.stop()
        deadline = loop.time() + cfg.shutdown_grace
        while proxy.active and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if proxy.active:
            log.warning("grace_period_over", in_flight=proxy.active)
        await runner.cleanup()
        if admin is not None:
            await admin.cleanup()
        log.info("stopped")
    finally:
        await session.close()


def _run_loop(cfg: Config) -> None:
    try:
        import uvloop  # optional: measured -10..25% CPU per streamed byte
    except ImportError:
        asyncio.run(run(cfg))
    else:
        uvloop.run(run(cfg))


def serve(cfg: Config) -> int:
    """Run one process, or ``cfg.workers`` processes sharing the port (SO_REUSEPORT).

    Extra workers are forked before any event loop exists and run without the admin
    listener; the first process serves it (so /metrics counts that process only) and
    forwards SIGTERM/SIGINT to the others, then waits for them to drain.
    """
    tune_malloc()
    children: list[int] = []
    for _ in range(cfg.workers - 1):
        pid = os.fork()
        if pid == 0:  # a worker: its own loop, no admin listener
            _run_loop(dataclasses.replace(cfg, admin_port=0))
            os._exit(0)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    if children:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, forward)
    try:
        _run_loop(cfg)
    finally:
        forward(signal.SIGTERM, None)
        status = 0
        for pid in children:
            _, code = os.waitpid(pid, 0)
            status = status or os.waitstatus_to_exitcode(code)
    return status
