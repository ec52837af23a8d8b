"""aws-chunked bodies, framed from AWS's documented layout: a reference independent of
s3shim's own chunked code (s3shim.chunked, s3shim.testing), which the tests exercise."""

from __future__ import annotations

import hashlib
import hmac

REGION = "us-east-1"
UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.digest(key, msg.encode(), "sha256")


class ChunkSigner:
    """Chunk and trailer signatures per AWS's "Signature Calculations for the Authorization
    Header: Transferring Payload in Multiple Chunks" (and its trailer variant)."""

    def __init__(self, secret: str, amz_date: str, seed_signature: str) -> None:
        day = amz_date[:8]
        key = _hmac(("AWS4" + secret).encode(), day)
        for part in (REGION, "s3", "aws4_request"):
            key = _hmac(key, part)
        self.key = key
        self.amz_date = amz_date
        self.scope = f"{day}/{REGION}/s3/aws4_request"
        self.previous = seed_signature

    def chunk(self, data: bytes, *, tamper: bool = False) -> bytes:
        to_sign = "\n".join(
            (
                "AWS4-HMAC-SHA256-PAYLOAD",
                self.amz_date,
                self.scope,
                self.previous,
                _EMPTY_SHA256,
                hashlib.sha256(data).hexdigest(),
            )
        )
        self.previous = _hmac(self.key, to_sign).hex()
        sig = self.previous
        if tamper:
            sig = sig[:-1] + ("0" if sig[-1] != "0" else "1")
        return f"{len(data):x};chunk-signature={sig}\r\n".encode() + data + b"\r\n"

    def trailer(self, lines: list[tuple[str, str]]) -> bytes:
        canonical = "".join(f"{n}:{v}\n" for n, v in lines).encode()
        to_sign = "\n".join(
            (
                "AWS4-HMAC-SHA256-TRAILER",
                self.amz_date,
                self.scope,
                self.previous,
                hashlib.sha256(canonical).hexdigest(),
            )
        )
        sig = _hmac(self.key, to_sign).hex()
        out = "".join(f"{n}:{v}\r\n" for n, v in lines) + f"x-amz-trailer-signature:{sig}\r\n"
        return out.encode() + b"\r\n"
