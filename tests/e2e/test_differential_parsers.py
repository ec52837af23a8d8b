"""Every parser s3shim shares with the store, asked "can s3shim and RGW read this differently?".

Each request is sent byte for byte as written here, directly to RGW and through s3shim
(behind a wire tap), signed with s3shim's canonical reading of it. The invariant checked: s3shim
refuses (S3 XML error, the tap shows the store heard nothing), or the store was sent one
reading, the one s3shim verified: the key stored, read back from RGW itself, is the key that
was signed; the body stored is the body verified; the part list completed is s3shim's. What
RGW reads directly is pinned beside it, so a difference in what the two accept is on record.
"""

from __future__ import annotations

import hashlib
import http.client
import random
import re
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.client import BaseClient

from s3shim import chunked
from s3shim.complete_xml import S3_NAMESPACE
from testkit.backends import Store
from testkit.helpers import host_port, stored
from testkit.rawclient import RawClient, Reply, sign
from testkit.shim import Shim
from testkit.tap import Tap


@dataclass(frozen=True)
class Sent:
    """One request as the store received it, read off the tap."""

    target: bytes
    head: list[tuple[bytes, bytes]]
    body: bytes

    def values(self, name: bytes) -> list[bytes]:
        return [v for n, v in self.head if n.lower() == name]


@dataclass(frozen=True)
class Ends:
    shim: Shim
    tap: Tap
    store: Store
    direct: BaseClient

    def sent_since(self, mark: int) -> list[Sent]:
        return parse_requests(self.tap.to_store()[mark:])

    def mark(self) -> int:
        return len(self.tap.to_store())

    def send(self, who: str, method: str, target: bytes, **kw: Any) -> Reply:
        """:func:`request` "direct" to RGW or "through" s3shim."""
        endpoint = self.store.endpoint if who == "direct" else self.shim.endpoint
        return request(endpoint, self.store, method, target, **kw)


@pytest.fixture(scope="module")
def ends(rgw_store: Store, direct: BaseClient, tapped: tuple[Shim, Tap]) -> Ends:
    return Ends(*tapped, rgw_store, direct)


@pytest.fixture(scope="module")
def bkt(direct: BaseClient) -> str:
    name = f"diff-{uuid.uuid4().hex[:12]}"
    direct.create_bucket(Bucket=name)
    return name


_REQUEST = re.compile(rb"([A-Z]+) (\S+) HTTP/1\.1\r\n(.*?)\r\n\r\n", re.S)


def parse_requests(wire: bytes) -> list[Sent]:
    out, at = [], 0
    while (m := _REQUEST.search(wire, at)) is not None:
        head = [
            (line.partition(b":")[0].strip(), line.partition(b":")[2].strip())
            for line in m.group(3).split(b"\r\n")
        ]
        length = next((int(v) for n, v in head if n.lower() == b"content-length"), 0)
        out.append(Sent(m.group(2), head, wire[m.end() : m.end() + length]))
        at = m.end() + length
    return out


def exchange(endpoint: str, data: bytes, method: str) -> Reply:
    """Write these bytes as one request and read the answer (whatever HTTP version)."""
    sock = socket.create_connection(host_port(endpoint), timeout=30)
    try:
        sock.sendall(data)
        resp = http.client.HTTPResponse(sock, method=method)
        resp.begin()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        sock.close()


def request(
    endpoint: str,
    store: Store,
    method: str,
    target: bytes,
    *,
    sign_path: str | None = None,
    sign_query: list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    payload_hash: str | None = None,
    edit: Callable[[list[bytes]], list[bytes]] | None = None,
) -> Reply:
    """Sign (sign_path, sign_query) as s3shim canonicalises it; send ``target`` raw, with the
    header lines ``edit`` makes of the signed ones. ``sign_path``: the target's path unless
    given."""
    h = dict(headers or {})
    if body or method in ("PUT", "POST"):
        h.setdefault("content-length", str(len(body)))
    signed = sign(
        method,
        endpoint,
        sign_path if sign_path is not None else target.decode().partition("?")[0],
        access_key=store.access_key,
        secret_key=store.secret_key,
        query=sign_query,
        headers=h,
        payload_hash=payload_hash,
        body=body,
    )
    lines = [f"{k}: {v}".encode("utf-8", "surrogateescape") for k, v in signed.items()]
    if edit is not None:
        lines = edit(lines)
    data = method.encode() + b" " + target + b" HTTP/1.1\r\n"
    data += b"".join(line + b"\r\n" for line in lines) + b"Connection: close\r\n\r\n" + body
    return exchange(endpoint, data, method)


