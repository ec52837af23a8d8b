"""Configuration: parsed once, from the environment and flags, into a frozen object.

Environment names follow AWS conventions where one exists (so a sidecar can share the
client's env); everything s3shim-specific is prefixed ``S3SHIM_``. Flags override the
environment. A bad setting raises :class:`ConfigError` naming the variable; secrets are
never part of an error message or of ``describe()``.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .sigv4 import Credentials


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it."""


@dataclass(frozen=True, slots=True)
class Option:
    env: str
    flag: str
    help: str
    default: str | None = None
    fallback_env: tuple[str, ...] = ()
    secret: bool = False


# One table: the --help text, the README's configuration table and the parser all read it.
OPTIONS: tuple[Option, ...] = (
    Option(
        "S3SHIM_UPSTREAM_URL",
        "--upstream-url",
        "URL of the S3 store s3shim forwards to, http:// or https:// (required). "
        "Fixed at startup: requests can never choose another host.",
    ),
    Option(
        "S3SHIM_UPSTREAM_ACCESS_KEY_ID",
        "--upstream-access-key-id",
        "Store access key s3shim signs with. Default: AWS_ACCESS_KEY_ID.",
        fallback_env=("AWS_ACCESS_KEY_ID",),
    ),
    Option(
        "S3SHIM_UPSTREAM_SECRET_ACCESS_KEY",
        "--upstream-secret-access-key",
        "Store secret key. Default: AWS_SECRET_ACCESS_KEY. Prefer the env var to the flag "
        "(flags show in the process list).",
        fallback_env=("AWS_SECRET_ACCESS_KEY",),
        secret=True,
    ),
    Option(
        "S3SHIM_CLIENT_KEYS_FILE",
        "--client-keys-file",
        "JSON file of client key pairs s3shim accepts, each mapped to a store key pair "
        "(see README). Default: accept only the store key pair itself.",
    ),
    Option(
        "AWS_REGION",
        "--region",
        "Region clients sign for (checked in their credential scope).",
        default="us-east-1",
        fallback_env=("AWS_DEFAULT_REGION",),
    ),
    Option(
        "S3SHIM_UPSTREAM_REGION",
        "--upstream-region",
        "Region s3shim signs for towards the store. Default: the client region.",
    ),
    Option("S3SHIM_LISTEN_HOST", "--host", "Address to listen on.", default="127.0.0.1"),
    Option("S3SHIM_LISTEN_PORT", "--port", "Port to listen on.", default="8080"),
    Option(
        "AWS_S3_DISABLE_SSE",
        "--disable-sse",
        "true: drop SSE-S3/SSE-KMS headers (x-amz-server-side-encryption*) before the "
        "store sees them. SSE-C headers are never dropped.",
        default="false",
    ),
    Option(
        "AWS_S3_DISABLE_CHECKSUMS",
        "--disable-checksums",
        "true: s3shim verifies the flexible checksums itself and drops them "
        "(x-amz-checksum-*, x-amz-sdk-checksum-algorithm, x-amz-trailer, ...) before the "
        "store; UploadPart responses get the checksum back.",
        default="false",
    ),
    Option(
        "S3SHIM_DOMAIN",
        "--domain",
        "Comma-separated host names for virtual-hosted-style requests "
        "(bucket.<domain>). Default: path-style only.",
    ),
    Option(
        "S3SHIM_TLS_CERT",
        "--tls-cert",
        "PEM certificate chain: serve HTTPS instead of HTTP (needs --tls-key).",
    ),
    Option("S3SHIM_TLS_KEY", "--tls-key", "PEM private key for --tls-cert."),
    Option(
        "S3SHIM_UPSTREAM_CA_BUNDLE",
        "--upstream-ca-bundle",
        "PEM CA bundle to verify an https store with (private CA). Default: system CAs.",
    ),
    Option(
        "S3SHIM_UPSTREAM_INSECURE",
        "--upstream-insecure",
        "true: do not verify the store's TLS certificate (logged as a warning).",
        default="false",
    ),
    Option(
        "S3SHIM_ADMIN_HOST",
        "--admin-host",
        "Address of the admin listener (/healthz, /readyz, /metrics).",
        default="127.0.0.1",
    ),
    Option(
        "S3SHIM_ADMIN_PORT",
        "--admin-port",
        "Port of the admin listener; 0 turns it off. Kept off the S3 port because "
        "'healthz' and 'metrics' are valid bucket names.",
        default="9090",
    ),
    Option(
        "S3SHIM_SHUTDOWN_GRACE_SECONDS",
        "--shutdown-grace-seconds",
        "On SIGTERM: stop accepting, let requests in flight finish for up to this many "
        "seconds, then exit 0.",
        default="20",
    ),
    Option(
        "S3SHIM_CLIENT_TIMEOUT_SECONDS",
        "--client-timeout-seconds",
        "A client that sends no byte of its request for this long is cut off: while its body "
        "is read (RequestTimeout), and while s3shim waits for a request head on a new or "
        "kept-alive connection.",
        default="30",
    ),
    Option(
        "S3SHIM_MAX_CONNECTIONS",
        "--max-connections",
        "Client connections served at once per process; more are closed on arrival (bounds "
        "what unauthenticated peers can hold).",
        default="1024",
    ),
    Option(
        "S3SHIM_WORKERS",
        "--workers",
        "Worker processes sharing the port (SO_REUSEPORT); one stream stays on one core.",
        default="1",
    ),
    Option("S3SHIM_LOG_LEVEL", "--log-level", "debug, info, warning or error.", default="info"),
    Option(
        "S3SHIM_LOG_FORMAT",
        "--log-format",
        "json, console, or auto (console on a terminal, else json).",
        default="auto",
    ),
)

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


