"""A raw HTTP client for hand-made (and deliberately forged) S3 requests.

Signing uses s3shim's signer, which test_sigv4 proves identical to botocore's byte for byte;
the point here is control: any date, any key, tampering after signing, any body framing.
"""

from __future__ import annotations

import hashlib
import http.client
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

from s3shim import sigv4


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
