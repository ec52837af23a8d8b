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
import tempfile
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from . import logs
from .accept import Acceptor, listening_sockets
from .config import Config
from .listener import DEFAULT_PER_PEER_EXEMPT, Limits, S3Server
from .metrics import Metrics, process_gone, share_across_processes
from .proxy import READ_SIZE, Proxy, new_upstream
from .upstream import UpstreamError

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
READY_CACHE_SECONDS = 2.0
READY_TIMEOUT = 2.0  # for the whole check: connect, TLS, the store's answer


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt  # noqa: B018 - glibc's; absent elsewhere (musl has no mallopt)
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return None
    return libc


def tune_malloc() -> None:
    """Pin glibc's mmap/trim thresholds.

    aiohttp allocates a fresh ~256 KiB buffer per socket read; glibc's *dynamic* mmap
    threshold can leave a process mapping and unmapping each one (measured: 1.7x the CPU per
    GiB, at random from one start to the next). Fixed thresholds remove that, same peak RSS.
    The high trim threshold keeps the heap top from shrinking and growing with every buffer;
    memory freed after a flood is handed back by :class:`MemoryRelief` instead.
    """
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, 8 * 1024 * 1024)
        libc.mallopt(_M_TRIM_THRESHOLD, 256 * 1024 * 1024)


