"""The store requests of recording a checksum after the store committed (decisions: attach.py).

Before a CompleteMultipartUpload is forwarded: ListParts (paged), for the part sizes; the
parts may have come through another s3shim process, so only the store knows them. Once the
store committed the upload (Complete, or a streamed PutObject): HEAD, GetObjectAcl and the
conditional self-copy, through the proxy's own :class:`Upstream` client and signed with the
store key the upload used. They run before the client gets the store's answer, which they
never change: a failure is logged and counted (``s3shim_checksum_records_total``) and leaves
the object unrecorded, as it was.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from . import attach, sigv4
from .attach import Outcome, Pending, SeenPart, Skip, StoredPart
from .checksums import Algorithm
from .upstream import Upstream, UpstreamError

# ListParts runs before the client's Complete is forwarded: bounded, so a slow store delays
# the upload's answer by this at most (and the object is then left unrecorded).
LIST_PARTS_TIMEOUT = 5.0
# The client's answer waits for the attach: a store this slow leaves the object unrecorded.
ATTACH_TIMEOUT = 10.0
MAX_LISTED_PARTS = 10_000  # S3's limit on parts per upload; past it, a broken listing
# Parts this process verified, remembered until their Complete (~200 B each): the oldest
# uploads are forgotten first, and a forgotten part is then only the client's word.
MAX_SEEN_PARTS = 100_000


class _StoreRefused(Exception):
    pass


class Attacher:
    """One per proxy: the follow-up requests, and what became of each attempt."""

    def __init__(
        self,
        upstream: Upstream,
        *,
        host: str,
        region: str,
        registry: CollectorRegistry | None,
        log: Any,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.upstream = upstream
        self.host = host
        self.region = region
        self.log = log
        self._clock = clock
        self._counter = Counter(
            "s3shim_checksum_records",
            "Attempts to record the checksum of an object after the store committed it "
            "(multipart uploads, streamed PutObjects whose checksum came last), by kind and "
            "outcome: recorded, or why the object stays unrecorded.",
            ["kind", "outcome"],
            registry=registry,
        )
        self._logged: set[tuple[str, Outcome]] = set()
        self.requests = 0  # store requests made, for tests and the cost count
        # Learnt from the first HEAD that shows a store not known to copy in place: from
        # then on no upload costs a store request for a record that cannot be attached.
        self.store_unfit = False
        self._seen: OrderedDict[tuple[str, str], dict[int, SeenPart]] = OrderedDict()
        self._seen_count = 0

    # --------------------------------------------------------------------- bookkeeping

    def count(self, kind: str, outcome: Outcome, where: Mapping[str, str], detail: str) -> None:
        self._counter.labels(kind, outcome.value).inc()
        if outcome is Outcome.RECORDED:
            return
        # A skip is logged once per kind and reason (the counter has them all); a failure
        # of the store, every time.
        first = (kind, outcome) not in self._logged
        self._logged.add((kind, outcome))
        if outcome is Outcome.FAILED:
            self.log.warning(
                "checksum_unrecorded", kind=kind, outcome=outcome.value, detail=detail, **where
            )
        elif first:
            self.log.info(
                "checksum_unrecorded",
                kind=kind,
                outcome=outcome.value,
                detail=detail,
                first_of_its_kind=True,
                **where,
            )

    def streamed_put(
        self, sent_headers: Sequence[tuple[str, str]], alg: Algorithm | None, b64: str | None
    ) -> Pending | None:
        """The record a streamed PutObject gets once the store commits it, or None (it went
        with the upload itself, or there is no checksum s3shim verified or computed)."""
        return attach.streamed_put_record(True, True, sent_headers, alg, b64)

    def part_answered(
        self,
        path: str,
        query: Sequence[tuple[str, str]],
        status: int,
        etag: str | None,
        alg: Algorithm | None,
        b64: str | None,
    ) -> None:
        """An UploadPart's answer: a part the store took is remembered with the CRC s3shim
        verified, for the Complete that lists it."""
        part = attach.verified_part(query, status, etag)
        if part is not None and alg is not None and b64:
            upload_id, number, stored_etag = part
            self.part_verified(path, upload_id, number, stored_etag, alg, b64)

    def part_verified(
        self, path: str, upload_id: str, number: int, etag: str, alg: Algorithm, b64: str
    ) -> None:
        """An UploadPart this process verified and the store took (its ETag)."""
        parts = self._seen.setdefault((path, upload_id), {})
        self._seen.move_to_end((path, upload_id))
        if number not in parts:
            self._seen_count += 1
        parts[number] = SeenPart(etag.strip('"'), alg, b64)
        while self._seen_count > MAX_SEEN_PARTS and len(self._seen) > 1:
            _, dropped = self._seen.popitem(last=False)
            self._seen_count -= len(dropped)

    def _verified_parts(self, path: str, upload_id: str) -> dict[int, SeenPart]:
        parts = self._seen.pop((path, upload_id), {})
        self._seen_count -= len(parts)
        return parts

    # ------------------------------------------------------------------- store requests

    async def _call(
        self,
        creds: sigv4.Credentials,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]],
        headers: Sequence[tuple[str, str]] = (),
    ) -> tuple[int, dict[str, str], list[tuple[str, str]], bytes]:
        amz_date = datetime.fromtimestamp(self._clock(), UTC).strftime("%Y%m%dT%H%M%SZ")
        body_headers = [("content-length", "0")] if method == "PUT" else []
        sent = [*headers, *body_headers]
        signed = sigv4.sign_headers(
            method=method,
            raw_path=path,
            query=query,
            host=self.host,
            headers=dict(sent),
            payload_hash=sigv4.EMPTY_SHA256,
            creds=creds,
            region=self.region,
            amz_date=amz_date,
        )
        sent += [(n, v) for n, v in signed.headers.items() if n != "host"]
        qs = sigv4.canonical_query(query)
        target = sigv4.canonical_uri(path) + ("?" + qs if qs else "")
        self.requests += 1
        resp = await self.upstream.request(method, target, sent, None)
        async with resp:
            pieces: list[bytes] = []
            size = 0
            while (piece := await resp.next_buffer()) is not None:
                size += len(piece)
                if size > attach.MAX_XML_ANSWER:
                    raise _StoreRefused("an answer too large")
                pieces.append(piece)
        first = {n.lower(): v for n, v in reversed(list(resp.headers.items()))}
        return resp.status, first, list(resp.headers.items()), b"".join(pieces)

    async def stored_parts(
        self, creds: sigv4.Credentials, path: str, upload_id: str
    ) -> dict[int, StoredPart]:
        """Every part of the upload, as the store lists them (all pages)."""
        parts: dict[int, StoredPart] = {}
        marker = 0
        while True:
            status, _, _, body = await self._call(
                creds, "GET", path, attach.list_parts_query(upload_id, marker)
            )
            if status != 200:
                raise _StoreRefused(f"ListParts answered {status}")
            page = attach.parse_list_parts(body)
            parts.update(page.parts)
            if page.next_marker is None:
                return parts
            if page.next_marker <= marker or len(parts) > MAX_LISTED_PARTS:
                raise _StoreRefused("a listing that does not advance")
            marker = page.next_marker

    async def before_complete(
        self,
        creds: sigv4.Credentials,
        path: str,
        upload_id: str,
        complete_body: bytes,
        request_headers: Mapping[str, str],
        where: Mapping[str, str],
    ) -> Pending | None:
        """The record a Complete will get once the store commits it, or None (counted)."""
        seen = self._verified_parts(path, upload_id)
        try:
            if self.store_unfit:
                raise Skip(Outcome.STORE)
            claims = attach.part_claims(complete_body)
            try:
                async with asyncio.timeout(LIST_PARTS_TIMEOUT):
                    stored = await self.stored_parts(creds, path, upload_id)
            except (UpstreamError, TimeoutError, ValueError, _StoreRefused) as exc:
                raise Skip(Outcome.FAILED, f"ListParts: {type(exc).__name__}: {exc}") from None
            return attach.derive(claims, stored, request_headers, seen)
        except Skip as skip:
            self.count("multipart", skip.outcome, where, str(skip))
            return None

    # ------------------------------------------------------------------------ the attach

    async def after_commit(
        self,
        kind: str,
        creds: sigv4.Credentials,
        path: str,
        pending: Pending,
        status: int,
        headers: Mapping[str, str],
        where: Mapping[str, str],
    ) -> None:
        """The store answered the upload: attach its record before the client hears of it.

        Before, not after: while the client has no answer, whatever another request does
        meanwhile (a delete, an overwrite) is as if it came before the upload ended, the copy
        being the upload's last step. A copy still in flight once the client moved on could
        bring back an object it had deleted (RGW checks the precondition when the copy starts,
        not when it writes). Never raises: the upload's answer is the store's, whatever
        becomes of the record.
        """
        try:
            if self.store_unfit:
                raise Skip(Outcome.STORE)
            bound = attach.committed(pending, status, headers)
        except Skip as skip:
            self.count(kind, skip.outcome, where, str(skip))
            return
        try:
            outcome, detail = await self._attach(creds, path, bound)
        except Exception as exc:  # a bug of s3shim's must not fail an upload the store took
            self.log.error("checksum_attach_failed", exc_info=exc, kind=kind, **where)
            outcome, detail = Outcome.FAILED, type(exc).__name__
        self.count(kind, outcome, where, detail)

    async def _attach(
        self, creds: sigv4.Credentials, path: str, pending: Pending
    ) -> tuple[Outcome, str]:
        outcome, detail = Outcome.FAILED, ""
        try:
            async with asyncio.timeout(ATTACH_TIMEOUT):
                for attempt in (1, 2):  # a store failure is retried once
                    try:
                        await self._copy(creds, path, pending)
                        return Outcome.RECORDED, ""
                    except Skip as skip:
                        outcome, detail = skip.outcome, str(skip)
                        if skip.outcome is Outcome.STORE:
                            self.store_unfit = True
                        if skip.outcome is not Outcome.FAILED:
                            return outcome, detail
                    except (UpstreamError, ValueError, _StoreRefused) as exc:
                        outcome, detail = Outcome.FAILED, f"{type(exc).__name__}: {exc}"
                    detail += f" (attempt {attempt})"
        except TimeoutError:
            return Outcome.FAILED, f"no answer in {ATTACH_TIMEOUT} s ({detail})"
        return outcome, detail

    async def _copy(self, creds: sigv4.Credentials, path: str, pending: Pending) -> None:
        status, _, head, _ = await self._call(creds, "HEAD", path, ())
        if status == 404:
            raise Skip(Outcome.CHANGED, "deleted")
        if status != 200:
            raise Skip(Outcome.FAILED if status >= 500 else Outcome.UNCOPYABLE, f"HEAD {status}")
        current = attach.check_current(pending, head)
        if current is None:
            return  # recorded already (a retried attach)
        status, _, _, acl = await self._call(creds, "GET", path, (("acl", ""),))
        if status != 200:
            raise Skip(Outcome.FAILED, f"GetObjectAcl answered {status}")
        grants = attach.grant_headers(acl)
        copy = attach.copy_headers(sigv4.canonical_uri(path), pending, current, grants)
        status, _, _, body = await self._call(creds, "PUT", path, (), copy)
        attach.copied(pending, status, body)
