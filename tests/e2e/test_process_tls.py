"""TLS between s3shim and its store: a store behind a private CA (verified by default, the
insecure switch warns), and s3shim's own certificate reloaded on SIGHUP."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from testkit.backends import Store
from testkit.convex_sequence import MIB, new_bucket, run_sequence
from testkit.helpers import host_port, http_get
from testkit.shim import Shim, shim_for
from testkit.tls import TlsFiles, make_tls


@pytest.fixture(scope="module")
def flags() -> bool:
    """The HTTPS store (https_shim) with both flags off: it only authenticates, re-signs
    and forwards."""
    return False


def test_tls_to_store_with_private_ca(https_shim: Shim, tls: TlsFiles, tmp_path: Path) -> None:
    with shim_for(https_shim, tmp_path, env={"S3SHIM_UPSTREAM_CA_BUNDLE": tls.ca}) as s:
        assert http_get(s.admin + "/readyz")[0] == 200
        client = s.client()
        run_sequence(client, new_bucket(client), 5 * MIB + 1)


def test_tls_to_store_is_verified_by_default(https_shim: Shim, tmp_path: Path) -> None:
    with shim_for(https_shim, tmp_path) as s:
        assert http_get(s.admin + "/readyz")[0] == 503
        with pytest.raises(ClientError) as info:
            s.client().list_buckets()
        assert info.value.response["Error"]["Code"] == "ServiceUnavailable"


def test_tls_insecure_switch_works_and_warns(https_shim: Shim, tmp_path: Path) -> None:
    with shim_for(https_shim, tmp_path, env={"S3SHIM_UPSTREAM_INSECURE": "true"}) as s:
        client = s.client()
        bucket = new_bucket(client)
        client.put_object(Bucket=bucket, Key="k", Body=b"v")
        assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
        warnings = [json.loads(x) for x in s.log_text().splitlines() if x.startswith("{")]
        assert any(
            w.get("event") == "upstream_tls_unverified" and w["level"] == "warning"
            for w in warnings
        )


def test_sighup_reloads_the_tls_certificate(rgw_store: Store, tmp_path: Path) -> None:
    import shutil
    import ssl

    first, second = make_tls(tmp_path / "a"), make_tls(tmp_path / "b")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(first.cert, cert)
    shutil.copy(first.key, key)
    with shim_for(rgw_store, tmp_path, tls=(str(cert), str(key))) as s:
        _, port = host_port(s.endpoint)

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
