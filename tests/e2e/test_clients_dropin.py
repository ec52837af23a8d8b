"""Drop-in with real third-party clients at their default settings.

s3cmd (its default config: keys, host, plain http), the MinIO Python client, the MinIO JS
client and boto3's default presigner (SigV2 on a custom endpoint) each do the same operations
directly against the real Ceph RGW and through s3shim. Every step's outcome (exit status or
error code, listings, sizes, ETags, fetched bytes) must be the same both ways, and what each
one stored is read back from RGW itself (boto3 straight to the store).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from botocore.client import BaseClient
from minio import Minio
from minio.error import S3Error

from testkit.backends import Store, new_bucket
from testkit.jsrun import need_js_package, need_tool, run_js
from testkit.shim import Shim
from testkit.shim import s3_client as endpoint_client

pytestmark = pytest.mark.rgw

MIB = 1024 * 1024
Outcome = dict[str, Any]
Transcript = dict[str, Outcome]


@dataclass(frozen=True)
class Target:
    name: str  # "direct" (straight to RGW) or "s3shim"
    endpoint: str
    access_key: str
    secret_key: str

    @property
    def hostport(self) -> str:
        return urlsplit(self.endpoint).netloc


@pytest.fixture(scope="module")
def targets(rgw_store: Store, shim: Shim) -> list[Target]:
    return [
        Target("direct", rgw_store.endpoint, rgw_store.access_key, rgw_store.secret_key),
        Target("s3shim", shim.endpoint, shim.access_key, shim.secret_key),
    ]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Random local files: small (one PUT for every client), mid (6 MiB: the MinIO Python
    client's 5 MiB default parts make it a 2-part multipart upload) and big (16 MiB: past
    s3cmd's default 15 MB multipart chunk)."""
    root = tmp_path_factory.mktemp("clients-files")
    out = {}
    for name, size in (("small", 100_000), ("mid", 6 * MIB + 5), ("big", 16 * MIB + 1)):
        out[name] = root / f"{name}.bin"
        out[name].write_bytes(os.urandom(size))
    return out


# A client's session against one target (its work directory, the files, the store client).
Session = Callable[[Target, Path, dict[str, Path], BaseClient], Transcript]
RunBoth = Callable[[str, Session], dict[str, Transcript]]


