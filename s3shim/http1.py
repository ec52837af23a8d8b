"""HTTP/1.1 to the store, without I/O: the request head, a response's framing, a connection's state.

``upstream.py`` moves the bytes and runs the timers; what the bytes mean is decided here:

* :func:`request_head` encodes a request head exactly as given (the target is what SigV4
  signed, values are encoded as the signer hashed them: UTF-8, surrogateescape) and refuses
  anything a store's parser could read another way: CR or LF outside line ends, other
  controls, a header name that is not a token, a target not in origin-form, a second
  Content-Length, a Transfer-Encoding or Host of the caller's;
* :func:`response_framing` is RFC 9112 6.3 for a response: how its body is delimited (none,
  Content-Length, chunked, the end of the connection) and whether the connection can carry
  another request after it (RFC 9112 9.3);
* :class:`State` and :data:`TRANSITIONS` are a connection's one state, h11's way: one value,
  moved only by the events in the table. A connection is used again only when its state is
  ``DONE`` and the response kept it alive; any doubt about the framing ends keep-alive.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Sequence

from multidict import MultiMapping

# Controls a store's parser may end a line or a field at (CR and LF are counted apart).
_CTL = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
_TARGET_BAD = re.compile(r"[\x00-\x20\x7f]")
_TOKENS = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+(?::[!#$%&'*+.^_`|~0-9A-Za-z-]+)*")  # ':'-joined


class ProtocolError(ValueError):
    """A message or an event the protocol does not allow at this point."""


# -- the request head -------------------------------------------------------------------------


def request_head(
    method: str, target: str, host: str, headers: Sequence[tuple[str, str]]
) -> tuple[bytes, int | None, bool]:
    """The encoded head (``Host`` first, then ``headers`` unchanged), its Content-Length, and
    whether it expects 100 Continue. Raises ValueError for a head a parser could split."""
    parts = [method, " ", target, " HTTP/1.1\r\nHost: ", host, "\r\n"]
    length: str | None = None
    expects = False
    for name, value in headers:
        parts += (name, ": ", value, "\r\n")
        if len(name) in (4, 6, 14, 17):
            lname = name.lower()
            if lname == "content-length":
                if length is not None:
                    raise ValueError("two Content-Length headers")
                length = value
            elif lname == "expect":
                if expects or value.lower() != "100-continue":
                    raise ValueError("Expect other than one 100-continue")
                expects = True
            elif lname in ("host", "transfer-encoding"):
                raise ValueError(f"{name} is the client's to set")
    # The method and every name as tokens, in one match: parts holds each name at 6 + 4i.
    if not _TOKENS.fullmatch(":".join([method, *parts[6::4]])):
        raise ValueError("a method or a header name that is not a token")
    parts.append("\r\n")
    # Checked as bytes (UTF-8 puts no byte below 0x80 inside a character, surrogateescape
    # none either): C scans, where a regex over the text costs ~10 ns a character.
    data = "".join(parts).encode("utf-8", "surrogateescape")
    # One CR LF per line and none elsewhere: a CR or LF inside a name, a value, the
    # method, the target or Host would let the caller's data split the request.
    lines = len(headers) + 3
    if data.count(b"\n") != lines or data.count(b"\r") != lines:
        raise ValueError("CR or LF in the request line or a header")
    if _TARGET_BAD.search(target) or target[:1] != "/":
        raise ValueError("a space in the target, or a target not in origin-form")
    if len(data.translate(None, _CTL)) != len(data):
        raise ValueError("a control character in the request line or a header")
    if length is None:
        return data, None, expects
    if not (length.isascii() and length.isdigit()):
        raise ValueError("Content-Length is not a number")
    return data, int(length), expects


# -- a response's framing ---------------------------------------------------------------------


class Body(enum.Enum):
    """How a response's body is delimited."""

    NONE = "none"  # HEAD, 1xx, 204, 304: no body, whatever the headers say
    LENGTH = "length"  # Content-Length bytes
    CHUNKED = "chunked"  # chunked is the last transfer coding
    UNTIL_CLOSE = "until-close"  # no length: the body ends with the connection


