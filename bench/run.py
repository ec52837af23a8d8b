#!/usr/bin/env python3
"""Throughput, CPU and memory of s3shim against a direct RGW and an nginx pass-through proxy.

One run starts its own Ceph RGW (scripts/rgw.sh, in-memory OSD), nginx in front of it (the
baseline proxy, bench/nginx.conf.template) and s3shim (a subprocess, as deployed), then
measures, interleaved per round:

* ``mpu-<path>``: a multipart upload of ``--size-mib`` in ``--part-mib`` parts, sequential,
  one connection (one large file), initiate to complete;
* ``get-<path>``: a GET of the whole object into a sink that reads every byte;
* ``put-plain-s3shim`` / ``put-chunked-s3shim``: one PutObject of the same size through
  s3shim, plain (UNSIGNED-PAYLOAD) and aws-chunked (STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER,
  64 KiB signed chunks, CRC32 trailer), pre-framed in memory before the clock starts.

``<path>`` is ``direct`` (the client talks to RGW), ``nginx`` or ``s3shim``. Per case it
samples the CPU time and minor faults of every process (/proc/PID/stat) and s3shim's peak RSS
(VmHWM, reset before each case), prints a table and writes bench/results/latest.json.

Opt-in, after those rounds: the workers comparison (``--workers-compare``, or alone with
``--only workers``). ``workers-{put,get}-<path>`` with ``<path>`` ``direct``, ``s3shim-1w``
(S3SHIM_WORKERS=1) and ``s3shim-2w`` (S3SHIM_WORKERS=2, a second s3shim): 4 concurrent
UploadPart of 64 MiB, or 4 concurrent GETs of one 256 MiB object, each on a new connection;
aggregate MB/s, CPU summed over every s3shim process, peak RSS per process, and how many
connections each process accepted.

Opt-in, interleaved with the rounds: the read-verification cost (``--integrity``, or alone
with ``--only integrity``). ``integrity-put-crc32``: one PutObject of ``--size-mib`` through
s3shim with ``x-amz-checksum-crc32``, so that s3shim records ``CRC32:<b64>`` with it (checked by
a HEAD on RGW); ``integrity-get-<path>``: GETs of that object direct, through nginx, through an
s3shim with S3SHIM_VERIFY_READS=true (``verify-on``) and one with =false (``verify-off``);
the control ``integrity-put-nosum`` / ``integrity-get-nosum-verify-on``: the same without a
client checksum (no record), read through the verifying s3shim.

    .venv/bin/python bench/run.py                          # 1 GiB, 64 MiB parts, 3 rounds
    .venv/bin/python bench/run.py --size-mib 256 --repeat 1   # quick
    .venv/bin/python bench/run.py --only s3shim --profile     # + py-spy profile of s3shim
    .venv/bin/python bench/run.py --only workers              # workers comparison (~70 s)
    .venv/bin/python bench/run.py --only integrity            # read-verification cost

See bench/README.md for the columns and the traps this avoids.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import functools
import hashlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from s3shim import sigv4  # noqa: E402  (the repo root goes on sys.path first)

MIB = 1024 * 1024
GIB = 1024 * MIB
ACCESS_KEY = "benchaccesskey"
SECRET_KEY = "benchsecretkey/0123456789abcdefghijklmn"
REGION = "us-east-1"
BUCKET = "bench"
CHUNK_SIZE = 64 * 1024  # aws-chunked chunk size, as the AWS SDKs send it
SEND_SLICE = 8 * MIB  # the client hands the kernel this much per sendall()
SINK_BUFFER = 4 * MIB
WARMUP_SIZE = 256 * MIB  # recv_into() target of the GET sink
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
PATHS = ("direct", "nginx", "s3shim")
ALL_CASES = (
    *(f"mpu-{p}" for p in PATHS),
    *(f"get-{p}" for p in PATHS),
    "put-plain-s3shim",
    "put-chunked-s3shim",
)
# The workers comparison (opt-in: --workers-compare, or an --only word starting "workers"):
# several concurrent streams, each on a new connection, against RGW directly and through
# s3shim with S3SHIM_WORKERS=1 and =2.
WORKER_PATHS = ("direct", "s3shim-1w", "s3shim-2w")
WORKER_CASES = tuple(f"workers-{op}-{p}" for op in ("put", "get") for p in WORKER_PATHS)
# The read-verification cost (opt-in: --integrity, or an --only word starting "integrity"):
# case -> the process whose CPU is the proxy's (None: direct). The GETs of the recorded object
# differ only in the process they pass through; two s3shims of their own serve the verify-on
# and verify-off GETs (nothing else), so neither carries the other cases' history.
INTEGRITY_PROXY: dict[str, str | None] = {
    "integrity-put-crc32": "s3shim",  # PutObject + x-amz-checksum-crc32 -> record CRC32
    "integrity-get-direct": None,
    "integrity-get-nginx": "nginx",
    "integrity-get-verify-on": "s3shim-verify-on",  # S3SHIM_VERIFY_READS=true
    "integrity-get-verify-off": "s3shim-verify-off",  # S3SHIM_VERIFY_READS=false
    "integrity-put-nosum": "s3shim",  # control: no client checksum, > 1 MiB -> no record
    "integrity-get-nosum-verify-on": "s3shim-verify-on",
}
INTEGRITY_CASES = tuple(INTEGRITY_PROXY)
INTEGRITY_RECORDED = INTEGRITY_CASES[:5]  # the cases of the recorded object
INTEGRITY_CONTROL = INTEGRITY_CASES[5:]  # the cases of the unrecorded one
INTEGRITY_SHIMS = {"s3shim-verify-on": "true", "s3shim-verify-off": "false"}
RECORD_HEADER = "x-amz-meta-s3shim-checksum"  # s3shim/integrity.py's RECORD_HEADER


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, alive: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"{what} exited before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout} s")


# ------------------------------------------------------------------------ process accounting
@dataclass(frozen=True)
class ProcCounters:
    """Counters of a process, all threads, children included once reaped."""

    user_s: float  # utime + cutime
    sys_s: float  # stime + cstime
    minflt: int  # minor page faults

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


def read_counters(pid: int) -> ProcCounters:
    raw = Path(f"/proc/{pid}/stat").read_text()
    # Fields after "(comm)": field 3 (state) is index 0, so field N is index N - 3.
    f = raw[raw.rindex(")") + 2 :].split()
    minflt = int(f[10 - 3]) + int(f[11 - 3])
    user = int(f[14 - 3]) + int(f[16 - 3])
    system = int(f[15 - 3]) + int(f[17 - 3])
    return ProcCounters(user / CLK_TCK, system / CLK_TCK, minflt)


def run_ns(pids: Sequence[int]) -> int:
    """CPU time of every thread of these processes, in ns (/proc/PID/task/*/schedstat).

    The scheduler's own runtime, exact to the ns: the 10 ms ticks of /proc/PID/stat are
    ±0.04 CPU-s/GiB at 256 MiB, as large as the difference the integrity cases look for.
    A thread that exits during a case takes its share with it (s3shim's threads live on).
    """
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    total += int((task / "schedstat").read_text().split()[0])
    return total


def children_of(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            raw = (entry / "stat").read_text()
            if int(raw[raw.rindex(")") + 2 :].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def tcp_sockets(port: int) -> list[tuple[str, int, int]]:
    """(state, remote port, inode) of the IPv4 sockets whose local port is ``port``."""
    out = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if int(f[1].rsplit(":", 1)[1], 16) == port:
            out.append((f[3], int(f[2].rsplit(":", 1)[1], 16), int(f[9])))
    return out


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


def connections_per_worker(
    port: int, pids: Sequence[int], client_ports: Sequence[int]
) -> list[int]:
    """How many of the clients' connections (by their source ports) each worker accepted."""
    remote = set(client_ports)
    inodes = {ino for state, rport, ino in tcp_sockets(port) if state == "01" and rport in remote}
    return [len(inodes & socket_inodes(pid)) for pid in pids]


def host_cpu() -> tuple[float, float]:
    """Machine-wide (busy, steal) CPU seconds since boot, every tenant included."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = f
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


@dataclass
class Watched:
    """The processes whose CPU a case is charged with, by role."""

    groups: dict[str, list[int]] = field(default_factory=dict)

    def snapshot(self) -> dict[str, ProcCounters]:
        out = {}
        for role, pids in self.groups.items():
            user, system, flt = 0.0, 0.0, 0
            for pid in pids:
                with contextlib.suppress(OSError):
                    c = read_counters(pid)
                    user += c.user_s
                    system += c.sys_s
                    flt += c.minflt
            out[role] = ProcCounters(user, system, flt)
        return out


# ----------------------------------------------------------------------------- the S3 client
class S3Error(RuntimeError):
    pass


class Client:
    """A minimal blocking S3 client: SigV4 via s3shim.sigv4, zero-copy sends and receives.

    http.client hands a memoryview straight to socket.sendall() and reads a GET body with
    recv_into() into one reused buffer, so the client costs about what the kernel copy costs.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.host = f"127.0.0.1:{port}"
        self.creds = sigv4.Credentials(ACCESS_KEY, SECRET_KEY)
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        return self._conn

    def signed(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]],
        headers: dict[str, str],
        payload_hash: str,
        amz_date: str | None = None,
    ) -> tuple[str, dict[str, str], str]:
        """(url, headers to send, seed signature)."""
        amz_date = amz_date or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        sr = sigv4.sign_headers(
            method=method,
            raw_path=path,
            query=query,
            host=self.host,
            headers=headers,
            payload_hash=payload_hash,
            creds=self.creds,
            region=REGION,
            amz_date=amz_date,
        )
        qs = sigv4.canonical_query(query)
        url = sigv4.canonical_uri(path) + (f"?{qs}" if qs else "")
        return url, {**headers, **sr.headers}, sr.signature

    def send(
        self, method: str, url: str, headers: dict[str, str], body: memoryview | bytes | None
    ) -> http.client.HTTPResponse:
        conn = self._connection()
        headers = dict(headers)
        if body is not None or method in ("PUT", "POST"):
            headers["content-length"] = str(len(body) if body is not None else 0)
        conn.putrequest(method, url, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        if body is not None:
            view = memoryview(body).cast("B")
            sock = conn.sock
            assert sock is not None
            for start in range(0, len(view), SEND_SLICE):
                sock.sendall(view[start : start + SEND_SLICE])
        return conn.getresponse()

    def request(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]] = (),
        body: memoryview | bytes | None = None,
        headers: dict[str, str] | None = None,
        payload_hash: str | None = None,
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        if payload_hash is None:
            payload_hash = sigv4.EMPTY_SHA256 if body is None else hashlib.sha256(body).hexdigest()
        url, hdrs, _ = self.signed(method, path, query, headers or {}, payload_hash)
        try:
            resp = self.send(method, url, hdrs, body)
            data = resp.read()
        except Exception:
            self.close()
            raise
        if resp.status >= 300 or b"<Error>" in data[:512]:
            self.close()
            raise S3Error(f"{method} {url} -> {resp.status}: {data[:600]!r}")
        return resp.status, resp.headers, data

    def get_into_sink(self, path: str, hasher: Any = None) -> int:
        """GET the object; read every byte into a reused buffer; return the byte count."""
        url, hdrs, _ = self.signed("GET", path, (), {}, sigv4.EMPTY_SHA256)
        buf = bytearray(SINK_BUFFER)
        view = memoryview(buf)
        total = 0
        try:
            resp = self.send("GET", url, hdrs, None)
            if resp.status != 200:
                raise S3Error(f"GET {url} -> {resp.status}: {resp.read()[:600]!r}")
            while n := resp.readinto(view):
                total += n
                if hasher is not None:
                    hasher.update(view[:n])
        except Exception:
            self.close()
            raise
        return total

    def local_port(self) -> int | None:
        """The source port of the open connection (which s3shim worker got it, see below)."""
        if self._conn is None or self._conn.sock is None:
            return None
        return int(self._conn.sock.getsockname()[1])

    # ---- S3 operations ----------------------------------------------------------------
    def create_multipart(self, key: str) -> str:
        _, _, body = self.request("POST", f"/{BUCKET}/{key}", [("uploads", "")])
        m = re.search(rb"<UploadId>([^<]+)</UploadId>", body)
        if m is None:
            raise S3Error(f"no UploadId in {body[:300]!r}")
        return m.group(1).decode()

    def upload_part(self, key: str, upload_id: str, number: int, part: memoryview) -> str:
        _, headers, _ = self.request(
            "PUT",
            f"/{BUCKET}/{key}",
            [("partNumber", str(number)), ("uploadId", upload_id)],
            body=part,
            payload_hash=sigv4.UNSIGNED_PAYLOAD,
        )
        return str(headers["ETag"])

    def complete_multipart(self, key: str, upload_id: str, etags: Sequence[str]) -> None:
        xml = "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>"
            for n, etag in enumerate(etags, 1)
        )
        complete = f"<CompleteMultipartUpload>{xml}</CompleteMultipartUpload>".encode()
        self.request("POST", f"/{BUCKET}/{key}", [("uploadId", upload_id)], body=complete)

    def multipart_upload(self, key: str, data: memoryview, part_size: int) -> None:
        upload_id = self.create_multipart(key)
        etags = [
            self.upload_part(key, upload_id, number, data[start : start + part_size])
            for number, start in enumerate(range(0, len(data), part_size), 1)
        ]
        self.complete_multipart(key, upload_id, etags)

    def put_object(self, key: str, data: memoryview, headers: dict[str, str] | None = None) -> None:
        self.request(
            "PUT",
            f"/{BUCKET}/{key}",
            body=data,
            headers=headers,
            payload_hash=sigv4.UNSIGNED_PAYLOAD,
        )

    def delete_object(self, key: str) -> None:
        self.request("DELETE", f"/{BUCKET}/{key}")


# ------------------------------------------------------------------------- aws-chunked body
@dataclass
class FramedPut:
    url: str
    headers: dict[str, str]
    body: memoryview


def frame_chunked_put(client: Client, key: str, data: memoryview) -> FramedPut:
    """Sign a STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER PutObject and frame its whole body.

    64 KiB chunks, each signed (chained from the Authorization header's signature), then a
    signed CRC32 trailer: what an AWS SDK sends for a PutObject with a checksum over http.
    """
    from s3shim import chunked  # being finished by a colleague: imported late, on purpose
    from s3shim.testing import ChunkSigner

    amz_date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    headers = {
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
        "x-amz-trailer": "x-amz-checksum-crc32",
    }
    url, hdrs, seed = client.signed(
        "PUT", f"/{BUCKET}/{key}", (), headers, chunked.Framing.SIGNED_TRAILER.value, amz_date
    )
    signing = chunked.ChunkSigning(
        signing_key=sigv4.signing_key(SECRET_KEY, amz_date[:8], REGION),
        amz_date=amz_date,
        scope=sigv4.scope(amz_date[:8], REGION),
        seed_signature=seed,
    )
    nchunks = -(-len(data) // CHUNK_SIZE)
    buf = bytearray(len(data) + (nchunks + 1) * 128 + 4096)  # framing needs < 100 B a chunk
    pos = 0
    signer = ChunkSigner(signing)
    for start in range(0, len(data), CHUNK_SIZE):
        piece = signer.chunk(data[start : start + CHUNK_SIZE])  # type: ignore[arg-type]  # a view
        buf[pos : pos + len(piece)] = piece
        pos += len(piece)
    end = signer.end([("x-amz-checksum-crc32", crc)])
    buf[pos : pos + len(end)] = end
    pos += len(end)
    return FramedPut(url, hdrs, memoryview(buf)[:pos])


# ------------------------------------------------------------------------------- the stack
@dataclass
class ExtraShim:
    proc: subprocess.Popen[bytes]
    port: int


@dataclass
class Stack:
    state: Path
    rgw_port: int
    rgw_pids: list[int]
    osd_pids: list[int]
    nginx: subprocess.Popen[bytes] | None = None
    nginx_port: int = 0
    nginx_pids: list[int] = field(default_factory=list)
    shim: subprocess.Popen[bytes] | None = None
    shim_port: int = 0
    shim2: subprocess.Popen[bytes] | None = None  # S3SHIM_WORKERS=2, for the workers comparison
    shim2_port: int = 0
    shim2_pids: list[int] = field(default_factory=list)  # the first process, then its fork
    # More 1-worker s3shims by path name (the integrity cases' verify-on and verify-off).
    extra: dict[str, ExtraShim] = field(default_factory=dict)
    rgw_started: bool = False

    def port(self, path: str) -> int:
        if path in self.extra:
            return self.extra[path].port
        return {
            "direct": self.rgw_port,
            "nginx": self.nginx_port,
            "s3shim": self.shim_port,
            "s3shim-1w": self.shim_port,
            "s3shim-2w": self.shim2_port,
        }[path]

    def shim_pids(self, path: str) -> list[int]:
        """The processes of one s3shim: the one it was started as, then the forked workers."""
        if path == "s3shim-2w":
            return self.shim2_pids
        if path in self.extra:
            return [self.extra[path].proc.pid]
        return [self.shim.pid] if self.shim is not None else []

    def watched(self) -> Watched:
        w = Watched({"rgw": self.rgw_pids, "osd": self.osd_pids, "client": [os.getpid()]})
        if self.nginx_pids:
            w.groups["nginx"] = self.nginx_pids
        if self.shim is not None:
            w.groups["s3shim"] = [self.shim.pid]
        if self.shim2_pids:
            w.groups["s3shim-2w"] = self.shim2_pids
        for name, extra in self.extra.items():
            w.groups[name] = [extra.proc.pid]
        return w

    def gc(self) -> None:
        """Free the memstore now: RGW only queues deleted tails for GC (2 h by default)."""
        subprocess.run(
            [
                *("radosgw-admin", "-c", str(self.state / "ceph.conf"), "-n", "client.admin"),
                *("gc", "process", "--include-all"),
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )


def start_rgw(state: Path, port: int, memstore_bytes: int) -> Stack:
    log(f"starting RGW on 127.0.0.1:{port} (memstore {memstore_bytes / GIB:.1f} GiB) in {state}")
    rgw_log = state.parent / "rgw.sh.log"
    with rgw_log.open("wb") as out:
        res = subprocess.run(
            [
                *(str(REPO / "scripts" / "rgw.sh"), "start", str(state), str(port)),
                *(ACCESS_KEY, SECRET_KEY, "--mon-v2-port", "auto", "--mon-v1-port", "auto"),
                *("--memstore-bytes", str(memstore_bytes)),
            ],
            stdout=subprocess.PIPE,
            stderr=out,
            timeout=300,
        )
    if res.returncode != 0:
        raise RuntimeError(f"rgw.sh start failed:\n{rgw_log.read_text()[-4000:]}")
    rgw = int((state / "run" / "client.rgw.a.pid").read_text())
    osd = int((state / "run" / "osd.0.pid").read_text())
    return Stack(state=state, rgw_port=port, rgw_pids=[rgw], osd_pids=[osd], rgw_started=True)


def launch_nginx(
    prefix: Path, template: str, values: dict[str, str], what: str
) -> tuple[subprocess.Popen[bytes], int]:
    """nginx from a bench/ template (``@LISTEN_PORT@`` and ``@PREFIX@`` filled in here, the
    rest from ``values``), listening on a free port once this returns."""
    port = free_port()
    conf = (BENCH / template).read_text()
    for name, value in {"@PREFIX@": str(prefix), "@LISTEN_PORT@": str(port), **values}.items():
        conf = conf.replace(name, value)
    (prefix / "nginx.conf").write_text(conf)
    out = (prefix / "stdout.log").open("wb")
    proc = subprocess.Popen(
        ["nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", "stderr"],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out.close()
    try:
        wait_port(port, lambda: proc.poll() is None, what)
    except RuntimeError:
        proc.kill()
        proc.wait()
        raise
    time.sleep(0.2)
    return proc, port


def start_nginx(stack: Stack, work: Path) -> None:
    prefix = work / "nginx"
    prefix.mkdir()
    proc, port = launch_nginx(
        prefix, "nginx.conf.template", {"@UPSTREAM_PORT@": str(stack.rgw_port)}, "nginx"
    )
    stack.nginx, stack.nginx_port = proc, port
    stack.nginx_pids = [proc.pid, *children_of(proc.pid)]
    log(f"nginx on 127.0.0.1:{port}, pids {stack.nginx_pids}")


def start_shim(
    stack: Stack,
    work: Path,
    workers: int = 1,
    *,
    name: str | None = None,
    env_extra: dict[str, str] | None = None,
) -> None:
    """Start s3shim with ``workers`` processes: stack.shim for 1, stack.shim2 for more;
    with ``name``, a 1-worker one in stack.extra[name], with ``env_extra`` on top."""
    port = free_port()
    # Nothing inherited may tune s3shim: its own startup sets the malloc thresholds.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "S3SHIM_", "AWS_"))}
    env.update(
        # One stream stays on one process; say so rather than inherit it.
        S3SHIM_WORKERS=str(workers),
        S3SHIM_ADMIN_PORT=str(free_port()),  # /metrics on, as deployed, on a port of our own
        S3SHIM_UPSTREAM_URL=f"http://127.0.0.1:{stack.rgw_port}",
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        S3SHIM_LISTEN_PORT=str(port),
        AWS_S3_DISABLE_SSE="true",
        AWS_S3_DISABLE_CHECKSUMS="true",
        S3SHIM_LOG_FORMAT="json",
    )
    env.update(env_extra or {})
    log_name = f"{name}.log" if name else "s3shim.log" if workers == 1 else f"s3shim-{workers}w.log"
    out = (work / log_name).open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "s3shim"],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=str(REPO),
        start_new_session=True,
    )
    out.close()
    if name is not None:
        stack.extra[name] = ExtraShim(proc, port)
    elif workers == 1:
        stack.shim, stack.shim_port = proc, port
    else:
        stack.shim2, stack.shim2_port = proc, port
    wait_port(port, lambda: proc.poll() is None, "s3shim")
    # Every worker binds its own SO_REUSEPORT socket: wait until all of them listen.
    deadline = time.monotonic() + 20
    while sum(state == "0A" for state, _, _ in tcp_sockets(port)) < workers:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"s3shim: fewer than {workers} listening sockets on {port}")
        time.sleep(0.05)
    pids = [proc.pid, *children_of(proc.pid)]
    if len(pids) != workers:
        raise RuntimeError(f"s3shim with {workers} workers has processes {pids}")
    if workers > 1:
        stack.shim2_pids = pids
    what = f"{name}, " if name else ""
    log(f"s3shim ({what}{workers} worker{'s' * (workers > 1)}) on 127.0.0.1:{port}, pids {pids}")


def stop_all(stack: Stack | None, keep: bool, work: Path) -> None:
    if stack is not None:
        for proc, sig in (
            (stack.shim, signal.SIGTERM),
            (stack.shim2, signal.SIGTERM),  # the first process forwards it to the others
            *((extra.proc, signal.SIGTERM) for extra in stack.extra.values()),
            (stack.nginx, signal.SIGQUIT),
        ):
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(sig)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if stack.rgw_started:
            subprocess.run(
                [str(REPO / "scripts" / "rgw.sh"), "stop", str(stack.state)],
                capture_output=True,
                timeout=120,
            )
    if keep:
        log(f"state kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------------------ measurement
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


def select_cases(
    only: Sequence[str], workers_compare: bool = False, integrity: bool = False
) -> tuple[list[str], list[str], list[str]]:
    """(regular cases, workers cases, integrity cases). Words starting with "workers" or
    "integrity" pick from those groups (and no regular cases); the others pick regular cases;
    --workers-compare and --integrity add every case of their group."""
    words = [w for item in only for w in item.split(",") if w]
    wwords = [w for w in words if w.startswith("workers")]
    iwords = [w for w in words if w.startswith("integrity")]
    rwords = [w for w in words if not w.startswith(("workers", "integrity"))]
    if not words:
        regular = list(ALL_CASES)
    else:
        regular = [c for c in ALL_CASES if any(w in c for w in rwords)]
    if workers_compare:
        workers = list(WORKER_CASES)
    else:
        workers = [c for c in WORKER_CASES if any(w in c for w in wwords)]
    if integrity:
        integ = list(INTEGRITY_CASES)
    else:
        integ = [c for c in INTEGRITY_CASES if any(w in c for w in iwords)]
    if words and not regular and not workers and not integ:
        every = ALL_CASES + WORKER_CASES + INTEGRITY_CASES
        raise SystemExit(f"--only {','.join(words)} matches none of {', '.join(every)}")
    return regular, workers, integ


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


# ----------------------------------------------------------------- read-verification cost
PROBE_KEY = "integrity-probe"


def probe_verification(stack: Stack) -> dict[str, str]:
    """Show that the verify-on s3shim checks reads and the verify-off one does not, before
    measuring the difference: an object planted directly on RGW with a record that does not
    match its bytes (s3shim never writes one, and drops the name from every client request)
    must be cut short by the first and come whole through the second."""
    body = os.urandom(256 * 1024)
    wrong = base64.b64encode((zlib.crc32(body) ^ 1).to_bytes(4, "big")).decode()
    direct = Client(stack.rgw_port)
    direct.request(
        "PUT", f"/{BUCKET}/{PROBE_KEY}", body=body, headers={RECORD_HEADER: f"CRC32:{wrong}"}
    )
    outcome: dict[str, str] = {}
    try:
        for path, want_cut in (("s3shim-verify-on", True), ("s3shim-verify-off", False)):
            if path not in stack.extra:
                continue
            client = Client(stack.port(path))
            try:
                n = client.get_into_sink(f"/{BUCKET}/{PROBE_KEY}")
                cut, seen = n != len(body), f"{n} of {len(body)} bytes"
            except (http.client.HTTPException, OSError) as exc:
                cut, seen = True, f"cut short ({type(exc).__name__})"
            finally:
                client.close()
            if cut != want_cut:
                raise RuntimeError(
                    f"{path}: a GET of an object whose record does not match gave {seen}: "
                    f"its S3SHIM_VERIFY_READS={INTEGRITY_SHIMS[path]} is not in effect"
                )
            outcome[path] = seen
            log(f"integrity probe, mismatching record through {path}: {seen}")
    finally:
        direct.delete_object(PROBE_KEY)
        direct.close()
    return outcome


def run_integrity_round(
    stack: Stack,
    rnd: int,
    cases: list[str],
    results: dict[str, CaseResult],
    data: memoryview,
    expected: tuple[int, str],
    crc32_b64: str,
    label: str = "",
) -> None:
    """One round of the integrity cases: the recorded object (uploaded through s3shim with
    its CRC32 in a header, then read by every path), then the unrecorded control."""
    size = len(data)
    label = label or f"round {rnd + 1}"
    direct = Client(stack.rgw_port)
    uploader = Client(stack.shim_port)  # the regular s3shim: both GET s3shims only read

    def run(case: str, op: Callable[[], object]) -> None:
        role = INTEGRITY_PROXY[case]
        pids = stack.watched().groups.get(role, []) if role else []
        rss = stack.shim_pids(role)[0] if role and role.startswith("s3shim") else None
        s = measure(stack, case, size, op, rss_pid=rss, exact_pids=pids)
        results[case].samples.append(s)
        extra = ""
        if role and s.proxy_run_s is not None:
            extra = f", {role} {s.proxy_run_s / (size / GIB):.3f} CPU-s/GiB"
        log(f"{label} {case:29s} {s.mbps:8.1f} MB/s ({s.seconds:.2f} s{extra})")

    def record_of(key: str) -> str | None:
        """The record as RGW keeps it (boto3: head_object()["Metadata"]["s3shim-checksum"])."""
        _, headers, _ = direct.request("HEAD", f"/{BUCKET}/{key}")
        return headers.get(RECORD_HEADER)

    def get_op(client: Client, key: str) -> Callable[[], object]:
        def op() -> None:
            n = client.get_into_sink(f"/{BUCKET}/{key}")
            if n != size:
                raise S3Error(f"GET {key}: {n} bytes, expected {size}")

        return op

    def upload(case: str, key: str, headers: dict[str, str] | None) -> None:
        put = functools.partial(uploader.put_object, key, data, headers)
        if case in cases:
            run(case, put)
        else:
            put()  # untimed: the GETs need the object

    clients: dict[str, Client] = {}

    def client_of(case: str) -> Client:
        path = INTEGRITY_PROXY[case] or "direct"
        if path not in clients:
            clients[path] = Client(stack.port(path))
        return clients[path]

    if any(c in cases for c in INTEGRITY_RECORDED):
        key = f"integrity-crc32-{rnd}"
        crc = {"x-amz-checksum-crc32": crc32_b64, "x-amz-sdk-checksum-algorithm": "CRC32"}
        upload("integrity-put-crc32", key, crc)
        want = f"CRC32:{crc32_b64}"
        if (got := record_of(key)) != want:
            raise RuntimeError(f"{key}: record {got!r} on RGW, expected {want!r}")
        # direct and nginx rotate; verify-on and verify-off alternate, each beside a reference.
        refs = ["integrity-get-direct", "integrity-get-nginx"]
        shims = ["integrity-get-verify-on", "integrity-get-verify-off"]
        if rnd % 2:
            refs.reverse()
            shims.reverse()
        for case in (refs[0], shims[0], refs[1], shims[1]):
            if case in cases:
                run(case, get_op(client_of(case), key))
        for case in INTEGRITY_RECORDED:
            if case not in cases:
                continue
            results[case].record = want
            if not results[case].verified:
                reader = direct if case.startswith("integrity-put") else client_of(case)
                results[case].verified = verify(reader, key, expected)
        direct.delete_object(key)
        stack.gc()

    if any(c in cases for c in INTEGRITY_CONTROL):
        key = f"integrity-nosum-{rnd}"
        upload("integrity-put-nosum", key, None)
        if (got := record_of(key)) is not None:
            raise RuntimeError(f"{key}: record {got!r} on RGW for a PutObject without checksum")
        case = "integrity-get-nosum-verify-on"
        if case in cases:
            run(case, get_op(client_of(case), key))
        for case in INTEGRITY_CONTROL:
            if case not in cases:
                continue
            results[case].record = "none"
            if not results[case].verified:
                reader = direct if case.startswith("integrity-put") else client_of(case)
                results[case].verified = verify(reader, key, expected)
        direct.delete_object(key)
        stack.gc()
    for client in (*clients.values(), uploader, direct):
        client.close()


def build_integrity_report(
    cases: list[str], results: dict[str, CaseResult], size: int
) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for case in cases:
        r = results[case]
        if not r.samples:
            continue
        gib = r.samples[0].nbytes / GIB
        role = INTEGRITY_PROXY[case]
        row = case_row(r, role)
        row["proxy_run_s_per_gib"] = (
            round(statistics.median(s.proxy_run_s or 0.0 for s in r.samples) / gib, 3)
            if role
            else None
        )
        row["proxy_run_s_per_gib_all"] = (
            [round((s.proxy_run_s or 0.0) / gib, 3) for s in r.samples] if role else None
        )
        row["mbps_range"] = [min(row["mbps_all"]), max(row["mbps_all"])]
        row["record"] = r.record
        rows[case] = row

    def paired(case: str, other: str, fn: Callable[[Sample, Sample], float]) -> float | None:
        a, b = results.get(case), results.get(other)
        if a is None or b is None or not a.samples or len(a.samples) != len(b.samples):
            return None
        return round(
            statistics.median(fn(x, y) for x, y in zip(a.samples, b.samples, strict=True)), 3
        )

    def ratio(x: Sample, y: Sample) -> float:
        return x.mbps / y.mbps

    for case, row in rows.items():
        if not case.startswith("integrity-get-"):
            continue
        for ref, name in (
            ("integrity-get-direct", "vs_direct"),
            ("integrity-get-nginx", "vs_nginx"),
        ):
            base = rows.get(ref)
            row[name] = round(row["mbps_median"] / base["mbps_median"], 3) if base else None
            row[f"{name}_paired"] = paired(case, ref, ratio) if base else None
    on, off = rows.get("integrity-get-verify-on"), rows.get("integrity-get-verify-off")
    verification: dict[str, Any] | None = None
    if on is not None and off is not None:
        gib = size / GIB

        def cost(x: Sample, y: Sample) -> float:
            return ((x.proxy_run_s or 0.0) - (y.proxy_run_s or 0.0)) / gib

        verification = {
            "what": "s3shim CPU-s/GiB of a full GET of a recorded object (CRC32), "
            "S3SHIM_VERIFY_READS=true minus =false; CPU from /proc/PID/task/*/schedstat",
            "on_cpu_s_per_gib": on["proxy_run_s_per_gib"],
            "off_cpu_s_per_gib": off["proxy_run_s_per_gib"],
            "cost_cpu_s_per_gib": round(on["proxy_run_s_per_gib"] - off["proxy_run_s_per_gib"], 3),
            "cost_cpu_s_per_gib_paired": paired(
                "integrity-get-verify-on", "integrity-get-verify-off", cost
            ),
            "on_ticks_cpu_s_per_gib": on["proxy_cpu_s_per_gib"],
            "off_ticks_cpu_s_per_gib": off["proxy_cpu_s_per_gib"],
            "on_vs_off_mbps": round(on["mbps_median"] / off["mbps_median"], 3),
            "on_vs_off_mbps_paired": paired(
                "integrity-get-verify-on", "integrity-get-verify-off", ratio
            ),
            "on_one_core_ceiling_mbps": round(GIB / on["proxy_run_s_per_gib"] / 1e6),
            "off_one_core_ceiling_mbps": round(GIB / off["proxy_run_s_per_gib"] / 1e6),
        }
        ctl = rows.get("integrity-get-nosum-verify-on")
        if ctl is not None:
            verification["unrecorded_on_cpu_s_per_gib"] = ctl["proxy_run_s_per_gib"]
    return {
        "description": (
            f"one PutObject of {size // MIB} MiB through s3shim with x-amz-checksum-crc32 "
            "(UNSIGNED-PAYLOAD), so s3shim records CRC32 with it (HEAD on RGW checked); GETs "
            "of it direct, through nginx, and through two s3shims of their own with "
            "S3SHIM_VERIFY_READS=true and =false (on/off alternate every round); control: "
            "the same PutObject without a checksum (no record) read through the verifying one"
        ),
        "cases": rows,
        "verification": verification,
    }


