"""The container image, built from the Dockerfile and run for real against Ceph RGW.

There is no Docker engine on this machine kind: ``scripts/container-setup.sh`` installs
podman + runc + debootstrap, picks podman's image storage (native overlay; inside a container,
whose file system is overlayfs, fuse-overlayfs or vfs) and makes sure an image tagged
``docker.io/library/python:3.11-slim`` exists. No registry is reachable, so it builds a
TEST-ONLY STAND-IN for that base once per machine (Debian 12 minbase + Python 3.11 + pip +
venv, with debootstrap; cached in podman's image store). The stand-in checks the Dockerfile's
steps, the install of the pinned runtime dependencies, the non-root user and the entrypoint
-- not the upstream ``python:3.11-slim`` image itself.

The image is built with ``podman build --pull=never`` (layer cache: warm rebuilds take
seconds) and run the way the Kubernetes manifests run it: read-only root filesystem without
any tmpfs, all capabilities dropped, no-new-privileges, the image's own user. It shares the
host network, listens on free 127.0.0.1 ports (S3 and admin) and forwards to the session's
real RGW (``rgw_store``). Convex's S3 call sequence goes through it (bytes compared inside
``run_sequence``), and ``podman stop`` (SIGTERM to s3shim as PID 1) must end it quickly with
exit code 0.

Cold, on a fresh machine: ~1.5 min (apt ~10 s, debootstrap ~45 s, build ~20 s, test ~10 s);
warm: ~10 s. Under CI=true a machine that cannot set up podman fails the test; elsewhere it is
skipped with the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

from testkit.convex_sequence import MIB, new_bucket, run_sequence
from testkit.helpers import in_ci
from testkit.shim import free_port, s3_client

if TYPE_CHECKING:
    from testkit.backends import Store

pytestmark = pytest.mark.rgw

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / "scripts" / "container-setup.sh"
# One tag per checkout, so two checkouts testing at once never remove each other's image.
IMAGE_TAG = "localhost/s3shim:test-" + hashlib.sha256(str(ROOT).encode()).hexdigest()[:10]
IMAGE_UID = 10001
STOP_TIMEOUT = 30  # podman would SIGKILL after this; s3shim must be done long before


def unavailable(reason: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"container tooling unavailable (CI=true): {reason}", pytrace=False)
    pytest.skip(f"container tooling unavailable: {reason}")


@dataclass(frozen=True)
class Podman:
    conf: str
    # container-setup.sh writes a storage.conf beside containers.conf only where podman's
    # native overlay store cannot work (inside a container); then every call must use it.
    storage_conf: str | None = None

    def __call__(
        self, *args: str, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = {"CONTAINERS_CONF": self.conf}
        if self.storage_conf:
            env["CONTAINERS_STORAGE_CONF"] = self.storage_conf
        sudo = [] if os.geteuid() == 0 else ["sudo", "-n", f"--preserve-env={','.join(env)}"]
        r = subprocess.run(
            [*sudo, "podman", "--runtime", "runc", *args],
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and r.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args)} -> {r.returncode}\n{r.stdout[-3000:]}{r.stderr[-3000:]}"
            )
        return r


@dataclass(frozen=True)
class Running:
    name: str
    endpoint: str
    admin: str
    store: Store


@pytest.fixture(scope="module")
def podman() -> Podman:
    try:
        r = subprocess.run(
            [str(SETUP)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    except subprocess.TimeoutExpired:
        unavailable(f"{SETUP.name} timed out")
    if r.returncode != 0:
        unavailable(f"{SETUP.name} exited {r.returncode}:\n{r.stderr[-3000:]}")
    conf = Path(r.stdout.strip().splitlines()[-1])
    storage = conf.with_name("storage.conf")
    return Podman(str(conf), str(storage) if storage.exists() else None)


@pytest.fixture(scope="module")
def image(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The image ID built from the working tree (a build failure is a test failure)."""
    iidfile = tmp_path_factory.mktemp("image") / "iid"
    old = podman("image", "inspect", "--format", "{{.Id}}", IMAGE_TAG, check=False)
    podman(
        "build",
        "--pull=never",
        "--network=host",  # pip reaches the package index like the host does
        "--format=docker",  # keeps HEALTHCHECK
        "--iidfile",
        str(iidfile),
        "--tag",
        IMAGE_TAG,
        "--file",
        str(ROOT / "Dockerfile"),
        str(ROOT),
        timeout=900,
    )
    iid = iidfile.read_text().strip().removeprefix("sha256:")
    previous = old.stdout.strip()
    if old.returncode == 0 and previous and not iid.startswith(previous[:12]):
        podman("rmi", previous, check=False)  # the superseded test image, if no longer used
    return iid


