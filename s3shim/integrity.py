"""Integrity on the read side: the checksum s3shim records with an object, and its check. Pure.

Stores such as Ceph RGW 16 keep no flexible checksums, so a download the store corrupted would
reach the client as good data. s3shim sees every byte both ways: when it verified (or hashed)
an upload it stores the proof with the object as user metadata under one reserved name,
``x-amz-meta-s3shim-checksum: <ALGORITHM>:<base64>``; on a full read it recomputes the
checksum while streaming and refuses to complete a body that does not match.

Recorded only when the value is known before the body is sent, because it travels as a
request header: bodies read whole (up to 1 MiB, computed by s3shim), bodies whose client
declared its checksum in a header (verified before the store commits), and bodies signed
with their hex SHA-256. A large body whose checksum comes in an aws-chunked trailer (or that
has none) carries no record, and neither do objects made by multipart upload: their parts
arrive on different connections, possibly at different replicas, and S3 cannot attach
metadata after CompleteMultipartUpload.
"""

from __future__ import annotations

import base64
import binascii

from . import errors
from .checksums import Algorithm, Checksum, new_checksum

RECORD_HEADER = "x-amz-meta-s3shim-checksum"
# Used when the client declared no checksum: awscrt's CRC64NVME costs ~0.02 CPU-s/GiB, and
# it is what AWS S3 itself now keeps for every new object.
DEFAULT_ALGORITHM = Algorithm.CRC64NVME


def encode_record(alg: Algorithm, b64: str) -> str:
    return f"{alg.name}:{b64}"


def parse_record(value: str) -> tuple[Algorithm, str] | None:
    """The recorded checksum, or None when the value is not one s3shim wrote."""
    name, sep, b64 = value.strip().partition(":")
    if not sep:
        return None
    alg = next((a for a in Algorithm if a.name == name), None)
    if alg is None:
        return None
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != alg.digest_size:
        return None
    return alg, b64


def sha256_record(hex_digest: str) -> str:
    """The record of a body signed with its hex SHA-256 (x-amz-content-sha256)."""
    return encode_record(Algorithm.SHA256, base64.b64encode(bytes.fromhex(hex_digest)).decode())


def store_checksum_mismatch() -> errors.S3Error:
    return errors.store_checksum_mismatch()


class ReadVerifier:
    """Feed a full object's bytes as the store sends them; forward what :meth:`feed` returns.

    Holds back the latest piece until :meth:`finish` has compared the checksum, so a client
    never receives a complete-looking body that does not match what s3shim stored.
    """

    __slots__ = ("_checksum", "_expected", "_held", "algorithm")

    def __init__(self, alg: Algorithm, b64: str) -> None:
        self.algorithm = alg
        self._expected = b64
        self._checksum: Checksum = new_checksum(alg)
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        if not data:
            return b""
        self._checksum.update(data)
        out, self._held = self._held, data
        return out

    def finish(self) -> bytes:
        """The store's body ended: the held-back tail, or StoreChecksumMismatch."""
        if self._checksum.b64digest() != self._expected:
            raise store_checksum_mismatch()
        tail, self._held = self._held, b""
        return tail
