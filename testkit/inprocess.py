"""In-process s3shim in front of a recording fake store, for tests of the aiohttp layer.

Everything runs in the caller's own event loop on 127.0.0.1 random ports: no subprocess, no
root, no real store. The fake store (testkit/fakestore.py) only records and answers from a
script; it proves what s3shim *sent*, never that a real store accepts it.

s3shim is built by :func:`serve_in_process` exactly as ``s3shim.server.run()`` builds it,
and only there. Its imports of s3shim's I/O modules are local so that a broken
``s3shim.proxy`` fails the tests that use it, not the collection of every other test.
The pytest fixtures that build these (``make_inproc``, ``inproc_on``, ...) are in
tests/unit/conftest.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from .chunksign import REGION, SIGNED, SIGNED_TRAILER, UNSIGNED_TRAILER, ChunkSigner, pieces
from .fakestore import FakeStore, Received
from .rawclient import sign

if TYPE_CHECKING:
    from s3shim.config import Config
    from s3shim.metrics import Metrics
    from s3shim.proxy import Proxy

CLIENT_KEY = "CLIENTKEYEXAMPLE"
CLIENT_SECRET = "client-secret-example"
# A different pair towards the store: proves s3shim re-signs with the mapped key.
STORE_KEY = "STOREKEYEXAMPLE"
STORE_SECRET = "store-secret-example"
WAIT = 10.0  # only bounds a hang (a failing test, never a slow one); nothing is timed


# -- captured logs --------------------------------------------------------------------------


class LogCapture(io.StringIO):
    """Where s3shim's structlog lines go during a test (one JSON object per line)."""

    def __init__(self) -> None:
        super().__init__()
        self._event = asyncio.Event()

    def write(self, s: str) -> int:
        n = super().write(s)
        self._event.set()
        return n

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.getvalue().splitlines() if line.strip()]

    def requests(self) -> list[dict[str, Any]]:
        """The one-per-request lines (event "request")."""
        return [e for e in self.entries() if e.get("event") == "request"]

    async def until(self, predicate: Callable[[], bool], timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._event.clear()
                await self._event.wait()

    async def request_lines(self, count: int = 1) -> list[dict[str, Any]]:
        """The request lines once ``count`` were written (s3shim writes a request's line
        after its response went out, so the client can see the response first)."""
        await self.until(lambda: len(self.requests()) >= count)
        return self.requests()


# -- a raw HTTP/1.1 client ------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    complete: bool  # the body is as long as its framing said (False: the connection was cut)
    interim: list[int] = field(default_factory=list)  # 1xx statuses received first
    raw: bytes = b""  # every byte of this exchange as it came off the wire

    def header(self, name: str) -> str | None:
        lname = name.lower()
        return next((v for k, v in self.headers if k.lower() == lname), None)

    @property
    def code(self) -> str | None:
        """The S3 error code of an XML error body."""
        m = re.search(rb"<Code>([^<]*)</Code>", self.body)
        return m.group(1).decode() if m else None


class Conn:
    """One client connection; bytes go out exactly as given, responses are parsed by hand
    (1xx interim responses, Content-Length, chunked, or until the connection ends)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.raw = bytearray()

    async def send_head(self, method: str, target: str, headers: dict[str, str]) -> None:
        lines = [f"{method} {target} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()]
        await self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def _head(self) -> tuple[int, list[tuple[str, str]]]:
        head = await self.reader.readuntil(b"\r\n\r\n")
        self.raw += head
        status_line, *lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers = [(k.strip(), v.strip()) for k, _, v in (x.partition(":") for x in lines if x)]
        return status, headers

    async def interim(self) -> int:
        """The status of the next response head, expected to be a 1xx one."""
        async with asyncio.timeout(WAIT):
            status, _ = await self._head()
        return status

    async def response(self, method: str) -> Response:
        async with asyncio.timeout(WAIT):
            return await self._response(method)

    async def _response(self, method: str) -> Response:
        start = len(self.raw)
        interim: list[int] = []
        try:
            status, headers = await self._head()
            while 100 <= status < 200:
                interim.append(status)
                status, headers = await self._head()
        except asyncio.IncompleteReadError as exc:
            self.raw += exc.partial
            return Response(0, [], b"", False, interim, bytes(self.raw[start:]))
        h = {k.lower(): v for k, v in headers}
        body = bytearray()
        complete = True
        if method == "HEAD" or status in (204, 304):
            pass
        elif "chunked" in h.get("transfer-encoding", "").lower():
            complete = await self._chunked(body)
        elif "content-length" in h:
            try:
                body += await self.reader.readexactly(int(h["content-length"]))
            except asyncio.IncompleteReadError as exc:
                body += exc.partial
                complete = False
            self.raw += body
        else:
            body += await self.reader.read()
            self.raw += body
        return Response(status, headers, bytes(body), complete, interim, bytes(self.raw[start:]))

    async def _chunked(self, body: bytearray) -> bool:
        try:
            while True:
                line = await self.reader.readuntil(b"\r\n")
                self.raw += line
                size = int(line.split(b";")[0], 16)
                data = await self.reader.readexactly(size + 2)
                self.raw += data
                if size == 0:
                    return True
                body += data[:-2]
        except asyncio.IncompleteReadError as exc:
            self.raw += exc.partial
            return False

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def target(path: str, query: list[tuple[str, str]] | None = None) -> str:
    qs = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in query or [])
    return path + ("?" + qs if qs else "")


@dataclass
class Client:
    """Signs requests with the client key (testkit/rawclient.py's signer) and sends them."""

    endpoint: str
    access_key: str = CLIENT_KEY
    secret_key: str = CLIENT_SECRET

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
    ) -> dict[str, str]:
        return sign(
            method,
            self.endpoint,
            path,
            access_key=self.access_key,
            secret_key=self.secret_key,
            query=query,
            headers=headers,
            payload_hash=payload_hash,
            body=body,
            amz_date=amz_date,
            region=REGION,
        )

    async def connect(self) -> Conn:
        host, port = self.endpoint.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        return Conn(reader, writer)

    async def send(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes = b"",
        *,
        query: list[tuple[str, str]] | None = None,
    ) -> Response:
        """One request on a new connection: head and body as given (plus Host, when
        missing), then the response."""
        headers = {"host": self.endpoint.removeprefix("http://"), **headers}
        conn = await self.connect()
        try:
            await conn.send_head(method, target(path, query), headers)
            if body:
                await conn.send(body)
            return await conn.response(method)
        finally:
            await conn.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        payload_hash: str | None = None,
    ) -> Response:
        """A correctly signed request (payload hash: the body's sha256 unless given)."""
        signed = self.sign(
            method, path, query=query, headers=headers, body=body, payload_hash=payload_hash
        )
        if body or method in ("PUT", "POST"):
            signed.setdefault("content-length", str(len(body)))
        return await self.send(method, path, signed, body, query=query)


