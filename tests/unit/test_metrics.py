"""s3shim.metrics: the label-children cache the proxy counts through."""

from __future__ import annotations

from prometheus_client import generate_latest

from s3shim.metrics import LabelCache, Metrics


def test_children_are_made_once_and_count_into_the_registry() -> None:
    m = Metrics()
    by = LabelCache(m.requests)
    assert by("GetObject", "200") is by("GetObject", "200")
    assert by("GetObject", "200") is not by("GetObject", "404")
    by("GetObject", "200").inc()
    by("GetObject", "200").inc()
    by("GetObject", "404").inc()
    text = generate_latest(m.registry).decode()
    assert 's3shim_requests_total{operation="GetObject",status="200"} 2.0' in text
    assert 's3shim_requests_total{operation="GetObject",status="404"} 1.0' in text


def test_a_child_is_the_metrics_own_child() -> None:
    m = Metrics()
    assert LabelCache(m.latency)("PutObject") is m.latency.labels("PutObject")
