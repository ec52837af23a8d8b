"""Configuration: parsed once, from the environment and flags, into a frozen object.

Environment names follow AWS conventions where one exists (so a sidecar can share the
client's env); everything s3shim-specific is prefixed ``S3SHIM_``. Flags override the
environment. A bad setting raises :class:`ConfigError` naming the variable (or the flag) in
one line; values are never part of an error message (file paths excepted: they are not
secret and say which file is wrong), and secrets are never part of ``describe()``.

Each setting is declared exactly once, as a field of :class:`Config`::

    upstream_http2: bool | None = setting(
        "S3SHIM_UPSTREAM_HTTP2", "--upstream-http2", tristate, default="auto",
        help="Speak HTTP/2 to the store: true, false or auto (when the store offers it).",
    )

That one entry is the whole change: the flag, the environment variable (and any
``fallback_env``), the default, the parser and its error message, the ``--help`` line and the
startup log (:meth:`Config.describe`) all follow from it, and mypy checks that the parser's
type fits the annotation. (The README's table is still written by hand; a test checks that it
names every setting.) Only a rule that ties settings together needs code: a small function in
``_CHECKS``, run after every setting has parsed.

Value lookup, for every setting alike: the flag if given, else the first of ``env`` and its
``fallback_env`` that is set and not empty, else the default. A flag given as the empty string
clears a text, path, list or (tri-state) boolean setting back to its default; for a number or
a choice it is an error, so ``--port "$UNSET"`` fails loudly instead of listening somewhere
unexpected.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Generic, TypeVar, cast, dataclass_transform
from urllib.parse import urlsplit

from . import __version__
from .sigv4 import Credentials
from .ssekeys import Keyring, KeysFileError, parse_keys_file

T = TypeVar("T")
_C = TypeVar("_C")


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it."""


# ------------------------------------------------------------------------------- parsers
@dataclass(frozen=True, slots=True)
class Parser(Generic[T]):
    """Text -> value for one kind of setting.

    ``convert(name, text)`` raises ConfigError naming ``name`` (the flag or variable the text
    came from) and never the text itself. ``unset`` is the value when nothing was given and
    the setting has no default; ``blank_ok`` says whether an empty flag means "not given".
    """

    convert: Callable[[str, str], T]
    metavar: str
    unset: T | None = None
    blank_ok: bool = True

    def __call__(self, name: str, text: str) -> T:
        return self.convert(name, text)


_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", ""})


def _text(name: str, value: str) -> str:
    return value


def _truth(value: str) -> bool | None:
    v = value.strip().lower()
    return True if v in _TRUE else False if v in _FALSE else None


def _bool(name: str, value: str) -> bool:
    truth = _truth(value)
    if truth is None:
        raise ConfigError(f"{name}: expected true/false/1/0/yes/no")
    return truth


def _tristate(name: str, value: str) -> bool | None:
    # "auto" (None) leaves the decision to run time; anything else reads like a boolean.
    if value.strip().lower() == "auto":
        return None
    truth = _truth(value)
    if truth is None:
        raise ConfigError(f"{name}: expected auto/true/false/1/0/yes/no")
    return truth


def _whole(value: str, low: int, high: int) -> int | None:
    # isascii: str.isdigit() also accepts digits such as "²" that int() rejects.
    if value.isascii() and value.isdigit() and low <= int(value) <= high:
        return int(value)
    return None


def _port(name: str, value: str) -> int:
    n = _whole(value, 1, 65535)
    if n is None:
        raise ConfigError(f"{name}: expected a port number 1-65535")
    return n


def _existing_file(name: str, value: str) -> str:
    if not Path(value).is_file():
        raise ConfigError(f"{name}: no such file {value!r}")
    return value


