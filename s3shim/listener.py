"""The client-facing listener: aiohttp's low-level server with S3-style answers and limits.

Everything that happens to a connection before a request reaches :class:`~s3shim.proxy.Proxy`
lives here: what aiohttp refuses itself (malformed or oversize heads) is answered as S3 XML,
and what unauthenticated peers can hold is bounded:

- connections per process (``max_connections``) and per peer address (``max_per_peer``),
  checked by an admission protocol *before* aiohttp's RequestHandler exists, so a refused
  connection costs no parser, no task and no traceback;
- bytes of unfinished request heads across all connections (``head_budget``): the largest
  unfinished head is cut off (503 SlowDown) when the total would pass the budget;
- refusal log lines, aggregated to at most one per second per reason (with a count), so a
  flood cannot fill the disk; the exact totals are Prometheus counters.

The bookkeeping (:class:`Admission`, :class:`HeadBudget`, :class:`RefusalTally`,
:class:`PeakTracker`, :func:`peer_key`) is pure; :class:`S3Server` wires it to aiohttp.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.streams import StreamReader
from aiohttp.web_request import BaseRequest

from . import errors, logs
from .metrics import Metrics
from .proxy import error_response
from .record import new_request_id

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Refusal lines per reason: one per interval at most, carrying how many refusals it stands for.
REFUSAL_LOG_INTERVAL = 1.0
# Loopback peers are exempt from the per-peer limit unless configured otherwise: a sidecar's
# only peer is 127.0.0.1, where a per-peer limit would just be a lower global cap.
DEFAULT_PER_PEER_EXEMPT: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)

# Above every AWS SDK's default connection pool (boto3 10, Java 50, JS v3 50), so one
# ordinary client never meets it, and 1/8 of the default global cap, so it takes eight
# addresses, not one, to fill the process.
DEFAULT_MAX_PER_PEER = 128
# 64 full-size heads (64 x 8190-byte fields each): far above what real clients have in flight
# (their heads are 1-3 KB), small beside the ~1 GB a capped flood could otherwise pin.
DEFAULT_HEAD_BUDGET = 32 * 1024 * 1024

MAX_CONNECTIONS = "max_connections"
MAX_CONNECTIONS_PER_PEER = "max_connections_per_peer"
HEAD_BUDGET = "head_budget"


# --- pure bookkeeping -----------------------------------------------------------------------


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def peer_key(peername: object) -> tuple[str | None, IPAddress | None]:
    """The per-peer accounting key of a transport's ``peername``, and the peer's address.

    IPv4 peers count per address. IPv6 peers count per /64: one host commonly holds a whole
    /64 and can pick any address in it, so a per-address limit would not bind. IPv4-mapped
    IPv6 addresses (a dual-stack listener) count as the IPv4 address they carry. Anything
    that is not an IP peer (a Unix socket) has no key and is limited only globally.
    """
    if not isinstance(peername, tuple) or not peername or not isinstance(peername[0], str):
        return None, None
    try:
        ip = ipaddress.ip_address(peername[0].split("%", 1)[0])  # drop an IPv6 zone index
    except ValueError:
        return None, None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        else:
            return str(ipaddress.IPv6Network((ip, 64), strict=False)), ip
    return str(ip), ip


class Admission:
    """Open-connection counts, globally and per peer key; decides whether one more may open.

    ``max_per_peer`` 0 turns the per-peer limit off. A refused connection never counts.
    """

    def __init__(self, max_connections: int, max_per_peer: int) -> None:
        self.max_connections = max_connections
        self.max_per_peer = max_per_peer
        self.open = 0
        self._per_peer: dict[str, int] = {}

    def admit(self, key: str | None, exempt: bool = False) -> str | None:
        """Count one more connection, or return the reason it is refused."""
        if self.open >= self.max_connections:
            return MAX_CONNECTIONS
        held = self._per_peer.get(key, 0) if key is not None else 0
        if key is not None and not exempt and 0 < self.max_per_peer <= held:
            return MAX_CONNECTIONS_PER_PEER
        self.open += 1
        if key is not None:
            self._per_peer[key] = held + 1
        return None

    def release(self, key: str | None) -> None:
        """A connection admitted with ``key`` has closed."""
        self.open -= 1
        if key is None:
            return
        left = self._per_peer[key] - 1
        if left:
            self._per_peer[key] = left
        else:
            del self._per_peer[key]  # no entry per peer that has gone: bounded by open

    def held_by(self, key: str) -> int:
        return self._per_peer.get(key, 0)


class HeadBudget:
    """Bytes of unfinished request heads across connections, kept under ``limit``.

    When a charge takes the total past the limit, the connections holding the *largest*
    unfinished heads are cut until it fits again. Cutting the newcomer instead would let a
    flood that filled the budget first deny every later client, however small its head;
    cutting the largest bounds the memory and leaves ordinary (small) heads their way.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self.peak = 0
        self._held: dict[Hashable, int] = {}

    def charge(self, conn: Hashable, n: int) -> list[Hashable]:
        """Count ``n`` more head bytes on ``conn``; return the connections to cut (their
        bytes are no longer counted), possibly including ``conn`` itself."""
        held = self._held.get(conn, 0) + n
        self._held[conn] = held
        self.total += n
        victims: list[Hashable] = []
        while self.total > self.limit:
            largest = max(self._held.values())
            # Ties: the connection that just grew goes first (it is the one pushing), then
            # the oldest.
            victim = (
                conn
                if self._held.get(conn) == largest
                else next(c for c, size in self._held.items() if size == largest)
            )
            self.total -= self._held.pop(victim)
            victims.append(victim)
        self.peak = max(self.peak, self.total)
        return victims

    def release(self, conn: Hashable) -> None:
        """The head on ``conn`` is complete (or the connection closed)."""
        self.total -= self._held.pop(conn, 0)

    def held_by(self, conn: Hashable) -> int:
        return self._held.get(conn, 0)


