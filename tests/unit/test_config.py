"""Configuration parsing: the one table, flags over env, one-line errors that name the setting."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3shim import cli
from s3shim.config import (
    OPTIONS,
    ClientKey,
    Config,
    ConfigError,
    Option,
    Parser,
    boolean,
    choice,
    comma_list,
    existing_file,
    http_origin,
    load,
    port,
    seconds,
    setting,
    text,
    tristate,
    whole,
)
from s3shim.ssekeys import Keyring
from testkit.tls import make_tls

ROOT = Path(__file__).resolve().parents[2]
BASE = {
    "S3SHIM_UPSTREAM_URL": "http://127.0.0.1:7480",
    "AWS_ACCESS_KEY_ID": "AKSTORE",
    "AWS_SECRET_ACCESS_KEY": "store-secret",
}
BY_ENV = {o.env: o for o in OPTIONS}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Real files for the path settings: a TLS pair, a CA, key tables; each also under a
    second name, so that two distinct values of one setting both load."""
    d = tmp_path_factory.mktemp("config")
    tls = make_tls(d)
    out = {"cert": tls.cert, "key": tls.key, "ca": tls.ca}
    for name in ("cert", "key", "ca"):
        copy = d / f"copy-of-{name}.pem"
        shutil.copy(out[name], copy)
        out[name + "2"] = str(copy)
    for i in ("1", "2"):
        keys = d / f"keys{i}.json"
        keys.write_text(
            json.dumps({"clients": [{"access_key_id": f"client{i}", "secret_access_key": "cs"}]})
        )
        out["keys" + i] = str(keys)
        sse = d / f"sse{i}.json"
        sse.write_text(json.dumps({"keys": [{"id": f"k{i}", "key": SSE_KEYS[int(i) - 1]}]}))
        out["sse" + i] = str(sse)
    return out


SSE_KEYS = (
    "dGVzdC1rZXktMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY=",
    "c2Vjb25kLWtleS0wMTIzNDU2Nzg5YWJjZGVmMDEyMzQ=",
)


