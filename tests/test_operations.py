"""Running s3shim like production, for real: probes, metrics, logs, draining on SIGTERM,
TLS to a store behind a private CA, several workers, S3 errors for what aiohttp refuses."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from .backends import Store
from .convex_sequence import MIB, new_bucket, run_sequence
from .rawclient import send, sign
from .shim import Shim, free_port, run_shim, s3_client
from .tls import TlsFiles, make_tls

pytestmark = pytest.mark.rgw


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        sname, _, rest = series.partition("{")
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if sname == name and got == want:
            return float(value)
    return 0.0


def test_probes(shim: Shim) -> None:
    assert get(shim.admin + "/healthz") == (200, "ok\n")
    assert get(shim.admin + "/readyz") == (200, "ready\n")


def test_healthz_is_a_bucket_on_the_s3_port(shim: Shim) -> None:
    """Probes live on the admin port, so a bucket named healthz still works."""
    client = shim.client()
    try:
        client.create_bucket(Bucket="healthz")
    except ClientError as exc:  # a previous run in the same store
        assert exc.response["Error"]["Code"] == "BucketAlreadyOwnedByYou"
    client.put_object(Bucket="healthz", Key="metrics", Body=b"data")
    assert client.get_object(Bucket="healthz", Key="metrics")["Body"].read() == b"data"


def test_metrics_count_requests_bytes_rewrites_and_failures(shim: Shim) -> None:
    client = shim.client()
    bucket = new_bucket(client)
    before = get(shim.admin + "/metrics")[1]
    body = os.urandom(100_000)
    client.put_object(Bucket=bucket, Key="m", Body=body, ServerSideEncryption="AES256")
    assert client.get_object(Bucket=bucket, Key="m")["Body"].read() == body
    forged = sign(
        "GET", shim.endpoint, f"/{bucket}/m", access_key=shim.access_key, secret_key="wrong"
    )
    assert send("GET", shim.endpoint, f"/{bucket}/m", forged).status == 403
    bad = sign(
        "PUT",
        shim.endpoint,
        f"/{bucket}/bad",
        access_key=shim.access_key,
        secret_key=shim.secret_key,
        payload_hash="UNSIGNED-PAYLOAD",
        headers={"x-amz-checksum-crc32": "AAAAAA==", "content-length": "3"},
    )
    assert send("PUT", shim.endpoint, f"/{bucket}/bad", bad, body=b"abc").status == 400
    after = get(shim.admin + "/metrics")[1]

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("s3shim_requests_total", operation="PutObject", status="200") == 1
    assert delta("s3shim_requests_total", operation="GetObject", status="403") == 1
    assert delta("s3shim_request_body_bytes_total", operation="PutObject") >= len(body)
    assert delta("s3shim_response_body_bytes_total", operation="GetObject") == len(body)
    assert delta("s3shim_rewrites_total", kind="sse") >= 1
    assert delta("s3shim_auth_failures_total", reason="SignatureDoesNotMatch") == 1
    assert delta("s3shim_integrity_failures_total", code="BadDigest") == 1
    assert delta("s3shim_request_duration_seconds_count", operation="PutObject") == 2
    # the refused PutObject never reached the store
    assert delta("s3shim_upstream_duration_seconds_count", operation="PutObject") == 1
    assert metric(after, "s3shim_in_flight_requests") == 0


def test_request_log_lines(shim: Shim) -> None:
    client = shim.client()
    bucket = new_bucket(client)
    resp = client.put_object(
        Bucket=bucket,
        Key="logged",
        Body=b"x" * 10,
        ServerSideEncryption="AES256",
        ChecksumAlgorithm="CRC32",
    )
    request_id = resp["ResponseMetadata"]["RequestId"]
    assert client.get_object(Bucket=bucket, Key="logged")["Body"].read() == b"x" * 10
    entries = shim.log_entries(until=request_id)
    # The client sees the store's id (it matches the store's error bodies); s3shim's log
    # line keeps both.
    mine = [e for e in entries if e.get("upstream_request_id") == request_id]
    assert len(mine) == 1, "x-amz-request-id must match exactly one log line"
    assert mine[0]["request_id"] != request_id
    line = mine[0]
    assert line["op"] == "PutObject" and line["bucket"] == bucket and line["status"] == 200
    assert line["upstream_status"] == 200 and line["bytes_in"] == 10
    assert set(line["rewrites"]) == {"sse", "checksum"}
    assert line["duration_ms"] >= 0 and line["level"] == "info" and line["timestamp"]
    started = next(e for e in entries if e.get("event") == "started")
    assert started["client_keys"] == [shim.access_key]
    assert shim.secret_key not in shim.log_text()


def test_oversize_header_gets_s3_xml(shim: Shim) -> None:
    host, port = shim.endpoint.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /b/k HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 20000 + b"\r\n\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.0 400") or answer.startswith(b"HTTP/1.1 400")
    assert b"<Code>RequestHeaderSectionTooLarge</Code>" in answer
    assert b"x-amz-request-id:" in answer
    assert b"aaaaaaaaaa" not in answer  # the request is not echoed back


def test_unreachable_store(tmp_path: Path) -> None:
    """Store down: readiness fails, requests get a retryable S3 error, liveness holds."""
    dead = f"http://127.0.0.1:{free_port()}"
    with run_shim(dead, "AKID", "secret", tmp_path) as s:
        assert get(s.admin + "/healthz")[0] == 200
        assert get(s.admin + "/readyz") == (503, "store unreachable\n")
        with pytest.raises(ClientError) as info:
            s.client().list_buckets()
        assert info.value.response["Error"]["Code"] == "ServiceUnavailable"


def test_sigterm_drains_an_upload_in_flight(rgw_store: Store, tmp_path: Path) -> None:
    """SIGTERM during an upload: the upload completes and is stored intact, a new
    connection is refused, readiness is never green again, and the process exits 0."""
    direct = s3_client(rgw_store.endpoint, rgw_store.access_key, rgw_store.secret_key)
    bucket = new_bucket(direct)
    body = os.urandom(8 * MIB)
    with run_shim(
        rgw_store.endpoint,
        rgw_store.access_key,
        rgw_store.secret_key,
        tmp_path,
        env={"S3SHIM_SHUTDOWN_GRACE_SECONDS": "30"},
    ) as s:
        proc_pid = s.pid
        path = f"/{bucket}/draining"
        h = sign(
            "PUT",
            s.endpoint,
            path,
            access_key=s.access_key,
            secret_key=s.secret_key,
            payload_hash="UNSIGNED-PAYLOAD",
            headers={"content-length": str(len(body))},
        )
        half = len(body) // 2
        result: dict[str, object] = {}

        def upload() -> None:
            host, port = s.endpoint.rsplit("/", 1)[1].split(":")
            with socket.create_connection((host, int(port)), timeout=60) as sock:
                head = f"PUT {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
                sock.sendall(head.encode() + b"\r\n" + body[:half])
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
        port = int(s.endpoint.rsplit(":", 1)[1])
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        assert get(s.admin + "/readyz") == (503, "draining\n")  # out of the load balancer
        result["go"] = True
        t.join(60)
        assert bytes(result["answer"]).startswith(b"HTTP/1.1 200")  # type: ignore[arg-type]
        exited = _wait_exit(proc_pid)
        assert exited == 0
    assert direct.get_object(Bucket=bucket, Key="draining")["Body"].read() == body
    log = tmp_path / next(p.name for p in tmp_path.iterdir() if p.name.startswith("s3shim"))
    events = [json.loads(x).get("event") for x in log.read_text().splitlines() if x.startswith("{")]
    assert "draining" in events and events[-1] == "stopped"


def _wait_exit(pid: int, timeout: float = 30) -> int | None:
    """Exit status of a child that run_shim started (reaped through /proc polling)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return 0  # already reaped
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    return None


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("private-ca"))


