"""The processes a bench measures: Ceph RGW (scripts/rgw.sh), nginx from a bench/ template,
s3shim as deployed (a subprocess, its environment stripped), and stopping them all."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from bench.common import ACCESS_KEY, BENCH, GIB, REPO, SECRET_KEY, free_port, log, wait_port
from bench.procfs import Watched, children_of, tcp_sockets

if TYPE_CHECKING:
    from testkit.tls import TlsFiles


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
        rgw_gc(self.state)


def start_rgw(
    state: Path,
    port: int,
    memstore_bytes: int,
    *,
    tls: TlsFiles | None = None,
    tls_port: int | str = "auto",
) -> Stack:
    """RGW serving HTTP on ``port``; with ``tls`` (its certificate and key), HTTPS as well on
    ``tls_port`` (a free one with "auto"), its endpoint in ``state / "https-endpoint"``."""
    where = f"127.0.0.1:{port}" + (f" and HTTPS on {tls_port}" if tls is not None else "")
    log(f"starting RGW on {where} (memstore {memstore_bytes / GIB:.1f} GiB) in {state}")
    with_tls = (
        ("--tls-port", str(tls_port), "--tls-cert", tls.cert, "--tls-key", tls.key)
        if tls is not None
        else ()
    )
    rgw_log = state.parent / "rgw.sh.log"
    with rgw_log.open("wb") as out:
        res = subprocess.run(
            [
                *(str(REPO / "scripts" / "rgw.sh"), "start", str(state), str(port)),
                *(ACCESS_KEY, SECRET_KEY, "--mon-v2-port", "auto", "--mon-v1-port", "auto"),
                *("--memstore-bytes", str(memstore_bytes), *with_tls),
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
    repo: Path = REPO,
) -> None:
    """Start s3shim with ``workers`` processes: stack.shim for 1, stack.shim2 for more;
    with ``name``, a 1-worker one in stack.extra[name], with ``env_extra`` on top; ``repo``:
    the checkout whose s3shim runs (``python -m s3shim`` from there)."""
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
        cwd=str(repo),
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


def rgw_gc(state: Path, check: bool = True) -> None:
    """Free the memstore now: RGW only queues deleted data for its GC (2 h by default)."""
    subprocess.run(
        [
            *("radosgw-admin", "-c", str(state / "ceph.conf"), "-n", "client.admin"),
            *("gc", "process", "--include-all"),
        ],
        check=check,
        capture_output=True,
        timeout=300,
    )


def rgw_state_for(endpoint: str) -> Path | None:
    """The scripts/rgw.sh state directory of the radosgw serving ``endpoint``, if any."""
    port = urlsplit(endpoint).port
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or not argv[0].endswith(b"radosgw") or b"-c" not in argv:
            continue
        conf = Path(argv[argv.index(b"-c") + 1].decode())
        with contextlib.suppress(OSError):
            if f"endpoint=127.0.0.1:{port}\n" in conf.read_text():
                return conf.parent
    return None
