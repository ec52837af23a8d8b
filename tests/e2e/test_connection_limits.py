"""Connection-layer limits of the real s3shim (a subprocess) in front of the real RGW:
floods past the connection cap, one peer holding its share, and a flood of unfinished request
heads. Every assertion is a bound or a count, never a duration."""

from __future__ import annotations

import contextlib
import http.client
import json
import resource
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from testkit.backends import Store
from testkit.rawclient import sign
from testkit.shim import Shim, shim_for

MIB = 1024 * 1024
FLOOD_ADDR = "127.0.0.2"  # on loopback too: a second peer address on one machine
# How a client sees a connection closed before any answer.
REFUSED = ("RemoteDisconnected", "ConnectionResetError", "BrokenPipeError")


@pytest.fixture(scope="module", autouse=True)
def enough_file_descriptors() -> None:
    """Floods of a few hundred sockets here, as many in s3shim (which inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


@contextlib.contextmanager
def shim_with(rgw_store: Store, tmp_path: Path, **env: str) -> Iterator[Shim]:
    with shim_for(rgw_store, tmp_path, env=env) as s:
        yield s


def port_of(s: Shim) -> int:
    return int(s.endpoint.rsplit(":", 1)[1])


def metrics(s: Shim) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(s.admin + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def refused(s: Shim, reason: str) -> float:
    return metrics(s)[("s3shim_connections_refused_total", (("reason", reason),))]


def open_connections(s: Shim) -> float:
    return metrics(s)[("s3shim_open_connections", ())]


def head_bytes(s: Shim) -> float:
    return metrics(s)[("s3shim_unfinished_head_bytes", ())]


def wait_for(what: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll a condition (a wait, not a timing assertion: only failure to ever hold fails)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


def log_lines(s: Shim) -> list[dict[str, object]]:
    """Every line s3shim wrote (stdout and stderr), each parsed as JSON: a line that is not
    JSON (a traceback, stdlib logging's text) fails here."""
    lines = s.log_text().splitlines()
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON log line: {line[:300]!r}") from None
    return parsed


def refusal_lines(s: Shim, reason: str) -> list[dict[str, object]]:
    return [
        e for e in log_lines(s) if e.get("event") == "connection_refused" and e["reason"] == reason
    ]


def logged_count(s: Shim, reason: str) -> int:
    return sum(int(str(e["count"])) for e in refusal_lines(s, reason))


def connect(s: Shim, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(
        ("127.0.0.1", port_of(s)), timeout=30, source_address=(source, 0)
    )
    return sock


def signed_list_buckets(s: Shim, source: str) -> int | str:
    """A signed ListBuckets from ``source``: the HTTP status, or the error's name when the
    connection was refused before any answer."""
    headers = sign("GET", s.endpoint, "/", access_key=s.access_key, secret_key=s.secret_key)
    conn = http.client.HTTPConnection(
        "127.0.0.1", port_of(s), timeout=30, source_address=(source, 0)
    )
    try:
        conn.putrequest("GET", "/", skip_host=True, skip_accept_encoding=True)
        send = {k.lower(): v for k, v in headers.items()}
        send.setdefault("host", s.endpoint.split("//", 1)[1])
        for k, v in send.items():
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (ConnectionError, http.client.HTTPException) as exc:
        return type(exc).__name__
    finally:
        conn.close()


def vm(pid: int, field: str) -> int:
    """A /proc/<pid>/status memory figure (VmRSS, VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


# --- flood past the global cap ----------------------------------------------------------------


def test_a_flood_past_the_cap_costs_bounded_json_lines_only(
    rgw_store: Store, tmp_path: Path
) -> None:
    cap, extra = 64, 300
    with shim_with(rgw_store, tmp_path, S3SHIM_MAX_CONNECTIONS=str(cap)) as s:
        socks = []
        started = time.monotonic()
        try:
            for _ in range(cap + extra):
                socks.append(connect(s))
            # Every connection beyond the cap is refused; the first `cap` stay open, idle.
            wait_for("all refusals counted", lambda: refused(s, "max_connections") >= extra)
            assert refused(s, "max_connections") == extra
            assert open_connections(s) == cap
            # The held-back refusals are reported once their second is over.
            wait_for("refusals logged", lambda: logged_count(s, "max_connections") == extra)
        finally:
            for sock in socks:
                sock.close()
        elapsed = time.monotonic() - started
        lines = refusal_lines(s, "max_connections")
        # At most one line per second (plus the first), never one per connection.
        assert 1 <= len(lines) <= elapsed + 2
        assert len(lines) < extra / 10
        wait_for("slots free again", lambda: open_connections(s) == 0)
        assert signed_list_buckets(s, "127.0.0.1") == 200
        log_lines(s)  # still nothing but JSON, after the flood and the request


# --- one peer cannot take every slot ----------------------------------------------------------


def test_one_peer_cannot_take_every_slot(rgw_store: Store, tmp_path: Path) -> None:
    per_peer = 8
    with shim_with(
        rgw_store,
        tmp_path,
        S3SHIM_MAX_CONNECTIONS="64",
        S3SHIM_MAX_CONNECTIONS_PER_PEER=str(per_peer),
        S3SHIM_PER_PEER_LIMIT_LOOPBACK="true",  # the test's peers are loopback addresses
    ) as s:
        held = [connect(s, FLOOD_ADDR) for _ in range(per_peer)]
        try:
            wait_for("the peer's share is open", lambda: open_connections(s) == per_peer)
            # Beyond its share, even a signed request from that address is refused...
            assert signed_list_buckets(s, FLOOD_ADDR) in REFUSED
            assert refused(s, "max_connections_per_peer") == 1
            # ...while another address is served.
            assert signed_list_buckets(s, "127.0.0.1") == 200
            assert refused(s, "max_connections") == 0
            lines = refusal_lines(s, "max_connections_per_peer")
            assert lines and lines[0]["last_peer"] == FLOOD_ADDR
            held.pop().close()
            wait_for("a slot came back", lambda: open_connections(s) == per_peer - 1)
            assert signed_list_buckets(s, FLOOD_ADDR) == 200
        finally:
            for sock in held:
                sock.close()
        log_lines(s)


def test_loopback_peers_are_exempt_by_default_for_a_sidecar(
    rgw_store: Store, tmp_path: Path
) -> None:
    """In a sidecar every connection comes from 127.0.0.1: the per-peer limit must not apply."""
    with shim_with(rgw_store, tmp_path, S3SHIM_MAX_CONNECTIONS_PER_PEER="4") as s:
        held = [connect(s) for _ in range(10)]
        try:
            wait_for("all ten open", lambda: open_connections(s) == 10)
            assert signed_list_buckets(s, "127.0.0.1") == 200
            assert refused(s, "max_connections_per_peer") == 0
        finally:
            for sock in held:
                sock.close()


# --- unfinished request heads -----------------------------------------------------------------


def big_head(headers: int) -> bytes:
    """A request head that never ends: ``headers`` fields of 8,000 bytes, no blank line."""
    fields = b"".join(b"x-filler-%d: %s\r\n" % (i, b"a" * 8000) for i in range(headers))
    return b"GET /bucket/key HTTP/1.1\r\nhost: 127.0.0.1\r\n" + fields


def send_quietly(sock: socket.socket, data: bytes) -> None:
    # s3shim may cut this connection while the head is on its way: that is the point.
    with contextlib.suppress(OSError):
        sock.sendall(data)


def test_head_flood_memory_is_bounded_and_given_back(rgw_store: Store, tmp_path: Path) -> None:
    flood = 300  # x 62 x 8,000 bytes = 149 MB of heads that never finish
    with shim_with(rgw_store, tmp_path) as s:
        assert signed_list_buckets(s, "127.0.0.1") == 200  # warm: what a serving process holds
        baseline = vm(s.pid, "VmRSS")
        socks = []
        try:
            head = big_head(62)
            for _ in range(flood):
                sock = connect(s)
                socks.append(sock)
                send_quietly(sock, head)
            # All sent: what s3shim has not cut is held, within the default budget.
            wait_for("the budget is full", lambda: head_bytes(s) > 31 * MIB)
            assert head_bytes(s) <= 32 * MIB
            during = vm(s.pid, "VmRSS")
            # A small request still gets through while the flood holds the budget.
            assert signed_list_buckets(s, "127.0.0.1") == 200
        finally:
            for sock in socks:
                sock.close()
        # The high-water mark covers every moment of the flood. Before: +390 MiB for 400
        # such connections; bounded now by the budget (and its bookkeeping), whatever the
        # number of connections.
        peak = vm(s.pid, "VmHWM")
        assert peak - baseline < 128 * MIB, (baseline, during, peak)
        assert refused(s, "head_budget") > flood / 2
        wait_for("the flood is gone", lambda: open_connections(s) == 0)
        wait_for(
            "memory trimmed", lambda: any(e.get("event") == "memory_trimmed" for e in log_lines(s))
        )
        after = vm(s.pid, "VmRSS")
        # Before: the process stayed at its flood size (437 MiB) after the connections closed.
        assert after - baseline < 32 * MIB, (baseline, during, peak, after)
        wait_for(
            "cuts logged",
            lambda: logged_count(s, "head_budget") == refused(s, "head_budget"),
        )
        assert len(refusal_lines(s, "head_budget")) < refused(s, "head_budget")


def test_the_largest_unfinished_head_is_cut_with_slow_down(
    rgw_store: Store, tmp_path: Path
) -> None:
    """Over budget, the connection holding the most is answered 503 SlowDown and closed; the
    one whose small request arrives meanwhile is served."""
    with shim_with(rgw_store, tmp_path, S3SHIM_MAX_HEAD_BYTES=str(1 * MIB)) as s:
        largest = connect(s)
        send_quietly(largest, big_head(60))  # 480 KB
        wait_for("held", lambda: head_bytes(s) > 400_000)
        others = [connect(s) for _ in range(2)]
        try:
            for sock in others:
                send_quietly(sock, big_head(40))  # 320 KB each: 1.1 MB in all
            reply = largest.recv(65536)
            assert reply.startswith(b"HTTP/1.1 503"), reply[:200]
            assert b"<Code>SlowDown</Code>" in reply
            wait_for("only the cut one closed", lambda: open_connections(s) == len(others))
            assert signed_list_buckets(s, "127.0.0.1") == 200
            assert refused(s, "head_budget") == 1  # the others were never cut
            assert open_connections(s) == len(others)
        finally:
            largest.close()
            for sock in others:
                sock.close()
        log_lines(s)