def both(ends: Ends, method: str, target: bytes, **kw: Any) -> tuple[Reply, Reply, list[Sent]]:
    """The same request directly to RGW and through s3shim; what the store was sent."""
    direct = ends.send("direct", method, target, **kw)
    mark = ends.mark()
    through = ends.send("through", method, target, **kw)
    return direct, through, ends.sent_since(mark)


def outcome(reply: Reply) -> tuple[int, str | None]:
    return reply.status, reply.code


def refused_before_the_store(reply: Reply, sent: list[Sent], status: int, code: str) -> None:
    assert outcome(reply) == (status, code), reply.body[:300]
    assert reply.headers.get("content-type") == "application/xml"
    assert sent == []


# --- (a) the request path -----------------------------------------------------------------

# raw path after the bucket -> (the key s3shim reads, what the store is sent, RGW direct)
PATHS: list[tuple[bytes, str, bytes, tuple[int, str | None]]] = [
    (b"a%2Fb", "a/b", b"a/b", (200, None)),
    (b"a%2fb", "a/b", b"a/b", (200, None)),
    (b"a%252Fb", "a%2Fb", b"a%252Fb", (200, None)),
    (b"a+b", "a+b", b"a%2Bb", (200, None)),
    (b"a%3Fb", "a?b", b"a%3Fb", (200, None)),
    (b"a#b", "a#b", b"a%23b", (200, None)),
    (b"a;b", "a;b", b"a%3Bb", (200, None)),
    (b"a%C3%A9", "a\u00e9", b"a%C3%A9", (200, None)),
    (b"./k", "./k", b"./k", (200, None)),
    (b"../other/k", "../other/k", b"../other/k", (200, None)),
    (b"/k", "/k", b"/k", (200, None)),
    # Invalid escapes: literal for s3shim (and for what it sends: %25), refused by RGW.
    (b"a%zzb", "a%zzb", b"a%25zzb", (405, "MethodNotAllowed")),
    (b"a%2", "a%2", b"a%252", (403, "SignatureDoesNotMatch")),
]


@pytest.mark.parametrize(("raw", "key", "sent_path", "rgw"), PATHS, ids=[p[1] for p in PATHS])
def test_the_key_stored_is_the_key_signed(
    ends: Ends, bkt: str, raw: bytes, key: str, sent_path: bytes, rgw: tuple[int, str | None]
) -> None:
    run = uuid.uuid4().hex[:6]
    body = f"{run} {key}".encode()
    direct_target = f"/{bkt}/d{run}".encode() + raw
    through_target = f"/{bkt}/t{run}".encode() + raw
    direct = ends.send(
        "direct",
        "PUT",
        direct_target,
        body=body,
    )
    assert outcome(direct) == rgw, direct.body[:300]
    if rgw[0] == 200:
        assert stored(ends.direct, bkt, f"d{run}{key}") == body
    mark = ends.mark()
    through = ends.send(
        "through",
        "PUT",
        through_target,
        body=body,
    )
    assert outcome(through) == (200, None), through.body[:300]
    [sent] = ends.sent_since(mark)
    assert sent.target == f"/{bkt}/t{run}".encode() + sent_path
    assert stored(ends.direct, bkt, f"t{run}{key}") == body


def test_a_key_rgw_refuses_is_refused_the_same(ends: Ends, bkt: str) -> None:
    """Not UTF-8: both answer RGW's InvalidObjectName (s3shim sends the bytes as read)."""
    direct, through, sent = both(ends, "PUT", f"/{bkt}/a%FFb".encode(), sign_path=f"/{bkt}/a%FFb")
    assert outcome(direct) == outcome(through) == (400, "InvalidObjectName")
    assert [s.target for s in sent] == [f"/{bkt}/a%FFb".encode()]


@pytest.mark.parametrize("raw", [b"a\xc3\xa9", b"a\xff", b"a\x7fb", b"a\tb"], ids=repr)
def test_raw_bytes_in_the_path_never_reach_the_store(ends: Ends, bkt: str, raw: bytes) -> None:
    """RGW takes raw UTF-8 in a path; s3shim's HTTP parser refuses any byte outside
    printable ASCII in the request line, before a signature is read."""
    target = f"/{bkt}/".encode() + raw
    mark = ends.mark()
    through = ends.send("through", "PUT", target, sign_path=f"/{bkt}/x", body=b"x")
    assert (through.status, through.code) == (400, "BadRequest")
    assert ends.sent_since(mark) == []


