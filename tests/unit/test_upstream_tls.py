"""s3shim.upstream over TLS: a private CA, a certificate it cannot verify, and the TLS
context new_upstream builds from the configuration."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from s3shim.upstream import UpstreamError
from testkit.scripted_store import (
    OK,
    Store,
    answering,
    get,
    store_and_client,
)
from testkit.tls import make_tls


def server_tls(tmp_path: Path) -> tuple[ssl.SSLContext, str]:
    files = make_tls(tmp_path / "tls")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(files.cert, files.key)
    return ctx, files.ca


async def test_tls_to_a_store_with_a_private_ca(tmp_path: Path) -> None:
    server, ca = server_tls(tmp_path)
    client = ssl.create_default_context(cafile=ca)
    async with store_and_client(answering(OK), server, ssl=client) as (store, up):
        assert (await get(up))[1] == b"ok"
        assert (await get(up))[1] == b"ok"
    assert store.accepted == 1


async def test_tls_refuses_a_certificate_it_cannot_verify(tmp_path: Path) -> None:
    server, _ = server_tls(tmp_path)
    async with store_and_client(answering(OK), server, ssl=ssl.create_default_context()) as (
        _,
        up,
    ):
        with pytest.raises(UpstreamError) as info:
            await get(up)
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)


@pytest.mark.parametrize("mode", ["ca-bundle", "insecure", "system"])
async def test_new_upstream_builds_tls_from_the_config(tmp_path: Path, mode: str) -> None:
    from s3shim import config as config_mod
    from s3shim.proxy import new_upstream
    from testkit.inprocess import shim_env

    server, ca = server_tls(tmp_path)
    store = Store(answering(OK))
    await store.start(server)
    keys = tmp_path / "keys.json"
    keys.write_text('{"clients": [{"access_key_id": "AK", "secret_access_key": "SK"}]}')
    extra = {"ca-bundle": {"S3SHIM_UPSTREAM_CA_BUNDLE": ca}, "insecure": {}, "system": {}}[mode]
    if mode == "insecure":
        extra["S3SHIM_UPSTREAM_INSECURE"] = "true"
    env = shim_env(f"https://127.0.0.1:{store.port}", keys, flags=True, **extra)
    up = new_upstream(config_mod.load(argv=[], env=env))
    try:
        if mode == "system":
            with pytest.raises(UpstreamError):
                await get(up)
        else:
            assert (await get(up))[1] == b"ok"
            assert store.requests[0].head.split(b"\r\n")[1] == b"Host: 127.0.0.1:%d" % store.port
    finally:
        await up.close()
        await store.close()