@dataclass(frozen=True, slots=True)
class ClientKey:
    """A key a client may sign with, and the store key its requests are re-signed with."""

    client: Credentials
    upstream: Credentials


@dataclass(frozen=True, slots=True)
class Config:
    upstream_url: str
    upstream_host: str  # host[:port] as sent in Host
    upstream_scheme: str
    region: str
    upstream_region: str
    listen_host: str
    listen_port: int
    disable_sse: bool
    disable_checksums: bool
    clients: Mapping[str, ClientKey] = field(repr=False)
    domains: tuple[str, ...] = ()
    tls_cert: str | None = None
    tls_key: str | None = None
    upstream_ca_bundle: str | None = None
    upstream_insecure: bool = False
    admin_host: str = "127.0.0.1"
    admin_port: int = 9090  # 0 = no admin listener
    shutdown_grace: float = 20.0
    client_timeout: float = 30.0
    max_connections: int = 1024
    workers: int = 1
    log_level: str = "info"
    log_format: str = "auto"

    def secret_for(self, access_key: str) -> str | None:
        entry = self.clients.get(access_key)
        return entry.client.secret_key if entry else None

    def describe(self) -> dict[str, object]:
        """The effective configuration for the startup log: no secrets, only key ids."""
        return {
            "upstream_url": self.upstream_url,
            "region": self.region,
            "upstream_region": self.upstream_region,
            "listen": f"{self.listen_host}:{self.listen_port}",
            "tls": self.tls_cert is not None,
            "disable_sse": self.disable_sse,
            "disable_checksums": self.disable_checksums,
            "client_keys": sorted(self.clients),
            "domains": list(self.domains),
            "upstream_ca_bundle": self.upstream_ca_bundle,
            "upstream_insecure": self.upstream_insecure,
            "admin": f"{self.admin_host}:{self.admin_port}" if self.admin_port else None,
            "shutdown_grace_seconds": self.shutdown_grace,
            "workers": self.workers,
            "client_timeout_seconds": self.client_timeout,
            "max_connections": self.max_connections,
            "log_level": self.log_level,
        }