# -- s3shim in process ----------------------------------------------------------------------


@dataclass
class InProcessShim:
    endpoint: str
    store: FakeStore
    config: Config
    metrics: Metrics
    proxy: Proxy
    logs: LogCapture
    client: Client

    def metric(self, name: str, **labels: str) -> float:
        """A sample from s3shim's Prometheus registry (0.0 when never set)."""
        value = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    async def forwarded(self, answer: Awaitable[Response]) -> Received:
        """The one request the store received for ``answer`` (a client call's), a 200."""
        r = await answer
        assert r.status == 200, r.raw[:500]
        (rec,) = self.store.received
        return rec

    async def after_continue(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, int, Response]:
        """A request sent as a client honouring ``Expect: 100-continue`` does: the head, the
        interim answer awaited, then the body. The interim status, the store connections
        opened by then (0: s3shim invited the body before asking the store) and the answer."""
        conn = await self.client.connect()
        try:
            await conn.send_head(method, target, headers)
            interim = await conn.interim()
            opened = self.store.connections_opened
            await conn.send(body)
            return interim, opened, await conn.response(method)
        finally:
            await conn.close()


def shim_env(store_url: str, keys_file: Path, *, flags: bool, **extra: str) -> dict[str, str]:
    return {
        "S3SHIM_UPSTREAM_URL": store_url,
        "S3SHIM_CLIENT_KEYS_FILE": str(keys_file),
        "AWS_REGION": REGION,
        "AWS_S3_DISABLE_SSE": str(flags).lower(),
        "AWS_S3_DISABLE_CHECKSUMS": str(flags).lower(),
        "S3SHIM_ADMIN_PORT": "0",
        "S3SHIM_LOG_FORMAT": "json",
        **extra,
    }