# env -> (text a, value a, text b, value b, other settings it needs). Every option must be
# here (test_every_option_has_a_round_trip_sample), value a must differ from the default and
# from value b: a load that ignored the setting, or the flag, could not pass.
def samples(f: dict[str, str]) -> dict[str, tuple[str, object, str, object, dict[str, str]]]:
    return {
        "S3SHIM_UPSTREAM_URL": (
            "http://h:1",
            "http://h:1",
            "https://S3.example/",
            "https://S3.example",
            {},
        ),
        "S3SHIM_UPSTREAM_ACCESS_KEY_ID": ("AKA", "AKA", "AKB", "AKB", {}),
        "S3SHIM_UPSTREAM_SECRET_ACCESS_KEY": ("sa", "sa", "sb", "sb", {}),
        "S3SHIM_CLIENT_KEYS_FILE": (f["keys1"], f["keys1"], f["keys2"], f["keys2"], {}),
        "AWS_REGION": ("eu-west-1", "eu-west-1", "ap-south-1", "ap-south-1", {}),
        "S3SHIM_UPSTREAM_REGION": ("r1", "r1", "r2", "r2", {}),
        "S3SHIM_LISTEN_HOST": ("0.0.0.0", "0.0.0.0", "::1", "::1", {}),
        "S3SHIM_LISTEN_PORT": ("1", 1, "65535", 65535, {}),
        "AWS_S3_DISABLE_SSE": ("Yes", True, "off", False, {}),
        "AWS_S3_DISABLE_CHECKSUMS": ("ON", True, "0", False, {}),
        "S3SHIM_ALLOWED_REGIONS": ("default, US", ("default", "US"), "x", ("x",), {}),
        "S3SHIM_ALLOW_ANONYMOUS": ("false", False, "yes", True, {}),
        "S3SHIM_ALLOW_SIGV2": ("off", False, "on", True, {}),
        "S3SHIM_RECORD_CHECKSUMS": ("false", False, "true", True, {}),
        "S3SHIM_VERIFY_READS": ("true", True, "no", False, {}),
        "S3SHIM_DOMAIN": (" A.com, b.COM,", ("a.com", "b.com"), "x.y", ("x.y",), {}),
        "S3SHIM_TLS_CERT": (
            f["cert"],
            f["cert"],
            f["cert2"],
            f["cert2"],
            {"S3SHIM_TLS_KEY": f["key"]},
        ),
        "S3SHIM_TLS_KEY": (
            f["key"],
            f["key"],
            f["key2"],
            f["key2"],
            {"S3SHIM_TLS_CERT": f["cert"]},
        ),
        "S3SHIM_UPSTREAM_CA_BUNDLE": (f["ca"], f["ca"], f["ca2"], f["ca2"], {}),
        "S3SHIM_UPSTREAM_INSECURE": ("true", True, "no", False, {}),
        "S3SHIM_ADMIN_HOST": ("0.0.0.0", "0.0.0.0", "::1", "::1", {}),
        "S3SHIM_ADMIN_PORT": ("0", 0, "65535", 65535, {}),
        "S3SHIM_SHUTDOWN_GRACE_SECONDS": ("0", 0.0, "3600", 3600.0, {}),
        "S3SHIM_CLIENT_TIMEOUT_SECONDS": ("1", 1.0, "3600", 3600.0, {}),
        "S3SHIM_MAX_CONNECTIONS": ("1", 1, "1000000", 1_000_000, {}),
        "S3SHIM_MAX_CONNECTIONS_PER_PEER": ("0", 0, "1000000", 1_000_000, {}),
        "S3SHIM_PER_PEER_LIMIT_LOOPBACK": ("true", True, "no", False, {}),
        "S3SHIM_MAX_HEAD_BYTES": ("1048576", 1_048_576, "1099511627776", 1 << 40, {}),
        "S3SHIM_WORKERS": ("64", 64, "2", 2, {}),
        "S3SHIM_LOG_LEVEL": ("DEBUG", "debug", "error", "error", {}),
        "S3SHIM_LOG_FORMAT": ("json", "json", "Console", "console", {}),
        "S3SHIM_SSE_KEYS_FILE": (
            f["sse1"],
            f["sse1"],
            f["sse2"],
            f["sse2"],
            {"S3SHIM_SSE_ALLOW_HTTP": "true"},
        ),
        "S3SHIM_SSE_DEFAULT": (
            "true",
            True,
            "no",
            False,
            {"S3SHIM_SSE_KEYS_FILE": f["sse1"], "S3SHIM_SSE_ALLOW_HTTP": "true"},
        ),
        "S3SHIM_SSE_ALLOW_HTTP": ("true", True, "no", False, {}),
    }


def test_defaults() -> None:
    cfg = load([], BASE)
    assert cfg.upstream_host == "127.0.0.1:7480" and cfg.upstream_scheme == "http"
    assert cfg.region == cfg.upstream_region == "us-east-1"
    assert (cfg.listen_host, cfg.listen_port) == ("127.0.0.1", 8080)
    assert not cfg.disable_sse and not cfg.disable_checksums and not cfg.upstream_insecure
    assert (cfg.admin_host, cfg.admin_port) == ("127.0.0.1", 9090)
    assert (cfg.shutdown_grace, cfg.client_timeout) == (20.0, 30.0)
    assert (cfg.max_connections, cfg.workers) == (1024, 1)
    assert (cfg.log_level, cfg.log_format) == ("info", "auto")
    assert cfg.domains == () and cfg.tls_cert is cfg.tls_key is cfg.upstream_ca_bundle is None
    assert cfg.secret_for("AKSTORE") == "store-secret"
    assert cfg.clients["AKSTORE"].upstream.secret_key == "store-secret"
    assert cfg.secret_for("other") is None


# --------------------------------------------------------------------------- the table
def test_every_config_field_is_a_setting_or_derived() -> None:
    settings = {o.field for o in OPTIONS}
    derived = {"upstream_host", "upstream_scheme", "clients", "sse_keyring"}
    assert settings | derived == {f.name for f in dataclasses.fields(Config)}
    assert not settings & derived
    assert len({o.env for o in OPTIONS}) == len({o.flag for o in OPTIONS}) == len(OPTIONS)


