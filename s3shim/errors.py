"""S3-style errors: one exception type carrying the code and status S3 clients understand.

Pure modules raise :class:`S3Error`; the HTTP layer renders it with :func:`error_xml`.
"""

from __future__ import annotations

from xml.sax.saxutils import escape


class S3Error(Exception):
    """An error to answer with S3's XML error body."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


# The codes and statuses S3 uses, named once so callers cannot misspell a code.
def access_denied(message: str = "Access Denied") -> S3Error:
    return S3Error("AccessDenied", message, 403)


def invalid_access_key_id() -> S3Error:
    return S3Error(
        "InvalidAccessKeyId",
        "The AWS Access Key Id you provided does not exist in our records.",
        403,
    )


def signature_does_not_match(message: str | None = None) -> S3Error:
    return S3Error(
        "SignatureDoesNotMatch",
        message or "The request signature we calculated does not match the signature you provided.",
        403,
    )


def authorization_header_malformed(message: str) -> S3Error:
    return S3Error("AuthorizationHeaderMalformed", message, 400)


def authorization_query_malformed(message: str) -> S3Error:
    return S3Error("AuthorizationQueryParametersError", message, 400)


def request_time_too_skewed() -> S3Error:
    return S3Error(
        "RequestTimeTooSkewed",
        "The difference between the request time and the current time is too large.",
        403,
    )


def request_expired() -> S3Error:
    return access_denied("Request has expired")


def bad_digest(
    message: str = "The checksum you specified did not match what we received.",
) -> S3Error:
    return S3Error("BadDigest", message, 400)


def content_sha256_mismatch() -> S3Error:
    return S3Error(
        "XAmzContentSHA256Mismatch",
        "The provided 'x-amz-content-sha256' header does not match what was computed.",
        400,
    )


def incomplete_body(
    message: str = "You did not provide the number of bytes specified by the "
    "Content-Length HTTP header.",
) -> S3Error:
    return S3Error("IncompleteBody", message, 400)


def invalid_request(message: str) -> S3Error:
    return S3Error("InvalidRequest", message, 400)


def invalid_argument(message: str) -> S3Error:
    return S3Error("InvalidArgument", message, 400)


def malformed_xml() -> S3Error:
    return S3Error(
        "MalformedXML",
        "The XML you provided was not well-formed or did not validate against our "
        "published schema.",
        400,
    )


def not_implemented(message: str) -> S3Error:
    return S3Error("NotImplemented", message, 501)


def missing_content_length() -> S3Error:
    return S3Error("MissingContentLength", "You must provide the Content-Length HTTP header.", 411)


def entity_too_large(
    message: str = "Your proposed upload exceeds the maximum allowed size.",
) -> S3Error:
    return S3Error("EntityTooLarge", message, 400)


def header_too_large() -> S3Error:
    return S3Error(
        "RequestHeaderSectionTooLarge",
        "Your request header section exceeds the maximum allowed size.",
        400,
    )


def request_timeout() -> S3Error:
    return S3Error(
        "RequestTimeout",
        "Your socket connection to the server was not read from or written to within the "
        "timeout period.",
        400,
    )


def service_unavailable(message: str = "The upstream store could not be reached.") -> S3Error:
    # Not an AWS code, but the closest S3-style answer for "the store is down".
    return S3Error("ServiceUnavailable", message, 503)


def internal_error() -> S3Error:
    return S3Error("InternalError", "We encountered an internal error. Please try again.", 500)


def store_checksum_mismatch() -> S3Error:
    # Not an AWS code: the store returned bytes that differ from what s3shim recorded.
    return S3Error(
        "StoreChecksumMismatch",
        "The object read from the store does not match the checksum recorded when it was written.",
        502,
    )


def invalid_bucket_name() -> S3Error:
    return S3Error("InvalidBucketName", "The specified bucket is not valid.", 400)


def method_not_allowed() -> S3Error:
    return S3Error(
        "MethodNotAllowed", "The specified method is not allowed against this resource.", 405
    )


def invalid_part_order() -> S3Error:
    return S3Error(
        "InvalidPartOrder",
        "The list of parts was not in ascending order. Parts must be ordered by part number.",
        400,
    )


def invalid_chunk_size(size: int, limit: int) -> S3Error:
    return S3Error(
        "InvalidChunkSizeError", f"Chunk size {size} exceeds the maximum of {limit} bytes.", 403
    )


def bad_request(message: str = "The request could not be parsed.") -> S3Error:
    return S3Error("BadRequest", message, 400)


def slow_down(message: str = "Please reduce your request rate.") -> S3Error:
    return S3Error("SlowDown", message, 503)


def error_xml(err: S3Error, resource: str, request_id: str) -> bytes:
    """Render the body S3 sends with an error (clients parse ``Code``)."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(err.code)}</Code><Message>{escape(err.message)}</Message>"
        f"<Resource>{escape(resource)}</Resource><RequestId>{escape(request_id)}</RequestId></Error>"
    ).encode()


def malformed_trailer(detail: str | None = None) -> S3Error:
    # S3's one sentence for a missing, unexpected or malformed aws-chunked trailer.
    message = (
        "The request contained trailing data that was not well-formed or did not conform to "
        "our published schema."
    )
    return S3Error("MalformedTrailerError", f"{message} ({detail})" if detail else message, 400)


# Browser-based uploads (POST object, multipart/form-data), S3's codes and sentences.
def malformed_post_request(
    message: str = "The body of your POST request is not well-formed multipart/form-data.",
) -> S3Error:
    return S3Error("MalformedPOSTRequest", message, 400)


def max_post_pre_data_length_exceeded() -> S3Error:
    return S3Error(
        "MaxPostPreDataLengthExceededError",
        "Your POST request fields preceding the upload file were too large.",
        400,
    )


def invalid_policy_document(message: str) -> S3Error:
    return S3Error("InvalidPolicyDocument", message, 400)


def precondition_failed(message: str) -> S3Error:
    return S3Error("PreconditionFailed", message, 412)
