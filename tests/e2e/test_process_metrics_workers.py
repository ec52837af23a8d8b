"""With several workers, /metrics counts every worker's requests, not only the first's."""

from __future__ import annotations

import re
import urllib.request

from testkit.convex_sequence import new_bucket
from testkit.shim import ShimStarter


def _sample(text: str, name: str, labels: str) -> float:
    sel = rf"\{{{re.escape(labels)}\}}" if labels else ""
    match = re.search(rf"^{re.escape(name)}{sel} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_metrics_add_up_every_worker(start_shim: ShimStarter) -> None:
    with start_shim(env={"S3SHIM_WORKERS": "2"}) as s:
        bucket = new_bucket(s.client())
        for i in range(40):  # new connections: SO_REUSEPORT spreads them over both processes
            s.client().put_object(Bucket=bucket, Key=f"k{i}", Body=b"x")
        text = urllib.request.urlopen(s.admin + "/metrics", timeout=10).read().decode()
        ok = 'operation="PutObject",status="200"'
        assert _sample(text, "s3shim_requests_total", ok) == 40
        assert _sample(text, "s3shim_request_body_bytes_total", 'operation="PutObject"') == 40
        # live gauges add up too, and nothing is in flight now
        assert re.search(r"^s3shim_in_flight_requests \S+$", text, re.M)
        assert _sample(text, "s3shim_in_flight_requests", "") == 0