def test_the_public_fields_keep_their_types() -> None:
    hints = typing.get_type_hints(Config)
    assert hints == {
        "upstream_url": str,
        "upstream_host": str,
        "upstream_scheme": str,
        "upstream_access_key_id": str | None,
        "upstream_secret_access_key": str | None,
        "client_keys_file": str | None,
        "clients": Mapping[str, ClientKey],
        "region": str,
        "upstream_region": str,
        "listen_host": str,
        "listen_port": int,
        "disable_sse": bool,
        "disable_checksums": bool,
        "sse_keys_file": str | None,
        "sse_keyring": Keyring | None,
        "sse_default": bool,
        "sse_allow_http": bool,
        "allowed_regions": tuple[str, ...],
        "allow_anonymous": bool,
        "allow_sigv2": bool,
        "record_checksums": bool | None,
        "verify_reads": bool | None,
        "domains": tuple[str, ...],
        "tls_cert": str | None,
        "tls_key": str | None,
        "upstream_ca_bundle": str | None,
        "upstream_insecure": bool,
        "admin_host": str,
        "admin_port": int,
        "shutdown_grace": float,
        "client_timeout": float,
        "max_connections": int,
        "max_connections_per_peer": int,
        "per_peer_limit_loopback": bool,
        "max_head_bytes": int,
        "workers": int,
        "log_level": str,
        "log_format": str,
    }


