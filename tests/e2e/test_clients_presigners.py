"""Every presigner at its defaults, its URLs used for real: directly against the store and
through s3shim (flags on and off), the bytes read back from the store itself.

Presigners: the AWS SDK for JavaScript v3's getSignedUrl (PutObject, UploadPart after
CreateMultipartUpload then completed, GetObject), boto3's generate_presigned_url (its SigV2
default on a custom endpoint, and s3v4) and generate_presigned_post (SigV2 default, and
s3v4), the AWS CLI's ``aws s3 presign``, and the MinIO JavaScript and Python clients'
presigned PUT and GET. Each URL is used by Chromium's fetch() (or a form submit) from a page
on a second origin, against RGW with a bucket CORS rule, and by curl, against RGW and moto
(the AWS-faithful control; its CORS preflight answers 403, which no browser accepts).

The JS SDK (>= 3.729, WHEN_SUPPORTED) signs ``x-amz-checksum-crc32`` of an EMPTY body into
every presigned PutObject and UploadPart URL; AWS does not apply checksum parameters of a
presigned URL, and RGW 16 and moto ignore them, so any body must be stored. One browser run
and one presign run of node serve the whole module.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from botocore.client import BaseClient
from minio import Minio

from testkit.backends import Store, s3_client
from testkit.browser import code_of, cors_bucket
from testkit.helpers import crc32_b64, crc64nvme_b64
from testkit.jsrun import need_chromium, need_js_package, run_js
from testkit.shim import s3_client as endpoint_client
from testkit.shim import shim_for
from testkit.tap import Tap, wire_tap

Outcome = dict[str, Any]
AWS = str(Path(sys.executable).parent / "aws")
RECORD_NAME = "s3shim-checksum"  # x-amz-meta-s3shim-checksum, as boto3 names metadata

SEED = os.urandom(100_000) + b"seed"
SMALL = os.urandom(4096)  # the browser upload of the issue: 4 KiB
LARGE = os.urandom(1536 * 1024)  # above s3shim's whole-body limit: streamed
PARTS = (os.urandom(5 * 1024 * 1024), os.urandom(4096))
FORM_FILE = os.urandom(50_000)


@dataclass(frozen=True)
class Case:
    name: str
    presigner: str  # aws-sdk, boto3-sigv2, boto3-s3v4, aws-cli, minio-js, minio-py
    kind: str  # put, get, post, mpu
    body: bytes = b""
    query_crc: str | None = None  # aws-sdk put: a value the app passes, signed into the query
    header_crc: str | None = None  # aws-sdk put: a signed header the URL's user must send

    @property
    def stored(self) -> bytes | None:
        """What the store must hold after the case (None for a read)."""
        if self.kind == "mpu":
            return b"".join(PARTS)
        return None if self.kind == "get" else self.body


CASES = [
    Case("js-sdk-put-4k", "aws-sdk", "put", SMALL),
    Case("js-sdk-put-1.5m", "aws-sdk", "put", LARGE),
    # A signed query checksum that is not the body's: AWS ignores it, so does every store.
    Case("js-sdk-put-wrong-query-crc", "aws-sdk", "put", SMALL, crc32_b64(b"other")),
    Case("js-sdk-upload-part", "aws-sdk", "mpu"),
    Case("js-sdk-get", "aws-sdk", "get"),
    Case("boto3-sigv2-put", "boto3-sigv2", "put", SMALL),
    Case("boto3-sigv2-get", "boto3-sigv2", "get"),
    Case("boto3-s3v4-put", "boto3-s3v4", "put", LARGE),
    Case("boto3-s3v4-get", "boto3-s3v4", "get"),
    Case("boto3-sigv2-post", "boto3-sigv2", "post", FORM_FILE),
    Case("boto3-s3v4-post", "boto3-s3v4", "post", FORM_FILE),
    Case("aws-cli-get", "aws-cli", "get"),
    Case("minio-js-put", "minio-js", "put", SMALL),
    Case("minio-js-get", "minio-js", "get"),
    Case("minio-py-put", "minio-py", "put", SMALL),
    Case("minio-py-get", "minio-py", "get"),
]
# A checksum header beside the query's: verified by s3shim as AWS does (curl only).
HEADER_CASES = [
    Case("js-sdk-put-header-crc-right", "aws-sdk", "put", SMALL, header_crc=crc32_b64(SMALL)),
    Case("js-sdk-put-header-crc-wrong", "aws-sdk", "put", SMALL, header_crc=crc32_b64(b"x")),
]
BY_NAME = {c.name: c for c in [*CASES, *HEADER_CASES]}
USERS = {"rgw": ("browser", "curl"), "moto": ("curl",)}  # who uses the URLs, per store
FLAGS = ("on", "off")
USES = [(s, u, c.name) for s, users in USERS.items() for u in users for c in CASES]


def use_id(store: str, user: str, case: str) -> str:
    return f"{store}-{user}-{case}"


@dataclass
class Target:
    store: str  # rgw, moto
    name: str  # "direct" (the control), or "on"/"off": s3shim with both flags so
    endpoint: str
    access_key: str
    secret_key: str
    bucket: str
    tap: Tap | None = None  # between s3shim and the store: what the store was sent


@pytest.fixture(scope="module")
def targets(
    rgw_store: Store,
    moto_store: Store,
    origin: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[Target]]:
    out: list[Target] = []
    with contextlib.ExitStack() as stack:
        for store in (rgw_store, moto_store):
            client = s3_client(store)
            for name in ("direct", *FLAGS):
                bucket = cors_bucket(store, client, origin)
                for case in CASES:
                    if case.kind == "get":
                        client.put_object(Bucket=bucket, Key=key_of("", case), Body=SEED)
                endpoint, tap = store.endpoint, None
                if name != "direct":
                    tap = stack.enter_context(wire_tap(store.endpoint))
                    flag = name == "on"
                    shim = stack.enter_context(
                        shim_for(
                            store,
                            tmp_path_factory.mktemp(f"presigners-{store.name}-{name}"),
                            via=tap.endpoint,
                            flags=flag,
                        )
                    )
                    endpoint = shim.endpoint
                keys = (store.access_key, store.secret_key)
                out.append(Target(store.name, name, endpoint, *keys, bucket, tap))
        yield out


def key_of(user: str, case: Case) -> str:
    # Each read has its own seed object, so what reached the store is told apart per case.
    return f"seed/{case.name}.bin" if case.kind == "get" else f"{user}/{case.name}.bin"


@dataclass
class Use:
    """One URL (or form, or multipart upload) used by one user against one target."""

    target: Target
    user: str
    case: Case
    url: str = ""
    urls: list[str] = field(default_factory=list)  # mpu: one per part
    upload_id: str = ""
    fields: list[tuple[str, str]] = field(default_factory=list)  # post
    raw: list[Outcome] = field(default_factory=list)  # what the user saw, per request

    @property
    def id(self) -> str:
        return f"{self.target.store}/{self.target.name}/{self.user}/{self.case.name}"


def presign_python(use: Use) -> None:
    t, c, key = use.target, use.case, key_of(use.user, use.case)
    if c.presigner.startswith("boto3-"):
        config = {"signature_version": "s3v4"} if c.presigner == "boto3-s3v4" else {}
        boto = endpoint_client(t.endpoint, t.access_key, t.secret_key, **config)
        if c.kind == "post":
            post = boto.generate_presigned_post(t.bucket, key)
            use.url, use.fields = post["url"], list(post["fields"].items())
        else:
            method = "put_object" if c.kind == "put" else "get_object"
            use.url = boto.generate_presigned_url(method, Params={"Bucket": t.bucket, "Key": key})
    elif c.presigner == "minio-py":
        netloc = urlsplit(t.endpoint).netloc
        m = Minio(netloc, access_key=t.access_key, secret_key=t.secret_key, secure=False)
        expires = timedelta(minutes=10)
        if c.kind == "put":
            use.url = m.presigned_put_object(t.bucket, key, expires=expires)
        else:
            use.url = m.presigned_get_object(t.bucket, key, expires=expires)


def presign_cli(uses: list[Use]) -> None:
    """``aws s3 presign`` for each use, the CLIs started side by side (each takes ~1 s)."""
    procs = []
    for use in uses:
        t = use.target
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/tmp"),
            "AWS_ACCESS_KEY_ID": t.access_key,
            "AWS_SECRET_ACCESS_KEY": t.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }
        argv = [AWS, "--endpoint-url", t.endpoint, "s3", "presign"]
        argv.append(f"s3://{t.bucket}/{key_of(use.user, use.case)}")
        procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True))
    for use, proc in zip(uses, procs, strict=True):
        stdout, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"aws s3 presign for {use.id} exited {proc.returncode}"
        use.url = stdout.strip()


def js_request(use: Use, op: str, **extra: Any) -> Outcome:
    t = use.target
    return {
        "id": use.id,
        "presigner": "aws-sdk" if use.case.presigner == "aws-sdk" else "minio",
        "endpoint": t.endpoint,
        "accessKey": t.access_key,
        "secretKey": t.secret_key,
        "op": op,
        "bucket": t.bucket,
        "key": key_of(use.user, use.case),
        **extra,
    }


def presign_js(uses: list[Use], work: Path) -> None:
    requests = []
    for use in uses:
        c = use.case
        if c.kind == "mpu":
            requests.append(js_request(use, "parts", parts=len(PARTS)))
        elif c.header_crc is not None:
            requests.append(js_request(use, "put-header-crc32", checksumCRC32=c.header_crc))
        elif c.query_crc is not None:
            requests.append(js_request(use, c.kind, checksumCRC32=c.query_crc))
        else:
            requests.append(js_request(use, c.kind))
    got = {line["id"]: line for line in run_js("presign.mjs", {"requests": requests}, work)}
    for use in uses:
        line = got.get(use.id, {"message": "no output"})
        assert "url" in line or "urls" in line, f"presigning {use.id}: {line}"
        use.url, use.urls = line.get("url", ""), line.get("urls", [])
        use.upload_id = line.get("uploadId", "")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def browser_cases(use: Use, page: str) -> list[Outcome]:
    c, base = use.case, {"page": page}
    if c.kind == "post":
        return [
            {
                **base,
                "name": use.id,
                "kind": "form",
                "url": use.url,
                "fields": use.fields,
                "fileName": "upload.bin",
                "fileB64": b64(c.body),
                "mimeType": "application/octet-stream",
            }
        ]
    if c.kind == "mpu":
        return [
            {**base, "name": f"{use.id}#{n}", "kind": "fetch", "method": "PUT", "url": url}
            | {"bodyB64": b64(part)}
            for n, (url, part) in enumerate(zip(use.urls, PARTS, strict=True), 1)
        ]
    fetch = {**base, "name": use.id, "kind": "fetch", "method": c.kind.upper(), "url": use.url}
    return [fetch | {"bodyB64": b64(c.body)}] if c.kind == "put" else [fetch]


def browser_outcome(raw: Outcome) -> Outcome:
    if "error" in raw:
        return {"error": raw["error"].split(":")[0]}
    out: Outcome = {"status": raw["status"]}
    if "bodyB64" in raw:  # fetch()
        body = base64.b64decode(raw["bodyB64"])
        out["etag"] = raw["etag"]
        if raw["status"] < 300:
            out["sha"] = hashlib.sha256(body).hexdigest() if body else None
        else:
            out["code"] = code_of(body.decode(errors="replace"))
    else:  # a form's answer
        out["code"] = code_of(raw.get("text"))
    return out


def curl(argv: list[str], work: Path) -> Outcome:
    body, heads = work / "curl-body", work / "curl-head"
    r = subprocess.run(
        ["curl", "-sS", "-o", str(body), "-D", str(heads), "-w", "%{http_code}", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if r.returncode != 0:
        return {"error": f"curl exited {r.returncode}: {r.stderr.strip()[:200]}"}
    data = body.read_bytes()
    headers = dict(
        line.split(":", 1)
        for line in heads.read_text(errors="replace").lower().splitlines()
        if ":" in line
    )
    out: Outcome = {"status": int(r.stdout)}
    if "etag" in headers:
        out["etag"] = headers["etag"].strip()
    if out["status"] < 300:
        out["sha"] = hashlib.sha256(data).hexdigest() if data else None
    else:
        out["code"] = code_of(data.decode(errors="replace"))
    return out


def curl_use(use: Use, work: Path) -> list[Outcome]:
    c = use.case
    if c.kind == "post":
        file = work / "form-file"
        file.write_bytes(c.body)
        argv = [a for k, v in use.fields for a in ("--form-string", f"{k}={v}")]
        return [curl([*argv, "-F", f"file=@{file};filename=upload.bin", use.url], work)]
    if c.kind == "get":
        return [curl([use.url], work)]
    out = []
    header = ["-H", f"x-amz-checksum-crc32: {c.header_crc}"] if c.header_crc else []
    for url, data in zip(use.urls, PARTS, strict=True) if c.kind == "mpu" else [(use.url, c.body)]:
        src = work / "upload"
        src.write_bytes(data)
        out.append(curl([*header, "-T", str(src), url], work))
    return out


def complete_uploads(uses: list[Use], work: Path) -> dict[str, Outcome]:
    """The app's server completes each multipart upload with the JS SDK, the part ETags
    being those the user saw (a browser reads them through the CORS rule's ExposeHeaders)."""
    requests = [
        js_request(u, "complete", uploadId=u.upload_id, etags=[r.get("etag") for r in u.raw])
        for u in uses
        if all(r.get("status") == 200 for r in u.raw)
    ]
    if not requests:
        return {}
    return {line["id"]: line for line in run_js("presign.mjs", {"requests": requests}, work)}


def stored(store: BaseClient, bucket: str, key: str) -> tuple[str | None, dict[str, str]]:
    """The sha256 of what the store holds under the key (None: nothing), and its metadata."""
    try:
        got = store.get_object(Bucket=bucket, Key=key)
    except store.exceptions.NoSuchKey:
        return None, {}
    return hashlib.sha256(got["Body"].read()).hexdigest(), got.get("Metadata", {})


@dataclass
class Runs:
    outcomes: dict[tuple[str, str, str, str], Outcome]  # (store, target, user, case) -> outcome
    metadata: dict[tuple[str, str, str, str], dict[str, str]]  # the stored object's metadata
    taps: dict[tuple[str, str], bytes]  # (store, on/off) -> every byte s3shim sent the store


@pytest.fixture(scope="module")
def runs(
    targets: list[Target],
    rgw_store: Store,
    moto_store: Store,
    origin: str,
    node_js: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Runs:
    for package in ("@aws-sdk/client-s3", "@aws-sdk/s3-request-presigner", "minio"):
        need_js_package(package)
    need_js_package("playwright-core")
    need_chromium()
    work = tmp_path_factory.mktemp("presigners")
    uses = [Use(t, u, c) for t in targets for u in USERS[t.store] for c in CASES]
    uses += [Use(t, "curl", c) for t in targets for c in HEADER_CASES]
    for use in uses:
        presign_python(use)
    presign_cli([u for u in uses if u.case.presigner == "aws-cli"])
    presign_js([u for u in uses if u.case.presigner in ("aws-sdk", "minio-js")], work)

    page = f"{origin}/"
    in_browser = [u for u in uses if u.user == "browser"]
    plan = [c for u in in_browser for c in browser_cases(u, page)]
    lines = run_js("browser.mjs", {"userDataDir": str(work / "profile"), "cases": plan}, work)
    seen = {line["name"]: line for line in lines}
    for use in in_browser:
        names = [c["name"] for c in browser_cases(use, page)]
        use.raw = [browser_outcome(seen.get(n, {"error": "driver: no output"})) for n in names]
    for use in uses:
        if use.user == "curl":
            use.raw = curl_use(use, work)
    completed = complete_uploads([u for u in uses if u.case.kind == "mpu"], work)

    clients = {"rgw": s3_client(rgw_store), "moto": s3_client(moto_store)}
    outcomes: dict[tuple[str, str, str, str], Outcome] = {}
    metadata: dict[tuple[str, str, str, str], dict[str, str]] = {}
    for use in uses:
        t, c = use.target, use.case
        out: Outcome = {"requests": use.raw}
        if c.kind == "mpu":
            done = completed.get(use.id, {"ok": False, "code": "not completed"})
            out["complete"] = done.get("code") if not done.get("ok") else "ok"
        if c.kind != "get":
            out["stored"], meta = stored(clients[t.store], t.bucket, key_of(use.user, c))
            metadata[(t.store, t.name, use.user, c.name)] = meta
        outcomes[(t.store, t.name, use.user, c.name)] = out
    taps = {(t.store, t.name): t.tap.to_store() for t in targets if t.tap is not None}
    return Runs(outcomes, metadata, taps)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def expected(case: Case) -> dict[str, Any]:
    """What the control (the URL straight against the store) must show."""
    if case.kind == "get":
        return {"status": [200], "sha": sha(SEED)}
    statuses = {"put": [200], "post": [204], "mpu": [200] * len(PARTS)}[case.kind]
    want: dict[str, Any] = {"status": statuses, "stored": sha(case.stored or b"")}
    if case.kind == "mpu":
        want["complete"] = "ok"
    return want


def seen(o: Outcome) -> dict[str, Any]:
    got: dict[str, Any] = {"status": [r.get("status", r.get("error")) for r in o["requests"]]}
    if "stored" in o:
        got["stored"] = o["stored"]
    else:
        got["sha"] = o["requests"][0].get("sha")
    if "complete" in o:
        got["complete"] = o["complete"]
    return got


@pytest.mark.parametrize(("store", "user", "case"), USES, ids=[use_id(*u) for u in USES])
def test_the_url_against_the_store_directly_works(
    runs: Runs, store: str, user: str, case: str
) -> None:
    """The control: if this fails, the presigner, the client or the store changed."""
    got = runs.outcomes[(store, "direct", user, case)]
    assert seen(got) == expected(BY_NAME[case]), got


THROUGH = [(s, f, u, c) for s, u, c in USES for f in FLAGS]


@pytest.mark.parametrize(
    ("store", "flags", "user", "case"),
    THROUGH,
    ids=[f"{s}-{f}-{u}-{c}" for s, f, u, c in THROUGH],
)
def test_the_url_through_s3shim_behaves_as_against_the_store(
    runs: Runs, store: str, flags: str, user: str, case: str
) -> None:
    """Same statuses, error codes, ETags and bytes read back (or stored) as directly."""
    direct = runs.outcomes[(store, "direct", user, case)]
    through = runs.outcomes[(store, flags, user, case)]
    assert through == direct, f"through s3shim (flags {flags}) {through} vs direct {direct}"


REQUEST_LINE = re.compile(rb"(?:GET|PUT|POST|HEAD|DELETE) (/[^ \r\n]*) HTTP/1\.1\r\n")


def upstream_queries(sent: bytes, key: str) -> list[dict[str, str]]:
    """The query of every request line s3shim sent the store for this object key (a line
    may follow the previous body with no separator: searched, not split)."""
    out = []
    for found in REQUEST_LINE.finditer(sent):
        path, _, query = found.group(1).decode("latin-1").partition("?")
        if path.endswith("/" + key):
            out.append(dict(parse_qsl(query, keep_blank_values=True)))
    return out


JS_SIGNED = {  # what the JS SDK signs into its presigned URLs' queries
    "js-sdk-put-4k": {
        "x-amz-checksum-crc32": crc32_b64(b""),
        "x-amz-sdk-checksum-algorithm": "CRC32",
    },
    "js-sdk-put-wrong-query-crc": {"x-amz-checksum-crc32": crc32_b64(b"other")},
    "js-sdk-get": {"x-amz-checksum-mode": "ENABLED"},
}


@pytest.mark.parametrize("store", USERS)
@pytest.mark.parametrize("case", JS_SIGNED)
def test_presigned_checksum_parameters_reach_the_store_as_sent_only_with_the_flag_off(
    runs: Runs, store: str, case: str
) -> None:
    key = key_of("curl", BY_NAME[case])
    for flags in FLAGS:
        queries = upstream_queries(runs.taps[(store, flags)], key)
        assert queries, f"no request for {key} reached the store (flags {flags})"
        for query in queries:
            got = {k: query[k] for k in JS_SIGNED[case] if k in query}
            assert got == (JS_SIGNED[case] if flags == "off" else {}), (flags, query)


@pytest.mark.parametrize("user", USERS["rgw"])
def test_s3shim_records_its_own_checksum_never_the_presigned_query_one(
    runs: Runs, user: str
) -> None:
    """With the flags on (recording on), a presigned upload is recorded with the CRC64NVME
    s3shim computed over what it stored, not the query's CRC32 of nothing (a streamed one
    once the store committed it); flags off: no record."""
    on = runs.metadata[("rgw", "on", user, "js-sdk-put-4k")]
    assert on.get(RECORD_NAME) == f"CRC64NVME:{crc64nvme_b64(SMALL)}"
    streamed = runs.metadata[("rgw", "on", user, "js-sdk-put-1.5m")]
    assert streamed.get(RECORD_NAME) == f"CRC64NVME:{crc64nvme_b64(LARGE)}"
    assert RECORD_NAME not in runs.metadata[("rgw", "off", user, "js-sdk-put-4k")]


@pytest.mark.parametrize("store", USERS)
def test_a_checksum_header_beside_the_query_is_still_verified(runs: Runs, store: str) -> None:
    """Directly, RGW 16 and moto 5.2.5 store the body whatever a checksum header says (AWS
    answers BadDigest to a wrong one); s3shim verifies the header, as AWS does, and records
    the value it verified."""
    right, wrong = (c.name for c in HEADER_CASES)
    for name in (right, wrong):
        assert seen(runs.outcomes[(store, "direct", "curl", name)]) == expected(BY_NAME[name])
    for flags in FLAGS:
        assert seen(runs.outcomes[(store, flags, "curl", right)]) == expected(BY_NAME[right])
        refused = runs.outcomes[(store, flags, "curl", wrong)]
        assert [r.get("code") for r in refused["requests"]] == ["BadDigest"], refused
        assert refused["stored"] is None
    record = runs.metadata[(store, "on", "curl", right)].get(RECORD_NAME)
    assert record == f"CRC32:{crc32_b64(SMALL)}"
