"""bench/run.py's workers comparison: concurrent streams on new connections, RGW directly and
through s3shim with 1 and 2 worker processes, CPU and connections per process."""

from __future__ import annotations

import hashlib
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.byte_cases import verify
from bench.byte_report import fmt, measured, paired_median
from bench.common import BUCKET, GIB, MIB, log
from bench.procfs import connections_per_worker, host_cpu, read_counters, reset_peak_rss, status_kib
from bench.s3client import Client, S3Error
from bench.stack import Stack

# The workers comparison (opt-in: --workers-compare, or an --only word starting "workers"):
# several concurrent streams, each on a new connection, against RGW directly and through
# s3shim with S3SHIM_WORKERS=1 and =2.
WORKER_PATHS = ("direct", "s3shim-1w", "s3shim-2w")
WORKER_CASES = tuple(f"workers-{op}-{p}" for op in ("put", "get") for p in WORKER_PATHS)


@dataclass(frozen=True)
class WorkersConfig:
    streams: int  # concurrent streams, each on a new connection
    get_bytes: int  # each GET stream reads the whole object of this size
    put_bytes: int  # each upload stream sends one part of this size
    repeat: int

    @property
    def get_total(self) -> int:
        return self.streams * self.get_bytes

    @property
    def put_total(self) -> int:
        return self.streams * self.put_bytes


GET_KEY = "workers-get"


@dataclass
class StreamsSample:
    """One workers case: ``streams`` transfers started together, timed to the last one's end."""

    seconds: float
    nbytes: int  # all streams together
    cpu_s: dict[str, float]  # by role; "proxy" = every process of the s3shim under test
    stream_seconds: list[float]
    worker_cpu_s: list[float]  # per s3shim process: the first one, then the forked one(s)
    worker_hwm_kib: list[int]  # per s3shim process, VmHWM reset before the case
    conns: list[int]  # how many of the streams' connections each s3shim process accepted
    host_busy: float  # CPU cores busy machine-wide (every tenant), mean over the case
    host_steal: float  # cores stolen by the hypervisor, mean over the case

    @property
    def mbps(self) -> float:
        return self.nbytes / self.seconds / 1e6

    @property
    def ours(self) -> float:
        """Cores used by the client, the store and the proxy, mean over the case."""
        return sum(self.cpu_s.values()) / self.seconds

    @property
    def busiest(self) -> float | None:
        """Cores used by the busiest s3shim process: near 1.0 would mean it is the limit."""
        return max(self.worker_cpu_s) / self.seconds if self.worker_cpu_s else None


@dataclass
class WorkersResult:
    name: str
    samples: list[StreamsSample] = field(default_factory=list)
    verified: str = ""


def worker_path(case: str) -> str:
    return case.split("-", 2)[2]  # workers-get-s3shim-2w -> s3shim-2w


def measure_streams(
    stack: Stack, path: str, streams: int, op: Callable[[int, Client], object]
) -> tuple[StreamsSample, list[object]]:
    """Run ``op(i, client)`` in ``streams`` threads, each with a new connection, all at once.

    The client's blocking sends and receives release the GIL, so the threads transfer in
    parallel. Returns the sample and each stream's result.
    """
    port = stack.port(path)
    pids = stack.shim_pids(path) if path != "direct" else []
    clients = [Client(port) for _ in range(streams)]
    out: list[object] = [None] * streams
    ends = [0.0] * streams
    failures: list[BaseException] = []
    barrier = threading.Barrier(streams + 1)

    def stream(i: int) -> None:
        try:
            barrier.wait(60)
            out[i] = op(i, clients[i])
        except BaseException as exc:
            failures.append(exc)
        ends[i] = time.perf_counter()

    threads = [threading.Thread(target=stream, args=(i,), daemon=True) for i in range(streams)]
    for t in threads:
        t.start()
    watched = stack.watched()
    watched.groups = {r: p for r, p in watched.groups.items() if r in ("rgw", "osd", "client")}
    if pids:
        watched.groups["proxy"] = pids
    for pid in pids:
        reset_peak_rss(pid)
    before, w_before, h_before = watched.snapshot(), [read_counters(p) for p in pids], host_cpu()
    t0 = time.perf_counter()
    barrier.wait(60)
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    after, w_after, h_after = watched.snapshot(), [read_counters(p) for p in pids], host_cpu()
    try:
        if failures:
            raise failures[0]
        ports = [p for c in clients if (p := c.local_port()) is not None]
        conns = connections_per_worker(port, pids, ports) if pids else []
        hwm = [status_kib(p, "VmHWM") for p in pids]
    finally:
        for c in clients:
            c.close()
    sample = StreamsSample(
        seconds=seconds,
        nbytes=0,  # the caller knows
        cpu_s={r: after[r].cpu_s - before[r].cpu_s for r in after},
        stream_seconds=[e - t0 for e in ends],
        worker_cpu_s=[a.cpu_s - b.cpu_s for a, b in zip(w_after, w_before, strict=True)],
        worker_hwm_kib=hwm,
        conns=conns,
        host_busy=(h_after[0] - h_before[0]) / seconds,
        host_steal=(h_after[1] - h_before[1]) / seconds,
    )
    return sample, out