def print_integrity_table(report: dict[str, Any], probe: dict[str, str] | None) -> None:
    print(f"\nintegrity: {report['description']}")
    print(
        "MB/s = median of rounds (range); xdirect/xnginx = ratio of the median MB/s to the same "
        "object's direct/nginx GET;\nproxyCPU = CPU-s/GiB of the proxy (10 ms ticks, as above), "
        "runCPU = the same from schedstat (ns); record = what RGW keeps"
    )
    head = (
        f"{'case':29s} {'MB/s':>5s} {'(range)':>11s} {'xdirect':>7s} {'xnginx':>7s} "
        f"{'proxyCPU':>8s} {'runCPU':>6s} {'minflt':>6s} {'shimRSS':>7s} {'rgwCPU':>6s} "
        f"{'osdCPU':>6s} {'cliCPU':>6s}  record"
    )
    print(head)
    print("-" * len(head))
    for case, r in report["cases"].items():
        rng = f"({r['mbps_range'][0]:.0f}-{r['mbps_range'][1]:.0f})"
        print(
            f"{case:29s} {r['mbps_median']:5.0f} {rng:>11s} {fmt(r.get('vs_direct'), '7.2f')} "
            f"{fmt(r.get('vs_nginx'), '7.2f')} {fmt(r['proxy_cpu_s_per_gib'], '8.2f')} "
            f"{fmt(r['proxy_run_s_per_gib'], '6.3f')} {fmt(r['proxy_minflt_per_gib'], '6.0f')} "
            f"{fmt(r['s3shim_peak_rss_mib'], '7.1f')} {fmt(r['rgw_cpu_s_per_gib'], '6.2f')} "
            f"{fmt(r['osd_cpu_s_per_gib'], '6.2f')} {fmt(r['client_cpu_s_per_gib'], '6.2f')}  "
            f"{r['record'].split(':')[0]}"
        )
    v = report["verification"]
    if v is not None:
        paired_cost = v["cost_cpu_s_per_gib_paired"]
        print(
            "\nverification cost, S3SHIM_VERIFY_READS on - off (same object, same rounds):\n"
            f"  s3shim {v['on_cpu_s_per_gib']:.3f} - {v['off_cpu_s_per_gib']:.3f} = "
            f"{v['cost_cpu_s_per_gib']:+.3f} CPU-s/GiB (paired per round "
            f"{'-' if paired_cost is None else format(paired_cost, '+.3f')}); in ticks "
            f"{fmt(v['on_ticks_cpu_s_per_gib'], '.2f')} vs "
            f"{fmt(v['off_ticks_cpu_s_per_gib'], '.2f')}\n"
            f"  MB/s on / off = {v['on_vs_off_mbps']:.2f}, paired per round "
            f"{fmt(v['on_vs_off_mbps_paired'], '.2f')}; one-core ceiling "
            f"{v['on_one_core_ceiling_mbps']} vs {v['off_one_core_ceiling_mbps']} MB/s"
        )
        if "unrecorded_on_cpu_s_per_gib" in v:
            print(
                "  control, the unrecorded object through the verifying s3shim: "
                f"{v['unrecorded_on_cpu_s_per_gib']:.3f} CPU-s/GiB (nothing to verify)"
            )
    if probe:
        print(
            "probe, an object on RGW whose record does not match: "
            + "; ".join(f"{k} {v}" for k, v in probe.items())
        )