class RefusalTally:
    """Aggregates refusals into at most one log line per ``interval`` per reason.

    The first refusal after a quiet interval is reported at once (count 1); refusals within
    the interval after a line are held back and reported by :meth:`due` once the interval has
    passed, so every refusal is in exactly one line's count and the line rate is bounded.
    """

    def __init__(self, interval: float = REFUSAL_LOG_INTERVAL) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def refuse(self, reason: str, now: float) -> int | None:
        """Record one refusal: the count to log now, or None if it is held back."""
        last = self._last.get(reason)
        if last is None or now - last >= self.interval:
            count = self._held.pop(reason, 0) + 1
            self._last[reason] = now
            return count
        self._held[reason] = self._held.get(reason, 0) + 1
        return None

    def due(self, now: float) -> list[tuple[str, int]]:
        """Held-back counts whose interval has passed (each reported once)."""
        out = []
        for reason, count in list(self._held.items()):
            if now - self._last[reason] >= self.interval:
                out.append((reason, count))
                del self._held[reason]
                self._last[reason] = now
        return out

    def next_due(self) -> float | None:
        """When :meth:`due` will next have something, if anything is held back."""
        times = [self._last[r] + self.interval for r in self._held]
        return min(times) if times else None


class PeakTracker:
    """Says when a value (open connections) has fallen to half of its peak since the last
    time it said so: the moment to hand freed memory back to the system.

    Peaks under ``min_peak`` never count: ordinary churn should not trigger anything.
    """

    def __init__(self, min_peak: int = 32) -> None:
        self.min_peak = min_peak
        self.peak = 0

    def update(self, value: int) -> bool:
        if value > self.peak:
            self.peak = value
            return False
        if self.peak >= self.min_peak and value <= self.peak // 2:
            self.peak = value
            return True
        return False


# --- aiohttp wiring -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Limits:
    max_connections: int = 1024
    max_per_peer: int = DEFAULT_MAX_PER_PEER  # 0: no per-peer limit
    per_peer_exempt: tuple[IPNetwork, ...] = DEFAULT_PER_PEER_EXEMPT
    head_budget: int = DEFAULT_HEAD_BUDGET


