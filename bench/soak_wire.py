"""The soak's requests as they go on the wire: hand-signed PutObject/UploadPart in every
framing (maybe spoiled or forged), cut, slow and raw reads, each answer as status and code."""

from __future__ import annotations

import hashlib
import http.client
import random
import re
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from bench.soak_plan import KIB, MIB, REGION, STREAMING, checksum_b64
from s3shim import sigv4
from s3shim.chunked import ChunkSigning
from s3shim.testing import ChunkSigner
from testkit.rawclient import Reply, send, sign

HTTP_TIMEOUT = 60.0


@dataclass
class Answer:
    status: int  # 0 = no answer (connection error, or the client cut)
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def reply_answer(reply: Reply) -> Answer:
    if reply.status == 0:  # no answer: say why (ConnectionRefusedError, ...)
        return Answer(0, reply.headers.get("error"), reply.headers)
    return Answer(reply.status, reply.code, reply.headers)


def boto_call(fn: Callable[..., Any], **kwargs: Any) -> tuple[Answer, Any]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        resp = fn(**kwargs)
    except ClientError as e:
        meta = e.response.get("ResponseMetadata", {})
        return Answer(
            int(meta.get("HTTPStatusCode", 0)),
            e.response.get("Error", {}).get("Code"),
            dict(meta.get("HTTPHeaders", {})),
        ), None
    except (BotoCoreError, OSError, http.client.HTTPException) as exc:
        return Answer(0, type(exc).__name__), None
    meta = resp.get("ResponseMetadata", {})
    return Answer(int(meta.get("HTTPStatusCode", 0)), None, dict(meta.get("HTTPHeaders", {}))), resp


def split_randomly(data: bytes, rng: random.Random, low: int, high: int) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        n = rng.randint(low, high)
        out.append(data[i : i + n])
        i += n
    return out


def http_chunked(body: bytes, rng: random.Random) -> bytes:
    """HTTP/1.1 chunked transfer coding around body (as boto3 over https and the JS SDK)."""
    parts = split_randomly(body, rng, 1, 512 * KIB)
    return b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def _flip_after(body: bytes, marker: bytes, last: bool = False) -> bytes:
    i = (body.rfind(marker) if last else body.find(marker)) + len(marker)
    return body[:i] + (b"0" if body[i : i + 1] != b"0" else b"1") + body[i + 1 :]


@dataclass
class RawPut:
    headers: dict[str, str]
    body: bytes  # as sent on the wire


def build_put(
    endpoint: str,
    path: str,
    query: list[tuple[str, str]],
    data: bytes,
    framing: str,
    *,
    access_key: str,
    secret_key: str,
    rng: random.Random,
    alg: str | None,
    wrong_checksum: bool = False,
    wrong_sha256: bool = False,
    forgery: str | None = None,
    te_chunked: bool = False,
) -> RawPut:
    """A hand-signed PutObject/UploadPart in one of the raw framings (maybe spoiled)."""
    value = None
    if alg is not None:
        value = checksum_b64(alg, data + b"\0" if wrong_checksum else data)
    headers: dict[str, str] = {"x-amz-meta-soak": "1"}
    trailer = framing in ("signed-trailer", "unsigned-trailer")
    if framing in STREAMING:
        headers["content-encoding"] = "aws-chunked"
        headers["x-amz-decoded-content-length"] = str(len(data))
    if alg is not None and trailer:
        headers["x-amz-trailer"] = f"x-amz-checksum-{alg.lower()}"
        headers["x-amz-sdk-checksum-algorithm"] = alg
    elif alg is not None:
        headers[f"x-amz-checksum-{alg.lower()}"] = value or ""
        headers["x-amz-sdk-checksum-algorithm"] = alg
    if framing == "plain-unsigned":
        payload_hash = sigv4.UNSIGNED_PAYLOAD
    elif framing == "plain-sha256":
        payload_hash = hashlib.sha256(data + b"\0" if wrong_sha256 else data).hexdigest()
    else:
        payload_hash = STREAMING[framing]
    ak = "SOAKUNKNOWNKEY000000" if forgery == "unknown-key" else access_key
    sk = secret_key + "x" if forgery == "wrong-secret" else secret_key
    signed = sign(
        "PUT",
        endpoint,
        path,
        access_key=ak,
        secret_key=sk,
        query=query,
        headers=headers,
        payload_hash=payload_hash,
        region=REGION,
    )
    chunk_size = rng.choice((8 * KIB, 64 * KIB, 64 * KIB, 256 * KIB, MIB, 0))
    pieces = (
        split_randomly(data, rng, 1, 2 * MIB)
        if chunk_size == 0
        else [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)]
    )
    trailers = [(f"x-amz-checksum-{alg.lower()}", value or "")] if trailer and alg else []
    if framing in ("plain-unsigned", "plain-sha256"):
        body = data
    elif framing == "unsigned-trailer":
        body = b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in pieces if p) + b"0\r\n"
        body += "".join(f"{n}:{v}\r\n" for n, v in trailers).encode() + b"\r\n"
    else:
        seed = re.search(r"Signature=([0-9a-f]{64})", signed["authorization"])
        assert seed is not None
        amz_date = signed["x-amz-date"]
        signer = ChunkSigner(
            ChunkSigning(
                signing_key=sigv4.signing_key(sk, amz_date[:8], REGION),
                amz_date=amz_date,
                scope=sigv4.scope(amz_date[:8], REGION),
                seed_signature=seed.group(1),
            )
        )
        body = b"".join(signer.chunk(p) for p in pieces)
        body += signer.end(trailers if framing == "signed-trailer" else None)
    if forgery == "tampered-header":
        signed["x-amz-meta-soak"] = "2"
    elif forgery == "chunk-signature":
        body = _flip_after(body, b"chunk-signature=", last=rng.random() < 0.5)
    elif forgery == "trailer-signature":
        body = _flip_after(body, b"x-amz-trailer-signature:")
    elif forgery == "data-after-signing":
        i = body.find(b"\r\n") + 2
        body = body[:i] + bytes([body[i] ^ 1]) + body[i + 1 :]
    if te_chunked:
        signed["transfer-encoding"] = "chunked"
        body = http_chunked(body, rng)
    else:
        signed["content-length"] = str(len(body))
    return RawPut(signed, body)


