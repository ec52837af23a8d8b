"""scripts/container-setup.sh's storage decisions, run through its pure entry points.

Inside a container (CI runners often are one) podman's store lands on overlayfs, where the
native overlay driver refuses to start ("'overlay' is not supported over overlayfs, a
mount_program is required"). The script then uses fuse-overlayfs as the mount program when
/dev/fuse exists, else the vfs driver, each in a store of its own. These tests run the two
decisions (``--storage-mode``, ``--storage-conf``) as the script itself makes them: no root,
nothing installed, nothing written.
"""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

SETUP = Path(__file__).resolve().parents[2] / "scripts" / "container-setup.sh"

# What `stat -f -c %T` prints for the file systems containers/storage refuses as the native
# overlay driver's backing store: by name, and as coreutils too old to know the name prints it.
REFUSED = [
    "overlayfs",
    "aufs",
    "zfs",
    "ecryptfs",
    "UNKNOWN (0x794c7630)",
    "UNKNOWN (0x61756673)",
    "UNKNOWN (0x2fc12fc1)",
    "UNKNOWN (0xf15f)",
]
SUPPORTED = ["ext2/ext3", "xfs", "btrfs", "tmpfs", "UNKNOWN (0x12345678)", "UNKNOWN (0xf15f0)"]


def run(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SETUP), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        # A state dir that must stay absent: the pure modes write nothing.
        env={"PATH": "/usr/bin:/bin", "S3SHIM_CONTAINER_STATE": str(state)},
        stdin=subprocess.DEVNULL,
    )


def mode(fs_type: str, dev_fuse: str, override: str = "", *, tmp_path: Path) -> str:
    state = tmp_path / "state"
    r = run("--storage-mode", fs_type, dev_fuse, override, state=state)
    assert r.returncode == 0, r.stderr
    assert not state.exists()
    return r.stdout.strip()


@pytest.mark.parametrize("fs_type", REFUSED)
def test_refused_backing_fs_falls_back(fs_type: str, tmp_path: Path) -> None:
    assert mode(fs_type, "yes", tmp_path=tmp_path) == "fuse-overlayfs"
    assert mode(fs_type, "no", tmp_path=tmp_path) == "vfs"  # no /dev/fuse: no FUSE mount


@pytest.mark.parametrize("fs_type", SUPPORTED)
def test_native_overlay_where_it_works(fs_type: str, tmp_path: Path) -> None:
    for fuse in ("yes", "no"):
        assert mode(fs_type, fuse, tmp_path=tmp_path) == "native"


@pytest.mark.parametrize("forced", ["native", "fuse-overlayfs", "vfs"])
def test_override_wins(forced: str, tmp_path: Path) -> None:
    assert mode("ext2/ext3", "yes", forced, tmp_path=tmp_path) == forced
    assert mode("overlayfs", "no", forced, tmp_path=tmp_path) == forced


def test_unknown_override_is_refused(tmp_path: Path) -> None:
    r = run("--storage-mode", "overlayfs", "yes", "overlay2", state=tmp_path / "s")
    assert r.returncode == 2 and r.stdout == ""
    assert "overlay2" in r.stderr


def conf(*args: str, tmp_path: Path) -> dict[str, object]:
    state = tmp_path / "state"
    r = run("--storage-conf", *args, state=state)
    assert r.returncode == 0, r.stderr
    assert not state.exists()
    return tomllib.loads(r.stdout)


GRAPH = "/var/lib/containers/storage"
RUN = "/run/containers/storage"


def test_native_writes_no_storage_conf(tmp_path: Path) -> None:
    r = run("--storage-conf", "native", GRAPH, RUN, state=tmp_path / "s")
    assert (r.returncode, r.stdout) == (0, "")


def test_fuse_overlayfs_conf(tmp_path: Path) -> None:
    doc = conf("fuse-overlayfs", GRAPH, RUN, "/opt/bin/fuse-overlayfs", tmp_path=tmp_path)
    assert doc == {
        "storage": {
            "driver": "overlay",
            "graphroot": f"{GRAPH}-fuse-overlayfs",
            "runroot": f"{RUN}-fuse-overlayfs",
            "options": {"overlay": {"mount_program": "/opt/bin/fuse-overlayfs"}},
        }
    }


def test_fuse_overlayfs_default_mount_program(tmp_path: Path) -> None:
    doc = conf("fuse-overlayfs", GRAPH, RUN, "", tmp_path=tmp_path)
    storage = doc["storage"]
    assert isinstance(storage, dict)
    assert storage["options"] == {"overlay": {"mount_program": "/usr/bin/fuse-overlayfs"}}


def test_vfs_conf(tmp_path: Path) -> None:
    doc = conf("vfs", GRAPH, RUN, tmp_path=tmp_path)
    assert doc == {
        "storage": {"driver": "vfs", "graphroot": f"{GRAPH}-vfs", "runroot": f"{RUN}-vfs"}
    }


def test_each_fallback_has_a_store_of_its_own(tmp_path: Path) -> None:
    """podman refuses a store made with another driver: no two modes may share one."""
    roots = {(GRAPH, RUN)}
    for m in ("fuse-overlayfs", "vfs"):
        storage = conf(m, GRAPH, RUN, tmp_path=tmp_path)["storage"]
        assert isinstance(storage, dict)
        roots.add((storage["graphroot"], storage["runroot"]))
    assert len(roots) == 3


def test_unknown_mode_and_argument_are_refused(tmp_path: Path) -> None:
    r = run("--storage-conf", "overlay", GRAPH, RUN, state=tmp_path / "s")
    assert r.returncode == 2 and r.stdout == ""
    r = run("--storage", state=tmp_path / "s")
    assert r.returncode == 2 and "usage" in r.stderr
    assert not (tmp_path / "s").exists()
