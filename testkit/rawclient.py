"""A raw HTTP client for hand-made (and deliberately forged) S3 requests.

Signing uses s3shim's signer, which tests/unit/test_sigv4.py proves identical to botocore's
byte for byte; the point here is control: any date, any key, tampering after signing, any
body framing. ``sign``/``send`` are the two steps; :class:`RawClient` binds them to one
endpoint and its keys, and frames aws-chunked uploads as the SDKs do.
"""

from __future__ import annotations

import hashlib
import http.client
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import quote, unquote, urlsplit

from s3shim import chunked, sigv4
from s3shim.testing import ChunkSigner, encode_unsigned_trailer_chunk, encode_unsigned_trailer_end

from .helpers import crc32_b64


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def code(self) -> str | None:
        """The S3 error code of an XML error body."""
        start = self.body.find(b"<Code>")
        if start < 0:
            return None
        return self.body[start + 6 : self.body.find(b"</Code>")].decode()


def assert_refused(reply: Reply, status: int, code: str) -> None:
    """An S3 error answer: this status and code, XML, with a request id."""
    assert (reply.status, reply.code) == (status, code), reply.body[:500]
    assert reply.headers.get("x-amz-request-id")
    assert reply.headers.get("content-type") == "application/xml"


def url_parts(url: str, endpoint: str) -> tuple[str, list[tuple[str, str]]]:
    """The path and the decoded query pairs of a (presigned) URL on ``endpoint``, to resend
    with :func:`send` (tampered or not)."""
    path, _, query = url.split(endpoint, 1)[1].partition("?")
    pairs = [p.split("=", 1) for p in query.split("&")] if query else []
    return path, [(unquote(k), unquote(v[0] if v else "")) for k, *v in pairs]


def amz_now(offset_seconds: float = 0) -> str:
    ts = datetime.now(UTC).timestamp() + offset_seconds
    return datetime.fromtimestamp(ts, UTC).strftime("%Y%m%dT%H%M%SZ")


def sign(
    method: str,
    endpoint: str,
    path: str,
    *,
    access_key: str,
    secret_key: str,
    query: list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    payload_hash: str | None = None,
    body: bytes = b"",
    amz_date: str | None = None,
    region: str = "us-east-1",
) -> dict[str, str]:
    """Headers for a SigV4-signed request (header auth)."""
    host = urlsplit(endpoint).netloc
    h = dict(headers or {})
    signed = sigv4.sign_headers(
        method=method,
        raw_path=path,
        query=query or [],
        host=host,
        headers=h,
        payload_hash=payload_hash or hashlib.sha256(body).hexdigest(),
        creds=sigv4.Credentials(access_key, secret_key),
        region=region,
        amz_date=amz_date or amz_now(),
    )
    return {**h, **signed.headers}


def send(
    method: str,
    endpoint: str,
    path: str,
    headers: dict[str, str],
    *,
    query: list[tuple[str, str]] | None = None,
    body: bytes | Iterable[bytes] = b"",
    timeout: float = 30,
    raw_query: str | None = None,
) -> Reply:
    """Send exactly these headers (and Host); ``raw_query`` is used as sent, unquoted."""
    parts = urlsplit(endpoint)
    assert parts.hostname is not None, endpoint
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    qs = (
        raw_query
        if raw_query is not None
        else "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in query or [])
    )
    target = path + ("?" + qs if qs else "")
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        send_headers = {k.lower(): v for k, v in headers.items()}
        send_headers.setdefault("host", parts.netloc)
        for k, v in send_headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        if isinstance(body, bytes):
            if body:
                conn.send(body)
        else:
            for piece in body:
                conn.send(piece)
        resp = conn.getresponse()
        data = resp.read()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    except (TimeoutError, ConnectionResetError, BrokenPipeError) as exc:
        return Reply(0, {"error": type(exc).__name__}, b"")
    finally:
        conn.close()


def request_head(method: str, target: str, headers: dict[str, str]) -> bytes:
    """An HTTP/1.1 request head, for tests that write to a socket themselves (to stall, cut
    or hold back the body)."""
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def split_randomly(data: bytes, rng: random.Random, low: int, high: int) -> list[bytes]:
    """``data`` cut into pieces of ``low``..``high`` bytes (the last one may be shorter)."""
    out, i = [], 0
    while i < len(data):
        n = rng.randint(low, high)
        out.append(data[i : i + n])
        i += n
    return out


class HasKeys(Protocol):
    """A Shim or a Store: an endpoint and the keys that sign for it."""

    @property
    def endpoint(self) -> str: ...
    @property
    def access_key(self) -> str: ...
    @property
    def secret_key(self) -> str: ...