def _http_origin(name: str, value: str) -> str:
    """``http(s)://host[:port]``, normalised; anything more (path, query, userinfo) is refused."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name}: expected http(s)://host[:port]")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ConfigError(f"{name}: must be scheme://host[:port] only")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise ConfigError(f"{name}: bad port") from None
    return f"{parts.scheme}://{parts.netloc}"


text: Parser[str] = Parser(_text, "TEXT")
boolean: Parser[bool] = Parser(_bool, "BOOL")
tristate: Parser[bool | None] = Parser(_tristate, "auto|true|false")
port: Parser[int] = Parser(_port, "PORT", blank_ok=False)
existing_file: Parser[str] = Parser(_existing_file, "FILE")
http_origin: Parser[str] = Parser(_http_origin, "URL")


def whole(low: int, high: int) -> Parser[int]:
    """A whole number in ``low..high``."""

    def convert(name: str, value: str) -> int:
        n = _whole(value, low, high)
        if n is None:
            raise ConfigError(f"{name}: expected a whole number {low}-{high}")
        return n

    return Parser(convert, "N", blank_ok=False)


def seconds(low: int, high: int) -> Parser[float]:
    """A duration in whole seconds, ``low..high``, as a float (what asyncio and loop.time use)."""
    n = whole(low, high)
    return Parser(lambda name, value: float(n(name, value)), "SECONDS", blank_ok=False)


def choice(*names: str) -> Parser[str]:
    """One of ``names``, in any case; the value is lower-cased."""

    def convert(name: str, value: str) -> str:
        if value.lower() not in names:
            raise ConfigError(f"{name}: expected {'/'.join(names)}")
        return value.lower()

    return Parser(convert, "|".join(names), blank_ok=False)


def comma_list(*, lower: bool = False) -> Parser[tuple[str, ...]]:
    """Comma-separated items, blanks around and between them dropped."""

    def convert(name: str, value: str) -> tuple[str, ...]:
        items = (item.strip() for item in value.split(","))
        return tuple(item.lower() if lower else item for item in items if item)

    return Parser(convert, "A,B,...", unset=())


# ------------------------------------------------------------------------------- options
@dataclass(frozen=True, slots=True)
class Option(Generic[T]):
    """One setting: where it is read from, how it parses, how it is documented."""

    env: str
    flag: str
    help: str
    parse: Parser[T]
    default: str | None = None  # as a user would write it; parsed by ``parse``
    fallback_env: tuple[str, ...] = ()
    secret: bool = False
    required: str | None = None  # if set: no default, and this hint ends the error message
    field: str = ""  # the Config attribute; filled in when OPTIONS is built

    @property
    def default_value(self) -> T | None:
        if self.default is None:
            return self.parse.unset
        return self.parse(self.env, self.default)

    def lookup(
        self, flags: Mapping[str, str | None], env: Mapping[str, str]
    ) -> tuple[str, str | None]:
        """(where the text came from, text); text None means "not given": use the default."""
        given = flags.get(self.field)
        if given is not None:
            # An empty flag clears the setting, but a number or a choice cannot be blank.
            return self.flag, given if given or not self.parse.blank_ok else None
        for name in (self.env, *self.fallback_env):
            if env.get(name):  # an empty variable counts as unset (`env: {X: ""}` in a pod)
                return name, env[name]
        return self.env, None

    def read(self, name: str, raw: str | None) -> T | None:
        if raw is not None:
            return self.parse(name, raw)
        if self.required is not None:
            raise ConfigError(f"{self.env}: required ({self.required})")
        return self.default_value

    def help_line(self) -> str:
        parts = [self.help]
        if self.secret:
            parts.append("Prefer the env var to the flag (flags show in the process list).")
        env = ", else ".join((self.env, *self.fallback_env))
        parts.append(f"(env {env})")
        if self.required is not None:
            parts.append("[required]")
        elif self.default:
            parts.append(f"[default: {self.default}]")
        return " ".join(parts).replace("%", "%%")  # argparse %-formats help strings


@dataclass(frozen=True, slots=True)
class _Shown:
    """How a Config field appears in describe(): under ``key`` ("": its own name; None: not)."""

    key: str | None
    show: Callable[[Config], object] | None = None


_OPTION = "s3shim.option"
_SHOWN = "s3shim.shown"


def setting(
    env: str,
    flag: str,
    parse: Parser[T],
    *,
    help: str,
    default: str | None = None,
    fallback_env: tuple[str, ...] = (),
    secret: bool = False,
    required: str | None = None,
    log: str | bool = True,
    show: Callable[[Config], object] | None = None,
) -> T:
    """Declare a Config field that is a setting (see the module docstring).

    ``log``: False keeps it out of describe(), a string renames it there; ``show`` computes
    the logged value from the whole Config (e.g. host and port as one "host:port").
    """
    if secret and (isinstance(log, str) or show is not None):
        raise TypeError(f"{env}: a secret setting is never logged")
    opt = Option(env, flag, help, parse, default, fallback_env, secret, required)
    meta = {_OPTION: opt, _SHOWN: _Shown(None if secret else _log_key(log), show)}
    # A Config built by hand (tests) gets the documented default too, parsed here, so a bad
    # default fails at import. Only a setting with a ``default`` has one, which is also what
    # mypy assumes from the call (dataclass_transform): both agree on what must be passed.
    if default is None:
        f: Any = field(repr=not secret, metadata=meta)
    else:
        f = field(default=opt.default_value, repr=not secret, metadata=meta)
    return cast(T, f)


def derived(
    *, log: str | bool = True, show: Callable[[Config], object] | None = None, repr: bool = True
) -> Any:
    """Declare a Config field computed by a check in ``_CHECKS`` rather than read directly."""
    return field(repr=repr, metadata={_SHOWN: _Shown(_log_key(log), show)})


def _log_key(log: str | bool) -> str | None:
    return None if log is False else "" if log is True else log


@dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(setting, derived))
def _settings(cls: type[_C]) -> type[_C]:
    # A plain frozen, slotted dataclass; the decorator only tells mypy that setting() and
    # derived() declare fields (so it checks types and knows which ones are required).
    return dataclass(frozen=True, slots=True, kw_only=True)(cls)


@dataclass(frozen=True, slots=True)
class ClientKey:
    """A key a client may sign with, and the store key its requests are re-signed with."""

    client: Credentials
    upstream: Credentials


@_settings
class Config:
    upstream_url: str = setting(
        "S3SHIM_UPSTREAM_URL",
        "--upstream-url",
        http_origin,
        required="the store's URL, e.g. http://127.0.0.1:7480",
        help="URL of the S3 store s3shim forwards to, http:// or https://. "
        "Fixed at startup: requests can never choose another host.",
    )
    upstream_host: str = derived(log=False)  # host[:port] as sent in Host
    upstream_scheme: str = derived(log=False)
    upstream_access_key_id: str | None = setting(
        "S3SHIM_UPSTREAM_ACCESS_KEY_ID",
        "--upstream-access-key-id",
        text,
        fallback_env=("AWS_ACCESS_KEY_ID",),
        log=False,  # not in effect with a client keys file; client_keys says what is
        help="Store access key s3shim signs with.",
    )
    upstream_secret_access_key: str | None = setting(
        "S3SHIM_UPSTREAM_SECRET_ACCESS_KEY",
        "--upstream-secret-access-key",
        text,
        fallback_env=("AWS_SECRET_ACCESS_KEY",),
        secret=True,
        help="Store secret key.",
    )
    client_keys_file: str | None = setting(
        "S3SHIM_CLIENT_KEYS_FILE",
        "--client-keys-file",
        text,
        log=False,
        help="JSON file of client key pairs s3shim accepts, each mapped to a store key pair "
        "(see README). Default: accept only the store key pair itself.",
    )
    clients: Mapping[str, ClientKey] = derived(
        log="client_keys", show=lambda c: sorted(c.clients), repr=False
    )
    region: str = setting(
        "AWS_REGION",
        "--region",
        text,
        default="us-east-1",
        fallback_env=("AWS_DEFAULT_REGION",),
        help="The deployment's region: what s3shim signs for towards the store unless "
        "S3SHIM_UPSTREAM_REGION says otherwise. Clients may sign for any region unless "
        "S3SHIM_ALLOWED_REGIONS restricts it.",
    )
    upstream_region: str = setting(
        "S3SHIM_UPSTREAM_REGION",
        "--upstream-region",
        text,
        help="Region s3shim signs for towards the store. Default: the client region.",
    )
    listen_host: str = setting(
        "S3SHIM_LISTEN_HOST",
        "--host",
        text,
        default="127.0.0.1",
        log=False,  # in "listen"
        help="Address to listen on.",
    )
    listen_port: int = setting(
        "S3SHIM_LISTEN_PORT",
        "--port",
        port,
        default="8080",
        log="listen",
        show=lambda c: f"{c.listen_host}:{c.listen_port}",
        help="Port to listen on.",
    )
    disable_sse: bool = setting(
        "AWS_S3_DISABLE_SSE",
        "--disable-sse",
        boolean,
        default="false",
        help="true: drop SSE-S3/SSE-KMS headers (x-amz-server-side-encryption*) before the "
        "store sees them. SSE-C headers are never dropped. With S3SHIM_SSE_KEYS_FILE set, "
        "SSE-S3 (AES256) is kept as SSE-C whatever this says; SSE-KMS still follows it.",
    )
    sse_keys_file: str | None = setting(
        "S3SHIM_SSE_KEYS_FILE",
        "--sse-keys-file",
        existing_file,
        log=False,  # sse_keys: the ids only
        help='JSON file of master keys ({"keys": [{"id", "key"}]}, the first current; '
        "see README): SSE-S3 requests are stored encrypted by the store itself as SSE-C, "
        "with a key per object derived from the current master key, and every read carries "
        "it again. Takes precedence over AWS_S3_DISABLE_SSE for SSE-S3 (kept, as SSE-C); "
        "SSE-KMS still follows that flag. Losing this file makes the data unreadable. After a "
        "rotation, 's3shim reencrypt' moves objects to the current key.",
    )
    sse_keyring: Keyring | None = derived(
        log="sse_keys",
        show=lambda c: [k.id for k in c.sse_keyring.keys] if c.sse_keyring else None,
        repr=False,
    )
    sse_default: bool = setting(
        "S3SHIM_SSE_DEFAULT",
        "--sse-default",
        boolean,
        default="false",
        help="true: every write is stored encrypted (as a bucket's default encryption), not "
        "only those asking for SSE-S3; needs S3SHIM_SSE_KEYS_FILE.",
    )
    sse_allow_http: bool = setting(
        "S3SHIM_SSE_ALLOW_HTTP",
        "--sse-allow-http",
        boolean,
        default="false",
        help="true (labs only, insecure): allow S3SHIM_SSE_KEYS_FILE with an http:// store, "
        "sending the keys in the clear. Without it s3shim refuses to start.",
    )
    disable_checksums: bool = setting(
        "AWS_S3_DISABLE_CHECKSUMS",
        "--disable-checksums",
        boolean,
        default="false",
        help="true: s3shim verifies the flexible checksums itself and drops them "
        "(x-amz-checksum-*, x-amz-sdk-checksum-algorithm, x-amz-trailer, ...) before the "
        "store; UploadPart responses get the checksum back.",
    )
    allowed_regions: tuple[str, ...] = setting(
        "S3SHIM_ALLOWED_REGIONS",
        "--allowed-regions",
        comma_list(),
        show=lambda c: list(c.allowed_regions) or "any",
        help="Comma-separated credential-scope regions clients may sign for. Default: any "
        "(the region only feeds the signing key, so every region proves the same; s3cmd, "
        "restic and the MinIO clients sign with the store's zonegroup name, e.g. 'default').",
    )
    allow_anonymous: bool = setting(
        "S3SHIM_ALLOW_ANONYMOUS",
        "--allow-anonymous",
        boolean,
        default="true",
        help="true: requests with no auth at all are forwarded with no credentials, so the "
        "store's ACLs and bucket policies decide (public objects). false: refused with "
        "403 AccessDenied before the store sees them.",
    )
    allow_sigv2: bool = setting(
        "S3SHIM_ALLOW_SIGV2",
        "--allow-sigv2",
        boolean,
        default="true",
        help="true: SigV2 requests (Authorization: AWS ..., AWSAccessKeyId URLs, SigV2 forms) "
        "are verified and re-signed as SigV4. false: refused with 403 AccessDenied.",
    )
    record_checksums: bool | None = setting(
        "S3SHIM_RECORD_CHECKSUMS",
        "--record-checksums",
        tristate,
        default="auto",
        help="Store s3shim's verified checksum with each upload (multipart too) as "
        "x-amz-meta-s3shim-checksum. auto: on when --disable-checksums is true.",
    )
    verify_reads: bool | None = setting(
        "S3SHIM_VERIFY_READS",
        "--verify-reads",
        tristate,
        default="auto",
        help="Check every full GetObject against the recorded checksum (the connection is cut "
        "on a mismatch) and answer checksum-mode requests with it. auto: on when "
        "--disable-checksums is true.",
    )
    domains: tuple[str, ...] = setting(
        "S3SHIM_DOMAIN",
        "--domain",
        comma_list(lower=True),
        show=lambda c: list(c.domains),
        help="Comma-separated host names for virtual-hosted-style requests "
        "(bucket.<domain>). Default: path-style only.",
    )
    tls_cert: str | None = setting(
        "S3SHIM_TLS_CERT",
        "--tls-cert",
        existing_file,
        log="tls",
        show=lambda c: c.tls_cert is not None,
        help="PEM certificate chain: serve HTTPS instead of HTTP (needs --tls-key).",
    )
    tls_key: str | None = setting(
        "S3SHIM_TLS_KEY",
        "--tls-key",
        existing_file,
        log=False,  # in "tls"
        help="PEM private key for --tls-cert.",
    )
    upstream_ca_bundle: str | None = setting(
        "S3SHIM_UPSTREAM_CA_BUNDLE",
        "--upstream-ca-bundle",
        existing_file,
        help="PEM CA bundle to verify an https store with (private CA). Default: system CAs.",
    )
    upstream_insecure: bool = setting(
        "S3SHIM_UPSTREAM_INSECURE",
        "--upstream-insecure",
        boolean,
        default="false",
        help="true: do not verify the store's TLS certificate (logged as a warning).",
    )
    admin_host: str = setting(
        "S3SHIM_ADMIN_HOST",
        "--admin-host",
        text,
        default="127.0.0.1",
        log=False,  # in "admin"
        help="Address of the admin listener (/healthz, /readyz, /metrics).",
    )
    admin_port: int = setting(  # 0 = no admin listener
        "S3SHIM_ADMIN_PORT",
        "--admin-port",
        whole(0, 65535),
        default="9090",
        log="admin",
        show=lambda c: f"{c.admin_host}:{c.admin_port}" if c.admin_port else None,
        help="Port of the admin listener; 0 turns it off. Kept off the S3 port because "
        "'healthz' and 'metrics' are valid bucket names.",
    )
    shutdown_grace: float = setting(
        "S3SHIM_SHUTDOWN_GRACE_SECONDS",
        "--shutdown-grace-seconds",
        seconds(0, 3600),
        default="20",
        log="shutdown_grace_seconds",
        help="On SIGTERM: stop accepting, let requests in flight finish for up to this many "
        "seconds, then exit 0.",
    )
    client_timeout: float = setting(
        "S3SHIM_CLIENT_TIMEOUT_SECONDS",
        "--client-timeout-seconds",
        seconds(1, 3600),
        default="30",
        log="client_timeout_seconds",
        help="A client that sends no byte of its request for this long is cut off: while its "
        "body is read (RequestTimeout), and while s3shim waits for a request head on a new "
        "or kept-alive connection.",
    )
    max_connections: int = setting(
        "S3SHIM_MAX_CONNECTIONS",
        "--max-connections",
        whole(1, 1_000_000),
        default="1024",
        help="Client connections served at once per process; more are closed on arrival "
        "(bounds what unauthenticated peers can hold).",
    )
    max_connections_per_peer: int = setting(
        "S3SHIM_MAX_CONNECTIONS_PER_PEER",
        "--max-connections-per-peer",
        whole(0, 1_000_000),
        default="128",
        help="Client connections one peer (an IPv4 address, an IPv6 /64) may hold at once per "
        "process; more are closed on arrival. 0: no per-peer limit. Loopback peers are exempt "
        "(a sidecar's only peer is 127.0.0.1) unless S3SHIM_PER_PEER_LIMIT_LOOPBACK is true. "
        "Behind a load balancer or NAT, clients share one address: raise it or set 0.",
    )
    per_peer_limit_loopback: bool = setting(
        "S3SHIM_PER_PEER_LIMIT_LOOPBACK",
        "--per-peer-limit-loopback",
        boolean,
        default="false",
        help="true: the per-peer limit applies to loopback peers (127.0.0.0/8, ::1) too.",
    )
    max_head_bytes: int = setting(
        "S3SHIM_MAX_HEAD_BYTES",
        "--max-head-bytes",
        whole(1024 * 1024, 1 << 40),
        default=str(32 * 1024 * 1024),
        help="Bytes of unfinished request heads held across all connections per process; "
        "past it, the connection holding the largest is answered 503 SlowDown and closed.",
    )
    workers: int = setting(
        "S3SHIM_WORKERS",
        "--workers",
        whole(1, 64),
        default="1",
        help="Worker processes sharing the port (SO_REUSEPORT); one stream stays on one core.",
    )
    log_level: str = setting(
        "S3SHIM_LOG_LEVEL",
        "--log-level",
        choice("debug", "info", "warning", "error"),
        default="info",
        help="debug, info, warning or error.",
    )
    log_format: str = setting(
        "S3SHIM_LOG_FORMAT",
        "--log-format",
        choice("json", "console", "auto"),
        default="auto",
        help="json, console, or auto (console on a terminal, else json).",
    )

    def secret_for(self, access_key: str) -> str | None:
        entry = self.clients.get(access_key)
        return entry.client.secret_key if entry else None

    def store_ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of every connection to the store (None: the store speaks http):
        the system's CAs, or the CA bundle's; no verification at all when insecure (logged as
        a warning at startup). Build it once per client: loading a CA bundle is not free."""
        if self.upstream_scheme != "https":
            return None
        ctx = ssl.create_default_context(cafile=self.upstream_ca_bundle or None)
        if self.upstream_insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def describe(self) -> dict[str, object]:
        """The effective configuration for the startup log: no secrets, only key ids."""
        out: dict[str, object] = {}
        for f in fields(self):
            shown: _Shown = f.metadata[_SHOWN]
            if shown.key is None:
                continue
            value = shown.show(self) if shown.show else getattr(self, f.name)
            out[shown.key or f.name] = value
        return out


