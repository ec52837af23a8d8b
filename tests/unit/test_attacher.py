"""The attach step's own branches, against the recording fake store (never the proof that it
works with a store: tests/e2e/test_integrity_multipart.py is, against RGW, moto and rclone)."""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from s3shim import attach as attach_module
from s3shim import attacher as attacher_module
from s3shim import sigv4
from s3shim.attach import Pending
from s3shim.attacher import Attacher
from s3shim.checksums import Algorithm
from s3shim.upstream import Upstream
from testkit.fakestore import FakeStore, Reply

ONE_PART = (
    b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>e</ETag>"
    b"<ChecksumCRC32>AAAAAA==</ChecksumCRC32></Part></CompleteMultipartUpload>"
)
CREDS = sigv4.Credentials("store-key", "store-secret")
PENDING = Pending("CRC32:AAAAAA==", '"0123456789abcdef0123456789abcdef-2"')
WHERE = {"bucket": "b", "key": "k"}
HEAD = Reply(
    200,
    (
        ("ETag", PENDING.etag or ""),
        ("x-rgw-object-type", "Normal"),
        ("Content-Type", "text/x-a"),
        ("x-amz-meta-a", "1"),
    ),
)
ACL = Reply(
    200,
    body=b"<AccessControlPolicy><Owner><ID>o</ID></Owner><AccessControlList><Grant><Grantee>"
    b"<ID>o</ID></Grantee><Permission>FULL_CONTROL</Permission></Grant></AccessControlList>"
    b"</AccessControlPolicy>",
)
COPIED = Reply(
    200,
    body=b"<CopyObjectResult><ETag>%s</ETag></CopyObjectResult>"
    % b'"0123456789abcdef0123456789abcdef-2"',
)


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.lines.append(("info", event, kw))

    def warning(self, event: str, **kw: Any) -> None:
        self.lines.append(("warning", event, kw))

    def error(self, event: str, **kw: Any) -> None:
        self.lines.append(("error", event, {"outcome": "bug", **kw}))


@pytest.fixture
async def store() -> AsyncIterator[FakeStore]:
    s = FakeStore()
    await s.start()
    yield s
    await s.close()


@pytest.fixture
async def attacher(store: FakeStore) -> AsyncIterator[Attacher]:
    upstream = Upstream(
        host="127.0.0.1",
        port=store.port,
        host_header=f"127.0.0.1:{store.port}",
        ssl=None,
        connect_timeout=5,
        read_timeout=5,
    )
    a = Attacher(
        upstream,
        host=upstream.host_header,
        region="us-east-1",
        registry=CollectorRegistry(),
        log=Log(),
    )
    yield a
    await upstream.close()


def outcomes(a: Attacher) -> list[str]:
    log: Log = a.log
    return [kw["outcome"] for _, _, kw in log.lines]


async def attach_now(a: Attacher) -> None:
    await a.after_commit("multipart", CREDS, "/b/k", PENDING, 200, {}, WHERE)


async def test_the_copy_carries_the_record_conditionally(
    store: FakeStore, attacher: Attacher
) -> None:
    store.script(HEAD, ACL, COPIED)
    await attach_now(attacher)
    head, acl, copy = store.received
    assert (head.method, acl.target, copy.method) == ("HEAD", "/b/k?acl=", "PUT")
    assert copy.header("x-amz-copy-source") == "/b/k"
    assert copy.header("x-amz-copy-if-match") == PENDING.etag
    assert copy.header("x-amz-copy-source-if-match") == PENDING.etag
    assert copy.header("x-amz-meta-s3shim-checksum") == PENDING.record
    assert copy.header("x-amz-meta-a") == "1" and copy.header("content-type") == "text/x-a"
    assert copy.header("x-amz-grant-full-control") == 'id="o"'
    assert copy.header("content-length") == "0" and copy.body == b""
    assert attacher.requests == 3 and outcomes(attacher) == []  # recorded: not logged


async def test_a_store_failure_is_retried_once(store: FakeStore, attacher: Attacher) -> None:
    store.script(HEAD, ACL, Reply.error(500, "InternalError"), HEAD, ACL, COPIED)
    await attach_now(attacher)
    assert attacher.requests == 6 and outcomes(attacher) == []


async def test_a_second_failure_leaves_the_object_unrecorded_and_is_logged(
    store: FakeStore, attacher: Attacher
) -> None:
    failing = Reply.error(503, "SlowDown")
    store.script(HEAD, ACL, failing, HEAD, ACL, failing)
    await attach_now(attacher)
    assert attacher.requests == 6
    log: Log = attacher.log
    assert [(lvl, kw["outcome"]) for lvl, _, kw in log.lines] == [("warning", "failed")]