# ---------------------------------------------------------------------- workers comparison
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
    for case in cases:
        r = results[case]
        if not r.samples:
            continue
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
        a, b = results.get(case), results.get(other)
        if a is None or b is None or not a.samples or len(a.samples) != len(b.samples):
            return None
        pairs = zip(a.samples, b.samples, strict=True)
        return round(statistics.median(x.mbps / y.mbps for x, y in pairs), 3)

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


# ---------------------------------------------------------------------------------- profile
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


def summarize_profile(raw: Path, top: int = 15) -> dict[str, Any]:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    self_counts: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack_text.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        self_counts[frames[-1]] += count  # with its line number
        for f in {re.sub(r":\d+\)$", ")", f) for f in frames}:
            incl[f] += count
    pct = 100.0 / total if total else 0.0
    return {
        "samples": total,
        "self": [(f, round(c * pct, 1)) for f, c in self_counts.most_common(top)],
        "inclusive": [(f, round(c * pct, 1)) for f, c in incl.most_common(top + 10)],
    }


# ---------------------------------------------------------------------------------- report
def case_row(r: CaseResult, proxy: str | None) -> dict[str, Any]:
    """One case's medians over its rounds (the JSON row; the table prints some of them)."""
    gib = r.samples[0].nbytes / GIB

    def per_gib(role: str, sys_only: bool = False) -> float | None:
        if role not in r.samples[0].cpu_s:
            return None
        values = (s.sys_s[role] if sys_only else s.cpu_s[role] for s in r.samples)
        return round(statistics.median(values) / gib, 3)

    hwms = [s.shim_hwm_kib for s in r.samples if s.shim_hwm_kib is not None]
    return {
        "mbps_median": round(r.median(lambda s: s.mbps), 1),
        "mbps_all": [round(s.mbps, 1) for s in r.samples],
        "seconds_all": [round(s.seconds, 3) for s in r.samples],
        "proxy": proxy,
        "proxy_cpu_s_per_gib": per_gib(proxy) if proxy else None,
        "proxy_sys_s_per_gib": per_gib(proxy, sys_only=True) if proxy else None,
        "proxy_minflt_per_gib": (
            round(statistics.median(s.minflt[proxy] for s in r.samples) / gib) if proxy else None
        ),
        "rgw_cpu_s_per_gib": per_gib("rgw"),
        "osd_cpu_s_per_gib": per_gib("osd"),
        "client_cpu_s_per_gib": per_gib("client"),
        "s3shim_peak_rss_mib": round(max(hwms) / 1024, 1) if hwms else None,
        "verified": r.verified,
    }


