"""bench/run.py's regular cases: multipart upload and GET per path, whole-object PutObject
plain and aws-chunked through s3shim, each timed with every process's CPU beside it."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bench.common import BUCKET, GIB, MIB, log
from bench.procfs import reset_peak_rss, run_ns, status_kib
from bench.s3client import Client, FramedPut, S3Error, frame_chunked_put
from bench.stack import Stack

WARMUP_SIZE = 256 * MIB
PATHS = ("direct", "nginx", "s3shim")
ALL_CASES = (
    *(f"mpu-{p}" for p in PATHS),
    *(f"get-{p}" for p in PATHS),
    "put-plain-s3shim",
    "put-chunked-s3shim",
)


@dataclass
class Sample:
    seconds: float
    nbytes: int
    cpu_s: dict[str, float]
    sys_s: dict[str, float]
    minflt: dict[str, int]
    shim_hwm_kib: int | None
    proxy_run_s: float | None = None  # the proxy's CPU from schedstat (integrity cases only)

    @property
    def mbps(self) -> float:
        return self.nbytes / self.seconds / 1e6


@dataclass
class CaseResult:
    name: str
    samples: list[Sample] = field(default_factory=list)
    verified: str = ""
    record: str = ""  # integrity cases: the object's x-amz-meta-s3shim-checksum on RGW

    def median(self, fn: Callable[[Sample], float]) -> float:
        return statistics.median(fn(s) for s in self.samples)


def proxy_of(case: str) -> str | None:
    if case.endswith("-nginx"):
        return "nginx"
    if case.endswith("-s3shim"):
        return "s3shim"
    return None


def measure(
    stack: Stack,
    case: str,
    nbytes: int,
    op: Callable[[], object],
    rss_pid: int | None = None,
    exact_pids: Sequence[int] = (),
) -> Sample:
    """One timed case. ``rss_pid``: the s3shim whose peak RSS to report (default: stack.shim
    for ``*-s3shim`` cases); ``exact_pids``: the processes whose schedstat CPU to sum."""
    watched = stack.watched()
    shim_pid = stack.shim.pid if stack.shim is not None and case.endswith("-s3shim") else None
    if rss_pid is not None:
        shim_pid = rss_pid
    if shim_pid is not None:
        reset_peak_rss(shim_pid)
    before = watched.snapshot()
    ns_before = run_ns(exact_pids) if exact_pids else 0
    t0 = time.perf_counter()
    op()
    seconds = time.perf_counter() - t0
    ns_after = run_ns(exact_pids) if exact_pids else 0
    after = watched.snapshot()
    hwm = status_kib(shim_pid, "VmHWM") if shim_pid is not None else None
    return Sample(
        seconds=seconds,
        nbytes=nbytes,
        cpu_s={r: after[r].cpu_s - before[r].cpu_s for r in after},
        sys_s={r: after[r].sys_s - before[r].sys_s for r in after},
        minflt={r: after[r].minflt - before[r].minflt for r in after},
        shim_hwm_kib=hwm,
        proxy_run_s=(ns_after - ns_before) / 1e9 if exact_pids else None,
    )


def idle_cpu(stack: Stack, seconds: float = 3.0) -> dict[str, float]:
    """CPU each process burns while nothing is sent: the floor under its CPU-s/GiB."""
    watched = stack.watched()
    del watched.groups["client"]
    before = watched.snapshot()
    time.sleep(seconds)
    after = watched.snapshot()
    return {r: round((after[r].cpu_s - before[r].cpu_s) / seconds, 3) for r in after}


def verify(client: Client, key: str, expected: tuple[int, str]) -> str:
    h = hashlib.sha256()
    n = client.get_into_sink(f"/{BUCKET}/{key}", h)
    if (n, h.hexdigest()) != expected:
        raise S3Error(f"{key}: read back {n} bytes sha256 {h.hexdigest()}, expected {expected}")
    return f"{n} bytes, sha256 {h.hexdigest()[:16]}... OK"


def run_round(
    stack: Stack,
    rnd: int,
    cases: list[str],
    results: dict[str, CaseResult],
    data: memoryview,
    expected: tuple[int, str],
    part_size: int,
    profile: Callable[[str], contextlib.AbstractContextManager[None]] | None = None,
    label: str = "",
) -> None:
    size = len(data)
    label = label or f"round {rnd + 1}"
    direct = Client(stack.rgw_port)
    # Rotate the order every round, so no path always runs first (warm store, quiet machine).
    paths = list(PATHS[rnd % 3 :] + PATHS[: rnd % 3])

    def run(case: str, nbytes: int, op: Callable[[], object]) -> None:
        if profile is not None:
            with profile(case):
                op()
            return
        s = measure(stack, case, nbytes, op)
        results[case].samples.append(s)
        extra = ""
        proxy = proxy_of(case)
        if proxy:
            extra = f", {proxy} {s.cpu_s[proxy] / (nbytes / GIB):.2f} CPU-s/GiB"
        log(f"{label} {case:20s} {s.mbps:8.1f} MB/s ({s.seconds:.2f} s{extra})")

    for path in paths:
        mpu, get = f"mpu-{path}", f"get-{path}"
        if mpu not in cases and get not in cases:
            continue
        client = Client(stack.port(path))
        key = f"obj-{path}-{rnd}"
        if mpu in cases:
            run(mpu, size, functools.partial(client.multipart_upload, key, data, part_size))
        else:
            direct.multipart_upload(key, data, part_size)  # untimed: the GET needs an object
        if get in cases:

            def get_op(c: Client = client, k: str = key) -> None:
                n = c.get_into_sink(f"/{BUCKET}/{k}")
                if n != size:
                    raise S3Error(f"GET {k}: {n} bytes, expected {size}")

            run(get, size, get_op)
        for case in (mpu, get):
            if case in cases and not results[case].verified and profile is None:
                results[case].verified = verify(client, key, expected)
        client.close()
        direct.delete_object(key)
        stack.gc()

    put_cases = [c for c in ("put-plain-s3shim", "put-chunked-s3shim") if c in cases]
    if rnd % 2:
        put_cases.reverse()
    for case in put_cases:
        client = Client(stack.shim_port)
        key = f"obj-{case}-{rnd}"
        if case == "put-plain-s3shim":
            run(case, size, functools.partial(client.put_object, key, data))
        else:
            framed = frame_chunked_put(client, key, data)  # before the clock starts

            def chunked_op(c: Client = client, f: FramedPut = framed) -> None:
                resp = c.send("PUT", f.url, f.headers, f.body)
                body = resp.read()
                if resp.status != 200:
                    c.close()
                    raise S3Error(f"chunked PUT -> {resp.status}: {body[:600]!r}")

            run(case, size, chunked_op)
            del framed
        if not results[case].verified and profile is None:
            results[case].verified = verify(direct, key, expected)
        client.close()
        direct.delete_object(key)
        stack.gc()
    direct.close()