NO_BODY, LENGTH, CHUNKED, UNTIL_CLOSE = Body

# Answers that never have a body, whatever their headers say (RFC 9110 15.3.5, 15.4.5).
NO_BODY_STATUSES = (204, 304)


def _tokens(values: list[str]) -> list[str]:
    return [t.strip(" \t").lower() for v in values for t in v.split(",")]


def _keeps_alive(connection: list[str], version: Callable[[], str]) -> bool:
    tokens = _tokens(connection)
    return "close" not in tokens and ("keep-alive" in tokens or version() == "1.1")


def _length_refused(lengths: list[str], headers: MultiMapping[str]) -> str:
    if "transfer-encoding" in headers:
        return "both Transfer-Encoding and Content-Length"
    if len(lengths) > 1:
        return "more than one Content-Length"
    return "Content-Length is not a number"


# The spellings stores give a lone keep-alive (RGW, nginx): no token parsing for them.
_KEEP_ALIVE = frozenset({"keep-alive", "Keep-Alive"})


def response_framing(
    method: str, status: int, headers: MultiMapping[str], version: Callable[[], str]
) -> tuple[Body, int, bool]:
    """RFC 9112 6.3 and 9.3 for a response to ``method``: its body's delimiter, its length
    (LENGTH; else 0), and whether the connection may carry another request after it.

    ``version()`` gives the response's ("1.1", "1.0"), asked only when the Connection header
    leaves keep-alive open (llhttp formats it afresh at each call). A "close" ends it whatever the
    version (where llhttp keeps an HTTP/1.0 "keep-alive, close" alive). Both
    Transfer-Encoding and Content-Length, several Content-Lengths or one that is not a number
    are refused (ProtocolError), whether or not the answer has a body, as llhttp does: a
    response that could be read two ways. A 2xx to CONNECT (a tunnel) is not handled: s3shim
    never sends one. (Written for the hot path: once per response.)
    """
    connection = headers.getall("connection", ())
    if not connection:
        keep_alive = version() == "1.1"
    elif len(connection) == 1 and connection[0] in _KEEP_ALIVE:
        keep_alive = True
    else:
        keep_alive = _keeps_alive(connection, version)
    if keep_alive and "proxy-connection" in headers:
        # Not HTTP/1.1's, but llhttp honours its close: never keep what the store may close.
        keep_alive = "close" not in _tokens(headers.getall("proxy-connection"))
    lengths = headers.getall("content-length", ())
    if lengths:
        value = lengths[0]
        if len(lengths) > 1 or "transfer-encoding" in headers or not value.isdigit():
            raise ProtocolError(_length_refused(lengths, headers))
        if not value.isascii():
            raise ProtocolError("Content-Length is not a number")
        if method == "HEAD" or status < 200 or status in NO_BODY_STATUSES:
            return NO_BODY, 0, keep_alive
        return LENGTH, int(value), keep_alive
    if method == "HEAD" or status < 200 or status in NO_BODY_STATUSES:
        return NO_BODY, 0, keep_alive
    codings = headers.getall("transfer-encoding", ())
    if codings and ", ".join(codings).rpartition(",")[2].strip(" \t").lower() == "chunked":
        return CHUNKED, 0, keep_alive
    return UNTIL_CLOSE, 0, False  # another last coding, or no length: read until close


# -- a connection's state ---------------------------------------------------------------------


class State(enum.IntEnum):
    """Where a connection is in its exchange. (IntEnum: looked up in TRANSITIONS with no
    Python call on the hot path.)"""

    IDLE = 1  # no exchange: new, or back in the pool
    SENDING = 2  # the head is out, the body is still going out (or held for 100 Continue)
    AWAITING_HEAD = 3  # the whole request is out; 1xx answers are skipped meanwhile
    BODY = 4  # the final response's head is in, its body arriving
    DONE = 5  # the response ended as framed (its pieces may still be being taken)
    MUST_CLOSE = 6  # failed, cut, aborted, released unreused or closed: never used again


