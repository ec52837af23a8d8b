"""bench/small.py's upstreams (INSTANT nginx, or RGW) and what stands in front of each: nginx,
s3shim with 1 and 2 workers, bench/floor.py's servers."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import BENCH, BUCKET, free_port, log, wait_port
from bench.procfs import children_of
from bench.s3client import Client
from bench.small_requests import COMPARED, GET_KEY
from bench.stack import Stack, launch_nginx, start_nginx, start_rgw, start_shim, stop_all


# ------------------------------------------------------------------------------ the stack
@dataclass
class Target:
    """Where the load generator connects, and whose CPU is the proxy's there."""

    path: str  # s3shim, s3shim-2w, nginx, direct, floor-<mode> (bench/floor.py)
    port: int
    proxy_pids: list[int]


@dataclass
class Upstream:
    name: str
    port: int
    pids: list[int]  # its CPU: instant nginx master + worker, or radosgw + OSD
    stack: Stack  # bench/stack.py's: holds this upstream's nginx and s3shims
    work: Path
    targets: dict[str, Target] = field(default_factory=dict)
    instant: subprocess.Popen[bytes] | None = None
    floors: list[subprocess.Popen[bytes]] = field(default_factory=list)


def start_instant(work: Path) -> tuple[subprocess.Popen[bytes], int, list[int]]:
    """The INSTANT upstream: nginx with a static 1 KiB object, PUT answered at once."""
    prefix, root = work / "upstream", work / "www"
    prefix.mkdir(parents=True)
    (root / BUCKET).mkdir(parents=True)
    proc, port = launch_nginx(
        prefix, "nginx-instant.conf.template", {"@ROOT@": str(root)}, "instant nginx"
    )
    pids = [proc.pid, *children_of(proc.pid)]
    log(f"instant upstream (nginx) on 127.0.0.1:{port}, pids {pids}")
    return proc, port, pids


def build_upstream(
    name: str,
    work: Path,
    data: bytes,
    with_2w: bool,
    floors: Sequence[str],
    ups: dict[str, Upstream],
    compared: Path | None = None,
) -> None:
    """The upstream, then nginx and s3shim in front of it (bench/stack.py's starters).

    It goes into ``ups`` as soon as it runs, so that a failure further on still stops it.
    """
    work.mkdir(parents=True)
    if name == "instant":
        proc, port, pids = start_instant(work)
        (work / "www" / BUCKET / GET_KEY).write_bytes(data)
        # bench/stack.py's starters take the store from a Stack; this one has no Ceph to stop.
        stack = Stack(state=work, rgw_port=port, rgw_pids=[], osd_pids=[])
        up = Upstream(name, port, pids, stack, work, instant=proc)
        ups[name] = up
    else:
        # memstore: 1 KiB objects; the 1 GiB floor is the OSD's, not the data's.
        stack = start_rgw(work / "rgw", free_port(), 1024 * 1024 * 1024)
        up = Upstream(name, stack.rgw_port, stack.rgw_pids + stack.osd_pids, stack, work)
        ups[name] = up
        client = Client(stack.rgw_port)
        client.request("PUT", f"/{BUCKET}")
        client.request("PUT", f"/{BUCKET}/{GET_KEY}", body=data)
        client.close()
    start_nginx(stack, work)
    start_shim(stack, work)
    assert stack.shim is not None
    up.targets["s3shim"] = Target("s3shim", stack.shim_port, [stack.shim.pid])
    up.targets["nginx"] = Target("nginx", stack.nginx_port, stack.nginx_pids)
    up.targets["direct"] = Target("direct", up.port, [])
    if with_2w:
        start_shim(stack, work, workers=2)
        up.targets["s3shim-2w"] = Target("s3shim-2w", stack.shim2_port, stack.shim2_pids)
    if compared is not None:
        start_shim(stack, work, name=COMPARED, repo=compared)
        extra = stack.extra[COMPARED]
        up.targets[COMPARED] = Target(COMPARED, extra.port, [extra.proc.pid])
    for mode in floors:
        proc, port = start_floor(mode, up.port, work)
        up.floors.append(proc)
        up.targets[f"floor-{mode}"] = Target(f"floor-{mode}", port, [proc.pid])


def start_floor(mode: str, upstream_port: int, work: Path) -> tuple[subprocess.Popen[bytes], int]:
    """One of bench/floor.py's servers: the framework's own cost, without s3shim's work."""
    port = free_port()
    out = (work / f"floor-{mode}.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.floor",
            mode,
            str(port),
            str(upstream_port),
            str(work / "www" / BUCKET / GET_KEY),
        ],
        cwd=BENCH.parent,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out.close()
    wait_port(port, lambda: proc.poll() is None, f"floor {mode}")
    log(f"floor {mode} on 127.0.0.1:{port}, pid {proc.pid}")
    return proc, port


def stop_upstream(up: Upstream, keep: bool) -> None:
    for proc in up.floors:
        proc.kill()
        proc.wait()
    if up.instant is not None and up.instant.poll() is None:
        up.instant.send_signal(signal.SIGQUIT)
        try:
            up.instant.wait(15)
        except subprocess.TimeoutExpired:
            up.instant.kill()
            up.instant.wait()
    stop_all(up.stack, keep, up.work)