def http_get(url: str, timeout: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture(scope="module")
def container(
    podman: Podman, image: str, rgw_store: Store, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    name = f"s3shim-test-{uuid.uuid4().hex[:10]}"
    port = free_port()
    admin = free_port()
    while admin == port:
        admin = free_port()
    # Secrets go through an env file (mode 0600), not podman's command line.
    env_file = tmp_path_factory.mktemp("container") / "env"
    env_file.touch(mode=0o600)
    env_file.write_text(
        "\n".join(
            f"{k}={v}"
            for k, v in {
                "S3SHIM_UPSTREAM_URL": rgw_store.endpoint,
                "AWS_ACCESS_KEY_ID": rgw_store.access_key,
                "AWS_SECRET_ACCESS_KEY": rgw_store.secret_key,
                "AWS_REGION": rgw_store.region,
                "S3SHIM_LISTEN_HOST": "127.0.0.1",
                "S3SHIM_LISTEN_PORT": str(port),
                "S3SHIM_ADMIN_HOST": "127.0.0.1",
                "S3SHIM_ADMIN_PORT": str(admin),
                "AWS_S3_DISABLE_SSE": "true",
                "AWS_S3_DISABLE_CHECKSUMS": "true",
            }.items()
        )
        + "\n"
    )
    try:
        # Inside the try: a `podman run` that fails to start leaves a created container.
        podman(
            "run",
            "--detach",
            "--name",
            name,
            "--network=host",
            "--read-only",
            "--read-only-tmpfs=false",  # like Kubernetes' readOnlyRootFilesystem: no /tmp
            "--cap-drop=ALL",
            "--security-opt=no-new-privileges",
            "--health-interval=disable",  # no systemd timers here; run by hand below
            "--env-file",
            str(env_file),
            image,
        )
        deadline = time.monotonic() + 30
        admin_url = f"http://127.0.0.1:{admin}"
        while True:
            try:
                if http_get(f"{admin_url}/healthz", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            state = podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
            if state != "true" or time.monotonic() > deadline:
                logs = podman("logs", name, check=False)
                pytest.fail(
                    f"container never served /healthz (running={state}):\n"
                    f"{logs.stdout[-3000:]}{logs.stderr[-3000:]}"
                )
            time.sleep(0.1)
        yield Running(name, f"http://127.0.0.1:{port}", admin_url, rgw_store)
    finally:
        logs = podman("logs", name, check=False)
        (env_file.parent / "container.log").write_text(logs.stdout + logs.stderr)
        podman("rm", "--force", "--time", "0", name, check=False)


def test_runs_as_the_images_non_root_user(podman: Podman, container: Running) -> None:
    assert podman("exec", container.name, "id", "-u").stdout.strip() == str(IMAGE_UID)
    assert podman("exec", container.name, "id", "-g").stdout.strip() == str(IMAGE_UID)
    user = podman("inspect", "--format", "{{.Config.User}}", container.name).stdout.strip()
    assert user == f"{IMAGE_UID}:{IMAGE_UID}"
    # PID 1 is s3shim itself (exec-form entrypoint), as host UID 10001 (rootful, no userns).
    # Read from /proc rather than `podman top ... huser`, which prints "?" inside a container
    # (a nested podman cannot map the IDs back).
    pid = int(podman("inspect", "--format", "{{.State.Pid}}", container.name).stdout.strip())
    assert pid > 0
    status = proc_status(Path(f"/proc/{pid}/status").read_text())
    assert status["Uid"] == [str(IMAGE_UID)] * 4  # real, effective, saved, file system
    assert status["Gid"] == [str(IMAGE_UID)] * 4
    assert status["NSpid"][-1] == "1", status["NSpid"]  # PID 1 in the container's namespace
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert any(b"s3shim" in a for a in argv), argv


def proc_status(text: str) -> dict[str, list[str]]:
    """/proc/PID/status as key -> whitespace-separated fields."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key] = value.split()
    return out


def test_admin_endpoints_and_image_healthcheck(podman: Podman, container: Running) -> None:
    assert http_get(f"{container.admin}/healthz") == (200, "ok\n")
    status, body = http_get(f"{container.admin}/readyz")
    assert status == 200, body  # the RGW answers
    status, body = http_get(f"{container.admin}/metrics")
    assert status == 200 and "# HELP" in body
    # The Dockerfile's HEALTHCHECK command, run inside the image.
    hc = podman("healthcheck", "run", container.name, check=False)
    assert hc.returncode == 0, hc.stdout + hc.stderr


@pytest.mark.parametrize("size", [1, 5 * MIB + 1], ids=["1B", "5MiB+1"])
def test_convex_sequence_through_the_container(container: Running, size: int) -> None:
    store = container.store
    client = s3_client(container.endpoint, store.access_key, store.secret_key)
    run_sequence(client, new_bucket(client), size)


def test_logs_are_json_lines(podman: Podman, container: Running) -> None:
    """The image's default S3SHIM_LOG_FORMAT=json: one JSON object per line, either stream."""
    logs = podman("logs", container.name)
    lines = [line for line in (logs.stdout + logs.stderr).splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert all(isinstance(r, dict) for r in records)
    assert any(r.get("event") == "started" for r in records), lines[:5]


def test_sigterm_stops_quickly_with_exit_code_0(podman: Podman, container: Running) -> None:
    """Last in this module: it stops the shared container."""
    t0 = time.monotonic()
    podman("stop", "--time", str(STOP_TIMEOUT), container.name, timeout=STOP_TIMEOUT + 30)
    elapsed = time.monotonic() - t0
    code = podman("inspect", "--format", "{{.State.ExitCode}}", container.name).stdout.strip()
    assert code == "0", podman("logs", container.name, check=False).stderr[-3000:]
    assert elapsed < 10, f"stop took {elapsed:.1f}s (SIGTERM not handled promptly?)"