class S3RequestHandler(web.RequestHandler):
    """aiohttp's connection handler, answering what it rejects itself in S3's terms, and
    counting the bytes of the request head it is receiving against the server's budget.

    Requests aiohttp refuses before any handler runs (oversize header section, malformed
    request line) and unexpected exceptions get an S3 XML error instead of aiohttp's
    plain-text page, which would echo part of the request back.
    """

    __slots__ = ("_body", "_cut", "_s3server", "peer")

    def __init__(self, manager: S3Server, peer: str | None, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._s3server = manager
        self.peer = peer
        self._body: StreamReader | None = None  # of the latest request started
        self._cut = False

    def data_received(self, data: bytes) -> None:
        if self._cut:
            return
        # Head bytes: anything received before the first request, or once the latest
        # request's body has ended (the next head, kept-alive or pipelined). Body bytes
        # (also those aiohttp reads to discard after a response) are bounded by aiohttp's flow
        # control instead. A head's bytes are released when its request starts; a failed
        # request closes the connection, so one unauthenticated head per connection is what
        # a peer can hold.
        body = self._body
        if data and (body is None or body.is_eof()):
            victims = self._s3server.head_budget.charge(self, len(data))
            if victims:
                self._s3server.cut(victims)
                if self._cut:
                    return
        super().data_received(data)

    def request_started(self, request: BaseRequest) -> None:
        # The body's reader, not the request: an idle kept-alive connection should not keep
        # its last request's headers alive.
        self._body = request.content
        self._s3server.head_budget.release(self)

    def cut_head(self, raw_response: bytes) -> None:
        """Answer 503 SlowDown mid-head and close (best effort: the peer is still sending).

        A connection that has had a request (its charge is a later head) is only closed: a
        response may be under way on it.
        """
        self._cut = True
        if self.transport is not None and self._body is None:
            self.transport.write(raw_response)
        self.force_close()

    def log_exception(self, *args: Any, **kw: Any) -> None:
        # aiohttp's own errors as one JSON line (rate-limited), not stdlib logging's text.
        message = str(args[0]) if args else "aiohttp error"
        self._s3server.log_limited("aiohttp_error", message, exc_info=kw.get("exc_info"))

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
            err = errors.bad_request()
        else:
            err = errors.internal_error()
        request_id = new_request_id()
        logs.get().warning(
            "request_rejected",
            request_id=request_id,
            status=err.status,
            error=err.code,
            exc_type=type(exc).__name__ if exc else None,
        )
        return error_response("GET", err, request_id, "/")


class _Admit(asyncio.Protocol):
    """The protocol every accepted connection starts with: admitted connections are handed to
    a new S3RequestHandler (``transport.set_protocol``) before the first byte is read; refused
    ones are closed with nothing else made for them."""

    __slots__ = ("_server",)

    def __init__(self, server: S3Server) -> None:
        self._server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        handler = self._server.admit(transport)
        if handler is None:
            transport.close()
            return
        transport.set_protocol(handler)
        handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:  # refused: nothing is read
        pass


def _raw_response(resp: web.Response) -> bytes:
    """An error response as bytes, for a connection whose request never got a head."""
    body = resp.body if isinstance(resp.body, bytes) else b""
    lines = [f"HTTP/1.1 {resp.status} {resp.reason}"]
    lines += [f"{k}: {v}" for k, v in resp.headers.items() if k.lower() != "content-length"]
    lines += [f"Content-Length: {len(body)}", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class S3Server(web.Server):
    """A low-level aiohttp server (no router: every path is S3's) using S3RequestHandler,
    with the connection limits described in the module docstring.

    ``on_relief`` is called when the open-connection count falls to half of a peak (see
    :class:`PeakTracker`): the process hands freed memory back then.
    """

    def __init__(
        self,
        handler: Callable[[BaseRequest], Awaitable[web.StreamResponse]],
        *,
        limits: Limits | None = None,
        metrics: Metrics | None = None,
        on_relief: Callable[[], None] | None = None,
        handler_cancellation: bool = False,
        **handler_kwargs: Any,
    ) -> None:
        async def handle(request: BaseRequest) -> web.StreamResponse:
            protocol = request.protocol
            if isinstance(protocol, S3RequestHandler):
                protocol.request_started(request)
            return await handler(request)

        super().__init__(handle, handler_cancellation=handler_cancellation, **handler_kwargs)
        # Our own copies: aiohttp's are private.
        self.event_loop = asyncio.get_running_loop()
        self.handler_kwargs = handler_kwargs
        self.limits = limits = limits or Limits()
        self.admission = Admission(limits.max_connections, limits.max_per_peer)
        self.head_budget = HeadBudget(limits.head_budget)
        self.metrics = metrics
        self.on_relief = on_relief
        self._peak = PeakTracker()
        self._tally = RefusalTally()
        self._flush_handle: asyncio.TimerHandle | None = None
        self._flush_at = 0.0
        self._last_peer: dict[str, str] = {}
        if metrics is not None:
            # Read at scrape time: nothing to update per connection.
            metrics.open_connections.set_function(lambda: self.admission.open)
            metrics.head_bytes.set_function(lambda: self.head_budget.total)

    def __call__(self) -> _Admit:  # type: ignore[override]  # a Protocol, not a RequestHandler
        # The protocol factory TCPSite passes to create_server: asyncio only needs a Protocol,
        # and the admission gate hands admitted connections to a RequestHandler itself.
        return _Admit(self)

    def admit(self, transport: asyncio.BaseTransport) -> S3RequestHandler | None:
        key, ip = peer_key(transport.get_extra_info("peername"))
        exempt = ip is not None and any(ip in net for net in self.limits.per_peer_exempt)
        reason = self.admission.admit(key, exempt)
        if reason is not None:
            self._refused(reason, str(ip) if ip is not None else None)
            return None
        self._peak.update(self.admission.open)
        return S3RequestHandler(self, key, loop=self.event_loop, **self.handler_kwargs)

    def connection_lost(
        self, handler: web.RequestHandler, exc: BaseException | None = None
    ) -> None:
        super().connection_lost(handler, exc)
        if isinstance(handler, S3RequestHandler):
            self.head_budget.release(handler)
            self.admission.release(handler.peer)
            if self._peak.update(self.admission.open) and self.on_relief is not None:
                self.on_relief()

    def cut(self, victims: Iterable[Hashable]) -> None:
        """Cut connections whose unfinished heads no longer fit the budget."""
        for victim in victims:
            if not isinstance(victim, S3RequestHandler):
                continue
            transport = victim.transport
            peer = transport.get_extra_info("peername") if transport is not None else None
            _, ip = peer_key(peer)
            self._refused(HEAD_BUDGET, str(ip) if ip is not None else None)
            resp = error_response(
                "GET",
                errors.slow_down(),
                new_request_id(),
                "/",
            )
            victim.cut_head(_raw_response(resp))

    def _refused(self, reason: str, peer: str | None) -> None:
        if self.metrics is not None:
            self.metrics.connections_refused.labels(reason).inc()
        if peer is not None:
            self._last_peer[reason] = peer
        count = self._tally.refuse(reason, self.event_loop.time())
        if count is not None:
            self._log_refusals(reason, count)
        else:
            self._schedule_flush()

    def log_limited(self, event: str, message: str, exc_info: object = None) -> None:
        """An error line through the same aggregation (used for aiohttp's own errors)."""
        count = self._tally.refuse(event, self.event_loop.time())
        if count is None:
            self._schedule_flush()
            return
        logs.get().error(event, message=message, count=count, exc_info=exc_info)

    def _log_refusals(self, reason: str, count: int) -> None:
        if reason in (MAX_CONNECTIONS, MAX_CONNECTIONS_PER_PEER, HEAD_BUDGET):
            logs.get().warning(
                "connection_refused",
                reason=reason,
                count=count,
                last_peer=self._last_peer.pop(reason, None),
                open_connections=self.admission.open,
            )
        else:
            logs.get().error(reason, message="held back (rate-limited)", count=count)

    def _schedule_flush(self) -> None:
        if self._flush_handle is not None:
            return
        when = self._tally.next_due()
        if when is not None:
            self._flush_at = when
            self._flush_handle = self.event_loop.call_at(when, self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        # A timer may fire a hair early (clock resolution): it is due when it fires.
        now = max(self.event_loop.time(), self._flush_at)
        for reason, count in self._tally.due(now):
            self._log_refusals(reason, count)
        self._schedule_flush()