# --- (a) the query ---------------------------------------------------------------------


def test_a_plus_in_the_query_is_a_plus(ends: Ends, bkt: str) -> None:
    """RGW reads a raw '+' in a query as a space; s3shim reads the plus (RFC 3986) and
    verifies that, and the store is sent %2B, which it reads as the plus that was signed."""
    ends.direct.put_object(Bucket=bkt, Key="plus/a b", Body=b"space")
    ends.direct.put_object(Bucket=bkt, Key="plus/a+b", Body=b"plus")
    target = f"/{bkt}?prefix=plus/a+b".encode()

    def keys(reply: Reply) -> list[bytes]:
        return re.findall(rb"<Key>(.*?)</Key>", reply.body)

    as_space = {"sign_path": f"/{bkt}", "sign_query": [("prefix", "plus/a b")]}
    direct, through, sent = both(ends, "GET", target, **as_space)
    assert (outcome(direct), keys(direct)) == ((200, None), [b"plus/a b"])
    refused_before_the_store(through, sent, 403, "SignatureDoesNotMatch")
    as_plus = {"sign_path": f"/{bkt}", "sign_query": [("prefix", "plus/a+b")]}
    direct, through, sent = both(ends, "GET", target, **as_plus)
    assert outcome(direct) == (403, "SignatureDoesNotMatch")
    assert (outcome(through), keys(through)) == ((200, None), [b"plus/a+b"])
    assert [s.target for s in sent] == [f"/{bkt}?prefix=plus%2Fa%2Bb".encode()]


@pytest.mark.parametrize(
    ("raw_query", "value", "sent_query"),
    [
        ("prefix=q%2bb", "q+b", b"prefix=q%2Bb"),
        ("prefix=q%zz", "q%zz", b"prefix=q%25zz"),
        ("prefix=q%2", "q%2", b"prefix=q%252"),
    ],
)
def test_the_query_sent_is_the_one_verified(
    ends: Ends, bkt: str, raw_query: str, value: str, sent_query: bytes
) -> None:
    target = f"/{bkt}?{raw_query}".encode()
    _, through, sent = both(
        ends, "GET", target, sign_path=f"/{bkt}", sign_query=[("prefix", value)]
    )
    assert outcome(through) == (200, None)
    assert re.findall(rb"<Prefix>(.*?)</Prefix>", through.body) == [value.encode()]
    assert [s.target for s in sent] == [f"/{bkt}?".encode() + sent_query]


def _upload(ends: Ends, bkt: str, key: str) -> str:
    upload_id: str = ends.direct.create_multipart_upload(Bucket=bkt, Key=key)["UploadId"]
    return upload_id


def _parts(ends: Ends, bkt: str, key: str, upload_id: str) -> list[int]:
    listed = ends.direct.list_parts(Bucket=bkt, Key=key, UploadId=upload_id).get("Parts", [])
    return [p["PartNumber"] for p in listed]


@pytest.mark.parametrize(
    "repeat",
    [
        lambda u, v: [("partNumber", "2"), ("partNumber", "1"), ("uploadId", u)],
        lambda u, v: [("partNumber", "1"), ("uploadId", v), ("uploadId", u)],
    ],
    ids=["partNumber", "uploadId"],
)
def test_a_repeated_operation_parameter_is_refused(
    ends: Ends, bkt: str, repeat: Callable[[str, str], list[tuple[str, str]]]
) -> None:
    """RGW keeps one value of each name (the last) and so refuses every signature over two;
    s3shim refuses before the store rather than sign both for a store to pick from."""
    key = f"rep-{uuid.uuid4().hex[:8]}"
    one, other = _upload(ends, bkt, key), _upload(ends, bkt, key)
    query = repeat(one, other)
    target = f"/{bkt}/{key}?".encode() + "&".join(f"{k}={v}" for k, v in query).encode()
    direct, through, sent = both(
        ends, "PUT", target, sign_path=f"/{bkt}/{key}", sign_query=query, body=b"part"
    )
    assert outcome(direct) == (403, "SignatureDoesNotMatch")
    refused_before_the_store(through, sent, 400, "InvalidArgument")
    assert _parts(ends, bkt, key, one) == _parts(ends, bkt, key, other) == []


