"""Operation classification: every call Convex and the SDKs make gets its name."""

from __future__ import annotations

import pytest

from s3shim import errors
from s3shim.classify import Op, classify


@pytest.mark.parametrize(
    "method,path,query,headers,op",
    [
        ("GET", "/", "", (), Op.LIST_BUCKETS),
        ("PUT", "/b", "", (), Op.CREATE_BUCKET),
        ("HEAD", "/b", "", (), Op.HEAD_BUCKET),
        ("DELETE", "/b", "", (), Op.DELETE_BUCKET),
        ("GET", "/b", "list-type=2&prefix=x", (), Op.LIST_OBJECTS_V2),
        ("GET", "/b/", "", (), Op.LIST_OBJECTS),
        ("GET", "/b", "uploads", (), Op.LIST_MULTIPART_UPLOADS),
        ("GET", "/b", "versions", (), Op.LIST_OBJECT_VERSIONS),
        ("POST", "/b", "delete", (), Op.DELETE_OBJECTS),
        ("GET", "/b", "acl", (), Op.BUCKET_SUBRESOURCE),
        ("PUT", "/b/k", "", (), Op.PUT_OBJECT),
        ("PUT", "/b/k", "", ("x-amz-copy-source",), Op.COPY_OBJECT),
        ("GET", "/b/k", "", (), Op.GET_OBJECT),
        ("HEAD", "/b/k", "", (), Op.HEAD_OBJECT),
        ("DELETE", "/b/k", "", (), Op.DELETE_OBJECT),
        ("POST", "/b/k", "uploads", (), Op.CREATE_MULTIPART_UPLOAD),
        ("PUT", "/b/k", "partNumber=1&uploadId=u", (), Op.UPLOAD_PART),
        ("PUT", "/b/k", "partNumber=1&uploadId=u", ("x-amz-copy-source",), Op.UPLOAD_PART_COPY),
        ("POST", "/b/k", "uploadId=u", (), Op.COMPLETE_MULTIPART_UPLOAD),
        ("DELETE", "/b/k", "uploadId=u", (), Op.ABORT_MULTIPART_UPLOAD),
        ("GET", "/b/k", "uploadId=u", (), Op.LIST_PARTS),
        ("GET", "/b/k", "tagging", (), Op.OBJECT_SUBRESOURCE),
        ("PUT", "/b/k", "append&position=0", (), Op.OBJECT_SUBRESOURCE),
        ("PUT", "/b/a/b//c", "x-id=PutObject", (), Op.PUT_OBJECT),
    ],
)
def test_operations(method: str, path: str, query: str, headers: tuple[str, ...], op: Op) -> None:
    from s3shim.sigv4 import parse_query

    target = classify(method, "127.0.0.1:8080", path, parse_query(query), frozenset(headers))
    assert target.op is op
    assert target.upstream_path == (path if path != "/" else "/")


def test_key_keeps_slashes_and_decodes() -> None:
    t = classify("GET", "h", "/b/a%20b//c%2Bd", [], frozenset())
    assert (t.bucket, t.key, t.upstream_path) == ("b", "a b//c+d", "/b/a%20b//c%2Bd")


def test_virtual_hosted_style() -> None:
    t = classify("GET", "photos.s3.local:8080", "/a/b.jpg", [], frozenset(), ("s3.local",))
    assert (t.bucket, t.key, t.upstream_path, t.op) == (
        "photos",
        "a/b.jpg",
        "/photos/a/b.jpg",
        Op.GET_OBJECT,
    )
    t = classify("GET", "photos.s3.local", "/", [("list-type", "2")], frozenset(), ("s3.local",))
    assert (t.op, t.upstream_path) == (Op.LIST_OBJECTS_V2, "/photos")


@pytest.mark.parametrize(
    "method,path,query,code",
    [
        ("PATCH", "/b/k", "", "MethodNotAllowed"),
        ("PUT", "/", "", "MethodNotAllowed"),
        ("POST", "/b/k", "", "NotImplemented"),
        ("GET", "http://evil/b/k", "", "InvalidRequest"),
    ],
)
def test_refused(method: str, path: str, query: str, code: str) -> None:
    with pytest.raises(errors.S3Error) as info:
        classify(method, "h", path, [], frozenset())
    assert info.value.code == code


def test_a_bare_post_to_a_bucket_is_a_form_upload() -> None:
    t = classify("POST", "h", "/b", [], frozenset())
    assert t.op is Op.POST_OBJECT and t.op.traits.form_upload
    assert classify("POST", "h", "/b", [("delete", "")], frozenset()).op is Op.DELETE_OBJECTS


def test_options_is_a_cors_preflight_anywhere() -> None:
    for path in ("/", "/b", "/b/k"):
        assert classify("OPTIONS", "h", path, [], frozenset()).op is Op.CORS_PREFLIGHT


@pytest.mark.parametrize("host", ["a/b.s3.local", "a_b.s3.local", "x.s3.local", "-a.s3.local"])
def test_virtual_hosted_bucket_must_be_a_valid_name(host: str) -> None:
    with pytest.raises(errors.S3Error) as info:
        classify("GET", host, "/k", [], frozenset(), ("s3.local",))
    assert info.value.code == "InvalidBucketName"


def test_double_slash_is_not_list_buckets() -> None:
    with pytest.raises(errors.S3Error) as info:
        classify("GET", "h", "//b/k", [], frozenset())
    assert info.value.code == "InvalidBucketName"
