"""Small helpers shared by the test modules: one home each, so no test module imports another.

Checksum values are computed here with zlib, hashlib and awscrt, never with s3shim's own
checksum code, so a test comparing s3shim's answer with these is an independent check.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import time
import urllib.error
import urllib.request
import zlib
from typing import Any
from urllib.parse import urlsplit

from awscrt import checksums as crt

# AWS's documentation key (the S3 API reference's SigV4 examples use it).
DOC_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def doc_signing_key(date: str, region: str = "us-east-1") -> bytes:
    """The documentation key's SigV4 signing key, derived here, independently of s3shim."""
    key = b"AWS4" + DOC_SECRET_KEY.encode()
    for part in (date, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def b64_int(value: int, size: int) -> str:
    """base64 of ``value`` as ``size`` big-endian bytes (how S3 writes a CRC)."""
    return base64.b64encode(value.to_bytes(size, "big")).decode()


def crc32_b64(data: bytes) -> str:
    """The x-amz-checksum-crc32 value of ``data``."""
    return b64_int(zlib.crc32(data), 4)


def crc32c_b64(data: bytes) -> str:
    return b64_int(crt.crc32c(data), 4)


def crc64nvme_b64(data: bytes) -> str:
    return b64_int(crt.crc64nvme(data), 8)


def sha1_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha1(data).digest()).decode()


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


CHECKSUM_B64 = {
    "CRC32": crc32_b64,
    "CRC32C": crc32c_b64,
    "CRC64NVME": crc64nvme_b64,
    "SHA1": sha1_b64,
    "SHA256": sha256_b64,
}


def checksum_b64(algorithm: str, data: bytes) -> str:
    """The x-amz-checksum-<algorithm> value of ``data`` (algorithm as S3 names it)."""
    return CHECKSUM_B64[algorithm.upper()](data)


def stored(store_client: Any, bucket: str, key: str) -> bytes | None:
    """The object's bytes read from the store itself (a boto3 client straight to the store,
    never through s3shim), or None when the store holds no such object."""
    try:
        return bytes(store_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    except store_client.exceptions.NoSuchKey:
        return None


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def host_port(endpoint: str) -> tuple[str, int]:
    """("127.0.0.1", 8080) for "http://127.0.0.1:8080"."""
    parts = urlsplit(endpoint)
    assert parts.hostname is not None and parts.port is not None, endpoint
    return parts.hostname, parts.port


def http_get(url: str, timeout: float = 10) -> tuple[int, str]:
    """Status and text of a plain GET (an admin probe or /metrics); errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_exit(pid: int, timeout: float = 30) -> int | None:
    """Exit status of a child process this test run started (None if it is still running
    after ``timeout``); 0 if it was already reaped elsewhere."""
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


def in_ci() -> bool:
    """CI=true: a store or client that cannot start fails its tests instead of skipping."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")