def test_an_empty_upload_id_on_a_put_is_a_put_object(ends: Ends, bkt: str) -> None:
    """RGW stores ?partNumber=1&uploadId= as an object (an empty upload id is none); s3shim
    reads the PutObject too, so the object gets s3shim's checksum record like any other."""
    key = f"empty-{uuid.uuid4().hex[:8]}"
    body = b"not a part"
    query = [("partNumber", "1"), ("uploadId", "")]
    direct, through, sent = both(
        ends,
        "PUT",
        f"/{bkt}/{key}?partNumber=1&uploadId=".encode(),
        sign_path=f"/{bkt}/{key}",
        sign_query=query,
        body=body,
    )
    assert outcome(direct) == outcome(through) == (200, None)
    assert stored(ends.direct, bkt, key) == body
    [put] = sent
    assert put.values(b"x-amz-meta-s3shim-checksum")  # recorded as a PutObject
    assert "s3shim-checksum" in ends.direct.head_object(Bucket=bkt, Key=key)["Metadata"]


def test_uploads_and_upload_id_together_complete(ends: Ends, bkt: str) -> None:
    """RGW completes ?uploads&uploadId=u; s3shim reads it as the Complete it is, so the XML is
    read and rewritten as every Complete's (checksums stripped, a DOCTYPE refused)."""
    for who in ("direct", "through"):
        key = f"both-{who}-{uuid.uuid4().hex[:8]}"
        upload_id = _upload(ends, bkt, key)
        etag = ends.direct.upload_part(
            Bucket=bkt, Key=key, UploadId=upload_id, PartNumber=1, Body=b"PART"
        )["ETag"]
        xml = (
            f"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag>"
            "<ChecksumCRC32>AAAAAA==</ChecksumCRC32></Part></CompleteMultipartUpload>"
        ).encode()
        kw: dict[str, Any] = {
            "sign_path": f"/{bkt}/{key}",
            "sign_query": [("uploads", ""), ("uploadId", upload_id)],
            "body": xml,
        }
        target = f"/{bkt}/{key}?uploads&uploadId={upload_id}".encode()
        if who == "direct":
            assert outcome(ends.send("direct", "POST", target, **kw)) == (
                200,
                None,
            )
        else:
            doctype = {**kw, "body": b"<!DOCTYPE CompleteMultipartUpload>" + xml}
            mark = ends.mark()
            reply = ends.send("through", "POST", target, **doctype)
            refused_before_the_store(reply, ends.sent_since(mark), 400, "MalformedXML")
            mark = ends.mark()
            reply = ends.send("through", "POST", target, **kw)
            assert outcome(reply) == (200, None), reply.body[:300]
            # (Beside it, ListParts: the part sizes of the checksum recorded after it.)
            [post] = [x for x in ends.sent_since(mark) if b"CompleteMultipartUpload" in x.body]
            assert b"<PartNumber>1</PartNumber>" in post.body and b"Checksum" not in post.body
        assert stored(ends.direct, bkt, key) == b"PART"


def test_an_empty_upload_id_on_a_delete_deletes_the_object(ends: Ends, bkt: str) -> None:
    for who in ("direct", "through"):
        key = f"del-{who}-{uuid.uuid4().hex[:8]}"
        ends.direct.put_object(Bucket=bkt, Key=key, Body=b"x")
        target = f"/{bkt}/{key}?uploadId=".encode()
        reply = ends.send(who, "DELETE", target, sign_query=[("uploadId", "")])
        assert outcome(reply) == (204, None)
        assert stored(ends.direct, bkt, key) is None


@pytest.mark.parametrize(
    ("query", "raw_query"),
    [
        ([("partNumber", "1"), ("uploadid", "U")], "partNumber=1&uploadid=U"),
        ([("PartNumber", "1"), ("uploadId", "U")], "PartNumber=1&uploadId=U"),
        ([("partNumber", "1"), ("uploadId", "U")], "part%4Eumber=1&upload%49d=U"),
    ],
    ids=["uploadid", "PartNumber", "encoded-names"],
)
def test_parameter_names_are_read_as_rgw_reads_them(
    ends: Ends, bkt: str, query: list[tuple[str, str]], raw_query: str
) -> None:
    """Names are case-sensitive and percent-decoded, for both: the same operation runs."""
    results = []
    for who in ("direct", "through"):
        key = f"name-{who}-{uuid.uuid4().hex[:8]}"
        upload_id = _upload(ends, bkt, key)
        q = [(k, upload_id if v == "U" else v) for k, v in query]
        target = f"/{bkt}/{key}?{raw_query.replace('=U', '=' + upload_id)}".encode()
        reply = ends.send(
            who,
            "PUT",
            target,
            sign_path=f"/{bkt}/{key}",
            sign_query=q,
            body=b"data",
        )
        results.append(
            (outcome(reply), _parts(ends, bkt, key, upload_id), stored(ends.direct, bkt, key))
        )
    assert results[0] == results[1]


