"""A browser POST-policy upload (``POST /bucket``, multipart/form-data), end to end. Pure.

The signature of such a request is a form field, so s3shim learns who sent it only from the
body: it reads the fields before the file (bounded: :mod:`postform`), verifies the policy
signature (:mod:`postpolicy`), and writes the store a form of its own: the re-signed fields
and the file part's head re-emitted in a fresh boundary, the file's content as received, and
s3shim's own close delimiter (:mod:`postform`'s writer), so the store reads exactly the parts
s3shim verified. The checksum a form field declared is verified over the file's bytes, and,
as for every upload, the last bytes are held back until it has been: the store sees the end
of the file only with the close delimiter, sent last. Feed the client's bytes to
:meth:`FormUpload.feed`; once :attr:`FormUpload.store_form` is set, the upstream request can
start with :attr:`FormUpload.content_type` and :attr:`FormUpload.content_length`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from . import errors, postform, postpolicy, sigv4
from .auth import SecretLookup
from .checksums import Checksum, new_checksum
from .postform import Field, FileData, FileStart, FormParser
from .postpolicy import AuthKind, StoreForm, VerifiedForm
from .rewrite import Group, Policy

# Store credentials for a verified client key.
StoreCreds = Callable[[str], sigv4.Credentials]


class FormUpload:
    def __init__(
        self,
        content_type: str | None,
        content_length: int,
        *,
        lookup: SecretLookup,
        store_creds: StoreCreds,
        store_region: str,
        regions: frozenset[str] | None,
        policy: Policy,
        now: datetime,
        store_boundary: str | None = None,
        bucket: str = "",
    ) -> None:
        self._boundary = postform.boundary_from_content_type(content_type)
        self._parser = FormParser(self._boundary)
        self._store_boundary = store_boundary or postform.new_boundary()
        self._length = content_length
        self._lookup = lookup
        self._store_creds = store_creds
        self._store_region = store_region
        self._regions = regions
        self._policy = policy
        self._now = now
        self._bucket = bucket  # the form's object key is a field: known at the file
        self._fields: list[Field] = []
        self._checksum: Checksum | None = None
        self._held = b""
        self._forwarded = 0
        self._head_length = 0  # of the client's body before the file's content
        self._file_length = 0
        self.verified: VerifiedForm | None = None
        self.store_form: StoreForm | None = None
        self.content_length: int | None = None  # of the store's body, once the head is known
        self.content_type = f"multipart/form-data; boundary={self._store_boundary}"
        self.failure: errors.S3Error | None = None
        self.encrypted = False  # the store form carries s3shim's derived SSE-C key

    def refuse(self, err: errors.S3Error) -> errors.S3Error:
        """Refused for a reason found outside (a client timeout); the first reason stands."""
        if self.failure is None:
            self.failure = err
        return self.failure

    def client_ended_early(self) -> errors.S3Error:
        return self.refuse(errors.incomplete_body())

    @property
    def access_key(self) -> str | None:
        return self.verified.access_key if self.verified is not None else None

    def feed(self, data: bytes) -> bytes:
        """The bytes that may be sent to the store now (the new head first, once known)."""
        try:
            return self._feed(data)
        except errors.S3Error as err:
            self.failure = err
            raise

    def finish(self) -> bytes:
        """The client's body ended: the held-back tail once every check has passed."""
        try:
            self._parser.close()
            if self.store_form is None:
                raise errors.malformed_post_request()
            if self._parser.received != self._length:
                raise errors.incomplete_body()
            expected = self.store_form.checksum
            if expected is not None and self._checksum is not None:
                expected.verify(self._checksum.digest())
        except errors.S3Error as err:
            self.failure = err
            raise
        client_tail = self._length - self._head_length - self._file_length
        tail = postform.encode_tail(client_tail, self._boundary, self._store_boundary)
        out, self._held = self._held + tail, b""
        if self._forwarded + len(out) != self.content_length:
            raise RuntimeError("the store's form is not the length announced")
        return out

    def _feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        for event in self._parser.feed(data):
            if isinstance(event, Field):
                self._fields.append(event)
            elif isinstance(event, FileStart):
                out.append(self._start(event))
            elif isinstance(event, FileData):
                if self._checksum is not None:
                    self._checksum.update(event.data)
                self._file_length += len(event.data)
                out.append(event.data)
            # Tail and TrailingField: the client's bytes after the file, never forwarded
            # (finish() writes the store's own tail).
        return self._release(b"".join(out))

    def _start(self, start: FileStart) -> bytes:
        # Any credential region verifies (it only feeds the signing key), unless restricted.
        verified = postpolicy.verify(self._fields, lookup=self._lookup, region=None, now=self._now)
        if verified.kind is AuthKind.ANONYMOUS and not self._policy.allow_anonymous:
            raise errors.access_denied("Anonymous requests are not accepted.")
        if verified.kind is AuthKind.SIGV2 and not self._policy.allow_sigv2:
            raise errors.access_denied("SigV2 is not accepted; sign with AWS4-HMAC-SHA256 (SigV4).")
        region = self._credential_region()
        if self._regions and region is not None and region not in self._regions:
            raise errors.invalid_argument(f"The authorization region '{region}' is not accepted.")
        flags = self._policy
        added: tuple[tuple[str, str], ...] = ()
        if self._policy.keyring is not None and self._asks_encryption():
            flags, added = self._encryption(verified)
        creds = self._store_creds(verified.access_key) if verified.access_key else None
        store = postpolicy.rewrite_for_store(
            self._fields,
            verified,
            creds=creds,
            region=self._store_region,
            now=self._now,
            flags=flags,
            added=added,
        )
        if added and not self._policy.disable_sse:  # SSE-S3 replaced, not dropped by a flag
            store = replace(store, dropped=store.dropped - {Group.SSE})
        self.encrypted = bool(added)
        head = postform.encode_head(self._store_boundary, store.fields, start)
        self.verified, self.store_form = verified, store
        self._head_length = start.head_length
        self.content_length = postform.store_length(
            self._length, start.head_length, len(head), self._boundary, self._store_boundary
        )
        if store.checksum is not None:
            self._checksum = new_checksum(store.checksum.algorithm)
        return head

    def _encryption(self, verified: VerifiedForm) -> tuple[Policy, tuple[tuple[str, str], ...]]:
        """The flags and added fields of a form stored encrypted: its SSE-S3 field (and the
        policy's conditions on it, once they held) replaced by the SSE-C fields of the key
        derived for the object, as for PutObject. RGW 16 over TLS takes SSE-C fields in a
        form and stores the file encrypted (measured: no plaintext in RADOS)."""
        keyring = self._policy.keyring
        assert keyring is not None
        if verified.kind is AuthKind.ANONYMOUS:
            # Only verified requests get keys (an anonymous one could write under any name).
            raise errors.not_implemented(
                "An anonymous form upload cannot be stored encrypted; sign the form's policy."
            )
        key = next((f.value for f in self._fields if f.key == "key"), b"").decode(
            "utf-8", "surrogateescape"
        )
        if "${filename}" in key or not key or not self._bucket:
            # The store substitutes the file's name: a key derived from anything else
            # would leave an object nobody can read.
            raise errors.not_implemented(
                "A form upload whose key uses ${filename} cannot be stored encrypted; name "
                "the object in the key field."
            )
        derived = keyring.for_write(self._bucket, key)
        return replace(self._policy, disable_sse=True), tuple(derived.headers())

    def _asks_encryption(self) -> bool:
        """SSE-S3 in the fields, or every write encrypted (S3SHIM_SSE_DEFAULT) unless the
        form asks for the client's own SSE-C or for SSE-KMS."""
        names = {f.key: f.value for f in self._fields}
        if any(n.startswith("x-amz-server-side-encryption-customer-") for n in names):
            return False
        asked = names.get("x-amz-server-side-encryption")
        return asked == b"AES256" or (asked is None and self._policy.sse_default)

    def _credential_region(self) -> str | None:
        for f in self._fields:
            if f.key == "x-amz-credential":
                parts = f.value.decode("utf-8", "replace").split("/")
                return parts[2] if len(parts) == 5 else None
        return None

    def _release(self, data: bytes) -> bytes:
        """Hold back the newest bytes: the store never has the whole body before finish()."""
        if not data:
            return b""
        if self.store_form is None:
            return data  # nothing is sent before the head; kept for symmetry
        out, self._held = self._held, data
        self._forwarded += len(out)
        return out