# Every setting, in declaration order: load(), --help, tests and the README check read it.
OPTIONS: tuple[Option[Any], ...] = tuple(
    replace(f.metadata[_OPTION], field=f.name) for f in fields(Config) if _OPTION in f.metadata
)


# ------------------------------------------------------------------- cross-field checks
# Each takes the parsed values (Config field -> value) and where each came from (field ->
# flag or variable name, for the message), and completes or rejects them.
Values = dict[str, Any]
Sources = Mapping[str, str]


def _upstream_parts(v: Values, src: Sources) -> None:
    parts = urlsplit(v["upstream_url"])  # already normalised by http_origin
    v["upstream_host"] = parts.netloc
    v["upstream_scheme"] = parts.scheme


def _clients(v: Values, src: Sources) -> None:
    if v["client_keys_file"]:
        v["clients"] = _load_client_keys(src["client_keys_file"], v["client_keys_file"])
        return
    ak, sk = v["upstream_access_key_id"], v["upstream_secret_access_key"]
    if not ak or not sk:
        missing = src["upstream_access_key_id"] if not ak else src["upstream_secret_access_key"]
        raise ConfigError(
            f"{missing}: required (the store key pair: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
            "or S3SHIM_UPSTREAM_*), unless S3SHIM_CLIENT_KEYS_FILE is given"
        )
    store_key = Credentials(ak, sk)
    v["clients"] = {ak: ClientKey(store_key, store_key)}


