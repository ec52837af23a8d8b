"""Inputs of s3shim's pure request plan (``plan.plan``) for tests that call it directly: what
verification hands it, for the object ``/b/k``."""

from __future__ import annotations

from s3shim import sigv4
from s3shim.auth import AuthContext
from s3shim.classify import Op, Target


def auth_context(
    payload_hash: str = sigv4.UNSIGNED_PAYLOAD,
    *,
    presigned: bool = False,
    signed: tuple[str, ...] = ("host",),
) -> AuthContext:
    """A verified SigV4 request's context (fixed key, date and signature)."""
    return AuthContext(
        access_key="AK",
        presigned=presigned,
        amz_date="20261201T000000Z",
        region="us-east-1",
        scope="20261201/us-east-1/s3/aws4_request",
        signing_key=b"k" * 32,
        signature="0" * 64,
        payload_hash=payload_hash,
        signed_headers=signed,
    )


def object_target(op: Op = Op.PUT_OBJECT) -> Target:
    """``op`` on the object ``/b/k``."""
    return Target(op, "b", "k", "/b/k")
