"""Encryption at rest kept: the SSE-C key each request carries to the store; the answers. Pure.

With a keyring (ssekeys.py), a request asking for SSE-S3 (``x-amz-server-side-encryption:
AES256``), or any write when encryption is the default, goes to the store as SSE-C with the
object's derived key, and every request that reads the object carries its key again. The store
(RGW, MinIO) encrypts; s3shim stores nothing. What the client sees is AWS's SSE-S3: the SSE-C
answer headers become ``x-amz-server-side-encryption: AES256``, and no key or key MD5 reaches
it. A client's own SSE-C passes untouched (it is the client's key, not s3shim's), and SSE-KMS
keeps the AWS_S3_DISABLE_SSE behaviour.

Measured on RGW 16 over TLS, and what follows from it here:
- GET/HEAD with SSE-C headers of an *unencrypted* object return it: reads always carry the
  current key, so objects written before s3shim had keys stay readable at no cost.
- a wrong key is 400 InvalidArgument (HEAD: a bodiless 400): on a 400 the next key is tried,
  current first, then the older ones, then none (a store that refuses keys for a plain
  object), for requests whose body is still in hand;
- UploadPart with a key on an unencrypted upload is accepted and stored plain, and on an
  encrypted one it must be the upload's key: every part carries the key;
- UploadPartCopy likewise: into an encrypted upload it is 400 InvalidArgument without the
  upload's key and, with it, the part is stored encrypted (a plain source's bytes become
  ciphertext); into a plain upload the key is accepted and the part stored plain. So a part
  copy carries the upload's key as UploadPart does. RGW reads an SSE-C *source* of a part copy
  with that same key (the copy-source key headers are not what it uses): only a part copy of
  an object into an upload of the same bucket and key (the same derived key) can succeed;
- CopyObject from an SSE-C source is 501 NotImplemented in every form; a copy into an SSE-C
  destination answers 200 and is stored in plaintext, readable without a key (so the plan
  refuses a copy it would encrypt: NotImplemented);
- a POST form's SSE-S3 field over TLS is taken and the file stored in plaintext, but SSE-C
  fields (each with its policy condition) are taken and the file stored encrypted: the store
  form carries the derived key instead (formupload.py); its 204 names no SSE, its 201 the
  SSE-C algorithm and key MD5.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from .classify import Op
from .ssekeys import COPY_SOURCE_PREFIX, CUSTOMER_PREFIX, Keyring, ObjectKey

SSE_HEADER = "x-amz-server-side-encryption"
SSE_S3 = "AES256"

# Operations that write a new object (its key is the destination's) and those that read one.
_WRITES = frozenset({Op.PUT_OBJECT, Op.CREATE_MULTIPART_UPLOAD, Op.POST_OBJECT, Op.COPY_OBJECT})
_READS = frozenset({Op.GET_OBJECT, Op.HEAD_OBJECT})
_COPIES = frozenset({Op.COPY_OBJECT, Op.UPLOAD_PART_COPY})
_PARTS = frozenset({Op.UPLOAD_PART, Op.UPLOAD_PART_COPY})  # carry the upload's key
_CUSTOMER_ANSWER = (CUSTOMER_PREFIX + "algorithm", CUSTOMER_PREFIX + "key-md5")


@dataclass(frozen=True, slots=True)
class Encryption:
    """The SSE-C keys of one request. ``attempt`` n uses the n-th of each key list."""

    write: ObjectKey | None = None  # the written object's (PutObject, Create, form, copy)
    # The object read, or the upload a part (or part copy) joins: tried in order on a
    # wrong-key answer; None last, for a store that refuses keys on a plain object.
    reads: tuple[ObjectKey | None, ...] = ()
    sources: tuple[ObjectKey | None, ...] = ()  # a copy's source, likewise
    drop_sse_s3: bool = False  # the client's SSE-S3 header is answered by SSE-C instead
    # A form upload's key travels in the store form's fields (formupload.py), not here.
    in_form: bool = False

    @property
    def attempts(self) -> int:
        return max(1, len(self.reads), len(self.sources))

    def headers(self, attempt: int = 0) -> list[tuple[str, str]]:
        """The SSE-C headers of the ``attempt``-th try."""
        out: list[tuple[str, str]] = []
        if self.write is not None:
            out += self.write.headers()
        if self.reads:
            key = self.reads[min(attempt, len(self.reads) - 1)]
            if key is not None:
                out += key.headers()
        if self.sources:
            key = self.sources[min(attempt, len(self.sources) - 1)]
            if key is not None:
                out += key.headers(COPY_SOURCE_PREFIX)
        return out

    def written(self, status: int) -> bool:
        """Whether an answer of ``status`` means the store took a write under s3shim's key
        (answered as SSE-S3 even when the store's answer does not name the key)."""
        if self.in_form:
            return status in (200, 201, 204)  # success_action_status
        return self.write is not None and status == 200

    def retry_after(self, attempt: int, status: int) -> bool:
        """Whether the store's answer to try ``attempt`` means "try the next key".

        A wrong key is a 400 (InvalidArgument; HEAD: bodiless), so any 400 with a key left
        moves on, without reading the error body: a 400 for another reason does not depend on
        the key, so the next tries answer it again, and the last one (no key) is the store's
        answer to the request as the client sent it.
        """
        return status == 400 and attempt + 1 < self.attempts


def copy_source(value: str | None) -> tuple[str, str] | None:
    """The (bucket, key) an ``x-amz-copy-source`` names (``[/]bucket/key[?versionId=...]``,
    URL-encoded), or None when it names no object."""
    if not value:
        return None
    bucket, _, key = unquote(value.partition("?")[0]).lstrip("/").partition("/")
    return (bucket, key) if bucket and key else None


def _customer_headers(headers: Mapping[str, str]) -> tuple[bool, bool]:
    own = any(name.startswith(CUSTOMER_PREFIX) for name in headers)
    own_source = any(name.startswith(COPY_SOURCE_PREFIX) for name in headers)
    return own, own_source


def decide(
    op: Op,
    bucket: str,
    key: str,
    headers: Mapping[str, str],
    keyring: Keyring | None,
    *,
    encrypt_by_default: bool,
    copy_source: tuple[str, str] | None = None,
) -> Encryption | None:
    """The SSE-C keys ``op`` on ``bucket``/``key`` carries, or None (nothing added).

    ``headers`` are the client's, verified, with lowercase names; ``copy_source`` the
    (bucket, key) of a copy's source.
    """
    if keyring is None or not bucket:
        return None
    own, own_source = _customer_headers(headers)
    asked = headers.get(SSE_HEADER)
    write: ObjectKey | None = None
    drop = False
    wanted = (asked is None and encrypt_by_default) or asked == SSE_S3
    if op in _WRITES and not own and wanted:
        write = keyring.for_write(bucket, key)
        drop = asked is not None
    reads: tuple[ObjectKey | None, ...] = ()
    if not own and (op in _READS or op in _PARTS):
        reads = keyring.read_attempts(bucket, key)
    sources: tuple[ObjectKey | None, ...] = ()
    if op in _COPIES and copy_source is not None and not own_source:
        sources = keyring.read_attempts(*copy_source)
    if write is None and not reads and not sources:
        return None
    return Encryption(write, reads, sources, drop)


def answer_headers(
    headers: Iterable[tuple[str, str]], *, written: bool = False
) -> list[tuple[str, str]]:
    """A store answer to a request s3shim added SSE-C to, as AWS answers SSE-S3.

    The store names the algorithm and the key's MD5 when the object is encrypted; the client
    gets ``x-amz-server-side-encryption: AES256`` instead, and nothing for a plain object.
    ``written``: the store took a write under s3shim's key, so the object is encrypted even
    when the answer does not say so (RGW's CopyObject answer names no SSE-C at all).
    """
    out: list[tuple[str, str]] = []
    encrypted = written
    for name, value in headers:
        lname = name.lower()
        if lname in _CUSTOMER_ANSWER:
            encrypted = True
            continue
        if lname.startswith(CUSTOMER_PREFIX) or lname == SSE_HEADER:
            continue
        out.append((name, value))
    if encrypted:
        out.append((SSE_HEADER, SSE_S3))
    return out
