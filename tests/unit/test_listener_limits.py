"""The listener's pure bookkeeping: admission counts, the head budget, refusal-line
aggregation, the peak tracker behind memory relief, peer keys, and the raw 503 bytes."""

from __future__ import annotations

import http.client
import io
import ipaddress
import itertools

from hypothesis import given
from hypothesis import strategies as st

from s3shim import errors
from s3shim.listener import (
    DEFAULT_PER_PEER_EXEMPT,
    HEAD_BUDGET,
    MAX_CONNECTIONS,
    MAX_CONNECTIONS_PER_PEER,
    Admission,
    HeadBudget,
    PeakTracker,
    RefusalTally,
    _raw_response,
    peer_key,
)
from s3shim.proxy import error_response

# --- peer_key ----------------------------------------------------------------------------


def test_ipv4_peers_count_per_address() -> None:
    assert peer_key(("192.0.2.7", 51000)) == ("192.0.2.7", ipaddress.ip_address("192.0.2.7"))
    assert peer_key(("192.0.2.7", 1))[0] != peer_key(("192.0.2.8", 1))[0]


def test_ipv6_peers_count_per_64() -> None:
    a, _ = peer_key(("2001:db8:1:2::1", 443, 0, 0))
    b, _ = peer_key(("2001:db8:1:2:ffff:ffff:ffff:ffff", 443, 0, 0))
    c, _ = peer_key(("2001:db8:1:3::1", 443, 0, 0))
    assert a == b == "2001:db8:1:2::/64"
    assert c != a


def test_ipv4_mapped_counts_as_ipv4_and_zone_is_dropped() -> None:
    assert peer_key(("::ffff:192.0.2.7", 1, 0, 0))[0] == "192.0.2.7"
    key, ip = peer_key(("fe80::1%eth0", 1, 0, 2))
    assert key == "fe80::/64" and ip == ipaddress.ip_address("fe80::1")


def test_non_ip_peers_have_no_key() -> None:
    for peername in (None, "", "/run/s3shim.sock", (), ("not-an-ip", 1), (b"x", 1)):
        assert peer_key(peername) == (None, None)


def test_loopback_is_exempt_by_default_and_nothing_else() -> None:
    def exempt(addr: str) -> bool:
        _, ip = peer_key((addr, 1, 0, 0))
        return ip is not None and any(ip in net for net in DEFAULT_PER_PEER_EXEMPT)

    assert exempt("127.0.0.1") and exempt("127.0.0.2") and exempt("::1")
    assert exempt("::ffff:127.0.0.1")  # a dual-stack listener sees the sidecar this way
    assert not exempt("10.0.0.1") and not exempt("::2") and not exempt("192.0.2.1")


# --- Admission ---------------------------------------------------------------------------


def test_global_cap_then_per_peer_limit() -> None:
    adm = Admission(max_connections=5, max_per_peer=2)
    assert adm.admit("a") is None and adm.admit("a") is None
    assert adm.admit("a") == MAX_CONNECTIONS_PER_PEER
    assert adm.admit("a", exempt=True) is None  # exempt peers meet the global cap only
    assert adm.admit("b") is None and adm.admit(None) is None
    assert adm.open == 5
    assert adm.admit("c") == MAX_CONNECTIONS
    assert adm.admit("a", exempt=True) == MAX_CONNECTIONS
    adm.release("a")
    assert adm.admit("c") is None


def test_per_peer_zero_is_off() -> None:
    adm = Admission(max_connections=3, max_per_peer=0)
    assert [adm.admit("a") for _ in range(4)] == [None, None, None, MAX_CONNECTIONS]


ops = st.lists(
    st.tuples(st.booleans(), st.sampled_from(["a", "b", "c", None]), st.booleans()),
    max_size=200,
)


@given(ops=ops, cap=st.integers(1, 8), per_peer=st.integers(0, 4))
def test_admission_invariants(
    ops: list[tuple[bool, str | None, bool]], cap: int, per_peer: int
) -> None:
    adm = Admission(cap, per_peer)
    held: list[tuple[str | None, bool]] = []  # what is open, as the caller knows it
    for opening, key, exempt in ops:
        if opening:
            before = adm.open
            reason = adm.admit(key, exempt)
            non_exempt = sum(1 for k, e in held if k == key and k is not None)
            if reason is None:
                held.append((key, exempt))
            elif reason == MAX_CONNECTIONS:
                assert before >= cap
            else:
                assert reason == MAX_CONNECTIONS_PER_PEER and not exempt and key is not None
                assert 0 < per_peer <= non_exempt
        elif held:
            key, exempt = held.pop(0)
            adm.release(key)
        assert adm.open == len(held) <= cap
        for k in ("a", "b", "c"):
            assert adm.held_by(k) == sum(1 for kk, _ in held if kk == k)
    for key, _ in held:
        adm.release(key)
    assert adm.open == 0 and adm._per_peer == {}  # no entry outlives its connections


# --- HeadBudget --------------------------------------------------------------------------


def test_budget_cuts_the_largest_head_not_the_newcomer() -> None:
    budget = HeadBudget(limit=100)
    assert budget.charge("flood", 90) == []
    # A small head arriving while the flood holds the budget: the flood goes, not it.
    assert budget.charge("client", 20) == ["flood"]
    assert budget.total == 20 and budget.held_by("flood") == 0