def run_workers_round(
    stack: Stack,
    rnd: int,
    cases: list[str],
    results: dict[str, WorkersResult],
    data: memoryview,
    cfg: WorkersConfig,
    label: str = "",
) -> None:
    """One round of the workers comparison: for each path (order rotated every round) the
    concurrent uploads, then the concurrent GETs."""
    label = label or f"workers round {rnd + 1}"
    direct = Client(stack.rgw_port)
    paths = list(WORKER_PATHS[rnd % 3 :] + WORKER_PATHS[: rnd % 3])
    put_data = data[: cfg.put_total]

    def expected(n: int) -> tuple[int, str]:
        return n, hashlib.sha256(data[:n]).hexdigest()

    def record(case: str, s: StreamsSample) -> None:
        results[case].samples.append(s)
        extra = ""
        if s.worker_cpu_s:
            cpu = sum(s.worker_cpu_s) / (s.nbytes / GIB)
            extra = f", s3shim {cpu:.2f} CPU-s/GiB, connections {'+'.join(map(str, s.conns))}"
        log(
            f"{label} {case:22s} {s.mbps:8.1f} MB/s ({s.seconds:.2f} s{extra}; "
            f"cores busy: ours {s.ours:.2f}, host {s.host_busy:.2f})"
        )

    for path in paths:
        put, get = f"workers-put-{path}", f"workers-get-{path}"
        port = stack.port(path)
        if put in cases:
            key = f"workers-put-{path}-{rnd}"
            setup = Client(port)
            upload_id = setup.create_multipart(key)  # untimed, as the completion below

            def put_op(i: int, c: Client, k: str = key, u: str = upload_id) -> str:
                part = put_data[i * cfg.put_bytes : (i + 1) * cfg.put_bytes]
                return c.upload_part(k, u, i + 1, part)

            s, etags = measure_streams(stack, path, cfg.streams, put_op)
            s.nbytes = cfg.put_total
            setup.complete_multipart(key, upload_id, [str(e) for e in etags])
            setup.close()
            record(put, s)
            if not results[put].verified:
                results[put].verified = verify(direct, key, expected(cfg.put_total))
            direct.delete_object(key)
            stack.gc()
        if get in cases:

            def get_op(_: int, c: Client) -> int:
                n = c.get_into_sink(f"/{BUCKET}/{GET_KEY}")
                if n != cfg.get_bytes:
                    raise S3Error(f"GET {GET_KEY}: {n} bytes, expected {cfg.get_bytes}")
                return n

            s, _ = measure_streams(stack, path, cfg.streams, get_op)
            s.nbytes = cfg.get_total
            record(get, s)
            if not results[get].verified:
                reader = Client(port)
                results[get].verified = verify(reader, GET_KEY, expected(cfg.get_bytes))
                reader.close()
    direct.close()