def _fits(value: object, hint: object) -> bool:
    if isinstance(hint, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if typing.get_origin(hint) is tuple:
        return isinstance(value, tuple) and all(isinstance(v, str) for v in value)
    return isinstance(hint, type) and type(value) is hint


@pytest.mark.parametrize("opt", OPTIONS, ids=lambda o: o.env)
def test_each_default_fits_the_field_type(opt: Option[Any]) -> None:
    hint = typing.get_type_hints(Config)[opt.field]
    # upstream_region has no default of its own: a check copies the region into it.
    if opt.required is None and opt.field != "upstream_region":
        assert _fits(opt.default_value, hint), (opt.default_value, hint)
    if opt.default is not None:
        assert opt.parse(opt.env, opt.default) == opt.default_value


def test_a_config_built_by_hand_gets_the_table_defaults() -> None:
    # What has no default in the table must be passed (mypy says so too); the rest is taken
    # from the table, not from a second copy of the defaults.
    no_default: dict[str, Any] = {
        "upstream_url": "http://h:1",
        "upstream_host": "h:1",
        "upstream_scheme": "http",
        "upstream_access_key_id": None,
        "upstream_secret_access_key": None,
        "client_keys_file": None,
        "clients": {},
        "upstream_region": "us-east-1",
        "domains": (),
        "allowed_regions": (),
        "tls_cert": None,
        "tls_key": None,
        "upstream_ca_bundle": None,
        "sse_keys_file": None,
        "sse_keyring": None,
    }
    assert set(no_default) == {
        f.name for f in dataclasses.fields(Config) if f.default is dataclasses.MISSING
    }
    assert {o.field for o in OPTIONS if o.default is None} < set(no_default)
    cfg = Config(**no_default)
    for opt in OPTIONS:
        if opt.default is not None:
            assert getattr(cfg, opt.field) == opt.default_value, opt.env
    with pytest.raises(TypeError):
        Config(**{k: v for k, v in no_default.items() if k != "tls_cert"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.workers = 2  # type: ignore[misc]  # frozen: the assignment is what is tested
    assert not hasattr(cfg, "__dict__")  # slotted


def test_a_secret_setting_cannot_be_logged() -> None:
    with pytest.raises(TypeError):
        setting("X_SECRET", "--x-secret", text, secret=True, log="x", help="h")


# ------------------------------------------------------------------------ round trips
def test_every_option_has_a_round_trip_sample(files: dict[str, str]) -> None:
    assert set(samples(files)) == set(BY_ENV)
    for env, (_, a, _, b, _) in samples(files).items():
        assert a != BY_ENV[env].default_value and a != b, env


@pytest.mark.parametrize("env_name", sorted(BY_ENV))
def test_every_option_round_trips_env_and_flag(env_name: str, files: dict[str, str]) -> None:
    opt = BY_ENV[env_name]
    text_a, a, text_b, b, needs = samples(files)[env_name]
    assert getattr(load([], {**BASE, **needs, opt.env: text_a}), opt.field) == a
    assert getattr(load([opt.flag, text_a], {**BASE, **needs}), opt.field) == a
    assert getattr(load([f"{opt.flag}={text_b}"], {**BASE, **needs}), opt.field) == b
    # flags win over the environment
    assert getattr(load([opt.flag, text_b], {**BASE, **needs, opt.env: text_a}), opt.field) == b


@pytest.mark.parametrize("opt", [o for o in OPTIONS if o.fallback_env], ids=lambda o: o.env)
def test_fallback_env(opt: Option[Any], files: dict[str, str]) -> None:
    text_a, a, text_b, b, needs = samples(files)[opt.env]
    base = {k: v for k, v in BASE.items() if k not in (opt.env, *opt.fallback_env)}
    for fallback in opt.fallback_env:
        assert getattr(load([], {**base, **needs, fallback: text_a}), opt.field) == a
        both = {**base, **needs, fallback: text_a, opt.env: text_b}
        assert getattr(load([], both), opt.field) == b  # the s3shim name wins
        empty = {**base, **needs, fallback: text_a, opt.env: ""}
        assert getattr(load([], empty), opt.field) == a  # an empty variable is unset


def test_s3shim_specific_store_keys_win() -> None:
    cfg = load(
        [],
        {**BASE, "S3SHIM_UPSTREAM_ACCESS_KEY_ID": "AKX", "S3SHIM_UPSTREAM_SECRET_ACCESS_KEY": "sx"},
    )
    assert list(cfg.clients) == ["AKX"] and cfg.secret_for("AKX") == "sx"


def test_aws_default_region_is_read_and_upstream_region_follows() -> None:
    cfg = load([], {**BASE, "AWS_DEFAULT_REGION": "eu-central-1"})
    assert cfg.region == cfg.upstream_region == "eu-central-1"
    cfg = load(["--region", "r1"], {**BASE, "S3SHIM_UPSTREAM_REGION": "r2"})
    assert (cfg.region, cfg.upstream_region) == ("r1", "r2")


@pytest.mark.parametrize("opt", [o for o in OPTIONS if o.default], ids=lambda o: o.env)
def test_an_empty_variable_means_the_default(opt: Option[Any]) -> None:
    assert getattr(load([], {**BASE, opt.env: ""}), opt.field) == opt.default_value


# What `--flag ""` means, pinned per setting (as it was before the table): a number or a
# choice cannot be blank; anything else is cleared back to its default. A new setting must
# be put in one of these.
BLANK_FLAG_IS_AN_ERROR = {
    "S3SHIM_LISTEN_PORT",
    "S3SHIM_ADMIN_PORT",
    "S3SHIM_SHUTDOWN_GRACE_SECONDS",
    "S3SHIM_CLIENT_TIMEOUT_SECONDS",
    "S3SHIM_MAX_CONNECTIONS",
    "S3SHIM_MAX_CONNECTIONS_PER_PEER",
    "S3SHIM_MAX_HEAD_BYTES",
    "S3SHIM_WORKERS",
    "S3SHIM_LOG_LEVEL",
    "S3SHIM_LOG_FORMAT",
}
BLANK_FLAG_IS_MISSING = {  # cleared, and then missing
    "S3SHIM_UPSTREAM_URL",
    "S3SHIM_UPSTREAM_ACCESS_KEY_ID",
    "S3SHIM_UPSTREAM_SECRET_ACCESS_KEY",
}


@pytest.mark.parametrize("opt", OPTIONS, ids=lambda o: o.env)
def test_an_empty_flag_clears_text_but_a_number_or_choice_cannot_be_blank(
    opt: Option[Any], files: dict[str, str]
) -> None:
    text_a, _, _, _, needs = samples(files)[opt.env]
    env = {**BASE, **needs, opt.env: text_a}
    if opt.field in ("tls_cert", "tls_key"):
        env = dict(BASE)  # a cleared half of the TLS pair would be a different error
    if opt.env in BLANK_FLAG_IS_AN_ERROR:
        with pytest.raises(ConfigError) as info:
            load([opt.flag, ""], env)
        assert str(info.value).startswith(f"{opt.flag}: expected")
    elif opt.env in BLANK_FLAG_IS_MISSING:
        with pytest.raises(ConfigError) as info:
            load([opt.flag, ""], env)
        name = opt.env if opt.required is not None else opt.flag
        assert str(info.value).startswith(f"{name}: required")
    else:
        cfg = load([opt.flag, ""], env)  # the environment's value is not used either
        expected = opt.default_value
        if opt.field == "upstream_region":
            expected = cfg.region
        assert getattr(cfg, opt.field) == expected


@pytest.mark.parametrize(
    "value,expected",
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("Yes", True),
        (" on ", True),
        ("false", False),
        ("0", False),
        ("no", False),
        ("NO", False),
        ("Off", False),
    ],
)
def test_bool_flags(value: str, expected: bool) -> None:
    cfg = load([], {**BASE, "AWS_S3_DISABLE_SSE": value, "AWS_S3_DISABLE_CHECKSUMS": value})
    assert cfg.disable_sse is expected and cfg.disable_checksums is expected


def test_flags_override_env() -> None:
    cfg = load(["--port", "9999", "--disable-sse", "yes"], {**BASE, "S3SHIM_LISTEN_PORT": "1"})
    assert cfg.listen_port == 9999 and cfg.disable_sse


# ---------------------------------------------------------------------------- parsers
@pytest.mark.parametrize(
    "value,expected",
    [
        ("auto", None),
        ("AUTO", None),
        (" Auto ", None),
        ("true", True),
        ("yes", True),
        ("1", True),
        ("ON", True),
        ("false", False),
        ("no", False),
        ("0", False),
        ("off", False),
    ],
)
def test_tristate(value: str, expected: bool | None) -> None:
    assert tristate("X", value) is expected


def test_a_tristate_setting_through_the_table() -> None:
    opt = Option("X_MODE", "--mode", "h", tristate, default="auto", field="mode")
    assert opt.default_value is None
    assert opt.read(*opt.lookup({"mode": None}, {})) is None
    assert opt.read(*opt.lookup({"mode": None}, {"X_MODE": "yes"})) is True
    assert opt.read(*opt.lookup({"mode": "false"}, {"X_MODE": "yes"})) is False
    assert opt.read(*opt.lookup({"mode": ""}, {"X_MODE": "yes"})) is None  # cleared
    with pytest.raises(ConfigError, match=r"^--mode: expected auto/true/false"):
        opt.read(*opt.lookup({"mode": "maybe"}, {}))


PARSER_CASES: list[tuple[Parser[Any], str, object]] = [
    (text, " as is ", " as is "),
    (boolean, "yes", True),
    (port, "443", 443),
    (whole(0, 9), "0", 0),
    (seconds(1, 60), "60", 60.0),
    (choice("a", "bb"), "BB", "bb"),
    (comma_list(), " A, ,b ", ("A", "b")),
    (comma_list(lower=True), " A, ,b ", ("a", "b")),
    (http_origin, "https://Host:443/", "https://Host:443"),
    (http_origin, "http://[::1]:80", "http://[::1]:80"),
]


@pytest.mark.parametrize("parser,value,expected", PARSER_CASES)
def test_parsers_accept(parser: Parser[Any], value: str, expected: object) -> None:
    assert parser("X", value) == expected


@pytest.mark.parametrize(
    "parser,value,message",
    [
        (boolean, "maybe", "X: expected true/false/1/0/yes/no"),
        (tristate, "maybe", "X: expected auto/true/false/1/0/yes/no"),
        (port, "0", "X: expected a port number 1-65535"),
        (port, "65536", "X: expected a port number 1-65535"),
        (port, "http", "X: expected a port number 1-65535"),
        (port, "\u00b2", "X: expected a port number 1-65535"),  # isdigit() but not int()
        (port, "+80", "X: expected a port number 1-65535"),
        (port, "", "X: expected a port number 1-65535"),
        (whole(1, 64), "65", "X: expected a whole number 1-64"),
        (whole(1, 64), "-1", "X: expected a whole number 1-64"),
        (seconds(0, 3600), "1.5", "X: expected a whole number 0-3600"),
        (seconds(0, 3600), "3601", "X: expected a whole number 0-3600"),
        (choice("json", "console"), "xml", "X: expected json/console"),
        (choice("json", "console"), "", "X: expected json/console"),
        (existing_file, "/nonexistent/x.pem", "X: no such file '/nonexistent/x.pem'"),
        (http_origin, "ftp://h", "X: expected http(s)://host[:port]"),
        (http_origin, "http://", "X: expected http(s)://host[:port]"),
        (http_origin, "http://h/path", "X: must be scheme://host[:port] only"),
        (http_origin, "http://h?q", "X: must be scheme://host[:port] only"),
        (http_origin, "http://u:p@h", "X: must be scheme://host[:port] only"),
        (http_origin, "http://h:99999", "X: bad port"),
    ],
)
def test_parser_errors(parser: Parser[Any], value: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parser("X", value)
    assert str(info.value) == message


# existing_file names the path it could not find: it is not secret, and it is the answer.
ECHO_FREE: list[Parser[Any]] = [
    boolean,
    tristate,
    port,
    whole(0, 9),
    seconds(1, 9),
    choice("a", "b"),
    http_origin,
]


@given(value=st.text(max_size=40), which=st.integers(0, len(ECHO_FREE) - 1))
def test_parser_errors_never_echo_the_value(value: str, which: int) -> None:
    parser = ECHO_FREE[which]
    with pytest.raises(ConfigError) as template:
        parser("X", "\x00never valid\x00")
    try:
        parser("X", value)
    except ConfigError as exc:
        msg = str(exc)
        assert msg.startswith("X: ") and "\n" not in msg
        assert value not in msg or value in str(template.value)


@pytest.mark.parametrize(
    "env,names",
    [
        ({"S3SHIM_UPSTREAM_URL": ""}, "S3SHIM_UPSTREAM_URL: required"),
        ({"S3SHIM_UPSTREAM_URL": "ftp://x"}, "S3SHIM_UPSTREAM_URL"),
        ({"S3SHIM_UPSTREAM_URL": "http://x/path"}, "S3SHIM_UPSTREAM_URL"),
        ({"S3SHIM_UPSTREAM_URL": "http://x:99999"}, "S3SHIM_UPSTREAM_URL"),
        ({"AWS_S3_DISABLE_SSE": "maybe"}, "AWS_S3_DISABLE_SSE"),
        ({"S3SHIM_LISTEN_PORT": "http"}, "S3SHIM_LISTEN_PORT"),
        ({"AWS_SECRET_ACCESS_KEY": ""}, "S3SHIM_UPSTREAM_SECRET_ACCESS_KEY: required"),
        ({"AWS_ACCESS_KEY_ID": ""}, "S3SHIM_UPSTREAM_ACCESS_KEY_ID: required"),
        ({"S3SHIM_TLS_CERT": "/nonexistent.pem"}, "S3SHIM_TLS_CERT: no such file"),
        ({"S3SHIM_TLS_KEY": "/nonexistent.pem"}, "S3SHIM_TLS_KEY: no such file"),
        ({"S3SHIM_UPSTREAM_CA_BUNDLE": "/none.pem"}, "S3SHIM_UPSTREAM_CA_BUNDLE: no such file"),
        ({"S3SHIM_LOG_LEVEL": "loud"}, "S3SHIM_LOG_LEVEL: expected debug/info/warning/error"),
        ({"S3SHIM_LOG_FORMAT": "xml"}, "S3SHIM_LOG_FORMAT: expected json/console/auto"),
        ({"S3SHIM_WORKERS": "0"}, "S3SHIM_WORKERS: expected a whole number 1-64"),
        ({"S3SHIM_ADMIN_PORT": "65536"}, "S3SHIM_ADMIN_PORT: expected a whole number 0-65535"),
        ({"S3SHIM_SHUTDOWN_GRACE_SECONDS": "2.5"}, "S3SHIM_SHUTDOWN_GRACE_SECONDS: expected"),
        ({"S3SHIM_CLIENT_TIMEOUT_SECONDS": "0"}, "S3SHIM_CLIENT_TIMEOUT_SECONDS: expected"),
        ({"S3SHIM_MAX_CONNECTIONS": "1e3"}, "S3SHIM_MAX_CONNECTIONS: expected"),
        ({"S3SHIM_UPSTREAM_INSECURE": "2"}, "S3SHIM_UPSTREAM_INSECURE: expected"),
        ({"S3SHIM_CLIENT_KEYS_FILE": "/none"}, "S3SHIM_CLIENT_KEYS_FILE: cannot read /none"),
    ],
)
def test_errors_name_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError) as info:
        load([], {**BASE, **env})
    assert str(info.value).startswith(names)
    assert "store-secret" not in str(info.value)
    assert "\n" not in str(info.value)


def test_errors_name_the_flag_when_the_value_came_from_one() -> None:
    with pytest.raises(ConfigError, match=r"^--workers: expected"):
        load(["--workers", "99"], {**BASE, "S3SHIM_WORKERS": "2"})
    with pytest.raises(ConfigError, match=r"^--upstream-url: expected"):
        load(["--upstream-url", "ftp://x"], BASE)
    with pytest.raises(ConfigError, match=r"^--upstream-secret-access-key: required"):
        load(["--upstream-secret-access-key", ""], BASE)


def test_tls_needs_both_halves(files: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"^S3SHIM_TLS_KEY: TLS needs both a cert and a key$"):
        load([], {**BASE, "S3SHIM_TLS_CERT": files["cert"]})
    with pytest.raises(ConfigError, match=r"^S3SHIM_TLS_CERT: TLS needs both a cert and a key$"):
        load(["--tls-key", files["key"]], BASE)
    cfg = load(["--tls-cert", files["cert"], "--tls-key", files["key"]], BASE)
    assert cfg.describe()["tls"] is True


def test_unloadable_tls_files_are_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError) as info:
        load([], {**BASE, "S3SHIM_TLS_CERT": str(bad), "S3SHIM_TLS_KEY": str(bad)})
    assert str(info.value).startswith("S3SHIM_TLS_CERT: cannot load")
    with pytest.raises(ConfigError) as info:
        load([], {**BASE, "S3SHIM_UPSTREAM_CA_BUNDLE": str(bad)})
    assert str(info.value).startswith("S3SHIM_UPSTREAM_CA_BUNDLE: cannot load")


def test_mismatched_cert_and_key_is_a_config_error(files: dict[str, str], tmp_path: Path) -> None:
    other = make_tls(tmp_path)
    with pytest.raises(ConfigError, match=r"^S3SHIM_TLS_CERT: cannot load"):
        load([], {**BASE, "S3SHIM_TLS_CERT": files["cert"], "S3SHIM_TLS_KEY": other.key})


def test_errors_never_echo_the_value() -> None:
    with pytest.raises(ConfigError) as info:
        load([], {**BASE, "S3SHIM_UPSTREAM_URL": "http://AKID:topsecret@rgw:7480/x"})
    assert "topsecret" not in str(info.value)


@pytest.mark.parametrize("opt", OPTIONS, ids=lambda o: o.env)
def test_no_setting_echoes_a_rejected_value(opt: Option[Any]) -> None:
    marker = "zz-Rejected-Value-zz"
    try:
        cfg = load([], {**BASE, opt.env: marker})
    except ConfigError as exc:
        # A path that does not exist is named, so the operator sees which file is wrong.
        if opt.field not in (
            "tls_cert",
            "tls_key",
            "upstream_ca_bundle",
            "client_keys_file",
            "sse_keys_file",
        ):
            assert marker not in str(exc)
        assert "\n" not in str(exc) and str(exc).startswith(opt.env)
    else:  # free text: it was read as given
        assert getattr(cfg, opt.field) in (marker, (marker,), (marker.lower(),)), opt.env


# ------------------------------------------------------------------------- key tables
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
    # ... and needs no store pair of its own
    cfg = load([], {"S3SHIM_UPSTREAM_URL": "http://h", "S3SHIM_CLIENT_KEYS_FILE": str(f)})
    assert sorted(cfg.clients) == ["alice", "app"]


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "{}",
        "[]",
        '{"clients": []}',
        '{"clients": ["s"]}',
        '{"clients": [{"access_key_id": "a"}]}',
        '{"clients": [{"access_key_id": "a", "secret_access_key": ""}]}',
        '{"clients": [{"access_key_id": "a", "secret_access_key": 5}]}',
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
    assert '"s"' not in str(info.value) and "\n" not in str(info.value)


def test_unreadable_key_table_names_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"^--client-keys-file: cannot read /none/k.json: "):
        load(["--client-keys-file", "/none/k.json"], BASE)


