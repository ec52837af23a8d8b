"""The demo: the Convex call sequence against a real Ceph RGW, direct and through s3shim.

Run by scripts/demo.sh, which starts RGW and s3shim. Prints what an unmodified client meets
direct (the store's error) and through s3shim (every step passing, bytes identical).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from botocore.exceptions import ClientError

from testkit.convex_sequence import MIB, new_bucket, run_sequence
from testkit.shim import s3_client


def main() -> int:
    store, shim = os.environ["DEMO_STORE_URL"], os.environ["DEMO_SHIM_URL"]
    access, secret = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    size = 17 * MIB

    print(f"\n== 1. Convex call sequence (boto3 defaults), DIRECT to Ceph RGW at {store}")
    direct = s3_client(store, access, secret)
    try:
        run_sequence(direct, new_bucket(direct), size)
    except ClientError as exc:
        err = exc.response["Error"]
        print(
            f"   FAILED at {exc.operation_name}: {err.get('Code')} "
            f"(HTTP {exc.response['ResponseMetadata']['HTTPStatusCode']})"
        )
        print(
            "   -> the error Convex users report: 'Failed to create multipart upload ... "
            "(InvalidRequest)'"
        )
    else:
        print("   unexpectedly passed: is this store not a stock RGW?")
        return 1

    print(
        f"\n== 2. The same sequence THROUGH s3shim at {shim} "
        "(AWS_S3_DISABLE_SSE=true, AWS_S3_DISABLE_CHECKSUMS=true)"
    )
    via = s3_client(shim, access, secret)
    run_sequence(via, new_bucket(via), size, store=direct)  # also read back from RGW itself
    print(
        "   PASSED: CreateMultipartUpload(SSE+CRC32), 4 parallel UploadParts each answered "
        "with x-amz-checksum-crc32,"
    )
    print(
        "   CompleteMultipartUpload(ChecksumCRC32 per part), HeadObject, Range GET "
        "(Content-Range), ListObjectsV2,"
    )
    print(
        "   PutObject(SSE+CRC32), presigned GET and PUT, DeleteObject, AbortMultipartUpload; "
        f"{size} bytes read back identical, through s3shim and from RGW itself."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
