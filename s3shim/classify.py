"""Classify a request: method + host + path + query -> bucket, key and S3 operation. Pure.

Everything downstream (rewrite policy, body handling, logs, metrics) keys off the
operation named here, never off ad-hoc string tests scattered through the proxy.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

from . import errors, sigv4


class Op(enum.Enum):
    LIST_BUCKETS = "ListBuckets"
    CREATE_BUCKET = "CreateBucket"
    DELETE_BUCKET = "DeleteBucket"
    HEAD_BUCKET = "HeadBucket"
    LIST_OBJECTS = "ListObjects"
    LIST_OBJECTS_V2 = "ListObjectsV2"
    LIST_OBJECT_VERSIONS = "ListObjectVersions"
    LIST_MULTIPART_UPLOADS = "ListMultipartUploads"
    DELETE_OBJECTS = "DeleteObjects"
    BUCKET_SUBRESOURCE = "BucketSubresource"  # ?acl, ?policy, ?versioning, ...
    GET_OBJECT = "GetObject"
    HEAD_OBJECT = "HeadObject"
    PUT_OBJECT = "PutObject"
    COPY_OBJECT = "CopyObject"
    DELETE_OBJECT = "DeleteObject"
    CREATE_MULTIPART_UPLOAD = "CreateMultipartUpload"
    UPLOAD_PART = "UploadPart"
    UPLOAD_PART_COPY = "UploadPartCopy"
    COMPLETE_MULTIPART_UPLOAD = "CompleteMultipartUpload"
    ABORT_MULTIPART_UPLOAD = "AbortMultipartUpload"
    LIST_PARTS = "ListParts"
    OBJECT_SUBRESOURCE = "ObjectSubresource"  # ?acl, ?tagging, ?retention, ...
    CORS_PREFLIGHT = "CorsPreflight"  # OPTIONS: a browser asking before a cross-origin call
    POST_OBJECT = "PostObject"  # a browser form upload: POST /bucket, multipart/form-data

    @property
    def traits(self) -> OpTraits:
        return _TRAITS.get(self, _DEFAULT_TRAITS)


@dataclass(frozen=True, slots=True)
class OpTraits:
    """What an operation's body and response mean to s3shim (the per-operation table)."""

    # The body becomes object bytes: a checksum s3shim verified over it is returned on
    # success (clients such as Convex require it on UploadPart; RGW does not send it).
    upload: bool = False
    # A declared flexible checksum describes this request's own body, so s3shim verifies it
    # there. Not so for Complete (the whole object's) and the copies (the source's).
    body_checksum: bool = True
    # The body is CompleteMultipartUpload XML, whose per-part checksums the flag removes.
    complete_xml: bool = False
    # Authenticated by form fields in the body (a POST policy), not by the request head.
    form_upload: bool = False


_DEFAULT_TRAITS = OpTraits()
_TRAITS = {
    Op.PUT_OBJECT: OpTraits(upload=True),
    Op.UPLOAD_PART: OpTraits(upload=True),
    Op.COMPLETE_MULTIPART_UPLOAD: OpTraits(body_checksum=False, complete_xml=True),
    Op.COPY_OBJECT: OpTraits(body_checksum=False),
    Op.UPLOAD_PART_COPY: OpTraits(body_checksum=False),
    Op.CORS_PREFLIGHT: OpTraits(body_checksum=False),
    Op.POST_OBJECT: OpTraits(body_checksum=False, form_upload=True),
}


# Sub-resources S3 defines; a query key outside this set and the auth/list parameters is
# just a parameter, but a request made only of unknown sub-resources is still forwarded
# as the plain operation (stores answer for what they do not know).
_BUCKET_SUBRESOURCES = frozenset(
    "accelerate acl analytics cors encryption intelligent-tiering inventory lifecycle location "
    "logging metrics notification object-lock ownershipControls policy policyStatus "
    "publicAccessBlock replication requestPayment tagging versioning website".split()
)
# By method, as stores route them: RGW runs PUT ?torrent or PUT ?select as a plain PutObject,
# so only what a store really treats as a sub-resource for that method is named one.
_OBJECT_SUBRESOURCES = {
    "GET": frozenset("acl attributes legal-hold retention tagging torrent".split()),
    "HEAD": frozenset(),
    # RGW's AppendObject (?append&position=N) adds the body to an object: not a PutObject,
    # whose body is the whole object (integrity.py records its checksum).
    "PUT": frozenset("acl append legal-hold retention tagging".split()),
    "POST": frozenset("restore select".split()),
    "DELETE": frozenset({"tagging"}),
}


# Query parameters whose presence or value names the operation (see _object_op).
_OPERATION_PARAMS = ("uploadId", "partNumber")

# Lowercase DNS-style names: a Host-derived bucket must never smuggle '/' or odd bytes.
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_ALLOWED_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Target:
    op: Op
    bucket: str | None
    key: str | None  # decoded object key
    upstream_path: str  # path-style raw path to send to the store