def build_report(
    args: argparse.Namespace,
    cases: list[str],
    results: dict[str, CaseResult],
    meta: dict[str, Any],
) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for case in cases:
        r = results[case]
        if not r.samples:
            continue
        rows[case] = case_row(r, proxy_of(case))

    def paired(case: str, other: str) -> float | None:
        """Median over rounds of the ratio within each round (both ran minutes apart)."""
        a, b = results.get(case), results.get(other)
        if a is None or b is None or not a.samples or len(a.samples) != len(b.samples):
            return None
        pairs = zip(a.samples, b.samples, strict=True)
        return round(statistics.median(x.mbps / y.mbps for x, y in pairs), 3)

    for case, row in rows.items():
        op = case.split("-")[0]
        base = rows.get(f"{op}-direct")
        ngx = rows.get(f"{op}-nginx")
        row["vs_direct"] = round(row["mbps_median"] / base["mbps_median"], 3) if base else None
        row["vs_nginx"] = round(row["mbps_median"] / ngx["mbps_median"], 3) if ngx else None
        row["vs_direct_paired"] = paired(case, f"{op}-direct") if base else None
        row["vs_nginx_paired"] = paired(case, f"{op}-nginx") if ngx else None
    plain, chk = rows.get("put-plain-s3shim"), rows.get("put-chunked-s3shim")
    chunked_ratio = chunked_paired = None
    if plain is not None and chk is not None:
        chunked_ratio = round(chk["mbps_median"] / plain["mbps_median"], 3)
        chunked_paired = paired("put-chunked-s3shim", "put-plain-s3shim")
        chk["vs_plain"] = chunked_ratio
        chk["vs_plain_paired"] = chunked_paired
    for row in rows.values():
        # What the proxy alone could move with one core (no client or store on that core).
        cpu = row["proxy_cpu_s_per_gib"]
        row["proxy_one_core_ceiling_mbps"] = round(GIB / cpu / 1e6) if cpu else None
    targets = []
    for op in ("mpu", "get"):
        shim_row = rows.get(f"{op}-s3shim")
        if shim_row and shim_row["vs_direct"] is not None:
            targets.append(
                {
                    "target": f"{op}-s3shim >= 60% of {op}-direct",
                    "value": shim_row["vs_direct"],
                    "paired": shim_row["vs_direct_paired"],
                    "met": shim_row["vs_direct"] >= 0.6,
                }
            )
    rss = [r["s3shim_peak_rss_mib"] for r in rows.values() if r["s3shim_peak_rss_mib"]]
    if rss:
        targets.append(
            {"target": "s3shim peak RSS < 150 MiB", "value": max(rss), "met": max(rss) < 150}
        )
    if chunked_ratio is not None:
        targets.append(
            {
                "target": "put-chunked-s3shim >= 70% of put-plain-s3shim",
                "value": chunked_ratio,
                "paired": chunked_paired,
                "met": chunked_ratio >= 0.7,
            }
        )
    return {
        "meta": meta,
        "args": {
            "size_mib": args.size_mib,
            "part_mib": args.part_mib,
            "repeat": args.repeat,
            "only": args.only,
        },
        "cases": rows,
        "chunked_vs_plain": chunked_ratio,
        "chunked_vs_plain_paired": chunked_paired,
        "chunked_upload": (
            f"one PutObject of {args.size_mib} MiB, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, "
            f"{CHUNK_SIZE // 1024} KiB signed chunks, signed x-amz-checksum-crc32 trailer; "
            "put-plain-s3shim is the same PutObject with UNSIGNED-PAYLOAD"
        ),
        "targets": targets,
    }


