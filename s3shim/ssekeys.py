"""Encryption at rest kept on stores without a KMS: the master keys and the SSE-C keys they give.

A store such as Ceph RGW or MinIO encrypts an object itself when a request hands it a key
(SSE-C); it keeps only the key's MD5 to check later requests against. s3shim holds master keys
and derives one 256-bit key per object with HKDF-SHA256 over the master key's id, the bucket
and the object key, so every request that touches the object can send the same key again and
no key is ever stored. Losing the master keys makes every object written under them unreadable.

The keys file is JSON, ``{"keys": [{"id": "...", "key": "<base64 of 32 bytes>"}, ...]}``; the
first entry is the current key (new writes), the rest stay for reading objects written under
them. Pure: parsing and derivation only; nothing here prints, logs or formats key material
(every value that holds a key is ``repr=False``, and errors name the entry, never its value).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32  # AES-256, the only SSE-C algorithm S3 defines
ALGORITHM = "AES256"
_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Versioned so that a different derivation later can never yield the same key by accident.
_INFO_PREFIX = b"s3shim/sse-c/v1"

CUSTOMER_PREFIX = "x-amz-server-side-encryption-customer-"
COPY_SOURCE_PREFIX = "x-amz-copy-source-server-side-encryption-customer-"


class KeysFileError(ValueError):
    """The keys file is unusable; the message names the entry and never holds key material."""


@dataclass(frozen=True, slots=True)
class MasterKey:
    id: str
    secret: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class ObjectKey:
    """The SSE-C key of one object under one master key."""

    master_id: str
    key: bytes = field(repr=False)

    def headers(self, prefix: str = CUSTOMER_PREFIX) -> list[tuple[str, str]]:
        """The three SSE-C headers; ``prefix`` COPY_SOURCE_PREFIX gives a copy's source ones."""
        return [
            (prefix + "algorithm", ALGORITHM),
            (prefix + "key", base64.b64encode(self.key).decode()),
            (prefix + "key-md5", base64.b64encode(hashlib.md5(self.key).digest()).decode()),
        ]


def _info(master_id: str, bucket: str, object_key: str) -> bytes:
    # Length-prefixed, so no two (id, bucket, key) triples share an encoding.
    parts = [master_id.encode(), bucket.encode(), object_key.encode("utf-8", "surrogatepass")]
    return _INFO_PREFIX + b"".join(len(p).to_bytes(4, "big") + p for p in parts)


@dataclass(frozen=True, slots=True)
class Keyring:
    keys: tuple[MasterKey, ...]  # the first is current

    @property
    def current(self) -> MasterKey:
        return self.keys[0]

    def derive(self, master: MasterKey, bucket: str, object_key: str) -> ObjectKey:
        hkdf = HKDF(
            algorithm=hashes.SHA256(),
            length=KEY_BYTES,
            salt=None,
            info=_info(master.id, bucket, object_key),
        )
        return ObjectKey(master.id, hkdf.derive(master.secret))

    def for_write(self, bucket: str, object_key: str) -> ObjectKey:
        return self.derive(self.current, bucket, object_key)

    def for_read(self, bucket: str, object_key: str) -> tuple[ObjectKey, ...]:
        """Every key the object may be under, current first: tried in turn on a wrong-key answer."""
        return tuple(self.derive(m, bucket, object_key) for m in self.keys)

    def read_attempts(self, bucket: str, object_key: str) -> tuple[ObjectKey | None, ...]:
        """The keys a read tries in turn: current, each older one, then none (an object
        stored unencrypted, for a store that refuses keys on a plain object)."""
        return (*self.for_read(bucket, object_key), None)


def parse_keys_file(text: str, where: str) -> Keyring:
    """The keyring in ``text``; ``where`` (the setting and path) starts every error message."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise KeysFileError(f"{where} is not valid JSON (line {exc.lineno})") from None
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise KeysFileError(f'{where} must hold {{"keys": [...]}} with one entry or more')
    keys: list[MasterKey] = []
    seen_ids: set[str] = set()
    seen_secrets: set[bytes] = set()
    for i, entry in enumerate(entries):
        at = f"{where} keys[{i}]"
        if not isinstance(entry, dict) or set(entry) != {"id", "key"}:
            raise KeysFileError(f'{at} must be an object with exactly "id" and "key"')
        key_id, b64 = entry["id"], entry["key"]
        if not isinstance(key_id, str) or not _ID.fullmatch(key_id):
            raise KeysFileError(f"{at}.id must be 1-64 characters of A-Z a-z 0-9 . _ -")
        if key_id in seen_ids:
            raise KeysFileError(f"{at}.id {key_id!r} appears twice")
        try:
            secret = base64.b64decode(b64, validate=True) if isinstance(b64, str) else b""
        except (binascii.Error, ValueError):
            secret = b""
        if len(secret) != KEY_BYTES:
            raise KeysFileError(
                f"{at}.key must be the base64 of {KEY_BYTES} random bytes "
                "(e.g. `openssl rand -base64 32`)"
            )
        if len(set(secret)) < 8:  # all zeros, a repeated byte, a short pattern: not random
            raise KeysFileError(f"{at}.key is not random (too few distinct bytes)")
        if secret in seen_secrets:
            raise KeysFileError(f"{at}.key is the same as an earlier entry's")
        seen_ids.add(key_id)
        seen_secrets.add(secret)
        keys.append(MasterKey(key_id, secret))
    return Keyring(tuple(keys))