# --- (b) headers -----------------------------------------------------------------------


def _replace(old: bytes, new: bytes) -> Callable[[list[bytes]], list[bytes]]:
    return lambda lines: [line.replace(old, new) for line in lines]


def _add(*extra: bytes) -> Callable[[list[bytes]], list[bytes]]:
    return lambda lines: [*lines, *extra]


HEAD_REFUSALS = [
    ("obs-fold-signed", {"x-amz-meta-a": "one two"}, _replace(b": one two", b": one\r\n two")),
    ("obs-fold-unsigned", {}, _add(b"cache-control: no\r\n x-amz-acl: public-read")),
    ("two-content-length", {}, _add(b"content-length: 4")),
    ("two-host", {}, _add(b"host: other.example")),
    ("space-before-colon", {"x-amz-meta-a": "v"}, _replace(b"x-amz-meta-a:", b"x-amz-meta-a :")),
]


@pytest.mark.parametrize(
    ("headers", "edit"), [c[1:] for c in HEAD_REFUSALS], ids=[c[0] for c in HEAD_REFUSALS]
)
def test_heads_another_parser_could_read_otherwise_are_refused(
    ends: Ends,
    bkt: str,
    headers: dict[str, str],
    edit: Callable[[list[bytes]], list[bytes]],
) -> None:
    """RGW accepts a folded line and a repeated equal Content-Length; s3shim's HTTP parser
    refuses them (and two Hosts, and a space before the colon) before anything is read."""
    key = f"head-{uuid.uuid4().hex[:8]}"
    mark = ends.mark()
    reply = ends.send(
        "through",
        "PUT",
        f"/{bkt}/{key}".encode(),
        headers=headers,
        body=b"data",
        edit=edit,
    )
    assert (reply.status, reply.code) == (400, "BadRequest")
    assert ends.sent_since(mark) == []
    assert stored(ends.direct, bkt, key) is None


def test_a_second_payload_hash_is_refused(ends: Ends, bkt: str) -> None:
    key = f"sha-{uuid.uuid4().hex[:8]}"
    direct, through, sent = both(
        ends,
        "PUT",
        f"/{bkt}/{key}".encode(),
        body=b"data",
        edit=_add(b"x-amz-content-sha256: UNSIGNED-PAYLOAD"),
    )
    assert outcome(direct) == (403, "SignatureDoesNotMatch")
    refused_before_the_store(through, sent, 400, "InvalidArgument")
    assert stored(ends.direct, bkt, key) is None


def test_a_repeated_signed_header_reaches_the_store_as_the_one_value_signed(
    ends: Ends, bkt: str
) -> None:
    """Two x-amz-copy-source lines are signed as their ','-join: the store gets that one line,
    which names no object (RGW: NoSuchKey), never one of the two sources."""
    ends.direct.put_object(Bucket=bkt, Key="src-one", Body=b"ONE")
    ends.direct.put_object(Bucket=bkt, Key="src-two", Body=b"TWO")
    key = f"copy-{uuid.uuid4().hex[:8]}"
    one, two = f"/{bkt}/src-one", f"/{bkt}/src-two"

    def two_lines(lines: list[bytes]) -> list[bytes]:
        kept = [line for line in lines if not line.startswith(b"x-amz-copy-source:")]
        return [*kept, f"x-amz-copy-source: {one}".encode(), f"x-amz-copy-source: {two}".encode()]

    direct, through, sent = both(
        ends,
        "PUT",
        f"/{bkt}/{key}".encode(),
        headers={"x-amz-copy-source": f"{one},{two}"},
        edit=two_lines,
    )
    assert outcome(direct) == (403, "SignatureDoesNotMatch")
    assert outcome(through) == (404, "NoSuchKey")
    [put] = sent
    assert put.values(b"x-amz-copy-source") == [f"{one},{two}".encode()]
    assert stored(ends.direct, bkt, key) is None