def fmt(value: float | None, spec: str) -> str:
    width = int(spec.split(".")[0] or 0)
    return "-".rjust(width) if value is None else format(value, spec)


def print_table(report: dict[str, Any]) -> None:
    head = (
        f"{'case':20s} {'MB/s':>7s} {'xdirect':>7s} {'xnginx':>7s} {'proxyCPU':>8s} "
        f"{'minflt':>8s} {'shimRSS':>7s} {'rgwCPU':>6s} {'osdCPU':>6s} {'cliCPU':>6s}"
    )
    print()
    a = report["args"]
    print(f"size {a['size_mib']} MiB, parts {a['part_mib']} MiB, {a['repeat']} interleaved rounds")
    print("MB/s = 10^6 B/s, median of rounds; *CPU = CPU-s per GiB moved, median of rounds;")
    print("minflt = proxy minor faults/GiB; shimRSS = s3shim peak RSS MiB (max over rounds)")
    print("xdirect/xnginx = ratio of the median MB/s to the same operation's direct/nginx one")
    print(head)
    print("-" * len(head))
    for case, r in report["cases"].items():
        print(
            f"{case:20s} {r['mbps_median']:7.0f} {fmt(r['vs_direct'], '7.2f')} "
            f"{fmt(r['vs_nginx'], '7.2f')} {fmt(r['proxy_cpu_s_per_gib'], '8.2f')} "
            f"{fmt(r['proxy_minflt_per_gib'], '8.0f')} {fmt(r['s3shim_peak_rss_mib'], '7.1f')} "
            f"{fmt(r['rgw_cpu_s_per_gib'], '6.2f')} {fmt(r['osd_cpu_s_per_gib'], '6.2f')} "
            f"{fmt(r['client_cpu_s_per_gib'], '6.2f')}"
        )
    if report["chunked_vs_plain"] is not None:
        chk, plain = report["cases"]["put-chunked-s3shim"], report["cases"]["put-plain-s3shim"]
        print(
            f"\nput-chunked-s3shim / put-plain-s3shim = {report['chunked_vs_plain']:.2f}, "
            f"paired per round {fmt(report['chunked_vs_plain_paired'], '.2f')}\n"
            f"  (s3shim {chk['proxy_cpu_s_per_gib']:.2f} vs {plain['proxy_cpu_s_per_gib']:.2f} "
            "CPU-s/GiB; one-core ceiling "
            f"{chk['proxy_one_core_ceiling_mbps']} vs {plain['proxy_one_core_ceiling_mbps']} MB/s)"
        )
    idle = report["meta"].get("idle_cpu_per_s")
    if idle:
        print("idle CPU-s per second: " + ", ".join(f"{k} {v}" for k, v in idle.items()))
    print("\ntargets (reported, not asserted):")
    for t in report["targets"]:
        paired = f" (paired per round: {t['paired']})" if t.get("paired") is not None else ""
        print(f"  {'MET ' if t['met'] else 'MISS'} {t['target']}: {t['value']}{paired}")


