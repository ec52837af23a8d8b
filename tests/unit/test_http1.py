"""s3shim.http1, the pure part of the store client: the request head, RFC 9112 6.3 framing of a
response and keep-alive, and the connection's state table.

The framing table is written from RFC 9112 6.3 and 9.3; llhttp (httptools, the parser
upstream.py feeds) is the oracle for keep-alive and for what is refused, over the table and
over generated heads. llhttp cannot be told a response answers HEAD, so HEAD rows are the
table's alone.
"""

from __future__ import annotations

import itertools
from typing import Any

import httptools  # type: ignore[import-untyped]  # ships no type information
import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from s3shim.http1 import (
    AFTER,
    TRANSITIONS,
    Body,
    Event,
    ProtocolError,
    State,
    next_state,
    request_head,
    response_framing,
)

# -- the request head -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "target", "headers", "wire", "length", "expects"),
    [
        ("GET", "/b/k", [], b"GET /b/k HTTP/1.1\r\nHost: h\r\n\r\n", None, False),
        (
            "PUT",
            "/b/a%2Fb?x=1&y",
            [("Content-Length", "3"), ("x-amz-meta-a", "v\u00e4"), ("x-amz-meta-a", "2")],
            b"PUT /b/a%2Fb?x=1&y HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
            b"x-amz-meta-a: v\xc3\xa4\r\nx-amz-meta-a: 2\r\n\r\n",
            3,
            False,
        ),
        (
            "PUT",
            "/b/k",
            [("content-length", "0"), ("Expect", "100-Continue")],
            b"PUT /b/k HTTP/1.1\r\nHost: h\r\ncontent-length: 0\r\nExpect: 100-Continue\r\n\r\n",
            0,
            True,
        ),
        (  # bytes that arrived undecodable, surrogateescaped, go out as they came
            "GET",
            "/b/k",
            [("x-amz-meta-raw", "\udcff\udcfe"), ("x-e", "")],
            b"GET /b/k HTTP/1.1\r\nHost: h\r\nx-amz-meta-raw: \xff\xfe\r\nx-e: \r\n\r\n",
            None,
            False,
        ),
    ],
    ids=["get", "put-repeats-utf8", "expect", "surrogates-and-empty"],
)
def test_a_head_is_encoded_as_given_with_host_first(
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    wire: bytes,
    length: int | None,
    expects: bool,
) -> None:
    assert request_head(method, target, "h", headers) == (wire, length, expects)


@pytest.mark.parametrize(
    ("method", "target", "host", "headers"),
    [
        ("GET", "/b/k", "h", [("x-a", "1\r\nx-injected: 2")]),
        ("GET", "/b/k", "h", [("x-a", "1\n")]),
        ("GET", "/b/k", "h", [("x-a", "\r")]),
        ("GET", "/b/k", "h", [("x\r\nx-b", "1")]),
        ("GET", "/b/k", "h\r\nx-b: 1", []),
        ("GET", "/b/k HTTP/1.1\r\nx-b: 1", "h", []),
        ("GET", "/b/k x", "h", []),
        ("GET", "/b/k\tx", "h", []),
        ("GET", "/b/k\x00", "h", []),
        ("GET", "http://other.example/b/k", "h", []),
        ("G ET", "/b/k", "h", []),
        ("GET", "/b/k", "h", [("x-amz-meta-a", "a\x00b")]),
        ("GET", "/b/k", "h", [("x-amz-meta-a", "a\x0bb")]),
        ("GET", "/b/k", "h", [("x-amz-meta-a", "a\x7fb")]),
        ("GET", "/b/k", "h", [("x-a: b", "c")]),
        ("GET", "/b/k", "h", [("", "c")]),
        ("GET", "/b/k", "h", [("Host", "other.example")]),
        ("PUT", "/b/k", "h", [("transfer-encoding", "chunked")]),
        ("PUT", "/b/k", "h", [("content-length", "0"), ("content-length", "3")]),
        ("PUT", "/b/k", "h", [("content-length", "-1")]),
        ("PUT", "/b/k", "h", [("content-length", "\u0663")]),  # a digit, not an ASCII one
        ("PUT", "/b/k", "h", [("Expect", "200-ok")]),
        ("PUT", "/b/k", "h", [("Expect", "100-continue"), ("expect", "100-continue")]),
    ],
    ids=[
        "crlf-value",
        "lf-value",
        "cr-value",
        "crlf-name",
        "crlf-host",
        "crlf-target",
        "space-target",
        "tab-target",
        "nul-target",
        "absolute-form",
        "space-method",
        "nul-value",
        "vt-value",
        "del-value",
        "colon-name",
        "empty-name",
        "host",
        "transfer-encoding",
        "two-content-lengths",
        "negative-length",
        "non-ascii-digit",
        "another-expectation",
        "two-expectations",
    ],
)
def test_a_head_a_parser_could_read_another_way_is_refused(
    method: str, target: str, host: str, headers: list[tuple[str, str]]
) -> None:
    with pytest.raises(ValueError):
        request_head(method, target, host, headers)


