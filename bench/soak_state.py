"""The soak's settings, per-operation outcome and summary, and what every operation shares:
the clients, the store checks, the relay's faults and the keys' record."""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.faultrelay import Fault, RunningRelay
from bench.soak_plan import FAULT_KINDS, KIB, MIB, Plan
from bench.soak_shim import ShimRunner
from bench.soak_verdicts import DEFECTS, Digest
from bench.soak_wire import Answer
from testkit.backends import Store
from testkit.backends import s3_client as store_client
from testkit.shim import Shim
from testkit.shim import s3_client as shim_client


@dataclass
class Config:
    ops: int = 1000
    seed: int = 1
    workers: int = 8
    max_size: int = 20 * MIB
    deadline: float = 3600.0
    faults: tuple[str, ...] = FAULT_KINDS
    grace: float = 10.0  # S3SHIM_SHUTDOWN_GRACE_SECONDS
    gc_every: int = 768 * MIB  # run RGW's garbage collection after this many bytes written
    only: tuple[int, ...] = ()  # run just these operation indices (reproduce one)
    progress: bool = True


@dataclass
class Outcome:
    index: int
    kind: str
    fault: str
    framing: str
    size: int
    overwrite: bool
    cls: str
    detail: str = ""
    status: int = 0
    code: str | None = None
    fired: bool = False
    disturbed: bool = False
    variant: str = ""
    seconds: float = 0.0
    # Every request the operation made and every check of the store, in order, with the
    # wall-clock time and the x-amz-request-id (s3shim's log line, RGW's access log).
    trail: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        plan: Plan,
        verdict: tuple[str, str],
        ans: Answer | None = None,
        fired: bool = False,
        disturbed: bool = False,
        variant: str = "",
    ) -> Outcome:
        """``plan``'s outcome: its verdict (class, detail) and the answer that decided it."""
        ans = Answer(0) if ans is None else ans
        return cls(
            plan.index,
            plan.kind,
            plan.fault,
            plan.framing,
            plan.size,
            plan.overwrite,
            *verdict,
            ans.status,
            ans.code,
            fired,
            disturbed,
            variant,
        )


@dataclass
class Summary:
    config: dict[str, Any]
    planned: int
    completed: int
    seconds: float
    classes: dict[str, int]
    faults: dict[str, dict[str, Any]]
    kinds: dict[str, int]
    framings: dict[str, int]
    drains: dict[str, int]
    restarts: int
    findings: list[dict[str, Any]]
    stray: list[dict[str, Any]]
    stopped_by_deadline: bool
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    slow_starts: int = 0

    def exit_status(self) -> int:
        if any(self.classes.get(c, 0) for c in DEFECTS):
            return 1
        if self.classes.get("WRONG-STATUS", 0):
            return 3
        if self.classes.get("ERROR", 0) or self.completed < self.planned:
            return 4
        return 0

    def fired(self, kind: str) -> int:
        return int(self.faults.get(kind, {}).get("fired", 0))


