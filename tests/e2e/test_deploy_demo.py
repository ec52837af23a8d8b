"""The README's first quickstart command really does what the README says."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.rgw
def test_demo_fails_direct_and_passes_through_s3shim() -> None:
    r = subprocess.run(
        ["scripts/demo.sh"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"},
        stdin=subprocess.DEVNULL,
    )
    out = r.stdout
    assert r.returncode == 0, (out + r.stderr)[-3000:]
    assert "FAILED at CreateMultipartUpload: InvalidRequest (HTTP 400)" in out
    assert "PASSED" in out and "read back identical" in out
