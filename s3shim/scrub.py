"""``s3shim verify s3://bucket[/prefix]``: find rot before a user does.

Reads every object under the prefix straight from the store (with the store's key and, when
s3shim holds SSE keys, the object's SSE-C key, as s3shim itself does), checks each against
the checksum s3shim recorded when it wrote it (:mod:`s3shim.integrity`, the same verifier
the proxy uses on reads) and prints a summary:
checked, no checksum recorded, mismatched. Exit status: 0 all recorded objects match,
1 a mismatch was found, 2 bad usage or settings, 3 the store could not be read.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TextIO, TypeVar
from xml.parsers import expat

from . import config as config_mod
from . import errors, sigv4
from .integrity import RECORD_HEADER, ReadVerifier, parse_record
from .proxy import new_upstream
from .ssekeys import Keyring
from .upstream import Response, Upstream, UpstreamError

T = TypeVar("T")

MAX_LISTING_BYTES = 16 * 1024 * 1024  # one ListObjectsV2 page is ~1000 keys, far below this


@dataclass(frozen=True, slots=True)
class Store:
    """The store as s3shim is configured to reach it: the proxy's client, host, key, region."""

    client: Upstream
    host: str  # host[:port], as signed and sent in Host
    creds: sigv4.Credentials
    region: str


@dataclass(slots=True)
class Summary:
    checked: int = 0  # recorded and matching
    unrecorded: int = 0
    mismatched: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.checked + self.unrecorded + len(self.mismatched) + len(self.unreadable)

    @property
    def exit_status(self) -> int:
        if self.mismatched:
            return 1
        return 3 if self.unreadable else 0


def parse_listing(body: bytes) -> tuple[list[str], str | None]:
    """Keys and the continuation token of one ListObjectsV2 page (no DTDs, no entities)."""
    keys: list[str] = []
    token: list[str | None] = [None]
    path: list[str] = []
    text: list[str] = []
    parser = expat.ParserCreate()

    def no_entities(*_: object) -> None:
        raise errors.malformed_xml()

    parser.EntityDeclHandler = no_entities
    parser.StartDoctypeDeclHandler = no_entities

    def start(name: str, _attrs: object) -> None:
        path.append(name.rpartition(":")[2] if ":" in name else name)
        text.clear()

    def end(_name: str) -> None:
        tag = path.pop()
        value = "".join(text)
        if tag == "Key" and path[-1:] == ["Contents"]:
            keys.append(value)
        elif tag == "NextContinuationToken" and len(path) == 1:
            token[0] = value
        text.clear()

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text.append
    try:
        parser.Parse(body, True)
    except expat.ExpatError:
        raise errors.malformed_xml() from None
    return keys, token[0]


def object_path(bucket: str, key: str) -> str:
    """The path of ``bucket``/``key`` as signed and sent (path style)."""
    return (
        "/"
        + sigv4.uri_encode(bucket, keep_slash=False)
        + "/"
        + sigv4.uri_encode(key, keep_slash=True)
    )


async def request(
    store: Store,
    method: str,
    path: str,
    query: Sequence[tuple[str, str]] = (),
    headers: Sequence[tuple[str, str]] = (),
    body: bytes | AsyncIterator[bytes] | None = None,
    *,
    payload_hash: str = sigv4.EMPTY_SHA256,
) -> Response:
    """One request signed with the store's key (every ``x-amz-*`` of ``headers`` signed)."""
    # Sent exactly as signed: the canonical path and query, never re-quoted.
    qs = sigv4.canonical_query(query)
    target = sigv4.canonical_uri(path) + ("?" + qs if qs else "")
    signed = sigv4.sign_headers(
        method=method,
        raw_path=path,
        query=query,
        host=store.host,
        headers=dict(headers),
        payload_hash=payload_hash,
        creds=store.creds,
        region=store.region,
        amz_date=datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
    ).headers
    # Host is the client's own (its host_header, the store host signed).
    sent = [(n, v) for n, v in signed.items() if n != "host"]
    return await store.client.request(method, target, (*sent, *headers), body)


async def _get(store: Store, path: str, query: list[tuple[str, str]]) -> Response:
    return await request(store, "GET", path, query)


