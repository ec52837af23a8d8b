#!/usr/bin/env python3
"""What s3shim's own code costs per small request, step by step, without any I/O.

bench/small.py measures whole requests through real sockets; this runs only the pure steps
the proxy runs for each request (the same functions ``s3shim.proxy.Proxy`` calls, on the same
request heads bench/small.py replays) and reports CPU µs per step, so a change to one step is
seen without the noise of sockets, the event loop and the load generator:

    .venv/bin/python -m bench.perrequest                 # every op, 20,000 rounds each
    .venv/bin/python -m bench.perrequest --profile get   # + cProfile of one op (top 25)

Steps: ``head`` (parse_head) and ``classify`` (together plan.read_request), ``auth``
(plan.scheme and plan.verify: SigV4 header or presigned verification), ``plan``, ``whole``
(finish_whole, PUT only), ``sign`` (plan.store_request: re-signing for the store, canonical
path and query), ``respond`` (UpstreamPlan.respond for a typical store answer), ``record``
(metrics + the JSON log line, written to /dev/null). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import itertools

from bench import run as byte_bench
from bench import small_requests as small
from s3shim import config as config_mod
from s3shim import logs
from s3shim.body import BodyPipeline
from s3shim.classify import classify
from s3shim.head import parse_head
from s3shim.metrics import Metrics
from s3shim.plan import finish_whole, plan, scheme, store_request, verify
from s3shim.proxy import Proxy
from s3shim.record import Auth, RequestRecord, new_request_id

HOST = "127.0.0.1:9000"
STORE_ANSWER = (
    ("Server", "nginx/1.22.1"),
    ("Date", "Tue, 01 Dec 2026 22:00:00 GMT"),
    ("Content-Type", "application/octet-stream"),
    ("Content-Length", "1024"),
    ("Last-Modified", "Tue, 01 Dec 2026 21:00:00 GMT"),
    ("Connection", "keep-alive"),
    ("ETag", '"6748d2c1-400"'),
    ("x-amz-request-id", "tx000001-0067-default"),
    ("Accept-Ranges", "bytes"),
)
STEPS = ("head", "classify", "auth", "plan", "whole", "sign", "respond", "record")


def make_proxy() -> Proxy:
    cfg = config_mod.load(
        [],
        {
            "S3SHIM_UPSTREAM_URL": "http://127.0.0.1:7480",
            "AWS_ACCESS_KEY_ID": byte_bench.ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": byte_bench.SECRET_KEY,
            "AWS_S3_DISABLE_SSE": "true",
            "AWS_S3_DISABLE_CHECKSUMS": "true",
        },
    )
    return Proxy(cfg, Metrics(), upstream=None)  # type: ignore[arg-type]  # never sends


def one_request(proxy: Proxy, req: small.Rendered, clock: Callable[[], int]) -> list[int]:
    """Run the pure steps of Proxy._handle/_send/_respond/_record once; ns per step."""
    t = [clock()]
    rec = RequestRecord(new_request_id(), req.method)
    head = parse_head(req.method, req.target, req.headers, bool(req.body))
    t.append(clock())
    target = classify(
        head.method, head.host, head.raw_path, head.query, frozenset(head.headers), ()
    )
    rec.op, rec.bucket = target.op, target.bucket
    t.append(clock())
    ctx = verify(scheme(target, head, proxy.policy), head, proxy.settings, datetime.now(UTC))
    assert ctx is not None
    rec.access_key, rec.auth = ctx.access_key, Auth.of(ctx)
    t.append(clock())
    planned = plan(target, ctx, head, proxy.policy, proxy.settings.clients)
    rec.framing, rec.rewrites = planned.spec.framing, planned.rewrites
    t.append(clock())
    headers, payload_hash = planned.headers, planned.payload_hash or ""
    if req.body:
        pipeline = BodyPipeline(planned.spec)
        raw = pipeline.feed(req.body) + pipeline.finish()
        whole = finish_whole(planned, head.method, raw, pipeline.computed_checksum)
        headers, payload_hash = whole.headers, whole.payload_hash
    t.append(clock())
    store_request(planned, headers, payload_hash, proxy._store_date(), proxy.settings)
    t.append(clock())
    planned.respond(200, STORE_ANSWER, None, rec.request_id)
    t.append(clock())
    rec.status = rec.upstream_status = 200
    rec.bytes_out = 1024
    proxy._record(rec, 0.001, None)
    t.append(clock())
    return [b - a for a, b in itertools.pairwise(t)]


def measure(proxy: Proxy, req: small.Rendered, rounds: int) -> dict[str, float]:
    for _ in range(200):  # warm caches (signing key, labels, lru caches)
        one_request(proxy, req, time.thread_time_ns)
    totals = [0] * len(STEPS)
    start = time.process_time()
    for _ in range(rounds):
        for i, ns in enumerate(one_request(proxy, req, time.thread_time_ns)):
            totals[i] += ns
    wall_cpu = time.process_time() - start
    out = {name: totals[i] / rounds / 1000 for i, name in enumerate(STEPS)}
    out["total"] = wall_cpu / rounds * 1e6  # includes the clock reads themselves
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20_000, help="requests per op (20,000)")
    ap.add_argument("--profile", choices=small.OPS, help="cProfile one op, top 25 by tottime")
    ap.add_argument("--ops", default=",".join(small.OPS), help="ops to run (all)")
    args = ap.parse_args(argv)
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115  (the log lines: rendered, then dropped)
    logs.configure("info", "json")
    proxy = make_proxy()
    proxy.log = logs.get()
    body = b"x" * small.OBJECT_SIZE
    print(f"{'op':<10}" + "".join(f"{s:>9}" for s in (*STEPS, "total")) + "   (CPU µs/request)")
    for op in args.ops.split(","):
        req = small.render(op, HOST, body if op == "put" else b"")
        row = measure(proxy, req, args.rounds)
        print(f"{op:<10}" + "".join(f"{row[s]:>9.1f}" for s in (*STEPS, "total")))
    if args.profile:
        req = small.render(args.profile, HOST, body if args.profile == "put" else b"")
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.rounds):
            one_request(proxy, req, time.thread_time_ns)
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
        print(out.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
