"""The soak (bench/soak.py) in small: ~500 randomized, concurrent operations with every fault
kind, through s3shim to the real RGW, each checked by reading the store directly.

Also the soak's own parts, since a soak that misclassifies proves nothing: the pure
classification, the planner's coverage, and the fault relay (its pure state machine, and the
relay itself against a local TCP peer, exact to the byte).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import soak
from bench.faultrelay import Connection, Fault, Faults, Forward, Reset, Sleep, running_relay
from testkit.backends import Store
from testkit.tap import tcp_server

SMOKE_OPS = 500
SMOKE_SEED = 11
SMOKE_MAX = 8 * soak.MIB  # multipart uploads of up to 2 parts; keeps the run short


# ---------------------------------------------------------------------- classification
NEW = soak.Digest.of(b"new bytes")
OLD = soak.Digest.of(b"the earlier good version")
OTHER = soak.Digest.of(b"something else")
STORE = soak.expectation("none")
REFUSE = soak.expectation("wrong_checksum")
EITHER = soak.expectation("store_reset")
RESTART = soak.expectation("sigterm")  # either, but a good request


@pytest.mark.parametrize(
    ("expect", "status", "code", "found", "old", "disturbed", "cls"),
    [
        (STORE, 200, None, NEW, None, False, "IDENTICAL"),
        (STORE, 200, None, None, None, False, "LOST"),
        (STORE, 200, None, OLD, OLD, False, "LOST"),  # overwrite acknowledged, not done
        (STORE, 200, None, OTHER, None, False, "CORRUPT"),
        (STORE, 500, "InternalError", None, None, False, "WRONG-STATUS"),
        (STORE, 0, None, None, None, True, "ABSENT"),  # s3shim restarted meanwhile
        (STORE, 400, "BadDigest", None, None, True, "WRONG-STATUS"),  # no excuse for that
        (REFUSE, 400, "BadDigest", None, None, False, "ABSENT"),
        (REFUSE, 400, "BadDigest", OLD, OLD, False, "ABSENT"),  # earlier version kept
        (REFUSE, 400, "BadDigest", None, OLD, False, "LOST"),  # earlier version gone
        (REFUSE, 400, "BadDigest", NEW, None, False, "HALF-STORED"),
        (REFUSE, 400, "BadDigest", NEW, OLD, False, "HALF-STORED"),
        (REFUSE, 400, "InvalidDigest", None, None, False, "WRONG-STATUS"),
        (REFUSE, 403, "BadDigest", None, None, False, "WRONG-STATUS"),
        (REFUSE, 200, None, NEW, None, False, "WRONG-STATUS"),  # accepted a wrong checksum
        (EITHER, 503, "ServiceUnavailable", None, None, False, "ABSENT"),
        (EITHER, 200, None, NEW, None, False, "IDENTICAL"),
        (EITHER, 0, "client-cut", NEW, None, False, "HALF-STORED"),
        (EITHER, 0, "client-cut", OTHER, None, False, "CORRUPT"),
        (RESTART, 200, None, NEW, None, True, "IDENTICAL"),
        (RESTART, 0, "ConnectionRefusedError", None, None, True, "ABSENT"),
        # A good request s3shim carried out without answering: its answer is wrong, the
        # object is the one asked for (a drain that closed the connection under it).
        (STORE, 0, "RemoteDisconnected", NEW, None, True, "WRONG-STATUS"),
        (STORE, 503, "ServiceUnavailable", NEW, None, False, "WRONG-STATUS"),
        (RESTART, 0, "RemoteDisconnected", NEW, None, True, "WRONG-STATUS"),
        (soak.COMPLETE, 0, "RemoteDisconnected", NEW, None, True, "WRONG-STATUS"),
        (soak.COMPLETE, 0, "RemoteDisconnected", OTHER, None, True, "CORRUPT"),
    ],
)
def test_classify_write(
    expect: soak.Expect,
    status: int,
    code: str | None,
    found: soak.Digest | None,
    old: soak.Digest | None,
    disturbed: bool,
    cls: str,
) -> None:
    got, detail = soak.classify_write(expect, status, code, found, NEW, old, disturbed)
    assert got == cls, detail
    assert bool(detail) == (cls not in ("IDENTICAL", "ABSENT"))


def test_a_stored_aws_chunked_coding_is_corrupt() -> None:
    found = soak.Digest(NEW.size, NEW.sha256, "aws-chunked")
    assert soak.classify_write(STORE, 200, None, found, NEW, None)[0] == "CORRUPT"


def test_forged_requests_expect_403() -> None:
    assert soak.expectation("forged_signature", "unknown-key").codes == {"InvalidAccessKeyId"}
    assert soak.expectation("forged_signature", "chunk-signature").codes == {
        "SignatureDoesNotMatch"
    }
    assert soak.expectation("forged_signature").status == 403


@pytest.mark.parametrize(
    ("status", "body", "content_range", "faulted", "cls"),
    [
        (206, b"abc", "bytes 0-2/9", False, "READ-OK"),
        (206, b"abd", "bytes 0-2/9", False, "CORRUPT"),
        (206, b"abc", "bytes 0-2/10", False, "WRONG-STATUS"),
        (200, b"abc", None, False, "WRONG-STATUS"),
        (206, None, None, True, "READ-CUT"),
        (206, None, None, False, "WRONG-STATUS"),
        (503, b"", None, True, "READ-CUT"),
        (206, b"abd", "bytes 0-2/9", True, "CORRUPT"),  # a fault never excuses other bytes
    ],
)
def test_classify_read(
    status: int, body: bytes | None, content_range: str | None, faulted: bool, cls: str
) -> None:
    got, _ = soak.classify_read(
        expected_status=206,
        expected_range="bytes 0-2/9",
        expected=b"abc",
        status=status,
        content_range=content_range,
        body=body,
        faulted=faulted,
    )
    assert got == cls


@pytest.mark.parametrize(
    ("cls", "found", "old", "seen", "good", "verdict"),
    [
        ("ABSENT", NEW, None, False, False, "HALF-STORED"),  # refused, committed after the check
        ("IDENTICAL", NEW, None, True, True, "HALF-STORED"),  # checked, removed, back again
        ("WRONG-STATUS", NEW, None, True, True, "HALF-STORED"),  # back again, whatever the answer
        # A good request (a multipart upload's Complete) absent when checked after a failed
        # answer, then committed: the object asked for, the answer wrong.
        ("ABSENT", NEW, None, False, True, "WRONG-STATUS"),
        ("ABSENT", OTHER, OLD, False, False, "CORRUPT"),
        ("ABSENT", OTHER, None, False, True, "CORRUPT"),
        ("ABSENT", OLD, OLD, False, False, "ERROR"),  # the harness did not clean up
        ("ERROR", OLD, OLD, False, False, "ERROR"),  # an operation that failed left its key
        ("ERROR", NEW, None, False, True, "ERROR"),
        (None, NEW, None, False, False, "ERROR"),
    ],
)
def test_judge_leftover(
    cls: str | None,
    found: soak.Digest,
    old: soak.Digest | None,
    seen: bool,
    good: bool,
    verdict: str,
) -> None:
    assert soak.judge_leftover(cls, found, NEW, old, seen=seen, good=good)[0] == verdict


def test_good_requests_are_the_unspoiled_ones() -> None:
    good = {f for f in soak.FAULT_KINDS if soak.expectation(f).good}
    assert good == {"none", "slow_client", "slow_store", "sigterm"}
    assert soak.COMPLETE.good and soak.COMPLETE.mode == "store"


def test_a_findings_trail_is_in_the_table() -> None:
    trail = [
        {"t": 10.0, "step": "put (none, signed)", "status": 0, "code": "RemoteDisconnected"},
        {"t": 10.25, "step": "check: 5 B", "etag": '"e"'},
    ]
    assert soak.trail_lines(trail) == [
        "      +  0.000s put (none, signed) -> 0 RemoteDisconnected",
        '      +  0.250s check: 5 B  etag="e"',
    ]


def test_worst_finding_wins() -> None:
    assert soak.worst(("READ-OK", ""), ("READ-CUT", "")) == ("READ-CUT", "")
    assert soak.worst(("HALF-STORED", "a"), ("LOST", "b")) == ("LOST", "b")
    assert soak.worst(("IDENTICAL", ""), ("WRONG-STATUS", "x")) == ("WRONG-STATUS", "x")


def test_plans_are_reproducible_cover_every_fault_and_respect_the_size() -> None:
    plans = [soak.plan_op(5, i, SMOKE_MAX) for i in range(400)]
    assert plans == [soak.plan_op(5, i, SMOKE_MAX) for i in range(400)]
    assert {p.fault for p in plans[: 2 * len(soak.FAULT_KINDS)]} == set(soak.FAULT_KINDS)
    assert all(0 <= p.size <= SMOKE_MAX for p in plans)
    assert {p.kind for p in plans} == {"put", "multipart", "get"}
    multipart = [p for p in plans if p.kind == "multipart"]
    assert all(sum(p.part_sizes) == p.size for p in multipart)
    assert all(s >= soak.PART_MIN for p in multipart for s in p.part_sizes[:-1])
    assert all(p.size >= 1 for p in plans if p.fault == "client_cut")
    assert {p.framing for p in plans if p.kind == "put"} == set(soak.FRAMINGS)


def test_checksums_are_the_published_values() -> None:
    # AWS's examples of x-amz-checksum-* for the body "Hello world" (and zlib's CRC32).
    assert soak.checksum_b64("CRC32", b"Hello world") == "i9aeUg=="
    assert soak.checksum_b64("SHA256", b"") == "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    assert len(soak.checksum("CRC64NVME", b"x")) == 8
    assert len(soak.checksum("CRC32C", b"x")) == 4


# ------------------------------------------------------------------ fault relay, pure
def _data(actions: list[Forward | Sleep | Reset]) -> bytes:
    return b"".join(a.data for a in actions if isinstance(a, Forward))


def test_reset_counts_from_a_pattern_split_across_reads() -> None:
    faults = Faults()
    fault = faults.add(Fault(match=b"KEY-1", reset_after=5))
    conn = Connection(faults, 1)
    first = conn.up(b"PUT /b/KE")
    second = conn.up(b"Y-1 HTTP/1.1\r\nhost")
    assert _data(first + second) == b"PUT /b/KEY-1 HTTP"
    assert isinstance(second[-1], Reset)
    assert (fault.armed, fault.resets, conn.dead) == (1, 1, True)
    assert conn.up(b"more") == []


def test_a_fault_arms_once_and_only_on_its_pattern() -> None:
    faults = Faults()
    fault = faults.add(Fault(match=b"mine", reset_after=0))
    other = Connection(faults, 1)
    assert other.up(b"GET /theirs HTTP/1.1\r\n") == [Forward(b"GET /theirs HTTP/1.1\r\n")]
    conn = Connection(faults, 2)
    assert isinstance(conn.up(b"GET /mine?x")[-1], Reset)
    again = Connection(faults, 3)
    assert again.up(b"GET /mine HTTP/1.1") == [Forward(b"GET /mine HTTP/1.1")]
    assert fault.armed == 1


def test_an_up_reset_expires_when_the_store_answers() -> None:
    faults = Faults()
    fault = faults.add(Fault(match=b"K", reset_after=1000))
    conn = Connection(faults, 1)
    conn.up(b"PUT /K HTTP/1.1\r\n\r\n")
    assert conn.down(b"HTTP/1.1 200 OK\r\n\r\n") == [Forward(b"HTTP/1.1 200 OK\r\n\r\n")]
    # The next request on this reused connection is another operation's: untouched.
    assert conn.up(b"x" * 2000) == [Forward(b"x" * 2000)]
    assert fault.resets == 0 and not fault.fired


def test_a_down_reset_cuts_the_answer_and_expires_with_the_next_request() -> None:
    faults = Faults()
    cut = faults.add(Fault(match=b"K", reset_after=3, direction="down"))
    conn = Connection(faults, 1)
    assert _data(conn.up(b"GET /K HTTP/1.1\r\n\r\n")) == b"GET /K HTTP/1.1\r\n\r\n"
    out = conn.down(b"HTTP/1.1 200")
    assert _data(out) == b"HTT" and isinstance(out[-1], Reset) and cut.fired

    late = faults.add(Fault(match=b"L", reset_after=100, direction="down"))
    conn = Connection(faults, 2)
    conn.up(b"GET /L HTTP/1.1\r\n\r\n")
    conn.down(b"HTTP/1.1 200 OK\r\n\r\n")
    conn.up(b"GET /next HTTP/1.1\r\n\r\n")
    assert conn.down(b"y" * 500) == [Forward(b"y" * 500)]
    assert not late.fired


def test_delay_splits_into_pieces_within_its_budget() -> None:
    faults = Faults()
    slow = faults.add(Fault(connection=1, delay=0.5, delay_bytes=250, piece=100))
    conn = Connection(faults, 1)
    out = conn.up(b"a" * 400)
    assert out == [
        Sleep(0.5),
        Forward(b"a" * 100),
        Sleep(0.5),
        Forward(b"a" * 100),
        Sleep(0.5),
        Forward(b"a" * 50),
        Forward(b"a" * 150),
    ]
    assert slow.delayed_bytes == 250
    assert Connection(faults, 2).up(b"b") == [Forward(b"b")]


def test_fault_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        Fault(reset_after=1)
    with pytest.raises(ValueError):
        Fault(match=b"k", connection=1, reset_after=1)
    with pytest.raises(ValueError):
        Fault(match=b"k")


# ------------------------------------------------------------------ fault relay, on TCP
@pytest.fixture
def echo_peer() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP peer on 127.0.0.1 that records what it receives (per connection) and echoes it."""
    received: list[bytes] = []

    def echo(peer: socket.socket) -> None:
        got = b""
        with peer:
            try:
                while data := peer.recv(65536):
                    got += data
                    peer.sendall(data)
            except OSError:
                pass
        received.append(got)

    with tcp_server(echo) as port:
        yield port, received


