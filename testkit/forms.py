"""A POST-form upload as the unit tests drive it: s3shim's FormUpload with one client key
and one store key, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime

from s3shim import sigv4
from s3shim.formupload import FormUpload
from s3shim.rewrite import Policy

CLIENT = sigv4.Credentials("AKCLIENT", "client-secret")
STORE = sigv4.Credentials("AKSTORE", "store-secret")


def form_upload(body: bytes, ctype: str, policy: Policy, bucket: str = "") -> FormUpload:
    """The upload of ``body`` (a multipart/form-data of ``ctype``), signed with CLIENT's key
    and re-signed for the store with STORE's."""
    return FormUpload(
        ctype,
        len(body),
        lookup=lambda k: CLIENT.secret_key if k == CLIENT.access_key else None,
        store_creds=lambda _k: STORE,
        store_region="us-east-1",
        regions=None,
        policy=policy,
        now=datetime.now(UTC),
        bucket=bucket,
    )
