"""Each protocol word is defined once: S3 errors only in errors.py, wire names in one home."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "s3shim"
SOURCES = sorted(p for p in PACKAGE.glob("*.py") if p.name != "errors.py")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_s3_errors_are_built_only_in_errors_py(path: Path) -> None:
    """Codes, messages and statuses live in errors.py, so a code cannot be misspelt and
    the same refusal never reads two ways."""
    tree = ast.parse(path.read_text())
    built = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (
            (isinstance(node.func, ast.Name) and node.func.id == "S3Error")
            or (isinstance(node.func, ast.Attribute) and node.func.attr == "S3Error")
        )
    ]
    assert built == [], f"{path.name} builds S3Error itself at lines {built}"


@pytest.mark.parametrize(
    ("word", "home"),
    [
        ("STREAMING-UNSIGNED-PAYLOAD-TRAILER", "chunked.py"),
        ("AWS4-HMAC-SHA256-PAYLOAD", "chunked.py"),
        ("x-amz-sdk-checksum-algorithm", "checksums.py"),
        ("x-amz-trailer", "checksums.py"),
        ("x-amz-checksum-mode", "checksums.py"),
        ("x-amz-meta-s3shim-checksum", "integrity.py"),
    ],
)
def test_wire_words_have_one_home(word: str, home: str) -> None:
    quoted = re.compile(r"[\"']" + re.escape(word) + r"[\"']")
    homes = [p.name for p in PACKAGE.glob("*.py") if quoted.search(p.read_text())]
    assert homes == [home], homes