# -------------------------------------------------------------------------- describe
def test_describe_is_the_startup_log_schema() -> None:
    assert load([], BASE).describe() == {
        "upstream_url": "http://127.0.0.1:7480",
        "client_keys": ["AKSTORE"],
        "region": "us-east-1",
        "upstream_region": "us-east-1",
        "listen": "127.0.0.1:8080",
        "disable_sse": False,
        "disable_checksums": False,
        "sse_keys": None,
        "sse_default": False,
        "sse_allow_http": False,
        "allowed_regions": "any",
        "allow_anonymous": True,
        "allow_sigv2": True,
        "record_checksums": None,
        "verify_reads": None,
        "domains": [],
        "tls": False,
        "upstream_ca_bundle": None,
        "upstream_insecure": False,
        "admin": "127.0.0.1:9090",
        "shutdown_grace_seconds": 20.0,
        "client_timeout_seconds": 30.0,
        "max_connections": 1024,
        "max_connections_per_peer": 128,
        "per_peer_limit_loopback": False,
        "max_head_bytes": 33554432,
        "workers": 1,
        "log_level": "info",
        "log_format": "auto",
    }
    d = load(["--admin-port", "0", "--domain", "A.b"], BASE).describe()
    assert d["admin"] is None and d["domains"] == ["a.b"]