# -- a response's framing: RFC 9112 6.3 and 9.3 -------------------------------------------------

N, L, C, U = Body.NONE, Body.LENGTH, Body.CHUNKED, Body.UNTIL_CLOSE
FRAMING = [
    # (method, status, version, headers) -> (body, length, keep-alive)
    # 6.3 (1): HEAD, 1xx, 204, 304 have no body, whatever they declare.
    ("HEAD", 200, "1.1", [("Content-Length", "10")], (N, 0, True)),
    ("HEAD", 200, "1.1", [], (N, 0, True)),  # no length: still reusable (not until close)
    ("HEAD", 200, "1.1", [("Transfer-Encoding", "chunked")], (N, 0, True)),
    ("HEAD", 404, "1.0", [], (N, 0, False)),
    ("HEAD", 200, "1.1", [("Connection", "close")], (N, 0, False)),
    ("GET", 204, "1.1", [("Content-Length", "7")], (N, 0, True)),
    ("GET", 304, "1.1", [("Content-Length", "7")], (N, 0, True)),
    ("GET", 304, "1.1", [], (N, 0, True)),
    ("GET", 100, "1.1", [], (N, 0, True)),
    ("GET", 103, "1.1", [("Link", "</x>")], (N, 0, True)),
    # 6.3 (4): chunked as the last coding; any other last coding runs until close.
    ("GET", 200, "1.1", [("Transfer-Encoding", "chunked")], (C, 0, True)),
    ("GET", 200, "1.1", [("Transfer-Encoding", "gzip, chunked")], (C, 0, True)),
    (
        "GET",
        200,
        "1.1",
        [("Transfer-Encoding", "gzip"), ("Transfer-Encoding", "Chunked")],
        (C, 0, True),
    ),
    ("GET", 200, "1.1", [("Transfer-Encoding", "chunked, gzip")], (U, 0, False)),
    ("GET", 200, "1.1", [("Transfer-Encoding", "gzip")], (U, 0, False)),
    ("GET", 200, "1.1", [("Transfer-Encoding", "chunked"), ("Connection", "close")], (C, 0, False)),
    # 6.3 (6): Content-Length.
    ("GET", 200, "1.1", [("Content-Length", "0")], (L, 0, True)),
    ("PUT", 200, "1.1", [("Content-Length", "1234567890123")], (L, 1234567890123, True)),
    ("GET", 404, "1.1", [("Content-Length", "5")], (L, 5, True)),
    # 6.3 (8): neither: the body ends with the connection, which is then not reusable.
    ("GET", 200, "1.1", [], (U, 0, False)),
    ("DELETE", 500, "1.1", [("Connection", "keep-alive")], (U, 0, False)),
    # 9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive".
    ("GET", 200, "1.1", [("Connection", "close"), ("Content-Length", "2")], (L, 2, False)),
    ("GET", 200, "1.1", [("Connection", "x, Close"), ("Content-Length", "2")], (L, 2, False)),
    (
        "GET",
        200,
        "1.1",
        [("Connection", "x"), ("Connection", "close"), ("Content-Length", "2")],
        (L, 2, False),
    ),
    ("GET", 200, "1.1", [("Connection", "Keep-Alive"), ("Content-Length", "2")], (L, 2, True)),
    ("GET", 200, "1.0", [("Content-Length", "2")], (L, 2, False)),
    ("GET", 200, "1.0", [("Connection", "keep-alive"), ("Content-Length", "2")], (L, 2, True)),
    (
        "GET",
        200,
        "1.0",
        [("Connection", "keep-alive, close"), ("Content-Length", "2")],
        (L, 2, False),
    ),
    ("GET", 200, "1.0", [("Connection", "keep-alive")], (U, 0, False)),
    # Proxy-Connection is no HTTP/1.1 header, but llhttp honours it: its close is, not its
    # keep-alive.
    ("GET", 200, "1.1", [("Proxy-Connection", "close"), ("Content-Length", "2")], (L, 2, False)),
    (
        "GET",
        200,
        "1.0",
        [("Proxy-Connection", "keep-alive"), ("Content-Length", "2")],
        (L, 2, False),
    ),
]
REFUSED = [
    # 6.3 (3): both delimiters: a response that could be read two ways.
    ("GET", 200, "1.1", [("Transfer-Encoding", "chunked"), ("Content-Length", "5")]),
    ("GET", 200, "1.1", [("Content-Length", "5"), ("Transfer-Encoding", "gzip")]),
    ("HEAD", 200, "1.1", [("Transfer-Encoding", "chunked"), ("Content-Length", "5")]),
    # 6.3 (5): an invalid Content-Length.
    ("GET", 200, "1.1", [("Content-Length", "5"), ("Content-Length", "6")]),
    ("GET", 200, "1.1", [("Content-Length", "5"), ("Content-Length", "5")]),
    ("GET", 200, "1.1", [("Content-Length", "-5")]),
    ("GET", 200, "1.1", [("Content-Length", "5, 5")]),
]


