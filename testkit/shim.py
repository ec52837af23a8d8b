"""Run the real s3shim as a separate process in front of a real store, for tests."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, Unpack

import boto3
from botocore.client import BaseClient
from botocore.config import Config as BotoConfig

from .helpers import free_port as free_port  # re-exported: older callers import it from here
from .rawclient import HasKeys


@dataclass(frozen=True)
class Shim:
    endpoint: str
    access_key: str
    secret_key: str
    log_path: Path
    admin: str  # http://127.0.0.1:PORT of the admin listener
    pid: int
    region: str = "us-east-1"

    def client(self, **config: Any) -> BaseClient:
        """boto3 with default settings, pointed at s3shim (as a user sets S3_ENDPOINT_URL)."""
        return s3_client(self.endpoint, self.access_key, self.secret_key, **config)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_entries(self, until: str | None = None, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The JSON log lines; with ``until``, wait for a line containing that text (s3shim
        writes a request's line just after the response went out)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_text()
            if until is None or until in text or time.monotonic() > deadline:
                return [json.loads(x) for x in text.splitlines() if x.startswith("{")]
            time.sleep(0.05)


def s3_client(
    endpoint: str,
    access_key: str,
    secret_key: str,
    *,
    region: str = "us-east-1",
    token: str | None = None,
    **config: Any,
) -> BaseClient:
    """boto3 at ``endpoint`` with these keys, one attempt per call; ``config``: botocore
    Config's arguments (signature_version, s3, ...)."""
    cfg = BotoConfig(retries={"max_attempts": 1, "mode": "standard"}, **config)
    where = {"endpoint_url": endpoint, "region_name": region}
    keys = {"aws_access_key_id": access_key, "aws_secret_access_key": secret_key}
    if token is not None:
        keys["aws_session_token"] = token
    verify = os.environ.get("S3SHIM_TEST_CA") or None
    return boto3.client("s3", verify=verify, config=cfg, **where, **keys)


PATH_STYLE = {"addressing_style": "path"}  # client_of(..., s3=PATH_STYLE)


def client_of(target: HasKeys, *, endpoint: str | None = None, **options: Any) -> BaseClient:
    """s3_client with the keys of ``target`` (a Store, a Shim, a client), sent to its endpoint
    or to ``endpoint``; s3_client's options."""
    keys = (target.access_key, target.secret_key)
    return s3_client(endpoint or target.endpoint, *keys, **options)


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"s3shim exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"s3shim did not listen on {port}:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def run_shim(
    upstream: str,
    access_key: str,
    secret_key: str,
    log_dir: Path,
    *,
    disable_sse: bool = True,
    disable_checksums: bool = True,
    tls: tuple[str, str] | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Shim]:
    log_dir.mkdir(parents=True, exist_ok=True)
    # free_port() only finds a port free *now*: another process may take it before s3shim
    # binds (seen once in CI as "address already in use"). Then try again with new ports.
    for attempt in range(5):
        port, admin_port = free_port(), free_port()
        log = log_dir / f"s3shim-{port}.log"
        child_env = {
            "PATH": os.environ.get("PATH", ""),
            "S3SHIM_UPSTREAM_URL": upstream,
            "AWS_ACCESS_KEY_ID": access_key,
            "AWS_SECRET_ACCESS_KEY": secret_key,
            "S3SHIM_LISTEN_PORT": str(port),
            "S3SHIM_ADMIN_PORT": str(admin_port),
            "AWS_S3_DISABLE_SSE": str(disable_sse).lower(),
            "AWS_S3_DISABLE_CHECKSUMS": str(disable_checksums).lower(),
            "S3SHIM_LOG_FORMAT": "json",
            **(env or {}),
        }
        port = int(child_env["S3SHIM_LISTEN_PORT"])
        admin_port = int(child_env["S3SHIM_ADMIN_PORT"])
        if tls:
            child_env["S3SHIM_TLS_CERT"], child_env["S3SHIM_TLS_KEY"] = tls
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "s3shim"],
                env=child_env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            # Every listener a test may use: the admin port comes up just after the S3 port,
            # and a slower machine showed the gap (Connection refused on /metrics).
            wait_port(port, proc, log)
            if admin_port:
                wait_port(admin_port, proc, log)
            break
        except RuntimeError:
            proc.kill()
            proc.wait()
            raced = "address already in use" in log.read_text(errors="replace")
            if not raced or attempt == 4 or "S3SHIM_LISTEN_PORT" in (env or {}):
                raise
    try:
        scheme = "https" if tls else "http"
        yield Shim(
            f"{scheme}://127.0.0.1:{port}",
            access_key,
            secret_key,
            log,
            f"http://127.0.0.1:{admin_port}",
            proc.pid,
        )
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class ShimOptions(TypedDict, total=False):
    """run_shim's settings beyond the store and the log directory."""

    disable_sse: bool
    disable_checksums: bool
    tls: tuple[str, str] | None
    env: dict[str, str] | None


def shim_for(
    store: HasKeys,
    log_dir: Path,
    *,
    via: str | None = None,
    flags: bool | None = None,
    **options: Unpack[ShimOptions],
) -> contextlib.AbstractContextManager[Shim]:
    """run_shim in front of ``store`` (a Store, or another Shim) with its keys. ``via``: the
    address s3shim sends to instead, a relay in front of that store; ``flags``: both
    AWS_S3_DISABLE_SSE and AWS_S3_DISABLE_CHECKSUMS."""
    if flags is not None:
        options["disable_sse"] = options["disable_checksums"] = flags
    return run_shim(via or store.endpoint, store.access_key, store.secret_key, log_dir, **options)


# shim_for with the store and the log directory bound (the e2e conftest's start_shim).
ShimStarter = Callable[..., contextlib.AbstractContextManager[Shim]]


# Drop-in tests run their module once with both flags on and once with both off.
FLAGS = [True, False]
FLAG_IDS = ["flags-on", "flags-off"]


def flags_on(shim: Shim) -> bool:
    """Whether this s3shim runs with AWS_S3_DISABLE_CHECKSUMS (read from its startup line)."""
    started = [e for e in shim.log_entries() if e.get("event") == "started"]
    return bool(started) and started[0].get("disable_checksums") is True