def forgeries_for(framing: str, size: int, alg: str | None) -> list[str]:
    out = ["wrong-secret", "unknown-key", "tampered-header"]
    if framing in ("signed", "signed-trailer"):
        out.append("chunk-signature")
        if size > 0:
            out.append("data-after-signing")
        if framing == "signed-trailer" and alg is not None:
            out.append("trailer-signature")
    return out


def request_target(path: str, query: list[tuple[str, str]]) -> str:
    qs = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in query)
    return path + ("?" + qs if qs else "")


def send_cut(
    endpoint: str, path: str, query: list[tuple[str, str]], req: RawPut, cut_at: int, rst: bool
) -> str | None:
    """Send the head and ``cut_at`` bytes of the body, then hang up (RST or FIN).

    Returns None once cut (s3shim may also have hung up first, answering early), or why
    no connection was made (an s3shim that was just replaced).
    """
    parts = urlsplit(endpoint)
    assert parts.hostname is not None and parts.port is not None
    head = f"PUT {request_target(path, query)} HTTP/1.1\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in req.headers.items()) + "\r\n"
    try:
        sock = socket.create_connection((parts.hostname, parts.port), timeout=HTTP_TIMEOUT)
    except OSError as exc:
        return type(exc).__name__
    with sock:
        try:
            sock.sendall(head.encode() + req.body[:cut_at])
        except OSError:
            return None
        if rst:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return None


def raw_get(
    endpoint: str, path: str, rng_header: str | None, *, access_key: str, secret_key: str
) -> tuple[int, str | None, bytes | None, str]:
    """(status, Content-Range, body or None when the read was cut, how it was cut)."""
    headers = sign(
        "GET",
        endpoint,
        path,
        access_key=access_key,
        secret_key=secret_key,
        payload_hash=sigv4.UNSIGNED_PAYLOAD,
    )
    if rng_header:
        headers["range"] = rng_header
    parts = urlsplit(endpoint)
    assert parts.hostname is not None
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=HTTP_TIMEOUT)
    status = 0
    try:
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        status = resp.status
        body = resp.read()  # http.client raises IncompleteRead on a short body
        return status, resp.getheader("content-range"), body, ""
    except (OSError, http.client.HTTPException) as exc:
        return status, None, None, cut_how(status, exc)
    finally:
        conn.close()


def cut_how(status: int, exc: BaseException) -> str:
    """'no answer: X' (nothing served) or 'cut after 206: X' (a response broken mid-body)."""
    where = f"cut after {status}" if status else "no answer"
    return f"{where}: {type(exc).__name__}"


def slowly(writes: list[bytes], rng: random.Random) -> Iterator[bytes]:
    """A slow client: at most ~1.5 s of pauses in all, spread over the body."""
    pause = min(rng.uniform(0.005, 0.1), 1.5 / max(1, len(writes)))
    if not writes:
        time.sleep(pause)
    for w in writes:
        time.sleep(pause)
        yield w


def safe_send(
    endpoint: str,
    path: str,
    headers: dict[str, str],
    query: list[tuple[str, str]],
    body: list[bytes] | Iterator[bytes],
) -> Reply:
    """rawclient.send, with every connection failure as 'no answer' (status 0)."""
    try:
        return send("PUT", endpoint, path, headers, query=query, body=body, timeout=HTTP_TIMEOUT)
    except (OSError, http.client.HTTPException) as exc:
        return Reply(0, {"error": type(exc).__name__}, b"")