@pytest.fixture(scope="module")
def run_both(
    targets: list[Target],
    files: dict[str, Path],
    store: BaseClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> RunBoth:
    """``run_both(name, session)``: the session's transcript directly and through s3shim."""

    def run(name: str, session: Session) -> dict[str, Transcript]:
        root = tmp_path_factory.mktemp(name)
        return {t.name: session(t, root / t.name, files, store) for t in targets}

    return run


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha(path: Path) -> str:
    return sha(path.read_bytes())


def in_store(store: BaseClient, bucket: str, key: str) -> Outcome:
    """What RGW itself holds under bucket/key: sha256 of the bytes and the ETag."""
    try:
        got = store.get_object(Bucket=bucket, Key=key)
    except (store.exceptions.NoSuchKey, store.exceptions.NoSuchBucket):
        return {"stored": None}
    return {"stored": sha(got["Body"].read()), "stored_etag": got["ETag"]}


def fetch(url: str, method: str = "GET", data: bytes | None = None, **headers: str) -> Outcome:
    """A plain urllib request, as anyone handed a presigned URL makes it."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            body = r.read()
            return {"status": r.status, "sha": sha(body), "etag": r.headers.get("ETag")}
    except urllib.error.HTTPError as e:
        text = e.read()
        code = re.search(rb"<Code>([^<]*)</Code>", text)
        return {"status": e.code, "code": code.group(1).decode() if code else None}


def compare(transcripts: dict[str, Transcript], step: str) -> Outcome:
    """The step's outcome through s3shim, once it is known to equal the direct one."""
    direct, through = transcripts["direct"][step], transcripts["s3shim"][step]
    assert through == direct, f"{step}: through s3shim {through} != direct {direct}"
    return through


def control_then_compare(
    transcripts: dict[str, Transcript], step: str, failing: dict[str, str]
) -> Outcome:
    """compare(), once the direct control ran as expected: failing with the error code
    ``failing`` names for the step, or succeeding."""
    control = transcripts["direct"][step]
    assert control["ok"] == (step not in failing), f"control run changed: {control}"
    if step in failing:
        assert control["code"] == failing[step]
    return compare(transcripts, step)


# ---------------------------------------------------------------------------------- s3cmd


def s3cmd_config(target: Target) -> str:
    """s3cmd's config as a user writes it for a non-AWS store: keys, the host, plain http.
    Everything else (bucket_location US, SigV4 signing, 15 MB multipart chunks) stays
    s3cmd's default. A host_bucket without %(bucket)s means path-style requests."""
    return (
        "[default]\n"
        f"access_key = {target.access_key}\n"
        f"secret_key = {target.secret_key}\n"
        f"host_base = {target.hostport}\n"
        f"host_bucket = {target.hostport}\n"
        "use_https = False\n"
    )


def normalized(text: str, bucket: str, target: Target) -> str:
    """s3cmd's output with what differs by run (names, ports, times, speeds) replaced."""
    text = text.replace(bucket, "BUCKET").replace(target.hostport, "HOST")
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d", "DATE", text)
    text = re.sub(r"(Last mod:\s+).*", r"\1DATE", text)
    text = re.sub(r"(\d+) bytes in [^)]*\)", r"\1 bytes)", text)
    return re.sub(r"\b([acm]time):\d+", r"\1:T", text)


S3CMD_STEPS: dict[str, int] = {  # step -> s3cmd's exit status directly against RGW
    "mb": 0,
    "put-small": 0,
    "put-big-multipart": 0,
    "get-small": 0,
    "get-big": 0,
    "ls": 0,
    "ls-recursive": 0,
    "info-bucket": 0,
    "info-object": 0,
    "signurl": 0,
    "get-missing": 64,  # EX_USAGE: "Source object ... does not exist"
    "rb-not-empty": 13,  # EX_CONFLICT: 409 BucketNotEmpty
    "del": 0,
    "rb": 0,
    "ls-removed": 12,  # EX_NOTFOUND: NoSuchBucket
}


def s3cmd_session(
    target: Target, work: Path, files: dict[str, Path], store: BaseClient
) -> Transcript:
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "s3cfg"
    cfg.write_text(s3cmd_config(target))
    bucket = f"s3cmd-{uuid.uuid4().hex[:16]}"
    exe = need_tool("s3cmd", "requirements/test.lock pins it")

    def run(*args: str, raw: bool = False) -> Outcome:
        r = subprocess.run(
            [exe, "-c", str(cfg), *args],
            cwd=work,
            env={"PATH": os.environ.get("PATH", ""), "HOME": str(work)},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        return {
            "rc": r.returncode,
            "out": r.stdout if raw else normalized(r.stdout, bucket, target),
            "err": normalized(r.stderr, bucket, target),
        }

    s3 = f"s3://{bucket}"
    t: Transcript = {}
    t["mb"] = run("mb", s3)
    t["put-small"] = run("put", str(files["small"]), f"{s3}/dir/small.bin")
    t["put-small"].update(in_store(store, bucket, "dir/small.bin"))
    t["put-big-multipart"] = run("put", str(files["big"]), f"{s3}/big.bin")
    t["put-big-multipart"].update(in_store(store, bucket, "big.bin"))
    t["get-small"] = run("get", f"{s3}/dir/small.bin", "got-small.bin")
    t["get-big"] = run("get", f"{s3}/big.bin", "got-big.bin")
    for step, name in (("get-small", "got-small.bin"), ("get-big", "got-big.bin")):
        t[step]["got"] = file_sha(work / name) if (work / name).exists() else None
    t["ls"] = run("ls", s3)
    t["ls-recursive"] = run("ls", "-r", s3)
    t["info-bucket"] = run("info", s3)
    t["info-object"] = run("info", f"{s3}/dir/small.bin")
    signed = run("signurl", f"{s3}/dir/small.bin", "+600", raw=True)
    url = signed.pop("out").strip()
    # The URL itself differs (host, expiry, signature); its form and what it fetches do not.
    signed["query"] = sorted(k for k, _ in parse_qsl(urlsplit(url).query)) if url else None
    signed["fetch"] = fetch(url) if url.startswith("http") else None
    t["signurl"] = signed
    t["get-missing"] = run("get", f"{s3}/missing.bin", "got-missing.bin")
    t["rb-not-empty"] = run("rb", s3)
    t["del"] = run("del", f"{s3}/dir/small.bin", f"{s3}/big.bin")
    t["del"].update(in_store(store, bucket, "big.bin"))
    t["rb"] = run("rb", s3)
    t["ls-removed"] = run("ls", s3)
    assert list(t) == list(S3CMD_STEPS)
    return t


@pytest.fixture(scope="module")
def s3cmd_runs(run_both: RunBoth) -> dict[str, Transcript]:
    return run_both("s3cmd", s3cmd_session)


@pytest.mark.parametrize("step", list(S3CMD_STEPS))
def test_s3cmd_default_config_through_s3shim_matches_direct(
    s3cmd_runs: dict[str, Transcript], files: dict[str, Path], step: str
) -> None:
    control = s3cmd_runs["direct"][step]
    assert control["rc"] == S3CMD_STEPS[step], f"control run changed (direct to RGW): {control}"
    through = compare(s3cmd_runs, step)
    if step.startswith("put-"):
        source = files["small" if step == "put-small" else "big"]
        assert through["stored"] == file_sha(source)  # read back from RGW itself
    if step == "put-big-multipart":
        assert through["stored_etag"].endswith('-2"')  # s3cmd really uploaded it in parts
    if step.startswith("get-") and step != "get-missing":
        assert through["got"] == file_sha(files[step.removeprefix("get-")])
    if step == "signurl":
        assert through["query"] == ["AWSAccessKeyId", "Expires", "Signature"]  # SigV2
        assert through["fetch"]["status"] == 200
        assert through["fetch"]["sha"] == file_sha(files["small"])
    if step == "rb-not-empty":
        assert "BucketNotEmpty" in through["err"]
    if step == "del":
        assert through["stored"] is None


# ------------------------------------------------------------------- MinIO Python client

MINIO_PY_STEPS = [
    "make_bucket",
    "make_bucket-again",
    "bucket_exists",
    "put_object",
    "put_object-stream-multipart",
    "fput_object-multipart",
    "fget_object",
    "get_object",
    "stat_object",
    "stat_object-missing",
    "list_objects-recursive",
    "list_objects",
    "presigned_get_object",
    "presigned_put_object",
    "remove_bucket-not-empty",
    "remove_objects",
    "remove_bucket",
    "bucket_exists-after",
]
MINIO_PY_FAILING = {"stat_object-missing": "NoSuchKey", "remove_bucket-not-empty": "BucketNotEmpty"}


def minio_py_session(
    target: Target, work: Path, files: dict[str, Path], store: BaseClient
) -> Transcript:
    work.mkdir(parents=True, exist_ok=True)
    # Only what a user must give: host:port, the keys, plain http.
    m = Minio(target.hostport, target.access_key, target.secret_key, secure=False)
    bucket = f"minio-py-{uuid.uuid4().hex[:16]}"
    small, mid = files["small"].read_bytes(), files["mid"]
    t: Transcript = {}

    def step(name: str, fn: Callable[[], Outcome]) -> None:
        try:
            t[name] = {"ok": True, **fn()}
        except S3Error as e:
            t[name] = {"ok": False, "code": e.code}
        except Exception as e:  # any other failure is an outcome to compare
            t[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"[:300]}

    def put_stream() -> Outcome:
        # Unknown length: the client must upload it in (default-sized) 5 MiB parts.
        r = m.put_object(bucket, "stream.bin", io.BytesIO(mid.read_bytes()), -1, part_size=5 * MIB)
        return {"etag": r.etag, **in_store(store, bucket, "stream.bin")}

    def presigned_put() -> Outcome:
        url = m.presigned_put_object(bucket, "presigned-put.bin")
        body = b"presigned by the MinIO client\x00\xff" * 50
        return {
            **fetch(url, "PUT", body),
            **in_store(store, bucket, "presigned-put.bin"),
            "sent": sha(body),
        }

    def done(_: object) -> Outcome:
        return {}

    def presigned_get() -> Outcome:
        url = m.presigned_get_object(bucket, "dir/small.bin")
        return {**fetch(url), "v4": "X-Amz-Signature=" in url}

    def names(recursive: bool) -> Outcome:
        return {"names": [o.object_name for o in m.list_objects(bucket, recursive=recursive)]}

    def stat(key: str) -> Outcome:
        st = m.stat_object(bucket, key)
        return {"size": st.size, "etag": st.etag, "type": st.content_type}

    step("make_bucket", lambda: done(m.make_bucket(bucket)))
    step("make_bucket-again", lambda: done(m.make_bucket(bucket)))
    step("bucket_exists", lambda: {"exists": m.bucket_exists(bucket)})
    step(
        "put_object",
        lambda: {
            "etag": m.put_object(bucket, "dir/small.bin", io.BytesIO(small), len(small)).etag,
            **in_store(store, bucket, "dir/small.bin"),
        },
    )
    step("put_object-stream-multipart", put_stream)
    step(
        "fput_object-multipart",
        lambda: {
            "etag": m.fput_object(bucket, "mid.bin", str(mid)).etag,
            **in_store(store, bucket, "mid.bin"),
        },
    )

    def fget() -> Outcome:
        m.fget_object(bucket, "mid.bin", str(work / "got-mid.bin"))
        return {"got": file_sha(work / "got-mid.bin")}

    step("fget_object", fget)

    def get_small() -> Outcome:
        r = m.get_object(bucket, "dir/small.bin")
        try:
            return {"got": sha(r.read())}
        finally:
            r.close()
            r.release_conn()

    step("get_object", get_small)
    step("stat_object", lambda: stat("mid.bin"))
    step("stat_object-missing", lambda: stat("missing.bin"))
    step("list_objects-recursive", lambda: names(True))
    step("list_objects", lambda: names(False))
    step("presigned_get_object", presigned_get)
    step("presigned_put_object", presigned_put)
    step("remove_bucket-not-empty", lambda: done(m.remove_bucket(bucket)))

    def remove_all() -> Outcome:
        keys = ["dir/small.bin", "stream.bin", "mid.bin", "presigned-put.bin"]
        for key in keys:
            m.remove_object(bucket, key)
        return {"left": [k for k in keys if in_store(store, bucket, k)["stored"] is not None]}

    step("remove_objects", remove_all)
    step("remove_bucket", lambda: done(m.remove_bucket(bucket)))
    step("bucket_exists-after", lambda: {"exists": m.bucket_exists(bucket)})
    assert list(t) == MINIO_PY_STEPS
    return t


@pytest.fixture(scope="module")
def minio_py_runs(run_both: RunBoth) -> dict[str, Transcript]:
    return run_both("minio-py", minio_py_session)


@pytest.mark.parametrize("step", MINIO_PY_STEPS)
def test_minio_python_client_through_s3shim_matches_direct(
    minio_py_runs: dict[str, Transcript], files: dict[str, Path], step: str
) -> None:
    through = control_then_compare(minio_py_runs, step, MINIO_PY_FAILING)
    expected = {
        "put_object": file_sha(files["small"]),
        "put_object-stream-multipart": file_sha(files["mid"]),
        "fput_object-multipart": file_sha(files["mid"]),
    }
    if step in expected:
        assert through["stored"] == expected[step]  # read back from RGW itself
    if step.endswith("-multipart"):
        assert through["stored_etag"].endswith('-2"')
    if step in ("fget_object", "get_object"):
        assert through["got"] == file_sha(files["mid" if step == "fget_object" else "small"])
    if step == "presigned_get_object":
        assert through["status"] == 200 and through["v4"]
        assert through["sha"] == file_sha(files["small"])
    if step == "presigned_put_object":
        assert through["status"] == 200 and through["stored"] == through["sent"]
    if step == "remove_objects":
        assert through["left"] == []


# ---------------------------------------------------------------------- MinIO JS client

MINIO_JS_UPLOAD = [
    "makeBucket",
    "makeBucket",
    "bucketExists",
    "putObject",
    "fPutObject",
    "fGetObject",
    "getObject",
    "statObject",
    "statObject",
    "listObjects",
    "listObjectsV2",
    "presignedGetObject",
    "removeBucket",
]
MINIO_JS_CLEANUP = ["removeObject", "removeObject", "removeBucket", "bucketExists"]
MINIO_JS_STEPS = [f"{i:02d}-{op}" for i, op in enumerate(MINIO_JS_UPLOAD + MINIO_JS_CLEANUP)]
# The steps the direct control fails, with its error code.
MINIO_JS_FAILING = {"08-statObject": "NotFound", "12-removeBucket": "BucketNotEmpty"}


def minio_js_session(
    target: Target, work: Path, files: dict[str, Path], store: BaseClient
) -> Transcript:
    bucket = f"minio-js-{uuid.uuid4().hex[:16]}"
    small, mid = str(files["small"]), str(files["mid"])
    got = work / "got-mid.bin"
    b = {"bucket": bucket}
    upload: list[dict[str, Any]] = [
        {"op": "makeBucket", **b},
        {"op": "makeBucket", **b},
        {"op": "bucketExists", **b},
        {"op": "putObject", **b, "key": "dir/small.bin", "file": small},
        {"op": "fPutObject", **b, "key": "mid.bin", "file": mid},
        {"op": "fGetObject", **b, "key": "mid.bin", "file": str(got)},
        {"op": "getObject", **b, "key": "dir/small.bin"},
        {"op": "statObject", **b, "key": "mid.bin"},
        {"op": "statObject", **b, "key": "missing.bin"},
        {"op": "listObjects", **b, "recursive": True},
        {"op": "listObjectsV2", **b},
        {"op": "presignedGetObject", **b, "key": "dir/small.bin"},
        {"op": "removeBucket", **b},
    ]
    cleanup: list[dict[str, Any]] = [
        {"op": "removeObject", **b, "key": "dir/small.bin"},
        {"op": "removeObject", **b, "key": "mid.bin"},
        {"op": "removeBucket", **b},
        {"op": "bucketExists", **b},
    ]
    assert [s["op"] for s in upload] == MINIO_JS_UPLOAD
    assert [s["op"] for s in cleanup] == MINIO_JS_CLEANUP
    keys = {
        "endpoint": target.endpoint,
        "accessKey": target.access_key,
        "secretKey": target.secret_key,
    }
    first = run_js("minio_client.mjs", {**keys, "steps": upload}, work)
    # Between the phases: what RGW itself holds, and what fGetObject wrote.
    first[3].update(in_store(store, bucket, "dir/small.bin"))
    first[4].update(in_store(store, bucket, "mid.bin"))
    first[5]["got"] = file_sha(got) if got.exists() else None
    second = run_js("minio_client.mjs", {**keys, "steps": cleanup}, work)
    second[2].update(in_store(store, bucket, "mid.bin"))
    lines = first + second
    assert [x["op"] for x in lines] == MINIO_JS_UPLOAD + MINIO_JS_CLEANUP, lines
    return dict(zip(MINIO_JS_STEPS, lines, strict=True))


@pytest.fixture(scope="module")
def minio_js_runs(run_both: RunBoth) -> dict[str, Transcript]:
    need_js_package("minio")
    return run_both("minio-js", minio_js_session)


@pytest.mark.node
@pytest.mark.parametrize("step", MINIO_JS_STEPS)
def test_minio_js_client_through_s3shim_matches_direct(
    minio_js_runs: dict[str, Transcript], files: dict[str, Path], step: str
) -> None:
    through = control_then_compare(minio_js_runs, step, MINIO_JS_FAILING)
    if step == "03-putObject":
        assert through["stored"] == file_sha(files["small"])
    if step == "04-fPutObject":
        assert through["stored"] == file_sha(files["mid"])
    if step == "05-fGetObject":
        assert through["got"] == file_sha(files["mid"])
    if step in ("06-getObject", "11-presignedGetObject"):
        assert through["sha256"] == file_sha(files["small"])
    if step == "11-presignedGetObject":
        assert through["fetchStatus"] == 200 and through["v4"]
    if step == "15-removeBucket":
        assert through["stored"] is None


# ---------------------------------------------------- boto3's default presigner (SigV2)


@pytest.fixture(scope="module")
def v2_bucket(rgw_store: Store, store: BaseClient) -> str:
    return new_bucket(rgw_store, "presign-v2")


def v2_clients(targets: list[Target]) -> dict[str, BaseClient]:
    """boto3 at its defaults (no signature_version): on a custom endpoint it presigns SigV2."""
    return {t.name: endpoint_client(t.endpoint, t.access_key, t.secret_key) for t in targets}


def assert_sigv2(url: str) -> None:
    names = {k for k, _ in parse_qsl(urlsplit(url).query)}
    assert {"AWSAccessKeyId", "Signature", "Expires"} <= names, url
    assert not any(n.startswith("X-Amz-") for n in names), url


@pytest.mark.parametrize("key", ["plain.txt", "dir/a b+c=d ü €.txt", "x/~!$&'()*,;@"])
@pytest.mark.parametrize("override", [False, True], ids=["plain", "response-override"])
def test_boto3_default_presigned_get_works_through_s3shim_as_directly(
    targets: list[Target], store: BaseClient, v2_bucket: str, key: str, override: bool
) -> None:
    body = os.urandom(5000) + key.encode()
    store.put_object(Bucket=v2_bucket, Key=key, Body=body)
    params: dict[str, str] = {"Bucket": v2_bucket, "Key": key}
    if override:  # a sub-resource SigV2 signs, and the store acts on
        params["ResponseContentDisposition"] = 'attachment; filename="report.txt"'
        params["ResponseContentType"] = "text/x-s3shim"
    outcomes = {}
    for name, client in v2_clients(targets).items():
        url = client.generate_presigned_url("get_object", Params=params, ExpiresIn=600)
        assert_sigv2(url)
        req = urllib.request.Request(url)
        with urllib.request.urlopen(req, timeout=60) as r:
            outcomes[name] = {
                "status": r.status,
                "sha": sha(r.read()),
                "disposition": r.headers.get("Content-Disposition"),
                "type": r.headers.get("Content-Type"),
                "etag": r.headers.get("ETag"),
            }
    assert outcomes["s3shim"] == outcomes["direct"]
    assert outcomes["s3shim"]["sha"] == sha(body)
    if override:
        assert outcomes["s3shim"]["type"] == "text/x-s3shim"


def test_boto3_default_presigned_put_stores_the_same_bytes(
    targets: list[Target], store: BaseClient, v2_bucket: str
) -> None:
    outcomes = {}
    for name, client in v2_clients(targets).items():
        key = f"v2-put-{name}.bin"
        body = os.urandom(70_000)
        # SigV2 signs Content-Type: the uploader sends the one the URL was made for.
        url = client.generate_presigned_url(
            "put_object",
            Params={"Bucket": v2_bucket, "Key": key, "ContentType": "application/x-test"},
            ExpiresIn=600,
        )
        assert_sigv2(url)
        result = fetch(url, "PUT", body, **{"Content-Type": "application/x-test"})
        stored = store.get_object(Bucket=v2_bucket, Key=key)
        outcomes[name] = {
            **result,
            "intact": sha(stored["Body"].read()) == sha(body),  # read back from RGW
            "type": stored["ContentType"],
        }
    assert outcomes["direct"]["status"] == 200
    assert outcomes["s3shim"] == {**outcomes["direct"], "etag": outcomes["s3shim"]["etag"]}
    assert outcomes["s3shim"]["intact"]


@pytest.mark.parametrize("forgery", ["signature", "expired", "other-key", "content-type"])
def test_a_bad_sigv2_presigned_url_is_refused_as_the_store_refuses_it(
    targets: list[Target], store: BaseClient, v2_bucket: str, forgery: str
) -> None:
    store.put_object(Bucket=v2_bucket, Key="guarded.txt", Body=b"guarded")
    outcomes = {}
    for name, client in v2_clients(targets).items():
        method = "put_object" if forgery == "content-type" else "get_object"
        params: dict[str, str] = {"Bucket": v2_bucket, "Key": f"guarded-{forgery}.txt"}
        if forgery != "content-type":
            params["Key"] = "guarded.txt"
        url = client.generate_presigned_url(
            method, Params=params, ExpiresIn=-60 if forgery == "expired" else 600
        )
        headers: dict[str, str] = {}
        data = None
        if forgery == "signature":
            url = re.sub(r"Signature=[^&]+", "Signature=AAAAAAAAAAAAAAAAAAAAAAAAAAA%3D", url)
        elif forgery == "other-key":
            url = url.replace("/guarded.txt?", "/other.txt?")
        elif forgery == "content-type":  # signed with none, sent with one
            headers, data = {"Content-Type": "text/html"}, b"<script>1</script>"
        outcomes[name] = fetch(url, "PUT" if data else "GET", data, **headers)
        if data:
            outcomes[name].update(in_store(store, v2_bucket, f"guarded-{forgery}.txt"))
    assert outcomes["direct"]["status"] == 403, outcomes
    assert outcomes["s3shim"] == outcomes["direct"]
