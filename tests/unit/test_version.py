"""One version source: s3shim/__init__.py. pyproject.toml reads it; `s3shim --version` prints it."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import s3shim
from s3shim import cli

ROOT = Path(__file__).resolve().parents[2]


def test_pyproject_has_no_second_copy() -> None:
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in doc["project"]
    assert "version" in doc["project"]["dynamic"]
    assert doc["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "s3shim.__version__"}


def test_version_is_a_plain_literal() -> None:
    """setuptools reads `attr:` statically only from a literal assignment (else it imports)."""
    text = (ROOT / "s3shim" / "__init__.py").read_text()
    (found,) = re.findall(r'^__version__ = "([^"]+)"$', text, re.M)
    assert found == s3shim.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+([a-z]+\d+)?", found)  # PEP 440, no local part


def test_cli_version_needs_no_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"s3shim {s3shim.__version__}\n"


def test_console_script_prints_it() -> None:
    """The installed entry point (pip install -e .), with an empty environment: no settings."""
    exe = Path(sys.executable).parent / "s3shim"
    r = subprocess.run(
        [str(exe), "--version"], capture_output=True, text=True, timeout=60, env={}, check=False
    )
    assert (r.returncode, r.stdout, r.stderr) == (0, f"s3shim {s3shim.__version__}\n", "")
