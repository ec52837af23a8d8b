"""A fault-injecting TCP relay between s3shim and its store (asyncio, 127.0.0.1 only).

s3shim is pointed at the relay instead of the store; the relay forwards every byte both ways
and, when told to, breaks one connection on purpose:

* **reset** it (RST to both peers, ``SO_LINGER`` 0) after exactly K more bytes in one
  direction: ``up`` (s3shim -> store, the request) or ``down`` (store -> s3shim, the answer);
* **delay** it: forward at most ``piece`` bytes at a time, sleeping ``delay`` seconds before
  each, for the next ``delay_bytes`` bytes (a slow store, both directions).

A :class:`Fault` picks its connection either by its index (the N-th connection accepted) or,
per operation, by a byte pattern in what s3shim sends (an object key that only one operation
uses): s3shim pools its store connections, so "the connection of this request" is the only
stable handle an operation has. A fault then lasts for that one exchange: an ``up`` fault
expires when the store starts answering, a ``down`` or delay fault when the next request
starts (HTTP/1.1 without pipelining), so a fault never leaks into another operation that
happens to reuse the connection.

The decisions are a pure state machine (:class:`Connection`: bytes in, :data:`Action` values
out); :class:`FaultRelay` only executes them. :func:`running_relay` runs a relay on its own
event loop in a background thread, for blocking callers.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import socket
import struct
import sys
import termios
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

Direction = Literal["up", "down"]
READ_SIZE = 256 * 1024


@dataclass
class Fault:
    """One fault to inject; its counters say whether (and how) it was actually applied."""

    match: bytes | None = None  # arm on the connection whose up bytes contain this
    connection: int | None = None  # or: arm on the N-th accepted connection (1-based)
    reset_after: int | None = None  # RST after this many more bytes in `direction`
    direction: Direction = "up"
    delay: float = 0.0  # seconds slept before each forwarded piece
    delay_bytes: int = 0  # how many bytes (both directions together) are delayed
    piece: int = 64 * 1024  # largest piece forwarded at once while delaying
    times: int = 1  # how many connections it may arm on
    # Outcome, updated by the relay (read them after the operation).
    armed: int = 0  # connections it armed on
    resets: int = 0  # connections it reset
    delayed_bytes: int = 0  # bytes it forwarded late

    def __post_init__(self) -> None:
        if (self.match is None) == (self.connection is None):
            raise ValueError("a fault needs exactly one of match= and connection=")
        if self.match is not None and not self.match:
            raise ValueError("match must not be empty")
        if self.reset_after is None and self.delay <= 0:
            raise ValueError("a fault needs reset_after= or delay=")
        if min(self.delay, self.delay_bytes, self.times) < 0 or self.piece <= 0:
            raise ValueError("delay, delay_bytes and times must be >= 0, piece > 0")
        if self.reset_after is not None and self.reset_after < 0:
            raise ValueError("reset_after must be >= 0")

    @property
    def fired(self) -> bool:
        """True once the fault changed something: a reset, or at least one late byte."""
        return self.resets > 0 or self.delayed_bytes > 0


@dataclass(frozen=True, slots=True)
class Forward:
    data: bytes


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Reset:
    pass


Action = Forward | Sleep | Reset


class Faults:
    """The faults waiting to arm, shared by every connection of a relay (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_match: list[Fault] = []
        self._by_connection: dict[int, Fault] = {}

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            if fault.connection is not None:
                self._by_connection[fault.connection] = fault
            else:
                self._by_match.append(fault)
        return fault

    def remove(self, fault: Fault) -> None:
        """Forget a fault (armed or not); connections it armed on keep it until it expires."""
        with self._lock:
            if fault in self._by_match:
                self._by_match.remove(fault)
            for n, f in list(self._by_connection.items()):
                if f is fault:
                    del self._by_connection[n]

    def longest_match(self) -> int:
        with self._lock:
            return max((len(f.match or b"") for f in self._by_match), default=0)

    def for_connection(self, index: int) -> Fault | None:
        with self._lock:
            fault = self._by_connection.pop(index, None)
            return self._take(fault)

    def matching(self, window: bytes) -> tuple[Fault, int] | None:
        """The pending fault whose pattern occurs first in window, and where it ends."""
        with self._lock:
            best: tuple[Fault, int] | None = None
            for fault in self._by_match:
                assert fault.match is not None
                at = window.find(fault.match)
                if at >= 0 and (best is None or at + len(fault.match) < best[1]):
                    best = (fault, at + len(fault.match))
            if best is not None:
                self._take(best[0])
            return best

    def _take(self, fault: Fault | None) -> Fault | None:
        """Count one arming (lock held); a fault that used up its times leaves the table."""
        if fault is None:
            return None
        fault.armed += 1
        if fault.armed >= fault.times:
            if fault in self._by_match:
                self._by_match.remove(fault)
            for n, f in list(self._by_connection.items()):
                if f is fault:
                    del self._by_connection[n]
        return fault


@dataclass
class _Armed:
    fault: Fault
    counted: int = 0  # bytes seen in the fault's reset direction since arming
    delay_left: int = 0
    seen_down: bool = False  # the store has started answering this exchange


@dataclass
class Connection:
    """What to do with each piece of one relayed connection. Pure: no I/O, no clock."""

    faults: Faults
    index: int  # 1-based, in accept order
    _armed: _Armed | None = None
    _tail: bytes = b""  # last up bytes, to find a pattern split across reads
    _dead: bool = False

    def __post_init__(self) -> None:
        fault = self.faults.for_connection(self.index)
        if fault is not None:
            self._arm(fault)

    @property
    def dead(self) -> bool:
        return self._dead

    def _arm(self, fault: Fault) -> None:
        self._armed = _Armed(fault, delay_left=fault.delay_bytes if fault.delay > 0 else 0)

    def up(self, data: bytes) -> list[Action]:
        """s3shim sent ``data`` towards the store."""
        return self._feed("up", data)

    def down(self, data: bytes) -> list[Action]:
        """The store sent ``data`` towards s3shim."""
        return self._feed("down", data)

    def _feed(self, direction: Direction, data: bytes) -> list[Action]:
        if self._dead or not data:
            return []
        out: list[Action] = []
        armed = self._armed
        if armed is not None:
            if direction == "down":
                armed.seen_down = True
            elif armed.seen_down:
                # A new request on a reused connection: this exchange is over.
                self._armed = armed = None
            if (
                armed is not None
                and armed.fault.direction == "up"
                and armed.seen_down
                and armed.delay_left <= 0
            ):
                # The store answers: an up reset that has not fired no longer can.
                self._armed = armed = None
        if armed is None and direction == "up":
            return self._unarmed_up(data)
        if armed is None:
            return [Forward(data)]
        self._apply(armed, direction, data, out)
        return out

    def _unarmed_up(self, data: bytes) -> list[Action]:
        longest = self.faults.longest_match()
        if longest == 0:
            self._tail = b""
            return [Forward(data)]
        window = self._tail + data
        found = self.faults.matching(window)
        keep = longest - 1
        if found is None:
            self._tail = window[-keep:] if keep else b""
            return [Forward(data)]
        fault, end = found
        # Bytes up to the end of the pattern pass untouched; the fault counts from there.
        split = max(0, end - len(self._tail))
        self._tail = b""
        before, after = data[:split], data[split:]
        self._arm(fault)
        out: list[Action] = [Forward(before)] if before else []
        assert self._armed is not None
        if after:
            self._apply(self._armed, "up", after, out)
        return out

    def _apply(self, armed: _Armed, direction: Direction, data: bytes, out: list[Action]) -> None:
        fault = armed.fault
        resets_here = (
            fault.reset_after is not None
            and fault.direction == direction
            and not (direction == "up" and armed.seen_down)
        )
        if resets_here:
            assert fault.reset_after is not None
            room = fault.reset_after - armed.counted
            if len(data) > room:
                self._emit(armed, data[:room], out)
                fault.resets += 1
                self._dead = True
                self._armed = None
                out.append(Reset())
                return
            armed.counted += len(data)
        self._emit(armed, data, out)

    @staticmethod
    def _emit(armed: _Armed, data: bytes, out: list[Action]) -> None:
        fault = armed.fault
        i = 0
        while i < len(data) and armed.delay_left > 0:
            n = min(fault.piece, armed.delay_left, len(data) - i)
            out.append(Sleep(fault.delay))
            out.append(Forward(data[i : i + n]))
            armed.delay_left -= n
            fault.delayed_bytes += n
            i += n
        if i < len(data):
            out.append(Forward(data[i:]))


async def _sent(writer: asyncio.StreamWriter, limit: float = 2.0) -> None:
    """Wait (at most ``limit`` s) until the peer acknowledged every byte written so far."""
    await writer.drain()
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    buf = bytearray(4)
    while loop.time() < deadline:
        try:
            fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, buf)
        except OSError:
            return
        if int.from_bytes(buf, sys.byteorder) == 0:
            return
        await asyncio.sleep(0.001)


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST: the peer sees 'connection reset', not a clean end."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultRelay:
    """An asyncio TCP relay on 127.0.0.1 to ``upstream_host:upstream_port``."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.faults = Faults()
        self.port = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        conn = Connection(self.faults, self.accepted)
        try:
            s_reader, s_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            _rst(c_writer)
            self._tasks.discard(task)
            return
        try:
            up = asyncio.ensure_future(
                self._pump(c_reader, s_writer, conn.up, (c_writer, s_writer))
            )
            down = asyncio.ensure_future(
                self._pump(s_reader, c_writer, conn.down, (c_writer, s_writer))
            )
            _, pending = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
            if conn.dead:
                for t in pending:
                    t.cancel()
            else:
                # One side ended cleanly: let the other finish what it is sending.
                await asyncio.wait(pending)
        except asyncio.CancelledError:
            _rst(c_writer)
            _rst(s_writer)
            raise
        finally:
            for w in (c_writer, s_writer):
                if not w.transport.is_closing():
                    w.transport.close()
            self._tasks.discard(task)

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        decide: Callable[[bytes], list[Action]],
        both: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        try:
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    if writer.can_write_eof():
                        with contextlib.suppress(OSError):
                            writer.write_eof()
                    return
                for action in decide(data):
                    if isinstance(action, Forward):
                        writer.write(action.data)
                        await writer.drain()
                    elif isinstance(action, Sleep):
                        await asyncio.sleep(action.seconds)
                    else:
                        # What was forwarded before the reset must reach the peer first:
                        # an RST discards whatever the kernel has not yet sent.
                        await _sent(writer)
                        for w in both:
                            _rst(w)
                        return
        except (ConnectionError, OSError):
            for w in both:
                _rst(w)


@dataclass
class RunningRelay:
    """A relay served by a background thread; add faults from any thread."""

    relay: FaultRelay
    loop: asyncio.AbstractEventLoop

    @property
    def port(self) -> int:
        return self.relay.port

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.relay.port}"

    def add(self, fault: Fault) -> Fault:
        return self.relay.faults.add(fault)

    def remove(self, fault: Fault) -> None:
        self.relay.faults.remove(fault)


@contextlib.contextmanager
def running_relay(upstream_host: str, upstream_port: int) -> Iterator[RunningRelay]:
    """Run a :class:`FaultRelay` on its own event loop in a daemon thread."""
    loop = asyncio.new_event_loop()
    relay = FaultRelay(upstream_host, upstream_port)
    ready = threading.Event()

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(relay.start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(relay.close())
        loop.close()

    thread = threading.Thread(target=main, name="faultrelay", daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the fault relay did not start within 10 s")
    try:
        yield RunningRelay(relay, loop)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
