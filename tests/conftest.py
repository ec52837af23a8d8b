"""Shared fixtures. Real stores start lazily, at most once per session (see testkit/backends.py).

A store that cannot start fails the test under CI=true (never a silent skip) and skips it
elsewhere, with the reason.

Markers follow the fixtures: a test that uses a store's fixture, directly or through another
fixture (shim, direct, bucket, a module's own fixture...), gets that store's marker at
collection, so ``-m "not rgw"`` selects exactly the tests that never start RGW. No test
module writes these markers by hand.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from botocore.client import BaseClient

from testkit.backends import (
    BackendUnavailable,
    Store,
    new_bucket,
    start_moto,
    start_rclone,
    start_rgw,
    start_s3rver,
)
from testkit.convex_sequence import new_bucket as sequence_bucket
from testkit.helpers import in_ci
from testkit.jsrun import node
from testkit.shim import Shim, client_of, shim_for

# fixture -> the markers of every test that uses it (pytest_collection_modifyitems).
FIXTURE_MARKERS: dict[str, tuple[str, ...]] = {
    "rgw_store": ("rgw",),
    "rclone_store": ("rclone",),
    "moto_store": ("moto",),
    "s3rver_store": ("s3rver", "node"),  # s3rver is a Node.js program
    "node_js": ("node",),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # item.fixturenames is the closure of every fixture the test requests, through other
    # fixtures too. A fixture fetched with request.getfixturevalue() is not in it: tests
    # request store fixtures by name instead, so that they carry the marker.
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for fixture, markers in FIXTURE_MARKERS.items():
            if fixture in used:
                for marker in markers:
                    item.add_marker(marker)


def _provide(
    name: str, start: Callable[[Path], contextlib.AbstractContextManager[Store]], tmp: Path
) -> Iterator[Store]:
    with contextlib.ExitStack() as stack:
        reason = ""
        try:
            store = stack.enter_context(start(tmp))
        except BackendUnavailable as e:
            reason = e.reason
        if reason:
            if in_ci():
                pytest.fail(f"{name} store could not start (CI=true): {reason}", pytrace=False)
            pytest.skip(f"{name} store unavailable: {reason}")
        yield store


def _store_fixture(
    name: str, start: Callable[[Path], contextlib.AbstractContextManager[Store]], tmp: str
) -> Callable[[pytest.TempPathFactory], Iterator[Store]]:
    """A session fixture providing the store that ``start`` runs (in its own directory)."""

    @pytest.fixture(scope="session")
    def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
        yield from _provide(name, start, tmp_path_factory.mktemp(tmp))

    return store


rgw_store = _store_fixture("Ceph RGW", start_rgw, "rgw")
rclone_store = _store_fixture("rclone", start_rclone, "rclone")
moto_store = _store_fixture("moto", start_moto, "moto")
s3rver_store = _store_fixture("s3rver", start_s3rver, "s3rver")


@pytest.fixture(scope="session")
def node_js() -> str:
    """The Node.js binary (testkit/jsrun.py finds it); its tests get the ``node`` marker."""
    return node()


@pytest.fixture
def make_bucket() -> Callable[[Store], str]:
    """``make_bucket(store)`` creates a uniquely named bucket directly on the store."""
    return new_bucket


@pytest.fixture(scope="session")
def shim(rgw_store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shim]:
    """s3shim in front of the real RGW with both flags true (the Convex configuration)."""
    with shim_for(rgw_store, tmp_path_factory.mktemp("shim-rgw")) as s:
        yield s


@pytest.fixture(scope="session")
def direct(rgw_store: Store) -> BaseClient:
    """boto3 straight to RGW: what the store really holds, bypassing s3shim."""
    return client_of(rgw_store)


@pytest.fixture(scope="module")
def bucket(direct: BaseClient) -> str:
    """A fresh bucket on RGW for one test module."""
    return sequence_bucket(direct)