@pytest.mark.parametrize("value", ["caf\u00e9", "caf\udce9"], ids=["utf-8", "latin-1"])
def test_header_bytes_reach_the_store_as_signed(ends: Ends, bkt: str, value: str) -> None:
    """Non-ASCII header bytes (signed and not) go to the store byte for byte: RGW stores the
    same metadata directly and through."""
    raw = value.encode("utf-8", "surrogateescape")
    metadata = []
    for who in ("direct", "through"):
        key = f"bytes-{who}-{uuid.uuid4().hex[:8]}"
        mark = ends.mark()
        reply = ends.send(
            who,
            "PUT",
            f"/{bkt}/{key}".encode(),
            headers={"x-amz-meta-a": value, "content-disposition": value},
            body=b"x",
        )
        assert outcome(reply) == (200, None)
        head = ends.direct.head_object(Bucket=bkt, Key=key)["ResponseMetadata"]["HTTPHeaders"]
        metadata.append((head["x-amz-meta-a"], head["content-disposition"]))
        if who == "through":
            [put] = ends.sent_since(mark)
            assert put.values(b"x-amz-meta-a") == put.values(b"content-disposition") == [raw]
    assert metadata[0] == metadata[1]


def test_whitespace_in_a_signed_value_reaches_the_store_folded(ends: Ends, bkt: str) -> None:
    """The store gets a signed value in the canonical form its signature covers."""
    key = f"ws-{uuid.uuid4().hex[:8]}"
    mark = ends.mark()
    reply = ends.send(
        "through",
        "PUT",
        f"/{bkt}/{key}".encode(),
        headers={"x-amz-meta-a": "v  w"},
        body=b"x",
        edit=_replace(b"x-amz-meta-a: v  w", b"x-amz-meta-a:\t v  w \t"),
    )
    assert outcome(reply) == (200, None)
    [put] = ends.sent_since(mark)
    assert put.values(b"x-amz-meta-a") == [b"v w"]
    assert ends.direct.head_object(Bucket=bkt, Key=key)["Metadata"]["a"] == "v w"


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_two_range_lines_reach_the_store_as_their_join(ends: Ends, bkt: str, signed: bool) -> None:
    """RGW reads the last of two Range lines directly; SigV4 (and s3shim) read them as their
    ','-join, which the store is sent as one line and answers as it answers that line."""
    ends.direct.put_object(Bucket=bkt, Key="range", Body=b"0123456789")
    joined = "bytes=0-1,bytes=5-6"

    def two_lines(lines: list[bytes]) -> list[bytes]:
        kept = [line for line in lines if not line.startswith(b"range:")]
        return [*kept, b"range: bytes=0-1", b"range: bytes=5-6"]

    kw: dict[str, Any] = {"sign_path": f"/{bkt}/range", "edit": two_lines}
    if signed:
        kw["headers"] = {"range": joined}
    direct, through, sent = both(ends, "GET", f"/{bkt}/range".encode(), **kw)
    assert (direct.status, direct.body) == (206, b"56")
    [get] = sent
    assert get.values(b"range") == [joined.encode()]
    one_line = ends.send(
        "direct",
        "GET",
        f"/{bkt}/range".encode(),
        headers={"range": joined},
    )
    assert (through.status, through.body) == (one_line.status, one_line.body) == (206, b"01")


# --- (c) aws-chunked framing -----------------------------------------------------------

SIGNED = chunked.Framing.SIGNED
UNSIGNED_TRAILER = chunked.Framing.UNSIGNED_TRAILER
_FIRST_SIZE = re.compile(rb"^([0-9a-f]+)")
_FIRST_SIG = re.compile(rb"chunk-signature=([0-9a-f]{64})")


def _sub(
    pattern: re.Pattern[bytes], repl: Callable[[re.Match[bytes]], bytes]
) -> Callable[[bytes], bytes]:
    return lambda body: pattern.sub(repl, body, count=1)


