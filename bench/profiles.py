"""py-spy on s3shim during a case, and py-spy's collapsed stacks read back."""

from __future__ import annotations

import collections
import contextlib
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.common import log
from bench.stack import Stack


def py_spy_profiler(
    stack: Stack, out_dir: Path, py_spy: str
) -> Callable[[str], contextlib.AbstractContextManager[None]]:
    @contextlib.contextmanager
    def profile(case: str) -> Iterator[None]:
        if not case.endswith("-s3shim") or stack.shim is None:
            yield
            return
        raw = out_dir / f"profile-{case}.txt"
        proc = subprocess.Popen(
            [
                *(py_spy, "record", "--pid", str(stack.shim.pid), "--rate", "250"),
                *("--format", "raw", "--nonblocking", "--output", str(raw)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # let py-spy attach
        try:
            yield
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log(f"profile of {case}: {raw}")

    return profile


def read_collapsed(raw: Path) -> Iterator[tuple[list[str], int]]:
    """(frames outermost first, samples) per stack of py-spy's raw (collapsed) output, without
    its process and thread pseudo-frames."""
    for line in raw.read_text().splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        frames = [f for f in stack_text.split(";") if not f.startswith(("process ", "thread "))]
        if frames:
            yield frames, int(count_text)


def without_line(frame: str) -> str:
    """``fn (file.py:12)`` -> ``fn (file.py)``: one name per function, whatever the line."""
    return re.sub(r":\d+\)$", ")", frame)


def summarize_profile(raw: Path, top: int = 15) -> dict[str, Any]:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    self_counts: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for frames, count in read_collapsed(raw):
        total += count
        self_counts[frames[-1]] += count  # with its line number
        for f in {without_line(f) for f in frames}:
            incl[f] += count
    pct = 100.0 / total if total else 0.0
    return {
        "samples": total,
        "self": [(f, round(c * pct, 1)) for f, c in self_counts.most_common(top)],
        "inclusive": [(f, round(c * pct, 1)) for f, c in incl.most_common(top + 10)],
    }
