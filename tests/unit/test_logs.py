"""s3shim.logs: one JSON object per line, batched per loop iteration, never reordered."""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog

from s3shim import logs

STAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


class Recording(io.StringIO):
    """A text file that counts its writes (one write = one syscall on a real stderr)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, s: str) -> int:
        self.writes += 1
        return super().write(s)

    def lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.getvalue().splitlines()]


@pytest.fixture
def out() -> Iterator[Recording]:
    saved = structlog.get_config()
    rec = Recording()
    logs.configure("info", "json", file=rec)
    try:
        yield rec
    finally:
        logs.flush()
        structlog.configure(**saved)


def test_a_line_outside_a_loop_is_written_at_once(out: Recording) -> None:
    logs.get().info("request", status=200, rewrites=["sse"])
    (line,) = out.lines()
    assert line["event"] == "request" and line["level"] == "info"
    assert line["status"] == 200 and line["rewrites"] == ["sse"]
    assert list(line)[-3:] == ["event", "level", "timestamp"]  # the order structlog gave
    assert STAMP.fullmatch(str(line["timestamp"]))


def test_the_timestamp_is_utc_now() -> None:
    event = logs._Stamp()(None, "info", {})
    when = datetime.strptime(event["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - when).total_seconds()) < 5
    again = logs._Stamp()(None, "info", {})  # a fresh cache gives the same shape
    assert STAMP.fullmatch(again["timestamp"])


def test_the_level_names_are_structlog_s() -> None:
    stamp = logs._Stamp()
    levels = {m: stamp(None, m, {})["level"] for m in ("info", "warn", "warning", "exception")}
    assert levels == {"info": "info", "warn": "warning", "warning": "warning", "exception": "error"}


def test_an_error_line_carries_its_traceback(out: Recording) -> None:
    try:
        raise ValueError("boom")
    except ValueError as exc:
        logs.get().error("request", exc_info=exc, status=500)
    (line,) = out.lines()
    assert line["level"] == "error" and line["status"] == 500
    assert "ValueError: boom" in str(line["exception"]) and "exc_info" not in line


def test_values_json_has_no_type_for_are_written_as_their_repr(out: Recording) -> None:
    logs.get().info("request", where=Path("/x"), keys={1: "one"})
    (line,) = out.lines()
    assert line["where"] == repr(Path("/x")) and line["keys"] == {"1": "one"}


async def test_lines_of_one_loop_iteration_are_one_write(out: Recording) -> None:
    log = logs.get()
    for i in range(5):
        log.info("request", n=i)
    assert out.writes == 0  # pending until the loop runs the flush
    await asyncio.sleep(0)
    assert out.writes == 1
    assert [line["n"] for line in out.lines()] == [0, 1, 2, 3, 4]
    log.info("request", n=5)
    await asyncio.sleep(0)
    assert out.writes == 2 and out.lines()[-1]["n"] == 5


async def test_a_warning_goes_out_at_once_after_what_is_pending(out: Recording) -> None:
    log = logs.get()
    log.info("request", n=1)
    log.warning("request", n=2)
    assert [line["n"] for line in out.lines()] == [1, 2]  # no loop iteration needed
    assert out.lines()[1]["level"] == "warning"
    try:
        raise ValueError("boom")
    except ValueError as exc:
        log.error("request", n=3, exc_info=exc)
    last = out.lines()[-1]
    assert last["level"] == "error" and "ValueError: boom" in str(last["exception"])


async def test_below_the_level_nothing_is_written() -> None:
    saved = structlog.get_config()
    rec = Recording()
    logs.configure("warning", "json", file=rec)
    try:
        logs.get().info("request", n=1)
        await asyncio.sleep(0)
        assert rec.getvalue() == ""
    finally:
        structlog.configure(**saved)


def test_flush_writes_what_a_stopped_loop_left_pending(out: Recording) -> None:
    async def log_and_stop() -> None:
        logs.get().info("request", n=1)  # the loop ends before its flush callback runs

    loop = asyncio.new_event_loop()
    loop.run_until_complete(log_and_stop())
    loop.close()
    logs.flush()  # what atexit does
    assert [line["n"] for line in out.lines()] == [1]


def test_a_closed_stderr_never_raises() -> None:
    saved = structlog.get_config()
    gone = io.StringIO()
    logs.configure("info", "json", file=gone)
    gone.close()
    try:
        logs.get().warning("request", n=1)  # written at once, into a closed file
    finally:
        structlog.configure(**saved)


def test_console_format_on_request() -> None:
    saved = structlog.get_config()
    rec = Recording()
    logs.configure("info", "console", file=rec)
    try:
        logs.get().info("request", status=200)
        text = rec.getvalue()
        assert "request" in text and "status" in text
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)
    finally:
        structlog.configure(**saved)