def _upstream_region(v: Values, src: Sources) -> None:
    v["upstream_region"] = v["upstream_region"] or v["region"]


def _tls_pair(v: Values, src: Sources) -> None:
    cert, key = v["tls_cert"], v["tls_key"]
    if bool(cert) != bool(key):
        missing = src["tls_cert"] if not cert else src["tls_key"]
        raise ConfigError(f"{missing}: TLS needs both a cert and a key")
    # Load the PEM files once here, so a bad one is a one-line config error, not a traceback.
    try:
        if cert and key:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError):
        raise ConfigError(
            f"{src['tls_cert']}: cannot load the certificate and key as PEM"
        ) from None


def _ca_bundle(v: Values, src: Sources) -> None:
    try:
        if v["upstream_ca_bundle"]:
            ssl.create_default_context(cafile=v["upstream_ca_bundle"])
    except (ssl.SSLError, OSError):
        raise ConfigError(
            f"{src['upstream_ca_bundle']}: cannot load the CA bundle as PEM"
        ) from None


def _sse_keys(v: Values, src: Sources) -> None:
    path = v["sse_keys_file"]
    v["sse_keyring"] = None
    if not path:
        if v["sse_default"]:
            raise ConfigError(f"{src['sse_default']}: needs S3SHIM_SSE_KEYS_FILE")
        return
    name = src["sse_keys_file"]
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{name}: cannot read {path}: {reason}") from None
    try:
        v["sse_keyring"] = parse_keys_file(text, f"{name}: {path}")
    except KeysFileError as exc:  # its message names the entry, never a key
        raise ConfigError(str(exc)) from None
    if v["upstream_scheme"] != "https" and not v["sse_allow_http"]:
        raise ConfigError(
            f"{name}: the store is http://, which would carry the keys in the clear (and "
            "RGW refuses SSE over HTTP, or stores plaintext); use an https:// store, or "
            "S3SHIM_SSE_ALLOW_HTTP=true in a lab"
        )


