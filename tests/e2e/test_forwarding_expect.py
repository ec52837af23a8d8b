"""``Expect: 100-continue``, direct and through s3shim, against the real stores.

A client that sends the expectation holds its body until it hears 100 Continue; a final
answer first means it never sends it. The client here is a raw socket that does exactly
that (up to WAIT seconds, then it sends anyway, as clients do) and counts the body bytes it
wrote. Directly against RGW 16 a refusal decided from the head (an anonymous PUT into a
private bucket, a missing bucket) comes without 100 and the client sends nothing; through
s3shim it must be the same, the stored bytes read back from RGW itself. The other stores are
shown to answer the expectation too (none ignores it), and a store that ignores it is made by
a relay that swallows RGW's 100 Continue: the upload must still complete.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from testkit.backends import Store, s3_client
from testkit.helpers import crc32_b64
from testkit.rawclient import request_head, sign
from testkit.shim import Shim, shim_for
from testkit.tap import relay

WAIT = 3.0  # how long the client holds its body for an answer (curl: 1 s); no test times it
BIG = 2 * 1024 * 1024 + 7  # streamed by s3shim whatever the expectation
SMALL = 1000  # read whole by s3shim unless the store can answer first
# A 100 Continue head, whatever its reason phrase (RGW writes "100 CONTINUE").
CONTINUE = re.compile(rb"HTTP/1\.[01] 100[^\r\n]*\r\n\r\n")


@dataclass
class Exchange:
    """One request with ``Expect: 100-continue`` as the client lived it."""

    interim: list[int]  # the 1xx statuses before the final answer
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    sent: int  # body bytes the client wrote
    waited: bool  # heard nothing for WAIT seconds, so sent the body anyway

    @property
    def invited(self) -> bool:
        return 100 in self.interim

    @property
    def code(self) -> str | None:
        start = self.body.find(b"<Code>")
        return None if start < 0 else self.body[start + 6 : self.body.find(b"</Code>")].decode()

    def outcome(self) -> tuple[int, str | None, bool, int]:
        """What must be the same direct and through s3shim."""
        return self.status, self.code, self.invited, self.sent


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf = sock, b""

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError(self.buf)
        self.buf += data

    def head(self) -> tuple[int, dict[str, str]]:
        while b"\r\n\r\n" not in self.buf:
            self._more()
        raw, _, self.buf = self.buf.partition(b"\r\n\r\n")
        status_line, *lines = raw.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(status_line.split(" ")[1]), headers

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._more()
        out, _, self.buf = self.buf.partition(b"\r\n")
        return out

    def body(self, headers: dict[str, str], method: str) -> bytes:
        if method == "HEAD":
            return b""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            out = b""
            while size := int(self.line().split(b";")[0], 16):
                out += self.exactly(size)
                self.line()
            while self.line():  # trailer
                pass
            return out
        if "content-length" in headers:
            return self.exactly(int(headers["content-length"]))
        with contextlib.suppress(EOFError):
            while True:
                self._more()
        out, self.buf = self.buf, b""
        return out


def expect_request(
    endpoint: str, method: str, target: str, headers: dict[str, str], body: bytes
) -> Exchange:
    """Send the head with ``Expect: 100-continue``; the body only on 100 Continue (or after
    WAIT seconds of silence); then the final answer."""
    parts = urlsplit(endpoint)
    assert parts.hostname is not None and parts.port is not None
    head = {"host": parts.netloc, **headers, "expect": "100-continue"}
    head["content-length"] = str(len(body))
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(request_head(method, target, head))
        reader = _Reader(sock)
        interim: list[int] = []
        sent, waited = 0, False

        def send_body() -> None:
            nonlocal sent
            view = memoryview(body)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                while sent < len(body):
                    sent += sock.send(view[sent : sent + 65536])

        sock.settimeout(WAIT)
        try:
            status, answer = reader.head()
        except TimeoutError:
            waited = True
            send_body()
            sock.settimeout(30)
            status, answer = reader.head()
        sock.settimeout(30)
        while 100 <= status < 200:
            interim.append(status)
            if status == 100 and not sent and not waited:
                send_body()
            status, answer = reader.head()
        return Exchange(interim, status, answer, reader.body(answer, method), sent, waited)


def put(
    endpoint: str,
    path: str,
    body: bytes,
    *,
    keys: tuple[str, str] | None,
    query: list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    payload_hash: str = "UNSIGNED-PAYLOAD",
) -> Exchange:
    """A PUT with the expectation: signed with ``keys``, or anonymous (None)."""
    h = dict(headers or {})
    if keys is not None:
        h = sign(
            "PUT",
            endpoint,
            path,
            access_key=keys[0],
            secret_key=keys[1],
            query=query,
            headers=h,
            payload_hash=payload_hash,
        )
    qs = "&".join(f"{k}={v}" for k, v in query or [])
    return expect_request(endpoint, "PUT", path + ("?" + qs if qs else ""), h, body)


def stored(direct: BaseClient, bucket: str, key: str) -> bytes | None:
    """The object's bytes read back from the store itself, or None when there is none."""
    try:
        return bytes(direct.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as exc:
        if exc.response["ResponseMetadata"]["HTTPStatusCode"] == 404:
            return None
        raise


def keys_of(target: Store | Shim) -> tuple[str, str]:
    return target.access_key, target.secret_key


def data(size: int) -> bytes:
    return os.urandom(size)


# -- RGW ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def open_bucket(direct: BaseClient) -> str:
    """A bucket anyone may write to (canned ACL public-read-write), on RGW."""
    name = f"expect-open-{uuid.uuid4().hex[:12]}"
    direct.create_bucket(Bucket=name, ACL="public-read-write")
    return name


@pytest.fixture(scope="module")
def shim_off(rgw_store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shim]:
    """s3shim in front of RGW with both flags false: nothing is recorded, so even a small
    PutObject signed with its SHA-256 streams when the store answers the expectation."""
    with shim_for(
        rgw_store,
        tmp_path_factory.mktemp("shim-expect-off"),
        flags=False,
    ) as s:
        yield s


@dataclass(frozen=True)
class Case:
    size: int
    anonymous: bool = False
    bucket: str = "private"  # private | open | missing
    crc32_header: bool = False  # a checksum declared in a header (boto3's default over http)
    status: int = 200
    code: str | None = None

    @property
    def refused(self) -> bool:
        return self.status >= 300


RGW_CASES = {
    "anonymous-private-bucket": Case(BIG, anonymous=True, status=403, code="AccessDenied"),
    "signed-missing-bucket": Case(BIG, bucket="missing", status=404, code="NoSuchBucket"),
    "signed-accepted": Case(BIG),
    "anonymous-open-bucket-accepted": Case(BIG, anonymous=True, bucket="open"),
    "small-crc32-missing-bucket": Case(
        SMALL, bucket="missing", crc32_header=True, status=404, code="NoSuchBucket"
    ),
    "small-crc32-accepted": Case(SMALL, crc32_header=True),
    "small-anonymous-private-bucket": Case(
        SMALL, anonymous=True, crc32_header=True, status=403, code="AccessDenied"
    ),
}


def run_case(
    endpoint: str, keys: tuple[str, str], case: Case, bucket: str, body: bytes
) -> tuple[Exchange, str]:
    key = f"expect-{uuid.uuid4().hex[:12]}"
    headers = {"x-amz-checksum-crc32": crc32_b64(body)} if case.crc32_header else {}
    got = put(
        endpoint, f"/{bucket}/{key}", body, keys=None if case.anonymous else keys, headers=headers
    )
    return got, key


@pytest.mark.parametrize("name", RGW_CASES)
@pytest.mark.parametrize("flags", ["on", "off"])
def test_rgw_direct_and_through_s3shim_the_client_sends_the_same_bytes(
    rgw_store: Store,
    shim: Shim,
    shim_off: Shim,
    direct: BaseClient,
    bucket: str,
    open_bucket: str,
    name: str,
    flags: str,
) -> None:
    case = RGW_CASES[name]
    through_shim = shim if flags == "on" else shim_off
    target = {"private": bucket, "open": open_bucket, "missing": "expect-no-such-bucket"}
    where = target[case.bucket]
    body = data(case.size)
    d, d_key = run_case(rgw_store.endpoint, keys_of(rgw_store), case, where, body)
    t, t_key = run_case(through_shim.endpoint, keys_of(through_shim), case, where, body)

    # RGW decides from the head: a refusal comes before 100 Continue, and no body is sent.
    if case.refused:
        assert d.outcome() == (case.status, case.code, False, 0), d
    else:
        assert d.outcome() == (200, None, True, case.size), d
    assert not d.waited and not t.waited
    assert t.outcome() == d.outcome(), (t, d)
    assert t.interim.count(100) == (0 if case.refused else 1)
    if case.refused:
        # s3shim never read the body, so it closes the connection after the answer (README,
        # Differences from the store: RGW keeps it open).
        assert d.headers.get("connection", "").lower() == "keep-alive"
        assert t.headers.get("connection", "").lower() == "close"
        if case.bucket != "missing":
            assert stored(direct, where, d_key) is None and stored(direct, where, t_key) is None
    else:
        assert d.sent == t.sent == case.size
        assert stored(direct, where, d_key) == body and stored(direct, where, t_key) == body


def test_rgw_a_small_put_s3shim_records_from_its_bytes_is_still_invited_by_s3shim(
    rgw_store: Store, shim: Shim, direct: BaseClient
) -> None:
    """The one difference kept (README, Differences from the store): a PutObject up to
    1 MiB with no checksum in a header, recording on, is read whole to compute its record,
    so s3shim says 100 Continue itself; a refusal the store decides from the head comes
    after the (small) body."""
    body = data(SMALL)
    path = "/expect-no-such-bucket/k"
    d = put(rgw_store.endpoint, path, body, keys=keys_of(rgw_store))
    t = put(shim.endpoint, path, body, keys=keys_of(shim))
    assert d.outcome() == (404, "NoSuchBucket", False, 0)
    assert t.outcome() == (404, "NoSuchBucket", True, SMALL)


@pytest.fixture(scope="module")
def curl() -> str:
    found = shutil.which("curl")
    if found is None:
        pytest.skip("curl is not installed")
    return found


def curl_upload(curl: str, src: Path, url: str) -> list[str]:
    """``curl -T`` at its defaults (Expect: 100-continue for bodies over 1 MiB): the status
    and the bytes it uploaded."""
    out = subprocess.run(
        [curl, "-sS", "-o", "/dev/null", "-T", str(src), "-w", "%{http_code} %{size_upload}", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.split()


def test_rgw_a_refused_big_upload_costs_the_client_no_body_bytes_with_curl(
    rgw_store: Store, shim: Shim, curl: str, tmp_path: Path
) -> None:
    """curl at its defaults sends the expectation for bodies over 1 MiB."""
    src = tmp_path / "big"
    src.write_bytes(data(BIG))
    got = {}
    for label, endpoint in (("direct", rgw_store.endpoint), ("through", shim.endpoint)):
        got[label] = curl_upload(curl, src, f"{endpoint}/expect-no-such-bucket-curl/k")
    # Anonymous: RGW refuses from the head (NoSuchBucket), and curl uploads nothing.
    assert got["direct"] == ["404", "0"]
    assert got["through"] == got["direct"]


# -- a store that ignores the expectation -------------------------------------------------


@dataclass
class Swallower:
    """A relay in front of the store that drops its 100 Continue answers: to s3shim, a store
    that ignores the expectation (reads the body whenever it comes)."""

    endpoint: str
    swallowed: list[int] = field(default_factory=list)

    def swallow(self, data: bytes) -> bytes:
        """The store's answer bytes less its 100 Continue heads: the store writes one on its
        own, before the body, when it starts a read (counted, so a test can see the relay
        really did swallow it)."""
        while (m := CONTINUE.match(data)) is not None:
            self.swallowed.append(1)
            data = data[m.end() :]
        return data


@contextlib.contextmanager
def swallowing(store_endpoint: str) -> Iterator[Swallower]:
    swallower = Swallower("")
    with relay(store_endpoint, to_client=swallower.swallow) as swallower.endpoint:
        yield swallower


def test_a_store_that_ignores_the_expectation_still_gets_the_upload(
    rgw_store: Store, direct: BaseClient, bucket: str, tmp_path: Path
) -> None:
    with (
        swallowing(rgw_store.endpoint) as relay,
        shim_for(rgw_store, tmp_path, via=relay.endpoint) as s,
    ):
        body = data(BIG)
        d = put(relay.endpoint, f"/{bucket}/ignored-direct", body, keys=keys_of(rgw_store))
        swallowed_direct = len(relay.swallowed)
        t = put(s.endpoint, f"/{bucket}/ignored-through", body, keys=keys_of(s))
        swallowed_through = len(relay.swallowed) - swallowed_direct
    # Directly, the client hears nothing and sends its body after its own wait.
    assert d.outcome() == (200, None, False, BIG) and d.waited
    # Through s3shim, s3shim stops waiting for the store first and invites the body.
    assert t.outcome() == (200, None, True, BIG) and not t.waited
    assert swallowed_direct >= 1 and swallowed_through >= 1
    assert stored(direct, bucket, "ignored-direct") == body
    assert stored(direct, bucket, "ignored-through") == body


def test_curl_through_s3shim_to_a_store_that_ignores_the_expectation(
    rgw_store: Store, open_bucket: str, direct: BaseClient, curl: str, tmp_path: Path
) -> None:
    src = tmp_path / "big"
    body = data(BIG)
    src.write_bytes(body)
    with (
        swallowing(rgw_store.endpoint) as relay,
        shim_for(rgw_store, tmp_path, via=relay.endpoint) as s,
    ):
        uploaded = curl_upload(curl, src, f"{s.endpoint}/{open_bucket}/curl-ignored")
    assert uploaded == ["200", str(BIG)]
    assert relay.swallowed  # the store's 100 never reached s3shim
    assert stored(direct, open_bucket, "curl-ignored") == body


# -- the other stores: each answers the expectation in its own way ----------------------------


@pytest.fixture(scope="module", params=["rclone", "moto", "s3rver"])
def other(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Store, Shim]]:
    store: Store = request.getfixturevalue(f"{request.param}_store")
    flags = request.param != "moto"  # moto is the AWS-faithful control: flags off
    with shim_for(
        store,
        tmp_path_factory.mktemp(f"shim-expect-{request.param}"),
        flags=flags,
    ) as s:
        yield store, s


@pytest.mark.parametrize("missing", [False, True], ids=["accepted", "missing-bucket"])
def test_other_stores_direct_and_through_s3shim_the_client_sends_the_same_bytes(
    other: tuple[Store, Shim], missing: bool
) -> None:
    store, s = other
    direct = s3_client(store)
    bucket = "expect-no-such-bucket" if missing else f"expect-{uuid.uuid4().hex[:12]}"
    if not missing:
        direct.create_bucket(Bucket=bucket)
    body = data(BIG)
    d = put(store.endpoint, f"/{bucket}/direct", body, keys=keys_of(store))
    t = put(s.endpoint, f"/{bucket}/through", body, keys=keys_of(s))
    assert not d.waited and not t.waited  # none of them ignores the expectation
    if missing:
        # Refused from the head, but s3rver writes its 100 Continue and its 404 back to back:
        # when both reach s3shim in one read, the final answer came before the store asked
        # for a byte of the body, and s3shim never invites it (upstream.py). Either way the
        # answer is the store's, and nothing is stored.
        assert d.status == t.status == 404 and t.code == d.code, (t, d)
        alike = (d.invited, d.sent, [100] if d.invited else [])
        assert (t.invited, t.sent, t.interim) in (alike, (False, 0, [])), (t, d)
        return
    assert t.outcome() == d.outcome(), (t, d)
    # One 100 Continue (moto sends two).
    assert t.interim == ([100] if d.invited else [])
    assert d.status == 200
    assert stored(direct, bucket, "direct") == body
    assert stored(direct, bucket, "through") == body
