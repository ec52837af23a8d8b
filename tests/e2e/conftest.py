"""Fixtures shared by the e2e modules (the stores' fixtures are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testkit.browser import serve_origin


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    """A second local origin serving the web app's blank page (browser and CORS tests)."""
    with serve_origin() as url:
        yield url