@pytest.fixture(scope="module")
def https_store(
    rgw_store: Store, tls: TlsFiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Shim]:
    """An HTTPS S3 endpoint behind a private CA: RGW fronted by a TLS s3shim (flags off, so
    it only authenticates, re-signs and forwards)."""
    with run_shim(
        rgw_store.endpoint,
        rgw_store.access_key,
        rgw_store.secret_key,
        tmp_path_factory.mktemp("https-store"),
        tls=(tls.cert, tls.key),
        disable_sse=False,
        disable_checksums=False,
    ) as s:
        yield s


def test_tls_to_store_with_private_ca(https_store: Shim, tls: TlsFiles, tmp_path: Path) -> None:
    with run_shim(
        https_store.endpoint,
        https_store.access_key,
        https_store.secret_key,
        tmp_path,
        env={"S3SHIM_UPSTREAM_CA_BUNDLE": tls.ca},
    ) as s:
        assert get(s.admin + "/readyz")[0] == 200
        client = s.client()
        run_sequence(client, new_bucket(client), 5 * MIB + 1)


def test_tls_to_store_is_verified_by_default(https_store: Shim, tmp_path: Path) -> None:
    with run_shim(
        https_store.endpoint, https_store.access_key, https_store.secret_key, tmp_path
    ) as s:
        assert get(s.admin + "/readyz")[0] == 503
        with pytest.raises(ClientError) as info:
            s.client().list_buckets()
        assert info.value.response["Error"]["Code"] == "ServiceUnavailable"