def test_budget_cuts_the_pusher_on_a_tie_and_a_lone_oversize_head() -> None:
    budget = HeadBudget(limit=100)
    budget.charge("a", 50)
    assert budget.charge("b", 51) == ["b"]  # b is now the largest
    budget.release("a")
    assert budget.charge("c", 101) == ["c"]  # alone over the budget
    assert budget.total == 0


def test_released_heads_stop_counting() -> None:
    budget = HeadBudget(limit=10)
    budget.charge("a", 10)
    budget.release("a")
    budget.release("a")  # twice (request start, then close) is harmless
    assert budget.charge("b", 10) == [] and budget.total == 10


@given(
    st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(0, 60), st.booleans()), max_size=300),
    st.integers(1, 150),
)
def test_budget_invariants(steps: list[tuple[str, int, bool]], limit: int) -> None:
    budget = HeadBudget(limit)
    held: dict[str, int] = {}
    for conn, n, release in steps:
        if release:
            budget.release(conn)
            held.pop(conn, None)
            continue
        held[conn] = held.get(conn, 0) + n
        largest_before = sorted(held.values(), reverse=True)
        victims = budget.charge(conn, n)
        for v in victims:
            cut = held.pop(str(v))
            # Only ever the largest of what was left.
            assert cut == max([cut, *held.values()])
        assert len(set(victims)) == len(victims)
        assert budget.total == sum(held.values()) <= limit
        if not victims:
            assert sum(largest_before) <= limit
        for c in "abcdef":
            assert budget.held_by(c) == held.get(c, 0)
    assert budget.peak <= limit


# --- RefusalTally ------------------------------------------------------------------------


def test_first_refusal_logs_at_once_then_one_line_per_interval() -> None:
    tally = RefusalTally(interval=1.0)
    assert tally.refuse(MAX_CONNECTIONS, 10.0) == 1
    assert [tally.refuse(MAX_CONNECTIONS, 10.0 + i / 100) for i in range(1, 50)] == [None] * 49
    assert tally.next_due() == 11.0
    assert tally.due(10.9) == []
    assert tally.due(11.0) == [(MAX_CONNECTIONS, 49)]
    assert tally.due(20.0) == [] and tally.next_due() is None
    # Reasons are counted apart.
    assert tally.refuse(HEAD_BUDGET, 11.5) == 1
    assert tally.refuse(MAX_CONNECTIONS, 11.5) is None
    assert tally.due(12.0) == [(MAX_CONNECTIONS, 1)]


@given(
    st.lists(
        st.tuples(st.floats(0, 5, allow_nan=False), st.sampled_from(["x", "y"])), max_size=300
    ),
    st.lists(st.floats(0, 5, allow_nan=False), max_size=20),
)
def test_tally_counts_every_refusal_once_at_a_bounded_rate(
    events: list[tuple[float, str]], flushes: list[float]
) -> None:
    """Whatever the timing: the counts add up to the refusals, and lines of one reason are
    at least an interval apart, so there are at most span/interval + 1 of them."""
    tally = RefusalTally(interval=1.0)
    timeline = sorted(
        [(t, r) for t, r in events] + [(t, None) for t in flushes], key=lambda e: e[0]
    )
    lines: dict[str, list[tuple[float, int]]] = {"x": [], "y": []}
    for t, reason in timeline:
        if reason is None:
            for r, n in tally.due(t):
                lines[r].append((t, n))
            continue
        refused = tally.refuse(reason, t)
        if refused is not None:
            lines[reason].append((t, refused))
    end = 100.0
    for r, n in tally.due(end):
        lines[r].append((end, n))
    for reason in ("x", "y"):
        assert sum(n for _, n in lines[reason]) == sum(1 for _, r in events if r == reason)
        times = [t for t, _ in lines[reason]]
        assert all(b - a >= 1.0 for a, b in itertools.pairwise(times))
        assert all(n > 0 for _, n in lines[reason])


# --- PeakTracker -------------------------------------------------------------------------


def test_peak_tracker_fires_at_half_a_real_peak() -> None:
    peak = PeakTracker(min_peak=32)
    assert not any(peak.update(n) for n in range(1, 31))  # small churn never fires
    assert not any(peak.update(n) for n in range(30, -1, -1))
    assert not any(peak.update(n) for n in range(0, 401))
    fired = [n for n in range(399, -1, -1) if peak.update(n)]
    assert fired == [200, 100, 50, 25]  # each half of the peak since the last firing


# --- the raw 503 -------------------------------------------------------------------------


class _Sock:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(io.BytesIO(self._data))


def test_raw_slow_down_is_a_complete_s3_error_response() -> None:
    resp = error_response(
        "GET", errors.S3Error("SlowDown", "Please reduce your request rate.", 503), "RID", "/"
    )
    raw = _raw_response(resp)
    reply = http.client.HTTPResponse(_Sock(raw))  # type: ignore[arg-type]  # only makefile()
    reply.begin()
    body = reply.read()
    assert reply.status == 503
    assert reply.getheader("Connection") == "close"
    assert reply.getheader("Content-Length") == str(len(body))
    assert reply.getheader("x-amz-request-id") == "RID"
    assert b"<Code>SlowDown</Code>" in body and raw.endswith(body)