def headers_of(pairs: list[tuple[str, str]]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


@pytest.mark.parametrize(("method", "status", "version", "headers", "expected"), FRAMING)
def test_the_framing_table(
    method: str,
    status: int,
    version: str,
    headers: list[tuple[str, str]],
    expected: tuple[Body, int, bool],
) -> None:
    assert response_framing(method, status, headers_of(headers), lambda: version) == expected


@pytest.mark.parametrize(("method", "status", "version", "headers"), REFUSED)
def test_a_response_that_could_be_read_two_ways_is_refused(
    method: str, status: int, version: str, headers: list[tuple[str, str]]
) -> None:
    with pytest.raises(ProtocolError):
        response_framing(method, status, headers_of(headers), lambda: version)


class _Seen:
    """httptools callbacks: the head as llhttp reads it."""

    def __init__(self) -> None:
        self.parser: Any = None
        self.keep_alive: bool | None = None

    def on_headers_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()


def llhttp_reading(status: int, version: str, headers: list[tuple[str, str]]) -> bool | None:
    """llhttp's keep-alive for this response head, or None when it refuses the head."""
    seen = _Seen()
    seen.parser = httptools.HttpResponseParser(seen)
    lines = [f"HTTP/{version} {status} X", *(f"{n}: {v}" for n, v in headers)]
    try:
        seen.parser.feed_data(("\r\n".join(lines) + "\r\n\r\n").encode())
    except httptools.HttpParserError:
        return None
    return seen.keep_alive


def ours(status: int, version: str, headers: list[tuple[str, str]]) -> bool | None:
    try:
        return response_framing("GET", status, headers_of(headers), lambda: version)[2]
    except ProtocolError:
        return None


def llhttp_deviates(version: str, headers: list[tuple[str, str]]) -> bool:
    """Where llhttp keeps alive what RFC 9112 9.3 closes: an HTTP/1.0 "keep-alive" beside a
    "close" (llhttp looks only for the keep-alive), and Proxy-Connection's keep-alive (no
    HTTP/1.1 header). s3shim closes there."""
    tokens = [
        t.strip().lower() for n, v in headers if n.lower() == "connection" for t in v.split(",")
    ]
    proxy = any(n.lower() == "proxy-connection" for n, _ in headers)
    return proxy or (version == "1.0" and "close" in tokens)


def assert_agrees_with_llhttp(status: int, version: str, headers: list[tuple[str, str]]) -> None:
    mine, theirs = ours(status, version, headers), llhttp_reading(status, version, headers)
    assert (mine is None) == (theirs is None)  # the same heads refused
    if llhttp_deviates(version, headers):
        assert not mine or theirs  # never kept alive where llhttp would not
    else:
        assert mine == theirs


@pytest.mark.parametrize(
    ("status", "version", "headers"),
    [(s, v, h) for m, s, v, h, _ in FRAMING if m != "HEAD" and s >= 200]
    + [(s, v, h) for m, s, v, h in REFUSED if m != "HEAD"],
)
def test_the_table_agrees_with_llhttp(
    status: int, version: str, headers: list[tuple[str, str]]
) -> None:
    assert_agrees_with_llhttp(status, version, headers)


def test_where_llhttp_deviates_from_rfc_9112_it_is_said() -> None:
    both = [("Connection", "keep-alive, close"), ("Content-Length", "2")]
    proxy = [("Proxy-Connection", "keep-alive"), ("Content-Length", "2")]
    for headers in (both, proxy):
        assert llhttp_reading(200, "1.0", headers) is True and ours(200, "1.0", headers) is False


_CONNECTION = st.lists(
    st.sampled_from(["close", "Close", "keep-alive", "Keep-Alive", "x", "upgrade-ish"]),
    min_size=1,
    max_size=3,
).map(", ".join)
HEADS = st.tuples(
    st.sampled_from([200, 201, 204, 206, 304, 404, 500, 503]),
    st.sampled_from(["1.0", "1.1"]),
    st.lists(
        st.one_of(
            st.tuples(
                st.sampled_from(["Connection", "connection", "Proxy-Connection"]), _CONNECTION
            ),
            st.tuples(st.just("Content-Length"), st.sampled_from(["0", "7", "12"])),
            st.tuples(
                st.just("Transfer-Encoding"), st.sampled_from(["chunked", "gzip", "gzip, chunked"])
            ),
            st.tuples(st.sampled_from(["ETag", "x-amz-request-id"]), st.just("v")),
        ),
        max_size=4,
    ),
)


@given(HEADS)
def test_keep_alive_and_refusals_agree_with_llhttp(
    head: tuple[int, str, list[tuple[str, str]]],
) -> None:
    assert_agrees_with_llhttp(*head)


# -- the connection's state ---------------------------------------------------------------------

S, E = State, Event
PATHS = [
    # (what happens, the events, the states they lead to)
    (
        "a GET",
        [E.SEND, E.RESPONSE_HEAD, E.RESPONSE_END, E.POOL],
        [S.AWAITING_HEAD, S.BODY, S.DONE, S.IDLE],
    ),
    (
        "a streamed PUT",
        [E.SEND_HEAD, E.BODY_SENT, E.RESPONSE_HEAD, E.RESPONSE_END, E.POOL],
        [S.SENDING, S.AWAITING_HEAD, S.BODY, S.DONE, S.IDLE],
    ),
    (
        "an early response, read whole before the body is out",
        [E.SEND_HEAD, E.RESPONSE_HEAD, E.RESPONSE_END, E.BODY_SENT, E.CLOSE],
        [S.SENDING, S.BODY, S.DONE, S.DONE, S.MUST_CLOSE],
    ),
    (
        "an early response while the body goes on",
        [E.SEND_HEAD, E.RESPONSE_HEAD, E.BODY_SENT, E.RESPONSE_END, E.CLOSE],
        [S.SENDING, S.BODY, S.BODY, S.DONE, S.MUST_CLOSE],
    ),
    ("the store closes before answering", [E.SEND, E.FAIL], [S.AWAITING_HEAD, S.MUST_CLOSE]),
    ("the body fails", [E.SEND_HEAD, E.FAIL, E.CLOSE], [S.SENDING, S.MUST_CLOSE, S.MUST_CLOSE]),
    ("a cut body", [E.SEND, E.RESPONSE_HEAD, E.FAIL], [S.AWAITING_HEAD, S.BODY, S.MUST_CLOSE]),
    (
        "a failure after the response's end",
        [E.SEND, E.RESPONSE_HEAD, E.RESPONSE_END, E.FAIL, E.CLOSE],
        [S.AWAITING_HEAD, S.BODY, S.DONE, S.DONE, S.MUST_CLOSE],
    ),
    ("the store closes an idle connection", [E.FAIL], [S.MUST_CLOSE]),
    (
        "bytes nobody asked for on an idle one",
        [E.SEND, E.RESPONSE_HEAD, E.RESPONSE_END, E.POOL, E.FAIL],
        [S.AWAITING_HEAD, S.BODY, S.DONE, S.IDLE, S.MUST_CLOSE],
    ),
]


@pytest.mark.parametrize(("what", "events", "states"), PATHS, ids=[p[0] for p in PATHS])
def test_an_exchange_moves_through_the_states(
    what: str, events: list[Event], states: list[State]
) -> None:
    state = State.IDLE
    seen = []
    for event in events:
        state = next_state(state, event)
        seen.append(state)
    assert seen == states


@pytest.mark.parametrize(
    ("state", "event"),
    [pair for pair in itertools.product(State, Event) if pair not in TRANSITIONS],
)
def test_every_other_event_is_refused(state: State, event: Event) -> None:
    with pytest.raises(ProtocolError, match=f"{event.name} while {state.name}"):
        next_state(state, event)


def test_a_connection_is_reused_only_from_done_and_never_after_must_close() -> None:
    to_idle = {pair for pair, after in TRANSITIONS.items() if after is State.IDLE}
    assert to_idle == {(State.DONE, Event.POOL)}
    assert {
        TRANSITIONS[State.MUST_CLOSE, e] for e in Event if (State.MUST_CLOSE, e) in TRANSITIONS
    } == {State.MUST_CLOSE}
    # A failure keeps a response that had ended (its pieces stay readable); any other, none.
    assert {s: TRANSITIONS[s, Event.FAIL] for s in State} == {
        s: State.DONE if s is State.DONE else State.MUST_CLOSE for s in State
    }
    assert all(TRANSITIONS[s, Event.CLOSE] is State.MUST_CLOSE for s in State)


def test_the_per_event_tables_are_the_transition_table() -> None:
    assert {(s, e): n for e, after in AFTER.items() for s, n in after.items()} == TRANSITIONS
    with pytest.raises(ProtocolError, match="POOL while BODY"):
        AFTER[Event.POOL][State.BODY]
