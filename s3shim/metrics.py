"""Prometheus metrics, in a registry of s3shim's own (served on the admin listener).

With several worker processes (``S3SHIM_WORKERS``), prometheus-client's multiprocess mode is
switched on before the workers fork (:func:`share_across_processes`): every process writes its
values to memory-mapped files in one directory, and ``/metrics`` (served by the first process)
adds them up, so it counts every worker.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def share_across_processes(directory: str) -> None:
    """Values from now on live in ``directory``, shared by this process and its forks."""
    os.environ[_MULTIPROC_ENV] = directory
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]  # untyped API


def process_gone(pid: int) -> None:
    """A worker exited: its live gauges (in flight, open connections) no longer count."""
    if os.environ.get(_MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]  # untyped API


class LabelCache:
    """A labelled metric's children, each made once.

    ``labels()`` takes a lock and builds its key on every call; a request touches five or
    six labelled metrics, so the proxy asks this cache instead. Label values come from
    closed sets (operations, statuses, auth kinds, S3 codes), so it stays small.
    """

    __slots__ = ("_made", "_metric")

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._made: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._made.get(values)
        if child is None:
            child = self._made[values] = self._metric.labels(*values)
        return child


_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "s3shim_requests",
            "Requests answered, by S3 operation and HTTP status.",
            ["operation", "status"],
            registry=r,
        )
        self.bytes_in = Counter(
            "s3shim_request_body_bytes",
            "Request body bytes received from clients.",
            ["operation"],
            registry=r,
        )
        self.bytes_out = Counter(
            "s3shim_response_body_bytes",
            "Response body bytes sent to clients.",
            ["operation"],
            registry=r,
        )
        self.latency = Histogram(
            "s3shim_request_duration_seconds",
            "Whole-request latency as seen by s3shim.",
            ["operation"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_latency = Histogram(
            "s3shim_upstream_duration_seconds",
            "Time from sending the request to the store until its response headers arrived.",
            ["operation"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.rewrites = Counter(
            "s3shim_rewrites",
            "Requests whose headers or body s3shim rewrote, by kind.",
            ["kind"],
            registry=r,
        )
        self.auth = Counter(
            "s3shim_auth_requests",
            "Requests by how they were authenticated: sigv4, presigned, sigv2, sigv2-presigned, "
            "form-sigv4, form-sigv2, or forwarded unsigned: anonymous, preflight, form-anonymous.",
            ["auth"],
            registry=r,
        )
        self.auth_failures = Counter(
            "s3shim_auth_failures",
            "Requests refused before reaching the store, by S3 code.",
            ["reason"],
            registry=r,
        )
        self.integrity_failures = Counter(
            "s3shim_integrity_failures",
            "Bodies refused by s3shim's own checks (BadDigest, XAmzContentSHA256Mismatch, ...).",
            ["code"],
            registry=r,
        )
        self.in_flight = Gauge(
            "s3shim_in_flight_requests",
            "Requests being handled now.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.upstream_errors = Counter(
            "s3shim_upstream_errors",
            "Requests the store could not be reached for.",
            registry=r,
        )
        self.sse_key_retries = Counter(
            "s3shim_sse_key_retries",
            "Store requests repeated with the next SSE-C key (an older master key's, then "
            "none) after the store's wrong-key answer: one per extra round trip.",
            registry=r,
        )
        self.open_connections = Gauge(
            "s3shim_open_connections",
            "Client connections open now (admitted, not yet closed), all workers.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.connections_refused = Counter(
            "s3shim_connections_refused",
            "Client connections refused or cut before a request: max_connections, "
            "max_connections_per_peer, head_budget (unfinished request heads over budget).",
            ["reason"],
            registry=r,
        )
        for reason in ("max_connections", "max_connections_per_peer", "head_budget"):
            self.connections_refused.labels(reason)  # exported as 0 before the first refusal
        self.head_bytes = Gauge(
            "s3shim_unfinished_head_bytes",
            "Bytes of request heads received and not yet complete, all connections.",
            registry=r,
            multiprocess_mode="livesum",
        )

    def exposition(self) -> bytes:
        """The text ``/metrics`` serves: every worker's values when they are shared."""
        if os.environ.get(_MULTIPROC_ENV):
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]  # untyped
            return bytes(generate_latest(merged))
        return bytes(generate_latest(self.registry))
