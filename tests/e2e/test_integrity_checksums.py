"""Every flexible-checksum algorithm through s3shim to a real RGW (which keeps none): the
client's value is verified, returned, and a wrong one refused with nothing stored."""

from __future__ import annotations

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from testkit.convex_sequence import MIB, new_bucket, payload, read_back
from testkit.helpers import checksum_b64
from testkit.shim import Shim


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"])
def test_every_checksum_algorithm_verified_and_returned(
    shim: Shim, direct: BaseClient, algorithm: str
) -> None:
    """boto3 computes each algorithm itself; s3shim verifies it, returns it, and refuses a
    wrong one with nothing stored (RGW 16 would accept any value)."""
    client = shim.client()
    bucket = new_bucket(client)
    for size in (10, 3 * MIB):  # whole-body and streamed paths
        data = payload(size)
        put = client.put_object(
            Bucket=bucket, Key=f"ok-{size}", Body=data, ChecksumAlgorithm=algorithm
        )
        # The value s3shim returns is the right one, computed independently here.
        assert put.get(f"Checksum{algorithm}") == checksum_b64(algorithm, data)
        assert read_back(direct, bucket, f"ok-{size}") == data
        good = put[f"Checksum{algorithm}"]
        wrong = ("B" if good[0] != "B" else "C") + good[1:]
        with pytest.raises(ClientError) as info:
            client.put_object(
                Bucket=bucket, Key=f"bad-{size}", Body=data, **{f"Checksum{algorithm}": wrong}
            )
        assert info.value.response["Error"]["Code"] == "BadDigest"
        assert "bad-" not in str(direct.list_objects_v2(Bucket=bucket).get("Contents", []))
