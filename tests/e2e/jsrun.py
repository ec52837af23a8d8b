"""Running the pinned JavaScript drivers in tests/js (MinIO JS client, Playwright) from pytest.

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

JS_DIR = Path(__file__).resolve().parent.parent / "js"
CHROMIUM = "/usr/bin/chromium"  # Debian's package; Playwright never downloads a browser here


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def unavailable(reason: str) -> None:
    if in_ci():
        pytest.fail(f"{reason} (CI=true: scripts/bootstrap.sh must install it)", pytrace=False)
    pytest.skip(f"{reason} (run scripts/bootstrap.sh)")


def node() -> str:
    """Node.js: the venv's (bootstrap's fallback when the system has no Node >= 20) first."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("node", path=path)
    if found is None:
        unavailable("node not found")
    assert found is not None
    return found


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
    r = subprocess.run(
        [node(), script, name],
        cwd=JS_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert r.returncode == 0, f"node {script} exited {r.returncode}:\n{r.stderr[-4000:]}"
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