def bucket_from_host(host: str, domains: Sequence[str]) -> str | None:
    """The bucket of a virtual-hosted-style request, or None for path style."""
    name = host.rsplit(":", 1)[0].lower() if not host.startswith("[") else ""
    for domain in domains:
        if name.endswith("." + domain):
            bucket = name[: -len(domain) - 1]
            if not _BUCKET_NAME.match(bucket):
                raise errors.invalid_bucket_name()
            return bucket
    return None


def classify(
    method: str,
    host: str,
    raw_path: str,
    query: Sequence[tuple[str, str]],
    headers_present: frozenset[str],
    domains: Sequence[str] = (),
) -> Target:
    """Name the operation. ``headers_present`` are lowercase header names."""
    if method not in _ALLOWED_METHODS:
        raise errors.method_not_allowed()
    if not raw_path.startswith("/"):
        raise errors.invalid_request("The request path must start with '/'.")
    vhost_bucket = bucket_from_host(host, domains)
    path = sigv4.percent_decode(raw_path)
    if vhost_bucket is not None:
        bucket: str | None = vhost_bucket
        key: str | None = path[1:] or None
        upstream_path = "/" + vhost_bucket + (raw_path if raw_path != "/" else "")
    else:
        bucket_part, sep, key_part = path[1:].partition("/")
        bucket = bucket_part or None
        key = key_part if sep and key_part else None
        upstream_path = raw_path
    params = {k for k, _ in query}
    for name in _OPERATION_PARAMS:
        if sum(k == name for k, _ in query) > 1:
            # One of these names the operation and the store reads one value (RGW the last)
            # while a signature covers both: which one counts would be a guess.
            raise errors.invalid_argument(f"The {name} parameter must be given only once.")
    if method == "OPTIONS":
        # Preflights are answered by the store from the bucket's CORS rules, whatever path.
        return Target(Op.CORS_PREFLIGHT, bucket, key, upstream_path)
    if bucket is None and path != "/":
        # "//bucket/key" would otherwise be forwarded as a different operation.
        raise errors.invalid_bucket_name()
    if bucket is None:
        if method == "GET":
            return Target(Op.LIST_BUCKETS, None, None, "/")
        raise errors.method_not_allowed()
    if "uploadId" in params and method in ("PUT", "DELETE") and not dict(query)["uploadId"]:
        # RGW reads an empty uploadId on a PUT or DELETE as none (a PutObject, a
        # DeleteObject); on GET and POST the name alone selects ListParts and Complete.
        params.discard("uploadId")
    op = _object_op(method, params, headers_present) if key else _bucket_op(method, params)
    return Target(op, bucket, key, upstream_path)


def _bucket_op(method: str, params: set[str]) -> Op:
    if params & _BUCKET_SUBRESOURCES:
        return Op.BUCKET_SUBRESOURCE
    if method == "GET":
        if "uploads" in params:
            return Op.LIST_MULTIPART_UPLOADS
        if "versions" in params:
            return Op.LIST_OBJECT_VERSIONS
        return Op.LIST_OBJECTS_V2 if "list-type" in params else Op.LIST_OBJECTS
    if method == "POST" and "delete" in params:
        return Op.DELETE_OBJECTS
    simple = {"HEAD": Op.HEAD_BUCKET, "PUT": Op.CREATE_BUCKET, "DELETE": Op.DELETE_BUCKET}
    if method in simple:
        return simple[method]
    if method == "POST":
        # A bare POST to a bucket is a browser form upload, signed by its policy fields.
        return Op.POST_OBJECT
    raise errors.method_not_allowed()


def _object_op(method: str, params: set[str], headers: frozenset[str]) -> Op:
    if params & _OBJECT_SUBRESOURCES[method]:
        return Op.OBJECT_SUBRESOURCE
    if method == "PUT":
        if "partNumber" in params and "uploadId" in params:
            return Op.UPLOAD_PART_COPY if "x-amz-copy-source" in headers else Op.UPLOAD_PART
        return Op.COPY_OBJECT if "x-amz-copy-source" in headers else Op.PUT_OBJECT
    if method == "POST":
        # uploadId first, as RGW tests them: ?uploads&uploadId=u completes an upload.
        if "uploadId" in params:
            return Op.COMPLETE_MULTIPART_UPLOAD
        if "uploads" in params:
            return Op.CREATE_MULTIPART_UPLOAD
        raise errors.not_implemented("This POST operation is not supported by s3shim.")
    if method == "DELETE":
        return Op.ABORT_MULTIPART_UPLOAD if "uploadId" in params else Op.DELETE_OBJECT
    if method == "GET" and "uploadId" in params:
        return Op.LIST_PARTS
    return Op.GET_OBJECT if method == "GET" else Op.HEAD_OBJECT