class SoakBase:
    """One soak run's state and what every operation uses (clients, store checks, the relay's
    faults); bench/soak.py's Soak adds the operations (soak_writes, soak_reads) and the run."""

    def __init__(self, store: Store, cfg: Config, workdir: Path, rgw_state: Path | None) -> None:
        self.store, self.cfg, self.workdir, self.rgw_state = store, cfg, workdir, rgw_state
        self.bucket = f"soak-{uuid.uuid4().hex[:12]}"
        self.lock = threading.Lock()
        self.outcomes: list[Outcome] = []
        self.next_index = 0
        self.local = threading.local()
        self.client_lock = threading.Lock()  # boto3 client creation is not thread-safe
        self.written = 0
        self.gc_wanted = threading.Event()
        self.stop = threading.Event()
        self.relay: RunningRelay
        self.runner: ShimRunner
        self.started = time.monotonic()
        self.indices = list(cfg.only) if cfg.only else list(range(cfg.ops))
        # Per key: the bytes its operation sent (None for reads) and the good version it held
        # before (overwrites, and the objects reads read), for the end-of-run sweep.
        self.sent: dict[str, tuple[Digest | None, Digest | None]] = {}
        # The keys whose operation's check found its new bytes (and then removed them).
        self.seen_new: set[str] = set()

    # -- clients ----------------------------------------------------------------------
    def direct(self) -> Any:
        c = getattr(self.local, "direct", None)
        if c is None:
            from botocore.config import Config as BotoConfig

            with self.client_lock:
                c = store_client(self.store, BotoConfig(retries={"max_attempts": 5}))
            self.local.direct = c
        return c

    def shim_boto(self, gen: int, shim: Shim) -> Any:
        cache: dict[tuple[int, str], Any] = getattr(self.local, "shims", None) or {}
        self.local.shims = cache
        key = (gen, shim.endpoint)
        if key not in cache:
            with self.client_lock:
                cache.clear()  # an older s3shim's pooled connections are of no use
                cache[key] = shim_client(shim.endpoint, shim.access_key, shim.secret_key)
        return cache[key]

    # -- the operation's trail -----------------------------------------------------------
    def start_trail(self) -> list[dict[str, Any]]:
        """A new trail for the operation this thread runs now (note() appends to it)."""
        self.local.trail = []
        return self.local.trail  # type: ignore[no-any-return]

    def note(self, step: str, ans: Answer | None = None, **extra: Any) -> None:
        """One step of this thread's operation: a request's answer, or a check."""
        trail: list[dict[str, Any]] | None = getattr(self.local, "trail", None)
        if trail is None:
            return
        entry: dict[str, Any] = {"t": round(time.time(), 3), "step": step}
        if ans is not None:
            entry.update(status=ans.status, code=ans.code)
            rid = ans.headers.get("x-amz-request-id")
            if rid:
                entry["request_id"] = rid
        entry.update(extra)
        trail.append(entry)

    # -- store checks -----------------------------------------------------------------
    def stored(self, key: str) -> Digest | None:
        from botocore.exceptions import ClientError

        try:
            r = self.direct().get_object(Bucket=self.bucket, Key=key)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                self.note("check: absent")
                return None
            raise
        found = Digest.of(r["Body"].read(), r.get("ContentEncoding"))
        self.note(f"check: {found.size} B", etag=r.get("ETag"))
        with self.lock:
            new = self.sent.get(key, (None, None))[0]
            if new is not None and new.same_bytes(found):
                self.seen_new.add(key)
        return found

    def delete(self, key: str) -> None:
        self.direct().delete_object(Bucket=self.bucket, Key=key)
        self.note("delete")

    def put_direct(self, key: str, data: bytes) -> None:
        self.direct().put_object(Bucket=self.bucket, Key=key, Body=data)
        self.note(f"stored directly: {len(data)} B")

    def count_written(self, n: int) -> None:
        with self.lock:
            self.written += n
            if self.rgw_state is not None and self.written >= self.cfg.gc_every:
                self.written = 0
                self.gc_wanted.set()

    def _key(self, plan: Plan) -> tuple[str, str]:
        token = uuid.uuid4().hex
        return f"soak/{plan.index:06d}-{plan.kind}-{plan.fault}-{token}", token

    def _register(self, key: str, new: Digest | None, old: Digest | None) -> None:
        with self.lock:
            self.sent[key] = (new, old)

    def _relay_fault(
        self, plan: Plan, token: str, rng: random.Random, body: int, reading: bool = False
    ) -> Fault | None:
        """The store-side fault of this operation, armed on the request naming ``token``."""
        match = token.encode()
        if plan.fault in ("store_reset", "store_reset_read"):
            if reading:  # cut the answer: after K bytes of it, K below the body's length
                k = rng.randint(0, max(0, body - 1)) if body else rng.randint(0, 40)
                return self.relay.add(Fault(match=match, reset_after=k, direction="down"))
            # Cut the request: K bytes after the key in the request line (head + body).
            k = (
                rng.randint(0, 200)
                if rng.random() < 0.3 or body == 0
                else rng.randint(200, 200 + body * 9 // 10)
            )
            return self.relay.add(Fault(match=match, reset_after=k, direction="up"))
        if plan.fault == "slow_store":
            budget = body + 4 * KIB
            # At most ~100 pauses: a slow store, not one that outlasts every timeout.
            piece = max(rng.choice((4 * KIB, 16 * KIB, 64 * KIB)), budget // 100 + 1)
            pieces = max(1, budget // piece)
            delay = min(rng.uniform(0.001, 0.02), 1.5 / pieces)
            return self.relay.add(Fault(match=match, delay=delay, delay_bytes=budget, piece=piece))
        return None

    def _fired(self, fault: Fault | None) -> bool:
        if fault is None:
            return False
        self.relay.remove(fault)
        return fault.fired