@dataclass(frozen=True)
class RawClient:
    """Hand-signed requests to one endpoint, with its keys unless a call says otherwise."""

    endpoint: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    @classmethod
    def of(cls, target: HasKeys) -> RawClient:
        return cls(target.endpoint, target.access_key, target.secret_key)

    def sign(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        payload_hash: str | None = None,
        amz_date: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
    ) -> dict[str, str]:
        """Header-auth SigV4 headers (``headers`` included) for this request."""
        return sign(
            method,
            self.endpoint,
            path,
            access_key=access_key or self.access_key,
            secret_key=secret_key or self.secret_key,
            query=query,
            headers=headers,
            payload_hash=payload_hash,
            body=body,
            amz_date=amz_date,
            region=self.region,
        )

    def sign_put(
        self,
        path: str,
        body: bytes,
        *,
        headers: dict[str, str] | None = None,
        query: list[tuple[str, str]] | None = None,
        payload_hash: str | None = None,
        amz_date: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
    ) -> dict[str, str]:
        """Signed headers for a PUT of ``body`` (Content-Length set), to tamper with before
        :meth:`send`."""
        return self.sign(
            "PUT",
            path,
            query=query,
            headers={"content-length": str(len(body)), **(headers or {})},
            body=body,
            payload_hash=payload_hash,
            amz_date=amz_date,
            access_key=access_key,
            secret_key=secret_key,
        )

    def send(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        *,
        query: list[tuple[str, str]] | None = None,
        body: bytes | Iterable[bytes] = b"",
        timeout: float = 30,
        raw_query: str | None = None,
    ) -> Reply:
        """Send exactly these headers (see :func:`send`)."""
        return send(
            method,
            self.endpoint,
            path,
            headers,
            query=query,
            body=body,
            timeout=timeout,
            raw_query=raw_query,
        )

    def put(
        self,
        path: str,
        body: bytes,
        *,
        headers: dict[str, str] | None = None,
        query: list[tuple[str, str]] | None = None,
        payload_hash: str | None = None,
    ) -> Reply:
        """A correctly signed PUT."""
        signed = self.sign_put(path, body, headers=headers, query=query, payload_hash=payload_hash)
        return self.send("PUT", path, signed, query=query, body=body)

    def aws_chunked_put(
        self,
        path: str,
        data: bytes,
        framing: chunked.Framing,
        rng: random.Random,
        *,
        trailer_value: str | None = None,
        decoded_length: int | None = None,
        mangle: Callable[[bytes], bytes] | None = None,
        announce_trailer: bool = True,
        content_encoding: str = "aws-chunked",
    ) -> Reply:
        """Frame ``data`` as the SDKs do (random chunk sizes), sign it with the client key
        and send it in random TCP writes. A trailer framing carries the CRC32 of ``data``
        unless ``trailer_value`` says otherwise; ``mangle`` edits the framed bytes after
        signing (forgery or corruption)."""
        trailer = framing is not chunked.Framing.SIGNED
        headers = {
            "content-encoding": content_encoding,
            "x-amz-decoded-content-length": str(
                len(data) if decoded_length is None else decoded_length
            ),
        }
        if trailer and announce_trailer:
            headers["x-amz-trailer"] = "x-amz-checksum-crc32"
            headers["x-amz-sdk-checksum-algorithm"] = "CRC32"
        # Content-Length is not signed by the SigV4 signer, so it can be set after framing.
        signed = self.sign("PUT", path, headers=headers, payload_hash=framing.value)
        pieces = split_randomly(data, rng, 1, 1024 * 1024) if data else []
        trailers = [("x-amz-checksum-crc32", trailer_value or crc32_b64(data))] if trailer else None
        if framing is chunked.Framing.UNSIGNED_TRAILER:
            body = b"".join(encode_unsigned_trailer_chunk(p) for p in pieces)
            body += encode_unsigned_trailer_end(trailers or [])
        else:
            seed = re.search(r"Signature=([0-9a-f]{64})", signed["authorization"])
            assert seed
            amz_date = signed["x-amz-date"]
            key = sigv4.signing_key(self.secret_key, amz_date[:8], self.region)
            signer = ChunkSigner(
                chunked.ChunkSigning(
                    signing_key=key,
                    amz_date=amz_date,
                    scope=sigv4.scope(amz_date[:8], self.region),
                    seed_signature=seed.group(1),
                )
            )
            body = b"".join(signer.chunk(p) for p in pieces) + signer.end(trailers)
        if mangle is not None:
            body = mangle(body)
        signed["content-length"] = str(len(body))
        writes = split_randomly(body, rng, 1, 300_000) if body else []
        return self.send("PUT", path, signed, body=writes, timeout=60)