def _exchange(port: int, payload: bytes) -> bytes | None:
    """Send payload, half-close, read to the end; None when the connection was reset."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            out = b""
            while data := s.recv(65536):
                out += data
            return out
        except OSError:  # reset (or, while still sending, a broken pipe)
            return None


def _wait_for(received: list[bytes], n: int) -> None:
    event = threading.Event()
    for _ in range(200):
        if len(received) >= n:
            return
        event.wait(0.02)
    raise AssertionError(f"the peer saw {len(received)} connections, not {n}")


def test_relay_resets_after_exactly_k_bytes(echo_peer: tuple[int, list[bytes]]) -> None:
    port, received = echo_peer
    with running_relay("127.0.0.1", port) as relay:
        fault = relay.add(Fault(match=b"TOKEN", reset_after=70_000))
        assert _exchange(relay.port, b"head TOKEN" + b"x" * 200_000) is None
        _wait_for(received, 1)
        assert received[0] == b"head TOKEN" + b"x" * 70_000
        assert fault.resets == 1
        # Other connections pass untouched, both ways.
        assert _exchange(relay.port, b"z" * 300_000) == b"z" * 300_000


def test_relay_resets_the_nth_connection_and_delays_without_changing_bytes(
    echo_peer: tuple[int, list[bytes]],
) -> None:
    port, received = echo_peer
    with running_relay("127.0.0.1", port) as relay:
        cut = relay.add(Fault(connection=2, reset_after=10))
        slow = relay.add(Fault(connection=3, delay=0.001, delay_bytes=50_000, piece=4096))
        assert _exchange(relay.port, b"a" * 100) == b"a" * 100
        assert _exchange(relay.port, b"b" * 100) is None
        assert _exchange(relay.port, b"c" * 100_000) == b"c" * 100_000
        _wait_for(received, 3)
        assert sorted(received, key=len) == [b"b" * 10, b"a" * 100, b"c" * 100_000]
        assert cut.resets == 1 and slow.delayed_bytes == 50_000


# ------------------------------------------------------------------------ the smoke soak
@pytest.mark.rgw
def test_soak_smoke(rgw_store: Store, tmp_path: Path) -> None:
    cfg = soak.Config(
        ops=SMOKE_OPS,
        seed=SMOKE_SEED,
        workers=8,
        max_size=SMOKE_MAX,
        deadline=300,  # a guard against a hang, far above the ~1 min this takes
        progress=False,
    )
    summary = soak.run(rgw_store, cfg, tmp_path, rgw_state=soak.rgw_state_for(rgw_store.endpoint))
    report = soak.table(summary)
    assert summary.completed == SMOKE_OPS, report
    for cls in (*soak.DEFECTS, "WRONG-STATUS", "ERROR"):
        assert summary.classes[cls] == 0, report
    assert summary.stray == [], report
    # A soak that injects nothing proves nothing: every fault kind really happened.
    for kind in soak.FAULT_KINDS:
        assert summary.fired(kind) > 0, (kind, report)
    assert summary.restarts == summary.faults["sigterm"]["fired"] > 0
    # Every SIGTERMed s3shim exited by itself, with its "stopped" line (whether requests
    # outlasted the grace period depends on the machine's load, so that is only reported).
    assert sum(summary.drains.values()) == summary.restarts, report
    assert not {"did not exit in time", "exited without 'stopped'"} & set(summary.drains), report
    # And the outcomes the faults should produce are there: refusals, stores, cut reads.
    assert summary.classes["IDENTICAL"] > 0 and summary.classes["ABSENT"] > 0, report
    assert summary.classes["READ-OK"] > 0 and summary.classes["READ-CUT"] > 0, report
