"""Signals: SIGTERM drains an upload in flight and exits 0; SIGHUP without TLS is ignored."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from botocore.client import BaseClient

from testkit.convex_sequence import MIB, new_bucket
from testkit.helpers import free_port, host_port, http_get, wait_exit
from testkit.rawclient import RawClient, request_head
from testkit.shim import ShimStarter, run_shim


def test_sigterm_drains_an_upload_in_flight(
    direct: BaseClient, start_shim: ShimStarter, tmp_path: Path
) -> None:
    """SIGTERM during an upload: the upload completes and is stored intact, a new
    connection is refused, readiness is never green again, and the process exits 0."""
    bucket = new_bucket(direct)
    body = os.urandom(8 * MIB)
    with start_shim(env={"S3SHIM_SHUTDOWN_GRACE_SECONDS": "30"}) as s:
        proc_pid = s.pid
        path = f"/{bucket}/draining"
        h = RawClient.of(s).sign(
            "PUT",
            path,
            payload_hash="UNSIGNED-PAYLOAD",
            headers={"content-length": str(len(body))},
        )
        half = len(body) // 2
        result: dict[str, object] = {}

        def upload() -> None:
            with socket.create_connection(host_port(s.endpoint), timeout=60) as sock:
                sock.sendall(request_head("PUT", path, h) + body[:half])
                result["first_half_sent"] = True
                while "go" not in result:
                    time.sleep(0.05)
                sock.sendall(body[half:])
                result["answer"] = sock.recv(4096)

        t = threading.Thread(target=upload, daemon=True)
        t.start()
        while "first_half_sent" not in result:
            time.sleep(0.05)
        time.sleep(0.3)  # the request is in the handler, streaming to the store
        os.kill(proc_pid, signal.SIGTERM)
        time.sleep(0.5)
        _, port = host_port(s.endpoint)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        assert http_get(s.admin + "/readyz") == (503, "draining\n")  # out of the load balancer
        result["go"] = True
        t.join(60)
        answer = result.get("answer")
        assert isinstance(answer, bytes) and answer.startswith(b"HTTP/1.1 200"), answer
        exited = wait_exit(proc_pid)
        assert exited == 0
    assert direct.get_object(Bucket=bucket, Key="draining")["Body"].read() == body
    log = tmp_path / next(p.name for p in tmp_path.iterdir() if p.name.startswith("s3shim"))
    events = [json.loads(x).get("event") for x in log.read_text().splitlines() if x.startswith("{")]
    assert "draining" in events and events[-1] == "stopped"


def test_sighup_without_tls_does_not_stop_s3shim(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with run_shim(dead, "AKID", "secret", tmp_path) as s:
        os.kill(s.pid, signal.SIGHUP)
        s.log_entries(until="sighup_ignored")
        assert http_get(s.admin + "/healthz") == (200, "ok\n")
