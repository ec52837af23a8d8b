"""bench/run.py's S3 client: blocking, minimal, zero-copy, signed with s3shim's own signer;
and the aws-chunked PutObject framed in memory before the clock starts."""

from __future__ import annotations

import base64
import hashlib
import http.client
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bench.common import ACCESS_KEY, BUCKET, MIB, REGION, SECRET_KEY
from s3shim import chunked, sigv4
from s3shim.testing import ChunkSigner

CHUNK_SIZE = 64 * 1024  # aws-chunked chunk size, as the AWS SDKs send it
SEND_SLICE = 8 * MIB  # the client hands the kernel this much per sendall()
SINK_BUFFER = 4 * MIB  # recv_into() target of the GET sink


class S3Error(RuntimeError):
    pass


class Client:
    """A minimal blocking S3 client: SigV4 via s3shim.sigv4, zero-copy sends and receives.

    http.client hands a memoryview straight to socket.sendall() and reads a GET body with
    recv_into() into one reused buffer, so the client costs about what the kernel copy costs.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.host = f"127.0.0.1:{port}"
        self.creds = sigv4.Credentials(ACCESS_KEY, SECRET_KEY)
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        return self._conn

    def signed(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]],
        headers: dict[str, str],
        payload_hash: str,
        amz_date: str | None = None,
    ) -> tuple[str, dict[str, str], str]:
        """(url, headers to send, seed signature)."""
        amz_date = amz_date or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        sr = sigv4.sign_headers(
            method=method,
            raw_path=path,
            query=query,
            host=self.host,
            headers=headers,
            payload_hash=payload_hash,
            creds=self.creds,
            region=REGION,
            amz_date=amz_date,
        )
        qs = sigv4.canonical_query(query)
        url = sigv4.canonical_uri(path) + (f"?{qs}" if qs else "")
        return url, {**headers, **sr.headers}, sr.signature

    def send(
        self, method: str, url: str, headers: dict[str, str], body: memoryview | bytes | None
    ) -> http.client.HTTPResponse:
        conn = self._connection()
        headers = dict(headers)
        if body is not None or method in ("PUT", "POST"):
            headers["content-length"] = str(len(body) if body is not None else 0)
        conn.putrequest(method, url, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        if body is not None:
            view = memoryview(body).cast("B")
            sock = conn.sock
            assert sock is not None
            for start in range(0, len(view), SEND_SLICE):
                sock.sendall(view[start : start + SEND_SLICE])
        return conn.getresponse()

    def request(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]] = (),
        body: memoryview | bytes | None = None,
        headers: dict[str, str] | None = None,
        payload_hash: str | None = None,
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        if payload_hash is None:
            payload_hash = sigv4.EMPTY_SHA256 if body is None else hashlib.sha256(body).hexdigest()
        url, hdrs, _ = self.signed(method, path, query, headers or {}, payload_hash)
        try:
            resp = self.send(method, url, hdrs, body)
            data = resp.read()
        except Exception:
            self.close()
            raise
        if resp.status >= 300 or b"<Error>" in data[:512]:
            self.close()
            raise S3Error(f"{method} {url} -> {resp.status}: {data[:600]!r}")
        return resp.status, resp.headers, data

    def get_into_sink(self, path: str, hasher: Any = None) -> int:
        """GET the object; read every byte into a reused buffer; return the byte count."""
        url, hdrs, _ = self.signed("GET", path, (), {}, sigv4.EMPTY_SHA256)
        buf = bytearray(SINK_BUFFER)
        view = memoryview(buf)
        total = 0
        try:
            resp = self.send("GET", url, hdrs, None)
            if resp.status != 200:
                raise S3Error(f"GET {url} -> {resp.status}: {resp.read()[:600]!r}")
            while n := resp.readinto(view):
                total += n
                if hasher is not None:
                    hasher.update(view[:n])
        except Exception:
            self.close()
            raise
        return total

    def local_port(self) -> int | None:
        """The source port of the open connection (which s3shim worker got it, see below)."""
        if self._conn is None or self._conn.sock is None:
            return None
        return int(self._conn.sock.getsockname()[1])

    # ---- S3 operations ----------------------------------------------------------------
    def create_multipart(self, key: str) -> str:
        _, _, body = self.request("POST", f"/{BUCKET}/{key}", [("uploads", "")])
        m = re.search(rb"<UploadId>([^<]+)</UploadId>", body)
        if m is None:
            raise S3Error(f"no UploadId in {body[:300]!r}")
        return m.group(1).decode()

    def upload_part(self, key: str, upload_id: str, number: int, part: memoryview) -> str:
        _, headers, _ = self.request(
            "PUT",
            f"/{BUCKET}/{key}",
            [("partNumber", str(number)), ("uploadId", upload_id)],
            body=part,
            payload_hash=sigv4.UNSIGNED_PAYLOAD,
        )
        return str(headers["ETag"])

    def complete_multipart(self, key: str, upload_id: str, etags: Sequence[str]) -> None:
        xml = "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>"
            for n, etag in enumerate(etags, 1)
        )
        complete = f"<CompleteMultipartUpload>{xml}</CompleteMultipartUpload>".encode()
        self.request("POST", f"/{BUCKET}/{key}", [("uploadId", upload_id)], body=complete)

    def multipart_upload(self, key: str, data: memoryview, part_size: int) -> None:
        upload_id = self.create_multipart(key)
        etags = [
            self.upload_part(key, upload_id, number, data[start : start + part_size])
            for number, start in enumerate(range(0, len(data), part_size), 1)
        ]
        self.complete_multipart(key, upload_id, etags)

    def put_object(self, key: str, data: memoryview, headers: dict[str, str] | None = None) -> None:
        self.request(
            "PUT",
            f"/{BUCKET}/{key}",
            body=data,
            headers=headers,
            payload_hash=sigv4.UNSIGNED_PAYLOAD,
        )

    def delete_object(self, key: str) -> None:
        self.request("DELETE", f"/{BUCKET}/{key}")


# ------------------------------------------------------------------------- aws-chunked body
@dataclass
class FramedPut:
    url: str
    headers: dict[str, str]
    body: memoryview


def frame_chunked_put(client: Client, key: str, data: memoryview) -> FramedPut:
    """Sign a STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER PutObject and frame its whole body.

    64 KiB chunks, each signed (chained from the Authorization header's signature), then a
    signed CRC32 trailer: what an AWS SDK sends for a PutObject with a checksum over http.
    """
    amz_date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    headers = {
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
        "x-amz-trailer": "x-amz-checksum-crc32",
    }
    url, hdrs, seed = client.signed(
        "PUT", f"/{BUCKET}/{key}", (), headers, chunked.Framing.SIGNED_TRAILER.value, amz_date
    )
    signing = chunked.ChunkSigning(
        signing_key=sigv4.signing_key(SECRET_KEY, amz_date[:8], REGION),
        amz_date=amz_date,
        scope=sigv4.scope(amz_date[:8], REGION),
        seed_signature=seed,
    )
    nchunks = -(-len(data) // CHUNK_SIZE)
    buf = bytearray(len(data) + (nchunks + 1) * 128 + 4096)  # framing needs < 100 B a chunk
    pos = 0
    signer = ChunkSigner(signing)
    for start in range(0, len(data), CHUNK_SIZE):
        piece = signer.chunk(data[start : start + CHUNK_SIZE])  # type: ignore[arg-type]  # a view
        buf[pos : pos + len(piece)] = piece
        pos += len(piece)
    end = signer.end([("x-amz-checksum-crc32", crc)])
    buf[pos : pos + len(end)] = end
    pos += len(end)
    return FramedPut(url, hdrs, memoryview(buf)[:pos])