# name, framing, mangle, through (status, code), RGW direct (status, code) for SIGNED
Outcome = tuple[int, str | None]
FRAMINGS: list[
    tuple[str, chunked.Framing, Callable[[bytes], bytes] | None, Outcome, Outcome | None]
] = [
    ("as-sdks-write-it", SIGNED, None, (200, None), (200, None)),
    ("leading-zeros", SIGNED, _sub(_FIRST_SIZE, lambda m: b"000" + m[1]), (200, None), (200, None)),
    ("upper-hex-size", SIGNED, _sub(_FIRST_SIZE, lambda m: m[1].upper()), (200, None), (200, None)),
    (
        "plus-size",
        SIGNED,
        _sub(_FIRST_SIZE, lambda m: b"+" + m[1]),
        (400, "IncompleteBody"),
        (200, None),
    ),
    (
        "0x-size",
        SIGNED,
        _sub(_FIRST_SIZE, lambda m: b"0x" + m[1]),
        (400, "IncompleteBody"),
        (200, None),
    ),
    (
        "space-before-semicolon",
        SIGNED,
        _sub(_FIRST_SIZE, lambda m: m[1] + b" "),
        (400, "IncompleteBody"),
        (200, None),
    ),
    (
        "Chunk-Signature",
        SIGNED,
        lambda b: b.replace(b";chunk-signature=", b";Chunk-Signature=", 1),
        (403, "SignatureDoesNotMatch"),
        (200, None),
    ),
    (
        "space-before-name",
        SIGNED,
        lambda b: b.replace(b";chunk-signature=", b"; chunk-signature=", 1),
        (403, "SignatureDoesNotMatch"),
        (400, "XAmzContentSHA256Mismatch"),
    ),
    (
        "extension-before",
        SIGNED,
        lambda b: b.replace(b";chunk-signature=", b";x=y;chunk-signature="),
        (200, None),
        (400, "InvalidArgument"),
    ),
    (
        "second-signature",
        SIGNED,
        _sub(_FIRST_SIG, lambda m: m[0] + b";" + m[0]),
        (403, "SignatureDoesNotMatch"),
        (400, "InvalidArgument"),
    ),
    (
        "upper-hex-signature",
        SIGNED,
        _sub(_FIRST_SIG, lambda m: b"chunk-signature=" + m[1].upper()),
        (200, None),
        (400, "XAmzContentSHA256Mismatch"),
    ),
    (
        "unsigned-extension",
        UNSIGNED_TRAILER,
        _sub(_FIRST_SIZE, lambda m: m[1] + b";x=y"),
        (200, None),
        None,
    ),
    (
        "trailer-name-case",
        UNSIGNED_TRAILER,
        lambda b: b.replace(b"x-amz-checksum-crc32:", b"X-Amz-Checksum-CRC32:"),
        (200, None),
        None,
    ),
    (
        "trailer-whitespace",
        UNSIGNED_TRAILER,
        lambda b: b.replace(b"x-amz-checksum-crc32:", b"x-amz-checksum-crc32 : "),
        (200, None),
        None,
    ),
]


@pytest.mark.parametrize(
    ("framing", "mangle", "through", "rgw"), [f[1:] for f in FRAMINGS], ids=[f[0] for f in FRAMINGS]
)
def test_the_store_gets_the_payload_the_chunk_signatures_cover(
    ends: Ends,
    bkt: str,
    framing: chunked.Framing,
    mangle: Callable[[bytes], bytes] | None,
    through: Outcome,
    rgw: Outcome | None,
) -> None:
    """The client's framing never reaches the store: s3shim decodes it, and the store is sent
    exactly the payload s3shim verified, or nothing. RGW's own reading of the same framing
    (a '+' or '0x' size, a Chunk-Signature spelling) is pinned beside it."""
    data = random.Random(7).randbytes(3000)
    key = f"frame-{uuid.uuid4().hex[:8]}"
    if rgw is not None:  # RGW 16 knows only the signed framing
        reply = RawClient.of(ends.store).aws_chunked_put(
            f"/{bkt}/d-{key}", data, framing, random.Random(1), mangle=mangle
        )
        assert outcome(reply) == rgw
    mark = ends.mark()
    reply = RawClient.of(ends.shim).aws_chunked_put(
        f"/{bkt}/{key}", data, framing, random.Random(1), mangle=mangle
    )
    assert outcome(reply) == through, reply.body[:300]
    sent = ends.sent_since(mark)
    if through[0] == 200:
        [put] = sent
        assert put.body == data and not put.values(b"content-encoding")
        assert stored(ends.direct, bkt, key) == data
    else:
        assert sent == [] and stored(ends.direct, bkt, key) is None


# --- (d) the CompleteMultipartUpload XML ------------------------------------------------

_NS = f' xmlns="{S3_NAMESPACE}"'


def _complete(inner: str, root: str = f"CompleteMultipartUpload{_NS}") -> str:
    return f"<{root}>{inner}</{root.split(' ')[0]}>"


def _part(number: str, etag: str) -> str:
    return f"<Part><PartNumber>{number}</PartNumber><ETag>{etag}</ETag></Part>"


