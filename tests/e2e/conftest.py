"""Fixtures shared by the e2e modules (the stores' fixtures are in tests/conftest.py).

One family runs s3shim in front of RGW for a module: ``module_shim`` (its own process and
log), ``tapped`` (the same through a wire tap) and ``https_shim`` (over HTTPS), all with the
module's ``flags`` and ``shim_env``: a module overrides either fixture to change them, or is
marked ``both_flags`` to run each test that uses them with both flags on, then both off.
``start_shim`` starts one for a test alone.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.client import BaseClient

from testkit.backends import Store, s3_client
from testkit.browser import serve_origin
from testkit.shim import FLAG_IDS, FLAGS, Shim, ShimStarter, shim_for
from testkit.tap import Tap, wire_tap
from testkit.tls import TlsFiles, make_tls


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_flags: the module's s3shim runs with both flags on, then both off"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "flags" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_flags"):
        metafunc.parametrize("flags", FLAGS, ids=FLAG_IDS, indirect=True, scope="module")


@pytest.fixture(scope="module")
def flags(request: pytest.FixtureRequest) -> bool:
    """AWS_S3_DISABLE_SSE and AWS_S3_DISABLE_CHECKSUMS of the module's s3shim: true (the
    Convex configuration) unless the module is marked both_flags."""
    return bool(getattr(request, "param", True))


@pytest.fixture(scope="module")
def shim_env() -> dict[str, str]:
    """Settings of the module's s3shim beyond the flags (a module overrides this)."""
    return {}


@pytest.fixture(scope="module")
def module_starter(
    request: pytest.FixtureRequest,
    rgw_store: Store,
    flags: bool,
    shim_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> ShimStarter:
    """shim_for in front of RGW with the module's settings and log directory."""
    log_dir = tmp_path_factory.mktemp(f"shim-{request.module.__name__.rpartition('.')[2]}")
    return functools.partial(shim_for, rgw_store, log_dir, flags=flags, env=shim_env)


@pytest.fixture(scope="module")
def module_shim(module_starter: ShimStarter) -> Iterator[Shim]:
    """s3shim in front of RGW for this module alone, with its flags and shim_env."""
    with module_starter() as shim:
        yield shim


@pytest.fixture(scope="module")
def tapped(rgw_store: Store, module_starter: ShimStarter) -> Iterator[tuple[Shim, Tap]]:
    """module_shim's twin through a wire tap that records what RGW gets."""
    with wire_tap(rgw_store.endpoint) as tap, module_starter(via=tap.endpoint) as shim:
        yield shim, tap


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A private CA and a certificate for 127.0.0.1 it signed."""
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def https_shim(module_starter: ShimStarter, tls: TlsFiles) -> Iterator[Shim]:
    """module_shim's twin over HTTPS, with tls's certificate."""
    with module_starter(tls=(tls.cert, tls.key)) as shim:
        yield shim


@pytest.fixture
def start_shim(rgw_store: Store, tmp_path: Path) -> ShimStarter:
    """``start_shim(**options)``: s3shim in front of RGW for this test alone (run_shim's
    options; its log in tmp_path)."""
    return functools.partial(shim_for, rgw_store, tmp_path)


@pytest.fixture(scope="module")
def store(rgw_store: Store) -> BaseClient:
    """boto3 straight to RGW, path-style: what the store really holds."""
    client: BaseClient = s3_client(rgw_store)
    return client


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    """A second local origin serving the web app's blank page (browser and CORS tests)."""
    with serve_origin() as url:
        yield url
