"""What one request costs, as a count of Python function calls: a guard that runs anywhere.

Timings differ between machines and runs; the number of Python calls s3shim makes for one
request does not (to within the few that depend on the clock, such as the cached log
timestamp's refresh). Each case sends one request of a kind over a kept-alive connection to an
in-process s3shim in front of the fake store, after an identical warm-up request (caches
filled, regexes compiled), and counts every Python call made in s3shim's own modules
(``own``) and everywhere else but the test client (``all``: aiohttp, multidict, yarl,
structlog, the fake store). A count more than TOLERANCE above the ceiling committed in
cost_ceilings.json fails, printing the functions that grew.

After a change that makes requests cheaper, lower the ceilings:
``S3SHIM_COST_UPDATE=1 .venv/bin/pytest tests/unit/test_cost_guard.py`` rewrites the file
from this run (commit it with the change). Raising a ceiling needs the reason in the commit.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import boto3
import pytest
import urllib3
from botocore.config import Config as BotoConfig

import s3shim
from testkit.chunksign import REGION, SIGNED_TRAILER
from testkit.helpers import crc32_b64
from testkit.inprocess import (
    CLIENT_KEY,
    CLIENT_SECRET,
    Conn,
    InProcessShim,
    aws_chunked,
    payload,
)

CEILINGS = Path(__file__).with_name("cost_ceilings.json")
TOLERANCE = {"own": 0.03, "all": 0.05}
S3SHIM_DIR = str(Path(s3shim.__file__).parent) + os.sep
TESTS_DIR = str(Path(__file__).parents[1]) + os.sep
UPDATE = os.environ.get("S3SHIM_COST_UPDATE") == "1"

Request = tuple[str, str, dict[str, str], bytes]  # method, target, headers, body


class CallCounter:
    """Python calls by function while active (sys.setprofile: this thread, the whole loop)."""

    def __init__(self) -> None:
        self.own: Counter[str] = Counter()
        self.other = 0

    def _hook(self, frame: FrameType, event: str, _arg: Any) -> None:
        if event != "call":
            return
        path = frame.f_code.co_filename
        if path.startswith(S3SHIM_DIR):
            self.own[f"{path[len(S3SHIM_DIR) :]}:{frame.f_code.co_qualname}"] += 1
        elif not path.startswith(TESTS_DIR) and "/asyncio/streams.py" not in path:
            self.other += 1  # the test client's own stream reads are not the server's

    def __enter__(self) -> CallCounter:
        sys.setprofile(self._hook)
        return self

    def __exit__(self, *_exc: object) -> None:
        sys.setprofile(None)

    @property
    def totals(self) -> dict[str, int]:
        own = sum(self.own.values())
        return {"own": own, "all": own + self.other}


def _boto(shim: InProcessShim) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=shim.endpoint,
        aws_access_key_id=CLIENT_KEY,
        aws_secret_access_key=CLIENT_SECRET,
        region_name=REGION,
        config=BotoConfig(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def _signed(shim: InProcessShim, method: str, body: bytes = b"", **headers: str) -> Request:
    signed = shim.client.sign(method, "/b/k", headers=headers, body=body)
    if method in ("PUT", "POST"):
        signed["content-length"] = str(len(body))
    return method, "/b/k", signed, body


def _get(shim: InProcessShim) -> Request:
    return _signed(shim, "GET")


def _head(shim: InProcessShim) -> Request:
    return _signed(shim, "HEAD")


def _put_1k(shim: InProcessShim) -> Request:
    # As boto3 sends a small PutObject: hex sha256 payload hash and a CRC32 header.
    data = payload(1024)
    return _signed(shim, "PUT", data, **{"x-amz-checksum-crc32": crc32_b64(data)})


def _presigned_get(shim: InProcessShim) -> Request:
    url = _boto(shim).generate_presigned_url(
        "get_object", Params={"Bucket": "b", "Key": "k"}, ExpiresIn=600
    )
    return "GET", url.removeprefix(shim.endpoint), {}, b""


def _anonymous_get(_shim: InProcessShim) -> Request:
    return "GET", "/b/k", {}, b""


def _aws_chunked_put_64k(shim: InProcessShim) -> Request:
    data = payload(64 * 1024)
    headers, body = aws_chunked(shim.client, "/b/k", data, SIGNED_TRAILER, checksum=crc32_b64(data))
    return "PUT", "/b/k", headers, body


def _form_post(shim: InProcessShim) -> Request:
    signed = _boto(shim).generate_presigned_post("b", "k", ExpiresIn=600)
    body, ctype = urllib3.encode_multipart_formdata(
        [*signed["fields"].items(), ("file", ("f.bin", payload(1024)))]
    )
    return "POST", "/b", {"content-type": ctype, "content-length": str(len(body))}, body


CASES: dict[str, Callable[[InProcessShim], Request]] = {
    "get": _get,
    "head": _head,
    "put_1k": _put_1k,
    "presigned_get": _presigned_get,
    "anonymous_get": _anonymous_get,
    "aws_chunked_put_64k": _aws_chunked_put_64k,
    "form_post": _form_post,
}


async def _exchange(shim: InProcessShim, conn: Conn, req: Request) -> int:
    method, target, headers, body = req
    await conn.send_head(method, target, {"host": shim.endpoint.removeprefix("http://"), **headers})
    if body:
        await conn.send(body)
    r = await conn.response(method)
    # The log line is written once per loop iteration after the answer: count it too.
    for _ in range(3):
        await asyncio.sleep(0)
    return r.status


def _load() -> dict[str, Any]:
    return json.loads(CEILINGS.read_text()) if CEILINGS.exists() else {}


@pytest.mark.parametrize("case", list(CASES))
async def test_calls_per_request_stay_under_the_committed_ceiling(
    case: str, inproc_on: InProcessShim
) -> None:
    req = CASES[case](inproc_on)
    conn = await inproc_on.client.connect()
    try:
        first = await _exchange(inproc_on, conn, req)
        with CallCounter() as counter:
            second = await _exchange(inproc_on, conn, req)
    finally:
        await conn.close()
    # A guard on a failing request would guard the wrong path.
    assert first == second and second in (200, 204), (first, second)
    totals = counter.totals
    if UPDATE:
        data = _load()
        data[case] = {**totals, "functions": dict(counter.own.most_common())}
        CEILINGS.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        return
    ceiling = _load().get(case)
    assert ceiling is not None, f"no ceiling for {case}: run with S3SHIM_COST_UPDATE=1"
    over = {
        k: (totals[k], ceiling[k]) for k in TOLERANCE if totals[k] > ceiling[k] * (1 + TOLERANCE[k])
    }
    if over:
        before: dict[str, int] = ceiling.get("functions", {})
        grew = sorted(
            ((n - before.get(f, 0), f, before.get(f, 0), n) for f, n in counter.own.items()),
            reverse=True,
        )[:15]
        lines = [f"{case}: calls per request above the ceiling: {over} (count, ceiling)"]
        lines += [f"  +{d:5d}  {f}  {b} -> {n}" for d, f, b, n in grew if d > 0]
        pytest.fail("\n".join(lines))