# Each upload holds one part, number 2 ("BBB", etag E2); E1 is the etag a part 1 "AAA" would
# have. name -> (body, RGW direct, through s3shim): 200 means "BBB" was completed.
E1 = '"' + hashlib.md5(b"AAA").hexdigest() + '"'  # S3's ETag of a plain part
XML: dict[str, tuple[str, tuple[int, str | None], tuple[int, str | None]]] = {
    "baseline": (_complete(_part("2", "{E2}")), (200, None), (200, None)),
    "entity": (_complete(_part("&#50;", "{E2}")), (200, None), (200, None)),
    "cdata": (_complete(_part("<![CDATA[2]]>", "<![CDATA[{E2}]]>")), (200, None), (200, None)),
    "comment": (_complete(_part("<!--1-->2", "{E2}")), (200, None), (200, None)),
    "comment-joins": (
        _complete(_part("1<!--x-->2", "{E2}")),
        (400, "InvalidPart"),
        (400, "InvalidPart"),
    ),
    "bom": ("\ufeff" + _complete(_part("2", "{E2}")), (200, None), (200, None)),
    "pi": (_complete("<?x y?>" + _part("2", "{E2}")), (200, None), (200, None)),
    "first-partnumber-counts": (
        _complete(
            "<Part><PartNumber>1</PartNumber><PartNumber>2</PartNumber><ETag>{E2}</ETag></Part>"
        ),
        (400, "InvalidPart"),
        (400, "InvalidPart"),
    ),
    "first-etag-counts": (
        _complete(f"<Part><PartNumber>2</PartNumber><ETag>{E1}</ETag><ETag>{{E2}}</ETag></Part>"),
        (400, "InvalidPart"),
        (400, "InvalidPart"),
    ),
    "wrapped-part": (
        _complete(f"<X>{_part('1', E1)}</X>" + _part("2", "{E2}")),
        (200, None),
        (200, None),
    ),
    # RGW reads s3:Part as no Part; s3shim sends the same elements unprefixed (AWS's reading).
    "prefixed": (
        f'<s3:CompleteMultipartUpload xmlns:s3="{S3_NAMESPACE}"><s3:Part>'
        "<s3:PartNumber>2</s3:PartNumber><s3:ETag>{E2}</s3:ETag></s3:Part>"
        "</s3:CompleteMultipartUpload>",
        (400, "MalformedXML"),
        (200, None),
    ),
    # Part lists that depend on the reader: refused before the store.
    "two-spellings": (
        _complete(
            _part("2", "{E2}") + f'<a:Part xmlns:a="{S3_NAMESPACE}"><a:PartNumber>1</a:PartNumber>'
            f"<a:ETag>{E1}</a:ETag></a:Part>"
        ),
        (200, None),
        (400, "MalformedXML"),
    ),
    "foreign-namespace": (
        _complete(
            '<Part><x:PartNumber xmlns:x="urn:x">1</x:PartNumber><PartNumber>2</PartNumber>'
            "<ETag>{E2}</ETag></Part>"
        ),
        (200, None),
        (400, "MalformedXML"),
    ),
    "internal-entity": (
        '<!DOCTYPE CompleteMultipartUpload [<!ENTITY n "2">]>' + _complete(_part("&n;", "{E2}")),
        (200, None),
        (400, "MalformedXML"),
    ),
}


@pytest.mark.parametrize("name", list(XML))
def test_the_part_list_completed_is_the_one_s3shim_read(ends: Ends, bkt: str, name: str) -> None:
    template, rgw, through = XML[name]
    for who, expected in (("direct", rgw), ("through", through)):
        key = f"xml-{who}-{uuid.uuid4().hex[:8]}"
        upload_id = _upload(ends, bkt, key)
        etag = ends.direct.upload_part(
            Bucket=bkt, Key=key, UploadId=upload_id, PartNumber=2, Body=b"BBB"
        )["ETag"]
        body = template.replace("{E2}", etag).encode()
        mark = ends.mark()
        reply = ends.send(
            who,
            "POST",
            f"/{bkt}/{key}?uploadId={upload_id}".encode(),
            sign_path=f"/{bkt}/{key}",
            sign_query=[("uploadId", upload_id)],
            body=body,
        )
        assert outcome(reply) == expected, (who, reply.body[:300])
        assert stored(ends.direct, bkt, key) == (b"BBB" if expected[0] == 200 else None)
        if who == "through" and expected[1] == "MalformedXML":
            assert ends.sent_since(mark) == []
