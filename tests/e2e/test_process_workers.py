"""Several worker processes share the S3 port and stop together."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from testkit.convex_sequence import new_bucket
from testkit.helpers import wait_exit
from testkit.shim import ShimStarter


def test_two_workers_share_the_port(start_shim: ShimStarter) -> None:
    with start_shim(env={"S3SHIM_WORKERS": "2"}) as s:
        children = _children(s.pid)
        assert len(children) == 1  # the first process plus one forked worker
        client = s.client()
        bucket = new_bucket(client)
        for i in range(20):  # new connections spread over both processes
            fresh = s.client()
            fresh.put_object(Bucket=bucket, Key=f"k{i}", Body=str(i).encode())
        listed = client.list_objects_v2(Bucket=bucket)["Contents"]
        assert len(listed) == 20
        for i in range(20):
            got = client.get_object(Bucket=bucket, Key=f"k{i}")["Body"].read()
            assert got == str(i).encode()
        starts = [
            json.loads(x)
            for x in s.log_text().splitlines()
            if x.startswith("{") and '"started"' in x
        ]
        assert len(starts) == 2
        os.kill(s.pid, signal.SIGTERM)
        assert wait_exit(s.pid) == 0
        assert not Path(f"/proc/{children[0]}").exists() or _zombie(children[0])


def _children(pid: int) -> list[str]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, IndexError):
            continue
        if fields[1] == str(pid):
            kids.append(stat.parent.name)
    return kids


def _zombie(pid: str) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True
