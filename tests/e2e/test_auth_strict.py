"""Found by an attack run (issue 11, items 4 and 5), against the real RGW: a header s3shim
verifies, or an auth field, sent twice is refused before the store hears of the request —
never verified on one value and forwarded with another (or both)."""

from __future__ import annotations

import http.client
import uuid
from urllib.parse import urlsplit

import pytest
from botocore.client import BaseClient

from testkit.backends import Store, new_bucket
from testkit.helpers import crc32_b64
from testkit.rawclient import RawClient
from testkit.shim import Shim
from testkit.tap import Tap


def raw(
    endpoint: str, method: str, path: str, headers: list[tuple[str, str]], body: bytes = b""
) -> tuple[int, bytes]:
    """Send exactly these header lines, repeats included (http.client keeps each one)."""
    parts = urlsplit(endpoint)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders()
        if body:
            conn.send(body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def code(body: bytes) -> str:
    start = body.find(b"<Code>")
    return body[start + 6 : body.find(b"</Code>")].decode()


def signed_put(shim: Shim, path: str, body: bytes, extra: dict[str, str]) -> list[tuple[str, str]]:
    headers = RawClient.of(shim).sign("PUT", path, body=body, headers=extra)
    return [*headers.items(), ("content-length", str(len(body)))]


@pytest.mark.parametrize("signed_both", [True, False], ids=["both-signed", "one-signed"])
def test_a_repeated_checksum_header_is_refused_and_nothing_stored(
    rgw_store: Store, store: BaseClient, tapped: tuple[Shim, Tap], signed_both: bool
) -> None:
    shim, tap = tapped
    bucket = new_bucket(rgw_store)
    body = b"repeated checksum"
    good, other = crc32_b64(body), crc32_b64(b"something else")
    path = f"/{bucket}/twice-{uuid.uuid4().hex[:8]}"
    # SigV4 joins a repeated header's values with ',': signing "good,other" covers both lines.
    signed_value = f"{good},{other}" if signed_both else good
    headers = [
        (k, v)
        for k, v in signed_put(shim, path, body, {"x-amz-checksum-crc32": signed_value})
        if k != "x-amz-checksum-crc32"
    ]
    headers += [("x-amz-checksum-crc32", good), ("x-amz-checksum-crc32", other)]
    before = len(tap.to_store())
    status, answer = raw(shim.endpoint, "PUT", path, headers, body)
    if signed_both:  # verified, then refused as S3 does: one checksum header, one value
        assert (status, code(answer)) == (400, "InvalidRequest")
        assert b"Expecting a single x-amz-checksum- header" in answer
    else:  # the second line was never signed
        assert (status, code(answer)) == (403, "SignatureDoesNotMatch")
    assert tap.to_store()[before:] == b""  # the store never heard of it
    assert "Contents" not in store.list_objects_v2(Bucket=bucket)


def test_credential_given_twice_is_refused(rgw_store: Store, tapped: tuple[Shim, Tap]) -> None:
    shim, tap = tapped
    bucket = new_bucket(rgw_store)
    path = f"/{bucket}"
    headers = RawClient.of(shim).sign("GET", path)
    authz = headers["authorization"]
    cred = authz.split("Credential=", 1)[1].split(",", 1)[0]
    headers["authorization"] = authz + f", Credential={cred}"
    before = len(tap.to_store())
    status, answer = raw(shim.endpoint, "GET", path, list(headers.items()))
    assert (status, code(answer)) == (400, "AuthorizationHeaderMalformed")
    assert tap.to_store()[before:] == b""


def test_two_authorization_headers_are_refused(rgw_store: Store, tapped: tuple[Shim, Tap]) -> None:
    shim, tap = tapped
    bucket = new_bucket(rgw_store)
    path = f"/{bucket}"
    good = RawClient.of(shim).sign("GET", path)
    other = RawClient.of(shim).sign("GET", path, access_key="someone-else", secret_key="x")
    headers = [*good.items(), ("authorization", other["authorization"])]
    before = len(tap.to_store())
    status, answer = raw(shim.endpoint, "GET", path, headers)
    assert (status, code(answer)) == (400, "InvalidArgument")
    assert tap.to_store()[before:] == b""


def test_the_single_signed_checksum_still_works(
    rgw_store: Store, store: BaseClient, tapped: tuple[Shim, Tap]
) -> None:
    """The control: the same request with the checksum once is stored as sent."""
    shim, _ = tapped
    bucket = new_bucket(rgw_store)
    body = b"once is fine"
    path = f"/{bucket}/once"
    headers = signed_put(shim, path, body, {"x-amz-checksum-crc32": crc32_b64(body)})
    assert raw(shim.endpoint, "PUT", path, headers, body)[0] == 200
    assert store.get_object(Bucket=bucket, Key="once")["Body"].read() == body
