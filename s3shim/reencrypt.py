"""``s3shim reencrypt s3://bucket[/prefix]``: every object under the current master key.

After a rotation (a new key first in S3SHIM_SSE_KEYS_FILE), objects written under an older
key, and objects stored before s3shim had keys, are read with their key and written again
under the current one. RGW cannot copy an SSE-C object nor encrypt a copy, so it is a GET
streamed into a PUT, through the proxy's own client (:mod:`s3shim.upstream`), with the
store's key. What to do with each object is decided in :mod:`s3shim.reencrypt_plan`; this
module only sends the requests. Shares verify's listing, worker pool and progress
(:mod:`s3shim.scrub`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence

from . import config as config_mod
from . import errors, sigv4
from .integrity import ReadVerifier, parse_record
from .reencrypt_plan import (
    NOT_CARRIED,
    Outcome,
    Rewrite,
    State,
    Summary,
    Watermark,
    candidates,
    grants,
    read_head,
    rewrite,
    tagging_header,
)
from .scrub import (
    Progress,
    Store,
    each,
    list_keys,
    object_path,
    open_store,
    parse_target,
    read_small,
    request,
    settings,
)
from .ssekeys import Keyring, ObjectKey
from .upstream import Response, UpstreamError

# What a store that fails, or answers something else than S3, raises here: the object is
# left as it was and counted as failed (ValueError: an answer read_head or an XML reader
# could not take).
_STORE_ERRORS = (UpstreamError, OSError, TimeoutError, RuntimeError, ValueError, errors.S3Error)


async def probe(
    store: Store, bucket: str, key: str, keyring: Keyring
) -> tuple[State, ObjectKey | None, list[tuple[str, str]]]:
    """The object's state, the key it is under and its HEAD answer's headers."""
    path = object_path(bucket, key)
    for tried in candidates(keyring, bucket, key):
        sse = tried.headers() if tried is not None else []
        async with await request(store, "HEAD", path, headers=sse) as resp:
            headers = [(n.lower(), v) for n, v in resp.headers.items()]
            state = read_head(tried, resp.status, dict(headers), keyring.current.id)
        if state is not None:
            return state, tried, headers
    return State.UNKNOWN_KEY, None, []


async def _sub_resource(store: Store, bucket: str, key: str, name: str) -> bytes | None:
    """GetObjectTagging / GetObjectAcl's body, or None when the object is gone."""
    async with await request(store, "GET", object_path(bucket, key), [(name, "")]) as resp:
        if resp.status == 404:
            return None
        body = await read_small(resp, 1024 * 1024)
    if resp.status != 200:
        raise RuntimeError(f"GET ?{name} answered HTTP {resp.status}")
    return body


class _Checked:
    """The GET's body as it comes, checked against s3shim's record when there is one (the
    last piece held back until it matched, so a PUT never completes with rotten bytes: the
    store sees a short body and commits nothing)."""

    def __init__(self, resp: Response, record: str | None) -> None:
        parsed = parse_record(record) if record else None
        self._verifier = ReadVerifier(*parsed) if parsed else None
        self._resp = resp
        self.mismatched = False

    async def pieces(self) -> AsyncIterator[bytes]:
        verifier = self._verifier
        while (piece := await self._resp.next_buffer()) is not None:
            if verifier is None:
                yield piece
            elif out := verifier.feed(piece):
                yield out
        if verifier is not None:
            try:
                tail = verifier.finish()
            except errors.S3Error:
                self.mismatched = True
                raise
            if tail:
                yield tail