def test_tls_insecure_switch_works_and_warns(https_store: Shim, tmp_path: Path) -> None:
    with run_shim(
        https_store.endpoint,
        https_store.access_key,
        https_store.secret_key,
        tmp_path,
        env={"S3SHIM_UPSTREAM_INSECURE": "true"},
    ) as s:
        client = s.client()
        bucket = new_bucket(client)
        client.put_object(Bucket=bucket, Key="k", Body=b"v")
        assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
        warnings = [json.loads(x) for x in s.log_text().splitlines() if x.startswith("{")]
        assert any(
            w.get("event") == "upstream_tls_unverified" and w["level"] == "warning"
            for w in warnings
        )


def test_two_workers_share_the_port(rgw_store: Store, tmp_path: Path) -> None:
    with run_shim(
        rgw_store.endpoint,
        rgw_store.access_key,
        rgw_store.secret_key,
        tmp_path,
        env={"S3SHIM_WORKERS": "2"},
    ) as s:
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
        assert _wait_exit(s.pid) == 0
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


def test_sighup_reloads_the_tls_certificate(rgw_store: Store, tmp_path: Path) -> None:
    import shutil
    import ssl

    first, second = make_tls(tmp_path / "a"), make_tls(tmp_path / "b")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(first.cert, cert)
    shutil.copy(first.key, key)
    with run_shim(
        rgw_store.endpoint,
        rgw_store.access_key,
        rgw_store.secret_key,
        tmp_path,
        tls=(str(cert), str(key)),
    ) as s:
        port = int(s.endpoint.rsplit(":", 1)[1])

        def handshake(ca: str) -> bool:
            ctx = ssl.create_default_context(cafile=ca)
            try:
                with (
                    socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
                    ctx.wrap_socket(raw, server_hostname="127.0.0.1"),
                ):
                    return True
            except ssl.SSLCertVerificationError:
                return False

        assert handshake(first.ca) and not handshake(second.ca)
        shutil.copy(second.cert, cert)
        shutil.copy(second.key, key)
        os.kill(s.pid, signal.SIGHUP)
        s.log_entries(until="tls_reloaded")
        assert handshake(second.ca) and not handshake(first.ca)


def test_log_level_and_console_format(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with run_shim(dead, "AKID", "secret", tmp_path / "a", env={"S3SHIM_LOG_LEVEL": "warning"}) as s:
        with pytest.raises(ClientError):
            s.client().list_buckets()
        entries = s.log_entries(until="ServiceUnavailable")
        assert entries and all(e["level"] in ("warning", "error") for e in entries)
        assert any(e.get("error") == "ServiceUnavailable" for e in entries)
    with run_shim(
        dead, "AKID", "secret", tmp_path / "b", env={"S3SHIM_LOG_FORMAT": "console"}
    ) as s:
        deadline = time.monotonic() + 5
        while "started" not in s.log_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        text = s.log_text()
        assert "started" in text and not text.lstrip().startswith("{")
        assert "secret" not in text.replace("AWS_SECRET", "")


def test_sighup_without_tls_does_not_stop_s3shim(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with run_shim(dead, "AKID", "secret", tmp_path) as s:
        os.kill(s.pid, signal.SIGHUP)
        s.log_entries(until="sighup_ignored")
        assert get(s.admin + "/healthz") == (200, "ok\n")