def _bool(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ConfigError(f"{name}: expected true/false/1/0/yes/no")


def _port(name: str, value: str) -> int:
    if not (value.isascii() and value.isdigit()) or not 0 < int(value) < 65536:
        raise ConfigError(f"{name}: expected a port number 1-65535")
    return int(value)


def _int(name: str, value: str, low: int, high: int) -> int:
    if not (value.isascii() and value.isdigit()) or not low <= int(value) <= high:
        raise ConfigError(f"{name}: expected a whole number {low}-{high}")
    return int(value)


def _load_client_keys(name: str, path: str) -> dict[str, ClientKey]:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name}: {path} is not valid JSON (line {exc.lineno})") from None
    entries = data.get("clients") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f'{name}: {path} must hold {{"clients": [...]}} with one entry or more')
    table: dict[str, ClientKey] = {}
    for i, entry in enumerate(entries):
        where = f"{name}: {path} clients[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be an object")
        values = {
            k: entry.get(k)
            for k in (
                "access_key_id",
                "secret_access_key",
                "upstream_access_key_id",
                "upstream_secret_access_key",
            )
        }
        for k, v in values.items():
            if v is not None and (not isinstance(v, str) or not v):
                raise ConfigError(f"{where}.{k} must be a non-empty string")
        ak, sk = values["access_key_id"], values["secret_access_key"]
        if ak is None or sk is None:
            raise ConfigError(f"{where} needs access_key_id and secret_access_key")
        uak, usk = values["upstream_access_key_id"], values["upstream_secret_access_key"]
        if (uak is None) != (usk is None):
            raise ConfigError(
                f"{where}: give both upstream_access_key_id and upstream_secret_access_key, "
                "or neither (identity mapping)"
            )
        if ak in table:
            raise ConfigError(f"{where}: access_key_id {ak!r} appears twice")
        client = Credentials(ak, sk)
        # No upstream pair means identity: the store user signs as itself through s3shim,
        # so the store's own per-user permissions still apply.
        upstream = Credentials(uak, usk) if uak and usk else client
        table[ak] = ClientKey(client, upstream)
    return table


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="s3shim",
        description=(
            "An S3 reverse proxy that verifies each client's SigV4 signature, drops the "
            "AWS-only headers a non-AWS store rejects (SSE, flexible checksums, aws-chunked "
            "framing) while checking them itself, and re-signs the request for the store. "
            "Every option can be set by the environment variable shown."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for opt in OPTIONS:
        default = f" [default: {opt.default}]" if opt.default is not None else ""
        p.add_argument(
            opt.flag, dest=opt.env, metavar="VALUE", help=f"{opt.help} (env {opt.env}){default}"
        )
    return p


def load(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Parse flags and environment once. Raises ConfigError with a one-line reason."""
    env = os.environ if env is None else env
    args = vars(_parser().parse_args(argv))

    def get(opt: Option) -> tuple[str, str | None]:
        if args.get(opt.env) is not None:
            return opt.flag, args[opt.env]
        for name in (opt.env, *opt.fallback_env):
            if env.get(name):
                return name, env[name]
        return opt.env, opt.default

    opts = {o.env: o for o in OPTIONS}

    def val(key: str) -> tuple[str, str | None]:
        return get(opts[key])

    name, upstream = val("S3SHIM_UPSTREAM_URL")
    if not upstream:
        raise ConfigError(
            "S3SHIM_UPSTREAM_URL: required (the store's URL, e.g. http://127.0.0.1:7480)"
        )
    parts = urlsplit(upstream)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name}: expected http(s)://host[:port]")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ConfigError(f"{name}: must be scheme://host[:port] only")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise ConfigError(f"{name}: bad port") from None

    ak_name, ak = val("S3SHIM_UPSTREAM_ACCESS_KEY_ID")
    sk_name, sk = val("S3SHIM_UPSTREAM_SECRET_ACCESS_KEY")
    store_key = Credentials(ak, sk) if ak and sk else None

    keys_name, keys_file = val("S3SHIM_CLIENT_KEYS_FILE")
    if keys_file:
        clients = _load_client_keys(keys_name, keys_file)
    elif store_key is None:
        missing = ak_name if not ak else sk_name
        raise ConfigError(
            f"{missing}: required (the store key pair: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
            "or S3SHIM_UPSTREAM_*), unless S3SHIM_CLIENT_KEYS_FILE is given"
        )
    else:
        clients = {store_key.access_key: ClientKey(store_key, store_key)}

    _, region = val("AWS_REGION")
    _, up_region = val("S3SHIM_UPSTREAM_REGION")
    _, host = val("S3SHIM_LISTEN_HOST")
    port_name, port = val("S3SHIM_LISTEN_PORT")
    cert_name, cert = val("S3SHIM_TLS_CERT")
    key_name, key = val("S3SHIM_TLS_KEY")
    if bool(cert) != bool(key):
        raise ConfigError(f"{cert_name if not cert else key_name}: TLS needs both a cert and a key")
    for n, path in ((cert_name, cert), (key_name, key)):
        if path and not Path(path).is_file():
            raise ConfigError(f"{n}: no such file {path!r}")
    ca_name, ca = val("S3SHIM_UPSTREAM_CA_BUNDLE")
    if ca and not Path(ca).is_file():
        raise ConfigError(f"{ca_name}: no such file {ca!r}")
    # Load the PEM files once here, so a bad one is a one-line config error, not a traceback.
    try:
        if cert and key:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError):
        raise ConfigError(f"{cert_name}: cannot load the certificate and key as PEM") from None
    try:
        if ca:
            ssl.create_default_context(cafile=ca)
    except (ssl.SSLError, OSError):
        raise ConfigError(f"{ca_name}: cannot load the CA bundle as PEM") from None
    lvl_name, level = val("S3SHIM_LOG_LEVEL")
    if (level or "").lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"{lvl_name}: expected debug/info/warning/error")
    fmt_name, fmt = val("S3SHIM_LOG_FORMAT")
    if (fmt or "").lower() not in ("json", "console", "auto"):
        raise ConfigError(f"{fmt_name}: expected json/console/auto")
    _, domains = val("S3SHIM_DOMAIN")
    _, admin_host = val("S3SHIM_ADMIN_HOST")
    admin_port_name, admin_port = val("S3SHIM_ADMIN_PORT")
    grace_name, grace = val("S3SHIM_SHUTDOWN_GRACE_SECONDS")
    workers_name, workers = val("S3SHIM_WORKERS")
    ct_name, client_timeout = val("S3SHIM_CLIENT_TIMEOUT_SECONDS")
    mc_name, max_conns = val("S3SHIM_MAX_CONNECTIONS")

    def flag(key: str) -> bool:
        n, v = val(key)
        return _bool(n, v or "")

    region = region or "us-east-1"
    return Config(
        upstream_url=f"{parts.scheme}://{parts.netloc}",
        upstream_host=parts.netloc,
        upstream_scheme=parts.scheme,
        region=region,
        upstream_region=up_region or region,
        listen_host=host or "127.0.0.1",
        listen_port=_port(port_name, port or ""),
        disable_sse=flag("AWS_S3_DISABLE_SSE"),
        disable_checksums=flag("AWS_S3_DISABLE_CHECKSUMS"),
        clients=clients,
        domains=tuple(d.strip().lower() for d in (domains or "").split(",") if d.strip()),
        tls_cert=cert or None,
        tls_key=key or None,
        upstream_ca_bundle=ca or None,
        upstream_insecure=flag("S3SHIM_UPSTREAM_INSECURE"),
        admin_host=admin_host or "127.0.0.1",
        admin_port=_int(admin_port_name, admin_port or "", 0, 65535),
        shutdown_grace=float(_int(grace_name, grace or "", 0, 3600)),
        workers=_int(workers_name, workers or "", 1, 64),
        client_timeout=float(_int(ct_name, client_timeout or "", 1, 3600)),
        max_connections=_int(mc_name, max_conns or "", 1, 1_000_000),
        log_level=(level or "info").lower(),
        log_format=(fmt or "auto").lower(),
    )
