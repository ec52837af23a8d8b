"""The encryption keys settings: parsed once at load, refused in one line, never echoed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from s3shim.config import ConfigError, _parser, load

BASE = {
    "S3SHIM_UPSTREAM_URL": "https://127.0.0.1:7443",
    "AWS_ACCESS_KEY_ID": "AKSTORE",
    "AWS_SECRET_ACCESS_KEY": "store-secret",
}
KEY_A = "dGVzdC1rZXktMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY="
KEY_B = "c2Vjb25kLWtleS0wMTIzNDU2Nzg5YWJjZGVmMDEyMzQ="


def _keys(tmp_path: Path, entries: object) -> str:
    f = tmp_path / "sse.json"
    f.write_text(json.dumps(entries) if not isinstance(entries, str) else entries)
    return str(f)


def test_keys_are_parsed_once_and_only_their_ids_are_shown(tmp_path: Path) -> None:
    path = _keys(tmp_path, {"keys": [{"id": "new", "key": KEY_A}, {"id": "old", "key": KEY_B}]})
    cfg = load([], {**BASE, "S3SHIM_SSE_KEYS_FILE": path})
    assert cfg.sse_keyring is not None
    assert [k.id for k in cfg.sse_keyring.keys] == ["new", "old"]
    shown = cfg.describe()
    assert shown["sse_keys"] == ["new", "old"]
    assert KEY_A not in repr(cfg) and KEY_A not in json.dumps(shown, default=str)
    assert load([], BASE).sse_keyring is None


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        {"keys": []},
        {"keys": [{"id": "a", "key": "c2hvcnQ="}]},  # 5 bytes
        {"keys": [{"id": "a", "key": "A" * 43 + "="}]},  # 32 zero bytes: not random
        {"keys": [{"id": "a", "key": KEY_A}, {"id": "a", "key": KEY_B}]},
        {"keys": [{"id": "a", "key": KEY_A}, {"id": "b", "key": KEY_A}]},
        {"keys": [{"id": "a b", "key": KEY_A}]},
    ],
)
def test_a_bad_keys_file_is_one_line_without_key_material(tmp_path: Path, content: object) -> None:
    with pytest.raises(ConfigError) as info:
        load([], {**BASE, "S3SHIM_SSE_KEYS_FILE": _keys(tmp_path, content)})
    message = str(info.value)
    assert message.startswith("S3SHIM_SSE_KEYS_FILE: ") and "\n" not in message
    assert KEY_A not in message and KEY_B not in message and "c2hvcnQ" not in message


def test_a_missing_keys_file_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^S3SHIM_SSE_KEYS_FILE: no such file"):
        load([], {**BASE, "S3SHIM_SSE_KEYS_FILE": "/none/sse.json"})


def test_keys_with_an_http_store_need_the_lab_setting(tmp_path: Path) -> None:
    path = _keys(tmp_path, {"keys": [{"id": "a", "key": KEY_A}]})
    env = {**BASE, "S3SHIM_UPSTREAM_URL": "http://127.0.0.1:7480", "S3SHIM_SSE_KEYS_FILE": path}
    with pytest.raises(ConfigError, match=r"^S3SHIM_SSE_KEYS_FILE: the store is http://"):
        load([], env)
    assert load([], {**env, "S3SHIM_SSE_ALLOW_HTTP": "true"}).sse_keyring is not None


def test_encryption_by_default_needs_keys() -> None:
    with pytest.raises(ConfigError, match=r"^S3SHIM_SSE_DEFAULT: needs S3SHIM_SSE_KEYS_FILE"):
        load([], {**BASE, "S3SHIM_SSE_DEFAULT": "true"})


def test_help_states_the_precedence_over_the_sse_flag() -> None:
    text = " ".join(_parser().format_help().split())
    assert "SSE-S3 (AES256) is kept as SSE-C whatever this says; SSE-KMS still follows it" in text
    assert "Takes precedence over AWS_S3_DISABLE_SSE for SSE-S3" in text
