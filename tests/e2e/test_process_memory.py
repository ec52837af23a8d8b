"""s3shim streams: its memory does not grow with the object size."""

from __future__ import annotations

from pathlib import Path

from testkit.backends import Store
from testkit.convex_sequence import MIB, new_bucket, payload
from testkit.shim import Shim


def test_memory_stays_flat_for_large_objects(shim: Shim, rgw_store: Store) -> None:
    """s3shim never holds an object: a 512 MiB upload and download leave its peak RSS far
    below the object size (the bench measures the same at 1 GiB)."""
    import io

    from boto3.s3.transfer import TransferConfig

    client = shim.client()
    bucket = new_bucket(client)
    size = 512 * MIB
    data = payload(size)
    cfg = TransferConfig(
        multipart_threshold=64 * MIB, multipart_chunksize=64 * MIB, max_concurrency=2
    )
    client.upload_fileobj(io.BytesIO(data), bucket, "big", Config=cfg)
    sink = io.BytesIO()
    client.download_fileobj(bucket, "big", sink, Config=cfg)
    assert sink.getvalue() == data
    client.delete_object(Bucket=bucket, Key="big")
    status = Path(f"/proc/{shim.pid}/status").read_text()
    peak_kib = int(next(x for x in status.splitlines() if x.startswith("VmHWM")).split()[1])
    assert peak_kib < 150 * 1024, f"s3shim peak RSS {peak_kib // 1024} MiB"