_CHECKS: tuple[Callable[[Values, Sources], None], ...] = (
    _upstream_parts,
    _sse_keys,
    _clients,
    _upstream_region,
    _tls_pair,
    _ca_bundle,
)


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
        for k, val in values.items():
            if val is not None and (not isinstance(val, str) or not val):
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


# --------------------------------------------------------------------------------- load
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="s3shim",
        description=(
            "An S3 reverse proxy that verifies each client's signature, drops the "
            "AWS-only headers a non-AWS store rejects (SSE, flexible checksums, aws-chunked "
            "framing) while checking them itself, and re-signs the request for the store. "
            "Every option can be set by the environment variable shown. "
            "'s3shim verify s3://bucket[/prefix]' checks stored objects against the checksums "
            "s3shim recorded (see 's3shim verify --help'); 's3shim reencrypt "
            "s3://bucket[/prefix]' rewrites objects under an older master key or stored "
            "unencrypted under the current one (see 's3shim reencrypt --help')."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    for opt in OPTIONS:
        p.add_argument(opt.flag, dest=opt.field, metavar=opt.parse.metavar, help=opt.help_line())
    return p


def load(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Parse flags and environment once. Raises ConfigError with a one-line reason."""
    env = os.environ if env is None else env
    flags: dict[str, str | None] = vars(_parser().parse_args(argv))
    values: Values = {}
    sources: dict[str, str] = {}
    for opt in OPTIONS:
        name, raw = opt.lookup(flags, env)
        sources[opt.field] = name
        values[opt.field] = opt.read(name, raw)
    for check in _CHECKS:
        check(values, sources)
    return Config(**values)
