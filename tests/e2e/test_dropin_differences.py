"""The documented differences between s3shim and RGW, each pinned as measured both ways.

Each case sends the same request directly to RGW and through s3shim and asserts both answers
exactly, so a change on either side (a new RGW, a change in s3shim) shows here. README.md,
"Differences from the store", lists these with their reasons; the differences pinned
elsewhere are named there too.
"""

from __future__ import annotations

import requests
from botocore.client import BaseClient

from testkit.backends import Store
from testkit.convex_sequence import presign_client
from testkit.shim import Shim


def answer(resp: requests.Response) -> tuple[int, str | None]:
    body = resp.content
    start = body.find(b"<Code>")
    return resp.status_code, body[
        start + 6 : body.find(b"</Code>")
    ].decode() if start >= 0 else None


def test_a_presigned_url_valid_for_more_than_seven_days_gets_aws_s_answer(
    shim: Shim, direct: BaseClient, bucket: str, rgw_store: Store
) -> None:
    """AWS: 400 AuthorizationQueryParametersError ("X-Amz-Expires must be less than a week");
    RGW: 403 AccessDenied. Either way nothing is read."""
    direct.put_object(Bucket=bucket, Key="week", Body=b"x")
    outcomes = []
    for client in (direct, shim.client()):
        url = presign_client(client).generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": "week"}, ExpiresIn=604801
        )
        outcomes.append(answer(requests.get(url, timeout=30)))
    assert outcomes == [(403, "AccessDenied"), (400, "AuthorizationQueryParametersError")]


def test_a_stray_presign_parameter_is_an_attempt_to_authenticate(
    shim: Shim, direct: BaseClient, bucket: str, rgw_store: Store
) -> None:
    """s3shim verifies anything that looks like an attempt to authenticate, and never forwards
    it anonymously; RGW reads a SigV4 URL only from X-Amz-Algorithm (and a SigV2 one only from
    AWSAccessKeyId) and serves a public object to the rest."""
    direct.put_object(Bucket=bucket, Key="public", Body=b"for all", ACL="public-read")
    cases = {
        "X-Amz-Credential=x": ((200, None), (400, "AuthorizationQueryParametersError")),
        "X-Amz-Signature=00": ((200, None), (400, "AuthorizationQueryParametersError")),
        "Signature=x": ((200, None), (403, "AccessDenied")),
        # Where RGW also reads an attempt, both refuse:
        "X-Amz-Algorithm=AWS4-HMAC-SHA256": (
            (403, "AccessDenied"),
            (400, "AuthorizationQueryParametersError"),
        ),
        "AWSAccessKeyId=x": ((403, "AccessDenied"), (403, "AccessDenied")),
    }
    for query, expected in cases.items():
        got = tuple(
            answer(requests.get(f"{endpoint}/{bucket}/public?{query}", timeout=30))
            for endpoint in (rgw_store.endpoint, shim.endpoint)
        )
        assert got == expected, query
