#!/usr/bin/env python3
"""What the framework alone costs per request: the floor under s3shim's per-request figure.

bench/small.py starts these in front of its INSTANT upstream, beside s3shim and nginx, and
replays the same signed GET at them (they ignore the signature):

* ``answer``: aiohttp's low-level server (as s3shim runs it: uvloop, no access log) answering
  the 1 KiB object from memory: the cost of receiving a request and sending a response.
* ``relay-aiohttp``: the same server fetching the object from the upstream with aiohttp's
  client (pooled keep-alive, the settings s3shim used before s3shim/upstream.py).
* ``relay-lean``: the same server fetching it with s3shim's own upstream client
  (s3shim/upstream.py), still without any of s3shim's checks.

s3shim's figure minus ``relay-lean``'s is what s3shim's own work costs (verification,
plan, re-signing, logging, metrics).

    .venv/bin/python -m bench.floor MODE PORT UPSTREAM_PORT OBJECT_FILE
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.web_request import BaseRequest

MODES = ("answer", "relay-aiohttp", "relay-lean")


async def serve(mode: str, port: int, upstream_port: int, body: bytes) -> None:
    handler: Callable[[BaseRequest], Awaitable[web.StreamResponse]]
    if mode == "answer":

        async def answer(_request: BaseRequest) -> web.StreamResponse:
            return web.Response(body=body)

        handler = answer
    elif mode == "relay-aiohttp":
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        base = f"http://127.0.0.1:{upstream_port}"

        async def relay_aiohttp(request: BaseRequest) -> web.StreamResponse:
            async with session.get(
                base + request.raw_path.partition("?")[0],
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
            ) as resp:
                data = await resp.read()
            return web.Response(status=resp.status, body=data)

        handler = relay_aiohttp
    else:
        from s3shim.upstream import Upstream

        client = Upstream(
            host="127.0.0.1",
            port=upstream_port,
            host_header=f"127.0.0.1:{upstream_port}",
            ssl=None,
            connect_timeout=10,
            read_timeout=60,
        )

        async def relay_lean(request: BaseRequest) -> web.StreamResponse:
            async with await client.request(
                "GET", request.raw_path.partition("?")[0], (), None
            ) as resp:
                data = await resp.read()
            return web.Response(status=resp.status, body=data)

        handler = relay_lean
    server = web.Server(handler, access_log=None)
    await asyncio.get_running_loop().create_server(server, "127.0.0.1", port)
    await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("mode", choices=MODES)
    ap.add_argument("port", type=int)
    ap.add_argument("upstream_port", type=int)
    ap.add_argument("object_file", type=Path)
    args = ap.parse_args(argv)
    import uvloop

    uvloop.run(serve(args.mode, args.port, args.upstream_port, args.object_file.read_bytes()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
