"""The tools e2e tests drive, found or reported missing, and the pinned JavaScript drivers in
tests/js (MinIO JS client, Playwright), run from pytest.

A missing tool fails the test under CI=true (scripts/bootstrap.sh must have installed it) and
skips it elsewhere, with the reason: a silent skip in CI would hide a missing install step.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from testkit.helpers import in_ci
from testkit.rawclient import HasKeys

JS_DIR = Path(__file__).resolve().parent.parent / "tests" / "js"
CHROMIUM = "/usr/bin/chromium"  # Debian's package; Playwright never downloads a browser here


def unavailable(reason: str) -> None:
    if in_ci():
        pytest.fail(f"{reason} (CI=true: scripts/bootstrap.sh must install it)", pytrace=False)
    pytest.skip(f"{reason} (run scripts/bootstrap.sh)")


def need_tool(name: str, hint: str = "") -> str:
    """A program from the venv's bin/ (where bootstrap installs pinned tools, and its
    fallback Node.js when the system has no Node >= 20) or else from PATH."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which(name, path=path)
    if found is None:
        unavailable(f"{name} not found" + (f" ({hint})" if hint else ""))
    assert found is not None
    return found


def node() -> str:
    return need_tool("node")


def need_js_package(name: str) -> None:
    if not (JS_DIR / "node_modules" / name / "package.json").is_file():
        unavailable(f"tests/js/node_modules/{name} is missing (npm ci in tests/js)")


def need_chromium() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"{CHROMIUM} is missing (Debian package chromium)")
    return CHROMIUM


def run_js(script: str, plan: dict[str, Any], work: Path, timeout: float = 300) -> list[Any]:
    """Run tests/js/<script> with the plan as a JSON file; return its JSON output lines."""
    work.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"{Path(script).stem}-", suffix=".json", dir=work)
    with os.fdopen(fd, "w") as f:
        json.dump(plan, f)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(work),
        "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1",
    }
    cmd = [node(), script, name]
    r = subprocess.run(cmd, cwd=JS_DIR, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"node {script} exited {r.returncode}:\n{r.stderr[-4000:]}"
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def run_sdk_uploads(
    target: HasKeys,
    bucket: str,
    sizes: list[int],
    *,
    node_js: str,
    ca: str | None = None,
) -> list[dict[str, Any]]:
    """tests/js/upload.mjs: the AWS SDK for JavaScript v3 at its defaults uploads one stream
    body per size to ``target`` (a Store or a Shim), with its keys; one JSON line per upload
    (key, size, sha256, checksum).

    A failing upload fails the script: that is an AssertionError here (with its stderr),
    which a control test expects when it points the SDK straight at a store. ``node_js`` is
    the root conftest's fixture of that name: requesting it gives the test the ``node``
    marker."""
    need_js_package("@aws-sdk/client-s3")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "S3_ENDPOINT_URL": target.endpoint,
        "BUCKET": bucket,
        "AWS_ACCESS_KEY_ID": target.access_key,
        "AWS_SECRET_ACCESS_KEY": target.secret_key,
        "SIZES": ",".join(map(str, sizes)),
    }
    if ca:
        env["NODE_EXTRA_CA_CERTS"] = ca
    r = subprocess.run(
        [node_js, "upload.mjs"],
        cwd=JS_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