def test_describe_and_repr_hold_no_secret(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(
        json.dumps(
            {
                "clients": [
                    {
                        "access_key_id": "app",
                        "secret_access_key": "client-secret-1",
                        "upstream_access_key_id": "AKUP",
                        "upstream_secret_access_key": "upstream-secret-2",
                    }
                ]
            }
        )
    )
    configs = [
        load([], BASE),
        load(["--upstream-secret-access-key", "flag-secret-3"], BASE),
        load([], {**BASE, "S3SHIM_UPSTREAM_SECRET_ACCESS_KEY": "env-secret-4"}),
        load([], {**BASE, "S3SHIM_CLIENT_KEYS_FILE": str(keys)}),
    ]
    text_ = " ".join(repr(c.describe()) + repr(c) for c in configs)
    for secret in ("store-secret", "flag-secret-3", "env-secret-4", "client-secret-1"):
        assert secret not in text_
    assert "upstream-secret-2" not in text_
    assert "'app'" in text_  # ... but the key ids are there


# ----------------------------------------------------------------------------- --help
def test_help_lists_every_option_with_its_env_and_default(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "2000")  # no wrapping inside a help text
    with pytest.raises(SystemExit) as info:
        load(["--help"], {})
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    out = out[out.index(" options: ") :]
    starts = [out.index(f" {opt.flag} {opt.parse.metavar} ") for opt in OPTIONS]
    assert starts == sorted(starts)  # in table order, so each option's text is a slice
    for opt, start, end in zip(OPTIONS, starts, [*starts[1:], len(out)], strict=True):
        line = out[start:end].strip()
        assert f"(env {', else '.join((opt.env, *opt.fallback_env))})" in line
        assert opt.help in line
        if opt.required is not None:
            assert line.endswith("[required]")
        elif opt.default:
            assert line.endswith(f"[default: {opt.default}]")
        else:
            assert "[default" not in line
        if opt.secret:
            assert "flags show in the process list" in line


def test_help_runs_as_a_program() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "s3shim", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for opt in OPTIONS:
        assert opt.flag in out and opt.env in out


def test_readme_documents_every_option() -> None:
    readme = (ROOT / "README.md").read_text()
    for opt in OPTIONS:
        assert f"`{opt.env}`" in readme, opt.env
        assert f"`{opt.flag}`" in readme, opt.flag


# ------------------------------------------------------------------------------- cli
def test_bad_config_exits_2_with_one_line() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "s3shim"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "S3SHIM_UPSTREAM_URL" in r.stderr


def test_cli_reports_a_config_error_with_status_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for opt in OPTIONS:
        for name in (opt.env, *opt.fallback_env):
            monkeypatch.delenv(name, raising=False)
    for k, v in BASE.items():
        monkeypatch.setenv(k, v)
    assert cli.main(["--workers", "65"]) == 2
    err = capsys.readouterr().err
    assert err == "s3shim: configuration error: --workers: expected a whole number 1-64\n"