async def write_again(store: Store, bucket: str, key: str, plan: Rewrite) -> Outcome:
    """Carry out ``plan``: the tags and ACL, the GET streamed into the guarded PUT."""
    tagging: str | None = None
    if plan.tag_count:
        tags = await _sub_resource(store, bucket, key, "tagging")
        if tags is None:
            return Outcome.GONE
        tagging = tagging_header(tags)
    acl = await _sub_resource(store, bucket, key, "acl")
    if acl is None:
        return Outcome.GONE
    grant = grants(acl)
    if grant is None:
        return Outcome.NOT_CARRIED
    path = object_path(bucket, key)
    async with await request(store, "GET", path, headers=plan.get_headers()) as got:
        if got.status in (404, 412):
            return Outcome.GONE if got.status == 404 else Outcome.CHANGED
        if got.status != 200 or got.headers.get("content-length") != str(plan.length):
            return Outcome.FAILED
        body = _Checked(got, plan.record)
        try:
            put = await request(
                store,
                "PUT",
                path,
                headers=plan.put_headers(tagging, grant),
                body=body.pieces(),
                payload_hash=sigv4.UNSIGNED_PAYLOAD,
            )
        except UpstreamError:
            if body.mismatched:
                return Outcome.MISMATCHED
            raise
        async with put:
            await put.read()
    if put.status == 412:
        return Outcome.CHANGED
    return Outcome.REENCRYPTED if put.status == 200 else Outcome.FAILED


async def reencrypt_object(
    store: Store, bucket: str, key: str, keyring: Keyring, *, dry_run: bool
) -> Outcome:
    state, under, headers = await probe(store, bucket, key, keyring)
    if state is State.UNKNOWN_KEY:
        # Once more before reporting it: a write landing between two HEADs (the object moved
        # from one key to another) also looks like this.
        state, under, headers = await probe(store, bucket, key, keyring)
    if state is State.CURRENT:
        return Outcome.CURRENT
    if state is State.GONE:
        return Outcome.GONE
    if state is State.UNKNOWN_KEY:
        return Outcome.UNKNOWN_KEY
    plan = rewrite(state, under, headers, keyring.for_write(bucket, key))
    if isinstance(plan, Outcome):
        return plan
    if dry_run:
        return Outcome.WOULD_REENCRYPT
    return await write_again(store, bucket, key, plan)


def _counts(s: Summary) -> str:
    return s.line()