def tool_version(cmd: list[str]) -> str:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (res.stdout or res.stderr).strip().splitlines()[0] if (res.stdout or res.stderr) else "?"


def machine_meta() -> dict[str, Any]:
    import aiohttp

    try:
        import uvloop

        uv = str(getattr(uvloop, "__version__", "?"))
    except ImportError:
        uv = None
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "uvloop": uv,
        "kernel": platform.release(),
        "ceph": tool_version(["radosgw", "--version"]),
        "nginx": tool_version(["nginx", "-v"]),
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
    }


# ------------------------------------------------------------------------------------ main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size-mib", type=int, default=1024, help="object size (default 1024)")
    p.add_argument("--part-mib", type=int, default=64, help="multipart part size (default 64)")
    p.add_argument("--repeat", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        help="run only cases whose name contains one of these words (comma-separated, "
        f"repeatable); cases: {', '.join(ALL_CASES)}; words starting with 'workers' pick "
        "from the workers comparison's cases instead (--only workers: it alone), words "
        "starting with 'integrity' from the integrity cases (--only integrity: them alone)",
    )
    p.add_argument(
        "--integrity",
        action="store_true",
        help="add the integrity cases (read verification on vs off) to every round: "
        + ", ".join(INTEGRITY_CASES),
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="after the timed rounds, one more round with py-spy attached to s3shim; "
        "collapsed stacks in bench/results/profile-<case>.txt",
    )
    g = p.add_argument_group(
        "workers comparison (opt-in)",
        "concurrent streams on new connections against RGW directly and through s3shim with "
        "S3SHIM_WORKERS=1 and =2, interleaved; cases: " + ", ".join(WORKER_CASES),
    )
    g.add_argument(
        "--workers-compare",
        action="store_true",
        help="add the workers comparison after the regular cases (alone: --only workers)",
    )
    g.add_argument("--workers-streams", type=int, default=4, help="concurrent streams (4)")
    g.add_argument("--workers-get-mib", type=int, default=256, help="object each GET reads (256)")
    g.add_argument(
        "--workers-put-mib", type=int, default=64, help="part each upload stream sends (64)"
    )
    g.add_argument(
        "--workers-repeat",
        type=int,
        default=9,
        help="interleaved rounds (9: every path in every position of the order 3 times)",
    )
    p.add_argument("--output", type=Path, default=BENCH / "results" / "latest.json")
    p.add_argument("--keep-state", action="store_true", help="keep the work dir (logs)")
    args = p.parse_args(argv)
    if args.size_mib < args.part_mib or args.part_mib < 5 or args.repeat < 1:
        p.error("need --size-mib >= --part-mib >= 5 and --repeat >= 1")
    if (
        args.workers_streams < 1
        or args.workers_repeat < 1
        or args.workers_get_mib < 1
        or args.workers_put_mib < 5
    ):
        p.error("need --workers-streams, --workers-repeat, --workers-get-mib >= 1, put >= 5")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cases, wcases, icases = select_cases(args.only, args.workers_compare, args.integrity)
    need = {p for p in PATHS if any(c.endswith(f"-{p}") for c in cases)}
    need |= {worker_path(c) for c in wcases}
    need |= {p for c in icases if (p := INTEGRITY_PROXY[c]) is not None}
    if icases:
        need.add("s3shim")  # the integrity objects are uploaded through the regular s3shim
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if args.profile and not Path(py_spy).exists():
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    size = args.size_mib * MIB if cases or icases else 0
    wcfg = WorkersConfig(
        streams=args.workers_streams,
        get_bytes=args.workers_get_mib * MIB,
        put_bytes=args.workers_put_mib * MIB,
        repeat=args.workers_repeat,
    )
    out_dir = args.output.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = machine_meta()
    log(f"cases: {', '.join(cases + icases + wcases)}")

    total = max([size, *((wcfg.get_bytes, wcfg.put_total) if wcases else ())])
    log(f"generating {total // MIB} MiB of random data")
    all_data = memoryview(os.urandom(total))
    data = all_data[:size]
    expected = (size, hashlib.sha256(data).hexdigest()) if cases or icases else (0, "")
    crc32_b64 = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode() if icases else ""

    work = Path(tempfile.mkdtemp(prefix="s3shim-bench-"))
    stack: Stack | None = None
    results = {c: CaseResult(c) for c in cases}
    wresults = {c: WorkersResult(c) for c in wcases}
    iresults = {c: CaseResult(c) for c in icases}
    probe: dict[str, str] | None = None
    t_start = time.monotonic()
    try:
        # One object lives at a time (deleted and garbage-collected after each case); the
        # margin covers RGW's multipart bookkeeping and the OSD's 95 % full ratio. The workers
        # comparison keeps its GET object and one upload.
        memstore = max(
            2 * GIB,
            2 * size + GIB,
            (wcfg.get_bytes + wcfg.put_total + GIB) if wcases else 0,
        )
        stack = start_rgw(work / "rgw", free_port(), memstore)
        if "nginx" in need:
            start_nginx(stack, work)
        if need & {"s3shim", "s3shim-1w"} or any(c.startswith("put-") for c in cases):
            start_shim(stack, work)
        if "s3shim-2w" in need:
            start_shim(stack, work, workers=2)
        for name, verify_reads in INTEGRITY_SHIMS.items():
            if name in need:
                start_shim(stack, work, name=name, env_extra={"S3SHIM_VERIFY_READS": verify_reads})
        assert stack.shim is None or stack.shim.pid
        Client(stack.rgw_port).request("PUT", f"/{BUCKET}")
        if stack.shim is not None:
            meta["s3shim_idle_rss_mib"] = round(status_kib(stack.shim.pid, "VmRSS") / 1024, 1)
        # Warm-up, untimed: a fresh cluster is still settling (placement groups, first
        # allocations in the memstore), and every process's first request pays for imports
        # and connection set-up. Smaller objects, same code paths, results thrown away.
        if cases or icases:
            warm = data[: min(size, WARMUP_SIZE)]
            warm_expected = (len(warm), hashlib.sha256(warm).hexdigest())
            if cases:
                warm_results = {c: CaseResult(c) for c in cases}
                part = min(args.part_mib * MIB, len(warm))
                run_round(stack, 0, cases, warm_results, warm, warm_expected, part, label="warm-up")
            if icases:
                if stack.extra:
                    probe = probe_verification(stack)
                    meta["integrity_probe"] = probe
                warm_crc = base64.b64encode(zlib.crc32(warm).to_bytes(4, "big")).decode()
                warm_i = {c: CaseResult(c) for c in icases}
                run_integrity_round(
                    stack, 0, icases, warm_i, warm, warm_expected, warm_crc, label="warm-up"
                )
            meta["idle_cpu_per_s"] = idle_cpu(stack)
            for rnd in range(args.repeat):
                if cases:
                    run_round(stack, rnd, cases, results, data, expected, args.part_mib * MIB)
                if icases:
                    run_integrity_round(stack, rnd, icases, iresults, data, expected, crc32_b64)
            meta["timed_seconds"] = round(time.monotonic() - t_start, 1)
        if wcases:
            # After the regular rounds, so that they run exactly as without the comparison
            # (its concurrent streams leave the shared 1-worker s3shim with a larger heap).
            t_workers = time.monotonic()
            log(f"workers comparison: uploading its {args.workers_get_mib} MiB GET object")
            Client(stack.rgw_port).multipart_upload(
                GET_KEY, all_data[: wcfg.get_bytes], min(64 * MIB, wcfg.get_bytes)
            )
            # Full size: the forked worker's first requests pay for its first allocations too.
            warm_w = {c: WorkersResult(c) for c in wcases}
            run_workers_round(stack, 0, wcases, warm_w, all_data, wcfg, label="workers warm-up")
            if stack.shim2_pids:
                meta["s3shim_2w_idle_rss_mib"] = [
                    round(status_kib(p, "VmRSS") / 1024, 1) for p in stack.shim2_pids
                ]
            if not cases and not icases:
                meta["idle_cpu_per_s"] = idle_cpu(stack)
            for rnd in range(wcfg.repeat):
                run_workers_round(stack, rnd, wcases, wresults, all_data, wcfg)
            meta["workers_seconds"] = round(time.monotonic() - t_workers, 1)
        if args.profile and cases:
            log("profiling round (untimed, py-spy attached to s3shim)")
            profiler = py_spy_profiler(stack, out_dir, py_spy)
            run_round(stack, 0, cases, results, data, expected, args.part_mib * MIB, profiler)
        meta["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
        for proc in (stack.shim, stack.shim2, *(e.proc for e in stack.extra.values())):
            if proc is not None and proc.poll() is not None:
                raise RuntimeError("s3shim exited during the run")
    finally:
        stop_all(stack, args.keep_state, work)

    report = build_report(args, cases, results, meta)
    if icases:
        report["integrity"] = build_integrity_report(icases, iresults, size)
    if wcases:
        report["workers"] = build_workers_report(wcases, wresults, wcfg)
    if args.profile:
        report["profiles"] = {}
        for case in cases:
            raw = out_dir / f"profile-{case}.txt"
            if raw.exists():
                report["profiles"][case] = summarize_profile(raw)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    if cases:
        print_table(report)
    if icases:
        print_integrity_table(report["integrity"], probe)
    if wcases:
        print_workers_table(report["workers"])
    if (icases or wcases) and not cases:
        idle = report["meta"].get("idle_cpu_per_s")
        print("idle CPU-s per second: " + ", ".join(f"{k} {v}" for k, v in idle.items()))
        print(
            "load average: "
            + " -> ".join(" ".join(meta[k]) for k in ("loadavg_start", "loadavg_end") if k in meta)
        )
    for case, prof in report.get("profiles", {}).items():
        print(f"\npy-spy {case} ({prof['samples']} samples), self time %:")
        for frame, share in prof["self"][:10]:
            print(f"  {share:5.1f}  {frame}")
    print(f"\nwritten: {args.output} ({time.monotonic() - t_start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