@contextlib.asynccontextmanager
async def serve_in_process(cfg: Config) -> AsyncIterator[tuple[Proxy, Metrics, int]]:
    """s3shim built as ``s3shim.server.run()`` builds it, on 127.0.0.1 and a random port
    (cfg.listen_port is ignored; no admin listener, no signal handlers). The ONE place that
    constructs it for these tests: follow run() here when it changes."""
    from aiohttp import web

    from s3shim.accept import Acceptor, listening_sockets
    from s3shim.listener import S3Server
    from s3shim.metrics import Metrics
    from s3shim.proxy import READ_SIZE, Proxy, new_upstream
    from s3shim.server import MemoryRelief, _exception_handler, _limits

    metrics = Metrics()
    upstream = new_upstream(cfg)
    relief = MemoryRelief()
    loop = asyncio.get_running_loop()
    previous_handler = loop.get_exception_handler()
    try:
        proxy = Proxy(cfg, metrics, upstream)
        server = S3Server(
            proxy.handle,
            limits=_limits(cfg),
            metrics=metrics,
            on_relief=relief,
            handler_cancellation=False,
            access_log=None,
            read_bufsize=READ_SIZE,
            max_field_size=8190,
            max_headers=64,
            keepalive_timeout=cfg.client_timeout,
        )
        loop.set_exception_handler(_exception_handler(server))
        runner = web.ServerRunner(server, shutdown_timeout=1.0)
        await runner.setup()
        try:
            assert runner.server is not None
            acceptor = Acceptor(
                listening_sockets("127.0.0.1", 0, backlog=1024, reuse_port=False),
                runner.server,
                on_error=lambda event, exc: server.log_limited(event, str(exc)),
            )
            try:
                yield proxy, metrics, acceptor.ports[0]
            finally:
                acceptor.close()
        finally:
            await runner.cleanup()
    finally:
        loop.set_exception_handler(previous_handler)
        relief.cancel()
        await upstream.close()


MakeShim = Callable[..., Awaitable[InProcessShim]]


def store_signature_valid(rec: Received, secret: str = STORE_SECRET) -> bool:
    """botocore's signer (not s3shim's) recomputes the signature over exactly the headers
    the request says it signed, as the store received them."""
    authz = rec.header("authorization") or ""
    m = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/s3/aws4_request, "
        r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})",
        authz,
    )
    if m is None:
        return False
    access_key, _, region, signed, given = m.groups()
    names = signed.split(";")
    headers = {n: ",".join(rec.values(n)) for n in names}
    url = f"http://{rec.header('host')}{rec.target}"
    req = AWSRequest(method=rec.method, url=url, headers=headers)
    auth = S3SigV4Auth(BotoCredentials(access_key, secret), "s3", region)
    req.context["timestamp"] = rec.header("x-amz-date")
    canonical = auth.canonical_request(req)
    expected = auth.signature(auth.string_to_sign(req, canonical), req)
    return bool(expected == given and auth.signed_headers(auth.headers_to_sign(req)) == signed)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def payload(size: int, seed: int = 0) -> bytes:
    """``size`` reproducible pseudo-random bytes."""
    return random.Random(seed).randbytes(size)


# -- aws-chunked bodies, framed here from AWS's documented layout (independent of s3shim's


def aws_chunked(
    client: Client,
    path: str,
    data: bytes,
    framing: str,
    *,
    chunk_size: int = 64 * 1024,
    checksum: str | None = None,
    decoded_length: int | None = None,
    tamper_chunk: int | None = None,
    query: list[tuple[str, str]] | None = None,
) -> tuple[dict[str, str], bytes]:
    """Signed headers and the framed body of an aws-chunked PUT of ``data``.

    ``checksum`` is the x-amz-checksum-crc32 trailer value (the -TRAILER framings only);
    ``decoded_length`` overrides the length the headers declare; ``tamper_chunk`` breaks
    that chunk's signature (signed framings).
    """
    headers = {
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(
            len(data) if decoded_length is None else decoded_length
        ),
    }
    trailers = [("x-amz-checksum-crc32", checksum)] if checksum is not None else []
    if framing != SIGNED:
        headers["x-amz-trailer"] = "x-amz-checksum-crc32"
    signed = client.sign("PUT", path, query=query, headers=headers, payload_hash=framing)
    chunks = pieces(data, chunk_size)
    if framing == UNSIGNED_TRAILER:
        body = b"".join(b"%x\r\n%b\r\n" % (len(c), c) for c in chunks)
        body += b"0\r\n" + "".join(f"{n}:{v}\r\n" for n, v in trailers).encode() + b"\r\n"
    else:
        seed = signed["authorization"].rsplit("Signature=", 1)[1]
        signer = ChunkSigner(client.secret_key, signed["x-amz-date"], seed)
        body = b"".join(signer.chunk(c, tamper=i == tamper_chunk) for i, c in enumerate(chunks))
        body += signer.chunk(b"")[:-2]  # the final chunk's CRLF is the end of its trailers
        body += signer.trailer(trailers) if framing == SIGNED_TRAILER else b"\r\n"
    signed["content-length"] = str(len(body))
    return signed, body