async def reencrypt(
    store: Store,
    bucket: str,
    prefix: str,
    keyring: Keyring,
    *,
    start_after: str = "",
    limit: int | None = None,
    concurrency: int = 4,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> tuple[Summary, Watermark]:
    """Re-encrypt every object under ``prefix``; a signal (SIGINT, SIGTERM) or ``limit``
    objects stop it, in-flight PUTs abandoned (the objects stay as they were)."""
    summary = Summary()
    mark = Watermark(start_after)

    async def keys() -> AsyncIterator[tuple[int, str]]:
        async for key in list_keys(store, bucket, prefix, start_after):
            if limit is not None and mark.listed_count >= limit:
                summary.stopped = True
                return
            yield mark.listed(key), key

    async def handle(item: tuple[int, str]) -> None:
        index, key = item
        try:
            outcome = await reencrypt_object(store, bucket, key, keyring, dry_run=dry_run)
        except _STORE_ERRORS:
            outcome = Outcome.FAILED
        summary.add(key, outcome)
        mark.finished(index, outcome)
        if progress:
            progress.show(summary.total, mark.listed_count, False, _counts(summary))

    loop = asyncio.get_running_loop()
    work = asyncio.ensure_future(each(keys(), concurrency, handle))
    stops = (signal.SIGINT, signal.SIGTERM)
    for sig in stops:
        loop.add_signal_handler(sig, work.cancel)
    try:
        await work
    except asyncio.CancelledError:
        summary.stopped = True
    except _STORE_ERRORS as exc:  # the listing: what was done so far stands
        summary.listing_error = str(exc) or type(exc).__name__
    finally:
        for sig in stops:
            loop.remove_signal_handler(sig)
    if progress:
        progress.show(summary.total, mark.listed_count, True, _counts(summary))
    return summary, mark


async def _run(
    cfg: config_mod.Config, bucket: str, prefix: str, args: argparse.Namespace
) -> tuple[Summary, Watermark]:
    assert cfg.sse_keyring is not None  # main
    store = open_store(cfg)
    try:
        return await reencrypt(
            store,
            bucket,
            prefix,
            cfg.sse_keyring,
            start_after=args.start_after,
            limit=args.limit,
            concurrency=args.concurrency,
            dry_run=args.dry_run,
            progress=Progress(sys.stderr),
        )
    finally:
        await store.client.close()


DESCRIPTION = (
    "Re-encrypt every object under s3://bucket[/prefix] under the current master key (the "
    "first of S3SHIM_SSE_KEYS_FILE): objects under an older key and objects stored "
    "unencrypted are read with their key and written again (a GET streamed into a PUT: RGW "
    "can neither copy an SSE-C object nor encrypt a copy). Objects already under the current "
    "key are skipped after one HEAD, so running it again, or after a stop, is cheap. The "
    "store, its key pair and the keys file come from the same environment as s3shim "
    "(S3SHIM_UPSTREAM_URL, S3SHIM_UPSTREAM_ACCESS_KEY_ID/SECRET_ACCESS_KEY or AWS_*, "
    "S3SHIM_UPSTREAM_REGION, S3SHIM_UPSTREAM_CA_BUNDLE, S3SHIM_SSE_KEYS_FILE)."
)
EPILOG = (
    "Kept: Content-Type, Content-Encoding, Content-Disposition, Content-Language, "
    "Cache-Control, Expires, the website redirect, the storage class, every x-amz-meta-* "
    "(s3shim's checksum record too: the bytes are checked against it on the way, and an "
    "object that does not match is left as it was), the tags and the ACL grants (sent with "
    "the same PUT). Not kept: " + "; ".join(NOT_CARRIED) + ". "
    "Guard: the PUT carries If-Match with the ETag seen, so an object overwritten during the "
    "run is left alone (reported as changed; measured: RGW 16 honours it). Known risk: a "
    "concurrent write of the same bytes with other metadata has the same ETag, and is "
    "replaced by the object as read. Single PUTs only: objects over 5 GiB are reported, not "
    "rewritten (RGW 16 ignores If-Match on CompleteMultipartUpload, so a rewrite in parts "
    "could not be guarded). Exit status: 0 every object is under the current key; 1 objects "
    "left for a reason in them (a key not in the keys file, a checksum mismatch, over 5 GiB, "
    "an ACL grant a PUT cannot carry); 2 usage or settings; 3 the store failed or an object "
    "changed during the run (run it again); 4 stopped by --limit or a signal before the end "
    "(resume with the --start-after it prints)."
)


def main(argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    p = argparse.ArgumentParser(prog="s3shim reencrypt", description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("target", help="s3://bucket or s3://bucket/prefix")
    p.add_argument("--upstream-url", help="the store's URL (env S3SHIM_UPSTREAM_URL)")
    p.add_argument(
        "--concurrency", type=int, default=4, help="objects rewritten at once [default: 4]"
    )
    p.add_argument(
        "--start-after",
        default="",
        metavar="KEY",
        help="begin after this key (the one a stopped run printed); keys are in listing order",
    )
    p.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help="stop after N objects (a batch), printing where to resume",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="HEAD every object and report what would be re-encrypted; write nothing",
    )
    args = p.parse_args(argv)
    try:
        bucket, prefix = parse_target(args.target)
        cfg = settings(args.upstream_url, env)
        if cfg.sse_keyring is None:
            raise ValueError("needs the keys file (S3SHIM_SSE_KEYS_FILE)")
        if not 1 <= args.concurrency <= 64:
            raise ValueError("--concurrency: expected 1-64")
        if args.limit is not None and args.limit < 1:
            raise ValueError("--limit: expected 1 or more")
    except ValueError as exc:
        print(f"s3shim reencrypt: {exc}", file=sys.stderr)
        return 2
    summary, mark = asyncio.run(_run(cfg, bucket, prefix, args))
    if summary.listing_error is not None:
        print(
            f"s3shim reencrypt: cannot list s3://{bucket}/{prefix}: {summary.listing_error}",
            file=sys.stderr,
        )
    for outcome, key in sorted(summary.left, key=lambda left: left[1]):
        print(f"{outcome.value.upper()} s3://{bucket}/{key}")
    print(summary.line() + (" (dry run)" if args.dry_run else ""))
    if summary.stopped or summary.listing_error is not None:
        again = f"s3shim reencrypt {shlex.quote(args.target)}"
        resume = mark.resume_after
        after = f" --start-after {shlex.quote(resume)}" if resume else ""
        print(f"stopped; resume with: {again}{after}")
    return summary.exit_status
