"""The AWS CLI (v1, from the venv) at its defaults, pointed at an s3shim endpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .shim import Shim

AWS = str(Path(sys.executable).parent / "aws")


def aws(shim: Shim, *args: str, ca: str | None = None) -> str:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "AWS_ACCESS_KEY_ID": shim.access_key,
        "AWS_SECRET_ACCESS_KEY": shim.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
    if ca:
        env["AWS_CA_BUNDLE"] = ca
    r = subprocess.run(
        [AWS, "--endpoint-url", shim.endpoint, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout
