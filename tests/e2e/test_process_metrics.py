"""The Prometheus metrics on the admin listener count what really happened."""

from __future__ import annotations

import os

from testkit.convex_sequence import new_bucket
from testkit.helpers import http_get
from testkit.rawclient import RawClient, send, sign
from testkit.shim import Shim


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        sname, _, rest = series.partition("{")
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if sname == name and got == want:
            return float(value)
    return 0.0


def test_metrics_count_requests_bytes_rewrites_and_failures(shim: Shim) -> None:
    client = shim.client()
    bucket = new_bucket(client)
    before = http_get(shim.admin + "/metrics")[1]
    body = os.urandom(100_000)
    client.put_object(Bucket=bucket, Key="m", Body=body, ServerSideEncryption="AES256")
    assert client.get_object(Bucket=bucket, Key="m")["Body"].read() == body
    forged = sign(
        "GET", shim.endpoint, f"/{bucket}/m", access_key=shim.access_key, secret_key="wrong"
    )
    assert send("GET", shim.endpoint, f"/{bucket}/m", forged).status == 403
    bad = RawClient.of(shim).sign(
        "PUT",
        f"/{bucket}/bad",
        payload_hash="UNSIGNED-PAYLOAD",
        headers={"x-amz-checksum-crc32": "AAAAAA==", "content-length": "3"},
    )
    assert send("PUT", shim.endpoint, f"/{bucket}/bad", bad, body=b"abc").status == 400
    after = http_get(shim.admin + "/metrics")[1]

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("s3shim_requests_total", operation="PutObject", status="200") == 1
    assert delta("s3shim_requests_total", operation="GetObject", status="403") == 1
    assert delta("s3shim_request_body_bytes_total", operation="PutObject") >= len(body)
    assert delta("s3shim_response_body_bytes_total", operation="GetObject") == len(body)
    assert delta("s3shim_rewrites_total", kind="sse") >= 1
    assert delta("s3shim_auth_failures_total", reason="SignatureDoesNotMatch") == 1
    assert delta("s3shim_integrity_failures_total", code="BadDigest") == 1
    assert delta("s3shim_request_duration_seconds_count", operation="PutObject") == 2
    # the refused PutObject never reached the store
    assert delta("s3shim_upstream_duration_seconds_count", operation="PutObject") == 1
    assert metric(after, "s3shim_in_flight_requests") == 0