async def read_small(resp: Response, limit: int = MAX_LISTING_BYTES) -> bytes:
    """A body s3shim parses (a listing page, a tag set, an ACL), refused past ``limit``."""
    parts: list[bytes] = []
    size = 0
    while (piece := await resp.next_buffer()) is not None:
        size += len(piece)
        if size > limit:
            raise RuntimeError(f"a store answer over {limit} bytes")
        parts.append(piece)
    return b"".join(parts)


async def list_keys(
    store: Store, bucket: str, prefix: str, start_after: str = ""
) -> AsyncIterator[str]:
    """Every key under ``prefix``, in the store's (lexicographic) order, after ``start_after``."""
    token: str | None = None
    while True:
        query = [("list-type", "2"), ("prefix", prefix)]
        if token:
            query.append(("continuation-token", token))
        elif start_after:
            query.append(("start-after", start_after))
        path = "/" + sigv4.uri_encode(bucket, keep_slash=False)
        async with await _get(store, path, query) as resp:
            if resp.status != 200:
                raise RuntimeError(f"listing {bucket!r} failed: HTTP {resp.status}")
            body = await read_small(resp)
        keys, token = parse_listing(body)
        for key in keys:
            yield key
        if not token:
            return


async def _get_object(store: Store, bucket: str, key: str, keyring: Keyring | None) -> Response:
    """The object's GET, with the keys s3shim would read it with (current, older, none) when
    it holds keys, as the proxy does: the next one after a wrong-key 400."""
    path = object_path(bucket, key)
    attempts = keyring.read_attempts(bucket, key) if keyring is not None else (None,)
    for n, tried in enumerate(attempts):
        headers = tried.headers() if tried is not None else []
        resp = await request(store, "GET", path, headers=headers)
        if resp.status != 400 or n + 1 == len(attempts):
            return resp
        async with resp:
            await read_small(resp, 64 * 1024)  # the error document; the connection is kept
    raise AssertionError("unreachable: the last attempt returns")


async def check_object(store: Store, bucket: str, key: str, keyring: Keyring | None = None) -> str:
    """'checked', 'unrecorded' or 'mismatched' for one object."""
    async with await _get_object(store, bucket, key, keyring) as resp:
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}")
        recorded = parse_record(resp.headers.get(RECORD_HEADER, ""))
        if recorded is None:
            return "unrecorded"
        verifier = ReadVerifier(*recorded)
        while (piece := await resp.next_buffer()) is not None:
            verifier.feed(piece)
        try:
            verifier.finish()
        except errors.S3Error:
            return "mismatched"
        return "checked"


class Progress:
    """A one-line progress display on a terminal; nothing but the summary elsewhere."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()

    def show(self, handled: int, listed: int, done: bool, counts: str) -> None:
        """``handled`` of ``listed`` objects so far (more may come until ``done``)."""
        if not self.tty:
            return
        width = 30
        filled = width if done else (width * handled // listed if listed else 0)
        bar = "#" * filled + "." * (width - filled)
        self.out.write(f"\r[{bar}] {handled}/{listed}{'' if done else '+'} {counts}")
        if done:
            self.out.write("\n")
        self.out.flush()


def _counts(s: Summary) -> str:
    return f"checked={s.checked} unrecorded={s.unrecorded} mismatched={len(s.mismatched)}"


async def each(
    items: AsyncIterator[T], concurrency: int, handle: Callable[[T], Awaitable[None]]
) -> None:
    """``handle`` every item, ``concurrency`` at once, in the order they come (a bounded queue:
    the listing is never read far ahead). On an error or a cancellation the handlers still
    running are cancelled, so an interrupted run stops at once."""
    queue: asyncio.Queue[tuple[T] | None] = asyncio.Queue(maxsize=concurrency * 4)

    async def worker() -> None:
        while (item := await queue.get()) is not None:
            await handle(item[0])

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        async for item in items:
            await queue.put((item,))
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
    except BaseException:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise


async def scrub(
    store: Store,
    bucket: str,
    prefix: str,
    *,
    concurrency: int = 4,
    progress: Progress | None,
    keyring: Keyring | None = None,
) -> Summary:
    summary = Summary()
    listed = 0

    async def keys() -> AsyncIterator[str]:
        nonlocal listed
        async for key in list_keys(store, bucket, prefix):
            listed += 1
            yield key

    async def check(key: str) -> None:
        try:
            outcome = await check_object(store, bucket, key, keyring)
        except (UpstreamError, OSError, TimeoutError, RuntimeError):
            summary.unreadable.append(key)
        else:
            if outcome == "checked":
                summary.checked += 1
            elif outcome == "unrecorded":
                summary.unrecorded += 1
            else:
                summary.mismatched.append(key)
        if progress:
            progress.show(summary.total, listed, False, _counts(summary))

    await each(keys(), concurrency, check)
    if progress:
        progress.show(summary.total, listed, True, _counts(summary))
    return summary


def settings(url: str | None, env: Mapping[str, str]) -> config_mod.Config:
    """s3shim's own configuration (the same environment and checks as the proxy's), with
    ``--upstream-url`` given as the proxy's flag."""
    try:
        cfg = config_mod.load(["--upstream-url", url] if url else [], env)
    except config_mod.ConfigError as exc:
        raise ValueError(str(exc)) from None
    if not cfg.upstream_access_key_id or not cfg.upstream_secret_access_key:
        raise ValueError(
            "needs the store key pair (S3SHIM_UPSTREAM_ACCESS_KEY_ID/"
            "S3SHIM_UPSTREAM_SECRET_ACCESS_KEY or AWS_*)"
        )
    return cfg