def build_workers_report(
    cases: list[str], results: dict[str, WorkersResult], cfg: WorkersConfig
) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for case, r in measured(cases, results):
        gib = r.samples[0].nbytes / GIB
        mbps = [s.mbps for s in r.samples]

        def per_gib(role: str, r: WorkersResult = r, gib: float = gib) -> float | None:
            if role not in r.samples[0].cpu_s:
                return None
            return round(statistics.median(s.cpu_s[role] for s in r.samples) / gib, 3)

        nproc = len(r.samples[0].worker_hwm_kib)
        rows[case] = {
            "mbps_median": round(statistics.median(mbps), 1),
            "mbps_all": [round(m, 1) for m in mbps],
            "seconds_all": [round(s.seconds, 3) for s in r.samples],
            "stream_seconds_all": [[round(x, 3) for x in s.stream_seconds] for s in r.samples],
            "s3shim_cpu_s_per_gib": per_gib("proxy"),  # every s3shim process summed
            "s3shim_cpu_s_per_worker_all": [
                [round(x, 2) for x in s.worker_cpu_s] for s in r.samples if s.worker_cpu_s
            ],
            "connections_per_worker_all": [s.conns for s in r.samples if s.conns],
            "peak_rss_mib_per_worker": [
                round(max(s.worker_hwm_kib[i] for s in r.samples) / 1024, 1) for i in range(nproc)
            ],
            "rgw_cpu_s_per_gib": per_gib("rgw"),
            "osd_cpu_s_per_gib": per_gib("osd"),
            "client_cpu_s_per_gib": per_gib("client"),
            "all_cpu_s_per_gib": round(
                statistics.median(sum(s.cpu_s.values()) for s in r.samples) / gib, 3
            ),
            "busiest_s3shim_process_cores_median": (
                round(statistics.median(s.busiest or 0.0 for s in r.samples), 2)
                if r.samples[0].worker_cpu_s
                else None
            ),
            "our_cores_median": round(statistics.median(s.ours for s in r.samples), 2),
            "host_busy_cores_median": round(statistics.median(s.host_busy for s in r.samples), 2),
            "host_steal_cores_median": round(statistics.median(s.host_steal for s in r.samples), 2),
            "verified": r.verified,
        }

    def paired(case: str, other: str) -> float | None:
        return paired_median(results, case, other, lambda x, y: x.mbps / y.mbps)

    for case, row in rows.items():
        op = case.split("-")[1]
        for base_path, key in (("direct", "vs_direct"), ("s3shim-1w", "vs_1w")):
            base = rows.get(f"workers-{op}-{base_path}")
            row[key] = round(row["mbps_median"] / base["mbps_median"], 3) if base else None
            row[f"{key}_paired"] = paired(case, f"workers-{op}-{base_path}") if base else None
    return {
        "streams": cfg.streams,
        "get_mib_per_stream": cfg.get_bytes // MIB,
        "put_mib_per_stream": cfg.put_bytes // MIB,
        "repeat": cfg.repeat,
        "description": (
            f"{cfg.streams} concurrent streams, each on a new connection, started together and "
            "timed to the last one's end: GETs of one object each read whole, or UploadPart of "
            "one part each into one multipart upload (create and complete untimed)"
        ),
        "cases": rows,
    }


def print_workers_table(w: dict[str, Any]) -> None:
    print(
        f"\nworkers comparison: {w['streams']} concurrent streams on new connections, "
        f"{w['repeat']} interleaved rounds;\n  get = {w['streams']} GETs of one "
        f"{w['get_mib_per_stream']} MiB object, put = {w['streams']} UploadPart of "
        f"{w['put_mib_per_stream']} MiB into one multipart upload"
    )
    print(
        "MB/s = aggregate, median of rounds (range); xdirect/x1w = ratio of medians (paired per "
        "round);\n*CPU = CPU-s/GiB, median: shim = all s3shim processes, store = radosgw + OSD, "
        "cli = client,\n  all = the three; maxW = cores used by the busiest s3shim process; "
        "ours/host = cores busy\n  (our processes / whole machine, other tenants included); "
        "RSS = peak per s3shim process, MiB;\n  conns = connections each s3shim process "
        "accepted, by round"
    )
    head = (
        f"{'case':21s} {'MB/s':>5s} {'(range)':>11s} {'xdirect':>11s} {'x1w':>11s} "
        f"{'shim':>4s} {'store':>5s} {'cli':>4s} {'all':>4s} {'maxW':>4s} {'ours':>4s} "
        f"{'host':>4s} {'RSS':>5s}  conns"
    )
    print(head)
    print("-" * len(head))
    for case, r in w["cases"].items():

        def ratio(key: str, r: dict[str, Any] = r) -> str:
            if r[key] is None:
                return "-".rjust(11)
            return f"{r[key]:.2f} ({fmt(r[key + '_paired'], '.2f')})".rjust(11)

        store = None
        if r["rgw_cpu_s_per_gib"] is not None and r["osd_cpu_s_per_gib"] is not None:
            store = r["rgw_cpu_s_per_gib"] + r["osd_cpu_s_per_gib"]
        rng = f"({min(r['mbps_all']):.0f}-{max(r['mbps_all']):.0f})"
        rss = "/".join(f"{x:.0f}" for x in r["peak_rss_mib_per_worker"]) or "-"
        conns = " ".join("+".join(map(str, c)) for c in r["connections_per_worker_all"]) or "-"
        print(
            f"{case:21s} {r['mbps_median']:5.0f} {rng:>11s} {ratio('vs_direct')} "
            f"{ratio('vs_1w') if case.endswith('-2w') else '-'.rjust(11)} "
            f"{fmt(r['s3shim_cpu_s_per_gib'], '4.2f')} {fmt(store, '5.2f')} "
            f"{fmt(r['client_cpu_s_per_gib'], '4.2f')} {r['all_cpu_s_per_gib']:4.2f} "
            f"{fmt(r['busiest_s3shim_process_cores_median'], '4.2f')} "
            f"{r['our_cores_median']:4.2f} {r['host_busy_cores_median']:4.2f} {rss:>5s}  {conns}"
        )
