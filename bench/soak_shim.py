"""The soak's s3shim: one at a time, SIGTERMed mid-request and replaced as in a rolling
restart, with how each old one ended."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

from bench.procfs import alive
from testkit.backends import Store
from testkit.shim import Shim, run_shim


class ShimRunner:
    """s3shim via testkit.shim.run_shim, which can be SIGTERMed mid-request and replaced.

    As in a rolling restart, the replacement (on a new port, as a new pod would be) is started
    first; then requests that have not started yet go to it, and the old s3shim is SIGTERMed:
    it drains (its listener closes, requests in flight get the grace period) and exits.
    """

    def __init__(self, upstream: str, store: Store, log_dir: Path, env: dict[str, str]) -> None:
        self.upstream, self.store, self.log_dir, self.env = upstream, store, log_dir, env
        self._cond = threading.Condition()
        self._shim: Shim | None = None
        self._stack: contextlib.ExitStack | None = None
        self._draining: list[tuple[Shim, contextlib.ExitStack]] = []
        self.generation = 0  # SIGTERMs so far
        self.sigterm_lock = threading.Lock()  # one SIGTERM operation at a time
        self.drains: Counter[str] = Counter()
        self.slow_starts = 0  # s3shim starts that did not listen in time and were retried

    def __enter__(self) -> ShimRunner:
        self._shim, self._stack = self.spare()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            stacks = [s for _, s in self._draining] + ([self._stack] if self._stack else [])
            self._draining, self._stack, self._shim = [], None, None
        for stack in stacks:
            stack.close()

    def spare(self, attempts: int = 3) -> tuple[Shim, contextlib.ExitStack]:
        """A new s3shim, ready, not yet used (close the stack to stop it).

        run_shim waits 15 s for the port; on a loaded 2-core machine a start can take longer
        (measured: 3 s at load average 10, over 15 s at times at 15), so try again.
        """
        for attempt in range(attempts):
            stack = contextlib.ExitStack()
            try:
                shim = stack.enter_context(
                    run_shim(
                        self.upstream,
                        self.store.access_key,
                        self.store.secret_key,
                        self.log_dir,
                        env=self.env,
                    )
                )
            except RuntimeError:
                stack.close()
                if attempt == attempts - 1:
                    raise
                self.slow_starts += 1
                continue
            return shim, stack
        raise AssertionError("unreachable")

    def current(self, timeout: float = 120.0) -> tuple[int, Shim]:
        """(generation, the s3shim to use now), waiting while a replacement starts."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._shim is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError("no s3shim came up")
                self._cond.wait(left)
            return self.generation, self._shim

    def sigterm(self, spare: tuple[Shim, contextlib.ExitStack]) -> Shim:
        """Make ``spare`` the s3shim to use, then SIGTERM the one running (it drains)."""
        with self._cond:
            old, stack = self._shim, self._stack
            assert old is not None and stack is not None
            self.generation += 1
            self._shim, self._stack = spare
            self._draining.append((old, stack))
            self._cond.notify_all()
        os.kill(old.pid, signal.SIGTERM)
        return old

    def reap(self, old: Shim, timeout: float) -> None:
        """Wait (bounded) for a SIGTERMed s3shim to exit by itself, then note how it ended."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and alive(old.pid):
            time.sleep(0.05)
        exited = not alive(old.pid)
        with self._cond:
            stacks = [s for shim, s in self._draining if shim is old]
            self._draining = [(shim, s) for shim, s in self._draining if shim is not old]
        for stack in stacks:
            stack.close()  # reaps it (or, had it not exited, stops it)
        log = old.log_text()
        if not exited:
            self.drains["did not exit in time"] += 1
        elif '"grace_period_over"' in log:
            self.drains["grace period over (requests cut)"] += 1
        elif '"stopped"' in log:
            self.drains["drained and stopped"] += 1
        else:
            self.drains["exited without 'stopped'"] += 1