def open_store(cfg: config_mod.Config) -> Store:
    """The store through the proxy's own client (call inside the event loop)."""
    assert cfg.upstream_access_key_id and cfg.upstream_secret_access_key  # settings()
    return Store(
        new_upstream(cfg),
        cfg.upstream_host,
        sigv4.Credentials(cfg.upstream_access_key_id, cfg.upstream_secret_access_key),
        cfg.upstream_region,
    )


async def _scrub(
    cfg: config_mod.Config, bucket: str, prefix: str, concurrency: int, progress: Progress
) -> Summary:
    store = open_store(cfg)
    try:
        return await scrub(
            store,
            bucket,
            prefix,
            concurrency=concurrency,
            progress=progress,
            keyring=cfg.sse_keyring,
        )
    finally:
        await store.client.close()


def parse_target(target: str) -> tuple[str, str]:
    if not target.startswith("s3://") or len(target) <= 5:
        raise ValueError("expected s3://bucket[/prefix]")
    bucket, _, prefix = target[5:].partition("/")
    return bucket, prefix


def main(argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    p = argparse.ArgumentParser(
        prog="s3shim verify",
        description=(
            "Read every object under s3://bucket[/prefix] straight from the store and check it "
            "against the checksum s3shim recorded when it wrote it. The store and its key pair "
            "come from the same environment as s3shim (S3SHIM_UPSTREAM_URL, "
            "S3SHIM_UPSTREAM_ACCESS_KEY_ID/SECRET_ACCESS_KEY or AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY, S3SHIM_UPSTREAM_REGION, S3SHIM_UPSTREAM_CA_BUNDLE); with "
            "S3SHIM_SSE_KEYS_FILE, objects stored encrypted are read with their keys (current, "
            "older, none), as s3shim reads them. "
            "Exit status: 0 all match, 1 a mismatch, 2 usage, 3 an object could not be read."
        ),
    )
    p.add_argument("target", help="s3://bucket or s3://bucket/prefix")
    p.add_argument("--upstream-url", help="the store's URL (env S3SHIM_UPSTREAM_URL)")
    p.add_argument("--concurrency", type=int, default=4, help="objects read at once [default: 4]")
    args = p.parse_args(argv)
    try:
        bucket, prefix = parse_target(args.target)
        cfg = settings(args.upstream_url, env)
        if not 1 <= args.concurrency <= 64:
            raise ValueError("--concurrency: expected 1-64")
    except ValueError as exc:
        print(f"s3shim verify: {exc}", file=sys.stderr)
        return 2
    try:
        summary = asyncio.run(_scrub(cfg, bucket, prefix, args.concurrency, Progress(sys.stderr)))
    except (UpstreamError, OSError, RuntimeError, errors.S3Error) as exc:
        print(f"s3shim verify: cannot list s3://{bucket}/{prefix}: {exc}", file=sys.stderr)
        return 3
    for key in summary.mismatched:
        print(f"MISMATCH s3://{bucket}/{key}")
    for key in summary.unreadable:
        print(f"UNREADABLE s3://{bucket}/{key}")
    print(
        f"checked={summary.checked} unrecorded={summary.unrecorded} "
        f"mismatched={len(summary.mismatched)} unreadable={len(summary.unreadable)}"
    )
    return summary.exit_status
