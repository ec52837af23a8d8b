"""bench/small.py's cases and the one request each replays: signed once with s3shim's own
signer, checked once, then sent as the same bytes by the load generator."""

from __future__ import annotations

import base64
import hashlib
import http.client
import socket
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bench.common import ACCESS_KEY, BUCKET, REGION, SECRET_KEY
from s3shim import sigv4

OBJECT_SIZE = 1024
GET_KEY = "small-1k"
PUT_KEY = "small-put"  # PUTs go to their own key: the GET object stays what was checked
BUCKET = BUCKET
OPS = ("get", "head", "put", "presigned")
UPSTREAMS = ("instant", "rgw")
PRESIGN_EXPIRES = 3600
FLOOR_MODES = ("answer", "relay-aiohttp", "relay-lean")  # bench/floor.py, INSTANT get only


# --------------------------------------------------------------------------- the requests
@dataclass(frozen=True)
class Rendered:
    """One request exactly as the load generator sends it, every time."""

    method: str
    target: str  # path and query, as on the request line
    headers: tuple[tuple[str, str], ...]  # Host first; Content-Length when there is a body
    body: bytes

    def raw(self) -> bytes:
        head = f"{self.method} {self.target} HTTP/1.1\r\n"
        head += "".join(f"{n}: {v}\r\n" for n, v in self.headers) + "\r\n"
        return head.encode() + self.body


def render(op: str, host: str, body: bytes, amz_date: str | None = None) -> Rendered:
    """Sign ``op`` for ``host`` with s3shim's own signer (sigv4.sign_headers / its parts)."""
    amz_date = amz_date or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    creds = sigv4.Credentials(ACCESS_KEY, SECRET_KEY)
    region = REGION
    if op == "presigned":
        path = f"/{BUCKET}/{GET_KEY}"
        cred_scope = sigv4.scope(amz_date[:8], region)
        query = [
            ("X-Amz-Algorithm", sigv4.ALGORITHM),
            ("X-Amz-Credential", f"{creds.access_key}/{cred_scope}"),
            ("X-Amz-Date", amz_date),
            ("X-Amz-Expires", str(PRESIGN_EXPIRES)),
            ("X-Amz-SignedHeaders", "host"),
        ]
        canon = sigv4.canonical_request(
            "GET",
            sigv4.canonical_uri(path),
            sigv4.canonical_query(query),
            {"host": [host]},
            ["host"],
            sigv4.UNSIGNED_PAYLOAD,
        )
        key = sigv4.signing_key(creds.secret_key, amz_date[:8], region)
        sig = sigv4.signature(key, sigv4.string_to_sign(amz_date, cred_scope, canon))
        # The signature last, as botocore's presigner writes it.
        target = f"{path}?{sigv4.canonical_query(query)}&X-Amz-Signature={sig}"
        return Rendered("GET", target, (("Host", host),), b"")
    method = {"get": "GET", "head": "HEAD", "put": "PUT"}[op]
    path = f"/{BUCKET}/{PUT_KEY if op == 'put' else GET_KEY}"
    extra: dict[str, str] = {}
    payload_hash = sigv4.EMPTY_SHA256
    if op == "put":
        # boto3's PutObject over http at its defaults: the body's sha256 in hex and a CRC32
        # flexible checksum in a header (not a trailer: the body is not streamed).
        payload_hash = hashlib.sha256(body).hexdigest()
        crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
        extra = {"x-amz-checksum-crc32": crc, "x-amz-sdk-checksum-algorithm": "CRC32"}
    signed = sigv4.sign_headers(
        method=method,
        raw_path=path,
        query=(),
        host=host,
        headers=extra,
        payload_hash=payload_hash,
        creds=creds,
        region=region,
        amz_date=amz_date,
    )
    headers = [("Host", host)]
    headers += [(n, v) for n, v in {**extra, **signed.headers}.items() if n != "host"]
    if op == "put":
        headers.append(("Content-Length", str(len(body))))
        return Rendered(method, path, tuple(headers), body)
    return Rendered(method, path, tuple(headers), b"")


def check_once(port: int, req: Rendered, expect_body: bytes) -> dict[str, Any]:
    """Send the request once, as it will be replayed; refuse to measure a wrong answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(req.raw())
        resp = http.client.HTTPResponse(sock, method=req.method)
        resp.begin()
        body = resp.read()
        headers = {k.lower(): v for k, v in resp.getheaders()}
    want_len = str(len(expect_body)) if req.method in ("GET", "HEAD") else None
    ok = resp.status == 200 and (
        (req.method == "GET" and body == expect_body)
        or (req.method == "HEAD" and headers.get("content-length") == want_len and not body)
        or req.method == "PUT"
    )
    if not ok:
        raise RuntimeError(
            f"{req.method} {req.target} on :{port} -> {resp.status} {headers} {body[:400]!r}"
        )
    return {"status": resp.status, "response_headers": sorted(headers)}


# ------------------------------------------------------------------------------- the cases
@dataclass
class Case:
    name: str  # <op>-<upstream>-<path>
    op: str
    upstream: str
    path: str


COMPARED = "s3shim-rev"  # --compare REV: s3shim at that revision, on INSTANT


def all_cases(direct: bool, compare: bool = False) -> list[Case]:
    """Per upstream and op, the paths back to back; s3shim/nginx order rotates per op (and
    with ``compare``, s3shim at the compared revision beside s3shim on INSTANT, seconds apart,
    its place alternating too)."""
    cases = []
    for upstream in UPSTREAMS:
        for i, op in enumerate(OPS):
            paths = ["s3shim", "nginx"] if i % 2 == 0 else ["nginx", "s3shim"]
            if compare and upstream == "instant":
                at = paths.index("s3shim") + (i // 2) % 2
                paths.insert(at, COMPARED)
            if upstream == "instant" and op == "get":
                paths.insert(paths.index("s3shim") + 1, "s3shim-2w")
                paths += [f"floor-{mode}" for mode in FLOOR_MODES]
            if direct:
                paths.append("direct")
            cases += [Case(f"{op}-{upstream}-{p}", op, upstream, p) for p in paths]
    return cases


def select(cases: list[Case], only: Sequence[str]) -> list[Case]:
    words = [w for item in only for w in item.split(",") if w]
    if not words:
        return cases
    picked = [c for c in cases if any(w in c.name for w in words)]
    if not picked:
        raise SystemExit(f"--only {','.join(words)} matches none of {[c.name for c in cases]}")
    return picked