def rss_bytes() -> int | None:
    """This process's resident set size (Linux), for the memory_trimmed log line."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class MemoryRelief:
    """Hands freed heap memory back to the system after a connection peak has passed.

    glibc keeps freed memory: up to the trim threshold at the top of the heap (pinned high by
    :func:`tune_malloc`) and, whatever the threshold, every free page below the top. After a
    flood of connections (measured: 400 unfinished 500 KB heads) that stayed resident.
    ``malloc_trim(0)`` releases both. It runs once the open-connection count has fallen to
    half of its peak (:class:`~s3shim.listener.PeakTracker`), ``delay`` seconds later so a
    burst of closes is one trim, and at most once per ``min_interval``: it walks the heap
    under the allocator lock, and ordinary churn must not pay for it.
    """

    def __init__(self, delay: float = 1.0, min_interval: float = 5.0) -> None:
        self.delay = delay
        self.min_interval = min_interval
        self._libc = _glibc()
        self._handle: asyncio.TimerHandle | None = None
        self._last = -1e9
        self.trims = 0

    def __call__(self) -> None:
        if self._libc is None or self._handle is not None:
            return
        loop = asyncio.get_running_loop()
        when = max(loop.time() + self.delay, self._last + self.min_interval)
        self._handle = loop.call_at(when, self.trim)

    def trim(self) -> None:
        self._handle = None
        if self._libc is None:
            return
        before = rss_bytes()
        self._libc.malloc_trim(0)
        after = rss_bytes()
        self._last = asyncio.get_running_loop().time()
        self.trims += 1
        mib = 1024 * 1024
        logs.get().info(
            "memory_trimmed",
            rss_before_mib=before // mib if before is not None else None,
            rss_after_mib=after // mib if after is not None else None,
        )

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def _ssl_context(cfg: Config) -> ssl.SSLContext | None:
    if not cfg.tls_cert or not cfg.tls_key:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
    return ctx


class Health:
    """Liveness, and readiness = not draining and the store answered recently.

    The store is asked through the client that serves traffic (:mod:`s3shim.upstream`), on
    a new connection each time: a pooled one proves nothing about whether the store still
    accepts connections, and a stale one would fail spuriously. One TLS context serves
    every check.
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.draining = False
        self._checked_at = -1e9
        self._ready = False
        self._lock = asyncio.Lock()
        self.ssl = cfg.store_ssl_context()  # built once: loading a CA bundle is not free

    async def store_answers(self) -> bool:
        async with self._lock:
            if time.monotonic() - self._checked_at < READY_CACHE_SECONDS:
                return self._ready
            client = new_upstream(
                self.cfg, tls=self.ssl, connect_timeout=READY_TIMEOUT, read_timeout=READY_TIMEOUT
            )
            # Any HTTP answer (even 403 to this unsigned request) means the store is up.
            try:
                async with asyncio.timeout(READY_TIMEOUT):
                    async with await client.request("GET", "/", (), None) as resp:
                        self._ready = resp.status < 500
            except (UpstreamError, OSError, TimeoutError):
                self._ready = False
            finally:
                await client.close()
            self._checked_at = time.monotonic()
            return self._ready


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
        resp = web.Response(body=metrics.exposition())
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
    upstream = new_upstream(cfg)
    relief = MemoryRelief()
    try:
        proxy = Proxy(cfg, metrics, upstream)
        server = S3Server(
            proxy.handle,
            limits=_limits(cfg),
            metrics=metrics,
            on_relief=relief,
            handler_cancellation=False,  # a client hang-up must not cancel an upstream commit
            access_log=None,  # the proxy logs one structured line per request itself
            read_bufsize=READ_SIZE,
            # S3 itself refuses header sections over 8 KB; these bound what an
            # unauthenticated peer can make s3shim buffer per connection.
            max_field_size=8190,
            max_headers=64,
            keepalive_timeout=cfg.client_timeout,  # also the deadline for a request head
        )
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_exception_handler(server))
        # Only what outlived the grace period is left when aiohttp's shutdown runs (see below).
        runner = web.ServerRunner(server, shutdown_timeout=1.0)
        await runner.setup()
        tls = _ssl_context(cfg)
        # Not web.TCPSite: uvloop's server accepts one connection per loop iteration when
        # busy, so new connections waited seconds behind the requests in flight (accept.py).
        assert runner.server is not None
        acceptor = Acceptor(
            listening_sockets(
                cfg.listen_host, cfg.listen_port, backlog=1024, reuse_port=cfg.workers > 1
            ),
            runner.server,
            ssl=tls,
            on_error=lambda event, exc: server.log_limited(event, str(exc)),
        )
        admin: web.AppRunner | None = None
        if cfg.admin_port:
            admin = web.AppRunner(make_admin_app(health, metrics), access_log=None)
            await admin.setup()
            await web.TCPSite(admin, cfg.admin_host, cfg.admin_port).start()
        if cfg.upstream_insecure:
            log.warning("upstream_tls_unverified", upstream_url=cfg.upstream_url)
        log.info("started", **cfg.describe())

        stop = asyncio.Event()
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
        acceptor.close()
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
        relief.cancel()
        await upstream.close()


def _limits(cfg: Config) -> Limits:
    return Limits(
        max_connections=cfg.max_connections,
        max_per_peer=cfg.max_connections_per_peer,
        per_peer_exempt=() if cfg.per_peer_limit_loopback else DEFAULT_PER_PEER_EXEMPT,
        head_budget=cfg.max_head_bytes,
    )


def _exception_handler(
    server: S3Server,
) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """What the loop reports (e.g. a task's exception nobody retrieved) as one JSON line,
    rate-limited like connection refusals: never stdlib logging's multi-line traceback."""

    def handle(_: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        server.log_limited(
            "loop_exception",
            str(context.get("message", "")),
            exc_info=exc if isinstance(exc, BaseException) else None,
        )

    return handle


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
    listener; the first process serves it (its /metrics adds up every worker's values, kept
    in a shared directory) and forwards SIGTERM/SIGINT to the others, then waits for them to
    drain.
    """
    tune_malloc()
    children: list[int] = []
    shared: tempfile.TemporaryDirectory[str] | None = None
    if cfg.workers > 1:
        shared = tempfile.TemporaryDirectory(prefix="s3shim-metrics-")
        share_across_processes(shared.name)
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
            process_gone(pid)
        if shared is not None:
            shared.cleanup()
    return status
