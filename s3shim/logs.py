"""Logging setup: structlog, one JSON object per line (or readable console output on a TTY).

Every request writes a line, so the pipeline is kept short (measured with bench/perrequest.py:
38 µs a line with structlog's stock timestamper, contextvars merge and a flush per line; about
half that now): the timestamp is formatted once a second, and lines are written to stderr
once per event-loop iteration (one write for all the requests finished in it) instead of one
write each. Warnings and errors, and anything logged outside a running loop, are written at
once, after whatever is still pending, so nothing is reordered and nothing that explains a
crash waits in a buffer.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import time
from collections.abc import MutableMapping
from typing import Any, TextIO

import orjson
import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class _Stamp:
    """The level and structlog's ISO UTC timestamp (``2026-12-01T22:48:51.750474Z``, its
    date part cached a second), and a traceback formatted only when one is given: one
    processor where structlog's stock chain takes three (add_log_level, TimeStamper,
    format_exc_info), since every request runs it."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(
        self, logger: Any, name: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        event["level"] = _METHOD_LEVELS.get(name, name)
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        event["timestamp"] = f"{self._prefix}.{int((now - second) * 1e6):06d}Z"
        if "exc_info" in event:
            return structlog.processors.format_exc_info(logger, name, event)
        return event


# structlog's method names that are aliases of a level (as its add_log_level maps them).
_METHOD_LEVELS = {"warn": "warning", "exception": "error"}


def _render_json(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> str:
    # orjson renders a request's line in a tenth of the stdlib encoder's time (measured:
    # 4.4 -> 0.4 µs); a value JSON has no type for is written as its repr(), as structlog's
    # JSONRenderer does.
    return orjson.dumps(event, default=repr, option=orjson.OPT_NON_STR_KEYS).decode()


class LineSink:
    """Where rendered lines go: batched per loop iteration at info and below."""

    def __init__(self, file: TextIO) -> None:
        self._file = file
        self._pending: list[str] = []
        self._scheduled = False

    def batched(self, message: str) -> None:
        self._pending.append(message)
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop to flush on later: now
            self.flush()
            return
        self._scheduled = True
        loop.call_soon(self.flush)

    def at_once(self, message: str) -> None:
        self._pending.append(message)
        self.flush()

    def flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        lines = "\n".join(self._pending) + "\n"
        self._pending.clear()
        try:
            self._file.write(lines)
            self._file.flush()
        except (OSError, ValueError):  # stderr closed or gone: logging must never raise
            pass

    # The methods structlog calls, by level name.
    debug = info = msg = batched
    warning = warn = error = err = critical = fatal = exception = at_once


_sink: LineSink | None = None


def _flush_at_exit() -> None:
    if _sink is not None:
        _sink.flush()


atexit.register(_flush_at_exit)


def configure(level: str = "info", fmt: str = "auto", file: TextIO | None = None) -> None:
    global _sink
    out = sys.stderr if file is None else file
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    processors: list[Any] = (
        [
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.dev.ConsoleRenderer(),
        ]
        if use_console
        else [_Stamp(), _render_json]
    )
    if _sink is not None:
        _sink.flush()
    _sink = LineSink(out)
    sink = _sink
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=lambda *_args: sink,
        cache_logger_on_first_use=True,
    )


def flush() -> None:
    """Write what is pending now (before exiting, or before reading the log in a test)."""
    _flush_at_exit()


def get() -> Any:
    return structlog.get_logger("s3shim")
