"""Configuration parsing: defaults, flags over env, one-line errors that name the setting."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from s3shim.config import OPTIONS, ConfigError, load

BASE = {
    "S3SHIM_UPSTREAM_URL": "http://127.0.0.1:7480",
    "AWS_ACCESS_KEY_ID": "AKSTORE",
    "AWS_SECRET_ACCESS_KEY": "store-secret",
}


def test_defaults() -> None:
    cfg = load([], BASE)
    assert cfg.upstream_host == "127.0.0.1:7480"
    assert cfg.region == cfg.upstream_region == "us-east-1"
    assert (cfg.listen_host, cfg.listen_port) == ("127.0.0.1", 8080)
    assert not cfg.disable_sse and not cfg.disable_checksums
    assert cfg.secret_for("AKSTORE") == "store-secret"
    assert cfg.clients["AKSTORE"].upstream.secret_key == "store-secret"
    assert cfg.secret_for("other") is None


@pytest.mark.parametrize(
    "value,expected",
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("Yes", True),
        ("false", False),
        ("0", False),
        ("no", False),
        ("NO", False),
    ],
)
def test_bool_flags(value: str, expected: bool) -> None:
    cfg = load([], {**BASE, "AWS_S3_DISABLE_SSE": value, "AWS_S3_DISABLE_CHECKSUMS": value})
    assert cfg.disable_sse is expected and cfg.disable_checksums is expected


def test_flags_override_env() -> None:
    cfg = load(["--port", "9999", "--disable-sse", "yes"], {**BASE, "S3SHIM_LISTEN_PORT": "1"})
    assert cfg.listen_port == 9999 and cfg.disable_sse


def test_s3shim_specific_store_keys_win() -> None:
    cfg = load(
        [],
        {**BASE, "S3SHIM_UPSTREAM_ACCESS_KEY_ID": "AKX", "S3SHIM_UPSTREAM_SECRET_ACCESS_KEY": "sx"},
    )
    assert list(cfg.clients) == ["AKX"]


@pytest.mark.parametrize(
    "env,names",
    [
        ({"S3SHIM_UPSTREAM_URL": ""}, "S3SHIM_UPSTREAM_URL"),
        ({"S3SHIM_UPSTREAM_URL": "ftp://x"}, "S3SHIM_UPSTREAM_URL"),
        ({"S3SHIM_UPSTREAM_URL": "http://x/path"}, "S3SHIM_UPSTREAM_URL"),
        ({"S3SHIM_UPSTREAM_URL": "http://x:99999"}, "S3SHIM_UPSTREAM_URL"),
        ({"AWS_S3_DISABLE_SSE": "maybe"}, "AWS_S3_DISABLE_SSE"),
        ({"S3SHIM_LISTEN_PORT": "http"}, "S3SHIM_LISTEN_PORT"),
        ({"AWS_SECRET_ACCESS_KEY": ""}, "AWS_SECRET_ACCESS_KEY"),
        ({"S3SHIM_TLS_CERT": "/nonexistent.pem"}, "S3SHIM_TLS_"),
        ({"S3SHIM_LOG_LEVEL": "loud"}, "S3SHIM_LOG_LEVEL"),
        ({"S3SHIM_WORKERS": "0"}, "S3SHIM_WORKERS"),
    ],
)
def test_errors_name_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError) as info:
        load([], {**BASE, **env})
    assert names in str(info.value)
    assert "store-secret" not in str(info.value)
    assert "\n" not in str(info.value)


def test_client_key_table(tmp_path: Path) -> None:
    f = tmp_path / "keys.json"
    f.write_text(
        json.dumps(
            {
                "clients": [
                    {"access_key_id": "alice", "secret_access_key": "a-secret"},
                    {
                        "access_key_id": "app",
                        "secret_access_key": "app-secret",
                        "upstream_access_key_id": "AKSTORE",
                        "upstream_secret_access_key": "store-secret",
                    },
                ]
            }
        )
    )
    cfg = load([], {**BASE, "S3SHIM_CLIENT_KEYS_FILE": str(f)})
    assert cfg.clients["alice"].upstream.access_key == "alice"  # identity mapping
    assert cfg.clients["app"].upstream.access_key == "AKSTORE"  # many-to-one mapping
    assert cfg.secret_for("AKSTORE") is None  # the table replaces the default pair


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "{}",
        '{"clients": []}',
        '{"clients": [{"access_key_id": "a"}]}',
        '{"clients": [{"access_key_id": "a", "secret_access_key": "s", '
        '"upstream_access_key_id": "u"}]}',
        '{"clients": [{"access_key_id": "a", "secret_access_key": "s"},'
        ' {"access_key_id": "a", "secret_access_key": "t"}]}',
    ],
)
def test_bad_key_table(tmp_path: Path, content: str) -> None:
    f = tmp_path / "keys.json"
    f.write_text(content)
    with pytest.raises(ConfigError) as info:
        load([], {**BASE, "S3SHIM_CLIENT_KEYS_FILE": str(f)})
    assert str(info.value).startswith("S3SHIM_CLIENT_KEYS_FILE")
    assert '"s"' not in str(info.value)


def test_describe_masks_secrets() -> None:
    text = repr(load([], BASE).describe()) + repr(load([], BASE))
    assert "store-secret" not in text


def test_help_explains_every_option() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "s3shim", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for opt in OPTIONS:
        assert opt.flag in out and opt.env in out


def test_bad_config_exits_non_zero_with_one_line() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "s3shim"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "S3SHIM_UPSTREAM_URL" in r.stderr


def test_readme_documents_every_option() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for opt in OPTIONS:
        assert f"`{opt.env}`" in readme or opt.env in readme, opt.env
        assert opt.flag in readme, opt.flag


def test_unloadable_tls_files_are_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError) as info:
        load([], {**BASE, "S3SHIM_TLS_CERT": str(bad), "S3SHIM_TLS_KEY": str(bad)})
    assert str(info.value).startswith("S3SHIM_TLS_CERT")
    with pytest.raises(ConfigError) as info:
        load([], {**BASE, "S3SHIM_UPSTREAM_CA_BUNDLE": str(bad)})
    assert str(info.value).startswith("S3SHIM_UPSTREAM_CA_BUNDLE")


def test_errors_never_echo_the_value() -> None:
    with pytest.raises(ConfigError) as info:
        load([], {**BASE, "S3SHIM_UPSTREAM_URL": "http://AKID:topsecret@rgw:7480/x"})
    assert "topsecret" not in str(info.value)