# The members as module names: in Python 3.11 each State.X costs a descriptor call (~0.1 µs),
# and the hot path names them a dozen times a request.
IDLE, SENDING, AWAITING_HEAD, BODY, DONE, MUST_CLOSE = State


class Event(enum.IntEnum):
    """What moves a connection from one state to the next."""

    SEND = 1  # the request handed over whole: the head (and a body) in one write
    SEND_HEAD = 2  # the head handed over; a body follows, streamed or held
    BODY_SENT = 3  # the body's last byte handed over
    RESPONSE_HEAD = 4  # the final response's head parsed (1xx answers are not events)
    RESPONSE_END = 5  # the response's body ended as its framing said
    FAIL = 6  # an error, a timeout, a cut, the store's close, an abort
    POOL = 7  # released whole and kept alive: ready for the next request
    CLOSE = 8  # released and not kept, or closed: nothing more goes over it


SEND, SEND_HEAD, BODY_SENT, RESPONSE_HEAD, RESPONSE_END, FAIL, POOL, CLOSE = Event


class _Table(dict[tuple[State, Event], State]):
    def __missing__(self, key: tuple[State, Event]) -> State:
        state, event = key
        raise ProtocolError(f"{event.name} while {state.name}")


_ANY = tuple(State)
TRANSITIONS: dict[tuple[State, Event], State] = _Table(
    {
        (State.IDLE, Event.SEND): State.AWAITING_HEAD,
        (State.IDLE, Event.SEND_HEAD): State.SENDING,
        (State.SENDING, Event.BODY_SENT): State.AWAITING_HEAD,
        # An early response (its head came while the body was going out) is read on while
        # the rest of the body goes: its connection's keep-alive ended with the head.
        (State.BODY, Event.BODY_SENT): State.BODY,
        (State.DONE, Event.BODY_SENT): State.DONE,
        (State.SENDING, Event.RESPONSE_HEAD): State.BODY,
        (State.AWAITING_HEAD, Event.RESPONSE_HEAD): State.BODY,
        (State.BODY, Event.RESPONSE_END): State.DONE,
        # A failure once the response ended leaves the response as it was: only keep-alive ends.
        **{(s, Event.FAIL): State.DONE if s is State.DONE else State.MUST_CLOSE for s in _ANY},
        (State.DONE, Event.POOL): State.IDLE,
        **{(s, Event.CLOSE): State.MUST_CLOSE for s in _ANY},
    }
)
"""Every allowed (state, event) and the state it leads to; any other pair is a
ProtocolError (a bug in the caller, never the store's doing)."""


class _After(dict[State, State]):
    """The states one event leads to, by the state it happens in: a lookup with no tuple
    to build, for the hot path."""

    __slots__ = ("event",)

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event

    def __missing__(self, state: State) -> State:
        raise ProtocolError(f"{self.event.name} while {state.name}")


AFTER = {event: _After(event) for event in Event}
for (_state, _event), _next in TRANSITIONS.items():
    AFTER[_event][_state] = _next
(
    AFTER_SEND,
    AFTER_SEND_HEAD,
    AFTER_BODY_SENT,
    AFTER_RESPONSE_HEAD,
    AFTER_RESPONSE_END,
    AFTER_FAIL,
    AFTER_POOL,
    AFTER_CLOSE,
) = (AFTER[event] for event in Event)


def next_state(state: State, event: Event) -> State:
    """The state ``event`` leads to from ``state`` (ProtocolError if it is not allowed)."""
    return TRANSITIONS[state, event]


# Before the final response's head: what arrives is a head (1xx ones skipped).
BEFORE_HEAD = (SENDING, AWAITING_HEAD)