async def test_a_failed_precondition_is_not_retried(store: FakeStore, attacher: Attacher) -> None:
    store.script(HEAD, ACL, Reply.error(412, "PreconditionFailed"))
    await attach_now(attacher)
    assert attacher.requests == 3 and outcomes(attacher) == ["changed"]


async def test_a_store_not_known_to_copy_in_place_is_asked_nothing_more(
    store: FakeStore, attacher: Attacher
) -> None:
    store.script(Reply(200, (("ETag", PENDING.etag or ""),)))
    await attach_now(attacher)
    assert attacher.requests == 1 and outcomes(attacher) == ["store"]
    await attach_now(attacher)
    xml = ONE_PART
    assert await attacher.before_complete(CREDS, "/b/k", "u", xml, {}, WHERE) is None
    assert attacher.requests == 1
    assert outcomes(attacher) == ["store"]  # each reason logged once, counted always
    assert attacher._counter.labels("multipart", "store")._value.get() == 3


async def test_a_versioned_answer_is_followed_by_nothing(
    store: FakeStore, attacher: Attacher
) -> None:
    await attacher.after_commit(
        "multipart", CREDS, "/b/k", PENDING, 200, {"x-amz-version-id": "v1"}, WHERE
    )
    assert attacher.requests == 0 and outcomes(attacher) == ["versioned"]


async def test_a_listparts_failure_leaves_the_complete_unrecorded(
    store: FakeStore, attacher: Attacher
) -> None:
    store.script(Reply.error(404, "NoSuchUpload"))
    xml = ONE_PART
    assert await attacher.before_complete(CREDS, "/b/k", "u-1", xml, {}, WHERE) is None
    (listing,) = store.received
    assert listing.method == "GET" and listing.target == "/b/k?max-parts=1000&uploadId=u-1"
    assert outcomes(attacher) == ["failed"]


async def test_listparts_pages_are_followed(store: FakeStore, attacher: Attacher) -> None:
    def page(parts: list[int], truncated: bool) -> Reply:
        body = "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>&quot;{n:032x}&quot;</ETag><Size>{n}</Size></Part>"
            for n in parts
        )
        flag = "true" if truncated else "false"
        return Reply(
            200,
            body=(
                f"<ListPartsResult><IsTruncated>{flag}</IsTruncated>"
                f"<NextPartNumberMarker>{parts[-1]}</NextPartNumberMarker>{body}</ListPartsResult>"
            ).encode(),
        )

    store.script(page([1, 2], True), page([3], False))
    parts = await attacher.stored_parts(CREDS, "/b/k", "u")
    assert sorted(parts) == [1, 2, 3] and parts[3].size == 3
    assert store.received[1].target.endswith("part-number-marker=2&uploadId=u")


def one_part_listing(etag: str) -> Reply:
    return Reply(
        200,
        body=(
            "<ListPartsResult><IsTruncated>false</IsTruncated><Part><PartNumber>1</PartNumber>"
            f"<ETag>&quot;{etag}&quot;</ETag><Size>1</Size></Part></ListPartsResult>"
        ).encode(),
    )


async def test_a_listed_crc_other_than_the_verified_one_is_not_recorded(
    store: FakeStore, attacher: Attacher
) -> None:
    etag = "0" * 32
    attacher.part_verified("/b/k", "u", 1, f'"{etag}"', Algorithm.CRC32, "BBBBBB==")
    store.script(one_part_listing(etag))
    assert await attacher.before_complete(CREDS, "/b/k", "u", ONE_PART, {}, WHERE) is None
    assert outcomes(attacher) == ["disagrees"]
    # What it saw is forgotten with the Complete; another process's part is the client's word.
    store.script(one_part_listing(etag))
    pending = await attacher.before_complete(CREDS, "/b/k", "u", ONE_PART, {}, WHERE)
    assert pending is not None and pending.record == "CRC32:AAAAAA=="


def test_the_parts_remembered_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attacher_module, "MAX_SEEN_PARTS", 3)
    a = Attacher.__new__(Attacher)
    a._seen, a._seen_count = collections.OrderedDict(), 0
    for upload in ("u1", "u2"):
        for n in (1, 2):
            a.part_verified("/b/k", upload, n, "e", Algorithm.CRC32, "AAAAAA==")
    assert list(a._seen) == [("/b/k", "u2")] and a._seen_count == 2


async def test_a_bug_in_the_attach_never_fails_the_upload(
    store: FakeStore, attacher: Attacher, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(attach_module, "check_current", broken)
    store.script(HEAD)
    await attach_now(attacher)  # does not raise
    log: Log = attacher.log
    assert [lvl for lvl, _, _ in log.lines][-1] == "warning" and outcomes(attacher)[-1] == "failed"
