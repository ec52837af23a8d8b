"""Which SSE-C keys each operation carries to the store, and the answer the client sees."""

from __future__ import annotations

import pytest

from s3shim.classify import Op
from s3shim.sse import Encryption, answer_headers, copy_source, decide
from s3shim.ssekeys import Keyring, MasterKey

RING = Keyring((MasterKey("new", bytes(range(32))), MasterKey("old", bytes(range(50, 82)))))
CUSTOMER = "x-amz-server-side-encryption-customer-"
SOURCE = "x-amz-copy-source-server-side-encryption-customer-"


def _names(enc: Encryption, attempt: int = 0) -> dict[str, str]:
    return dict(enc.headers(attempt))


def test_without_keys_nothing_is_added() -> None:
    assert (
        decide(
            Op.PUT_OBJECT,
            "b",
            "k",
            {"x-amz-server-side-encryption": "AES256"},
            None,
            encrypt_by_default=True,
        )
        is None
    )


@pytest.mark.parametrize("op", [Op.PUT_OBJECT, Op.CREATE_MULTIPART_UPLOAD, Op.POST_OBJECT])
def test_sse_s3_asked_is_kept_as_sse_c_with_the_objects_current_key(op: Op) -> None:
    enc = decide(
        op, "b", "k", {"x-amz-server-side-encryption": "AES256"}, RING, encrypt_by_default=False
    )
    assert enc is not None and enc.drop_sse_s3
    assert enc.write == RING.for_write("b", "k")
    assert _names(enc) == dict(RING.for_write("b", "k").headers())


def test_a_write_without_sse_is_encrypted_only_when_it_is_the_default() -> None:
    assert decide(Op.PUT_OBJECT, "b", "k", {}, RING, encrypt_by_default=False) is None
    enc = decide(Op.PUT_OBJECT, "b", "k", {}, RING, encrypt_by_default=True)
    assert enc is not None and enc.write == RING.for_write("b", "k") and not enc.drop_sse_s3


def test_sse_kms_is_left_to_the_flag() -> None:
    h = {"x-amz-server-side-encryption": "aws:kms"}
    assert decide(Op.PUT_OBJECT, "b", "k", h, RING, encrypt_by_default=True) is None


@pytest.mark.parametrize("op", [Op.PUT_OBJECT, Op.GET_OBJECT, Op.HEAD_OBJECT, Op.UPLOAD_PART])
def test_a_clients_own_sse_c_passes_untouched(op: Op) -> None:
    h = {CUSTOMER + "algorithm": "AES256", CUSTOMER + "key": "x", CUSTOMER + "key-md5": "y"}
    assert decide(op, "b", "k", h, RING, encrypt_by_default=True) is None


@pytest.mark.parametrize("op", [Op.GET_OBJECT, Op.HEAD_OBJECT, Op.UPLOAD_PART])
def test_reads_and_parts_try_current_then_older_keys_then_none(op: Op) -> None:
    enc = decide(op, "b", "k", {}, RING, encrypt_by_default=False)
    assert enc is not None and enc.write is None and enc.attempts == 3
    assert _names(enc, 0) == dict(RING.derive(RING.keys[0], "b", "k").headers())
    assert _names(enc, 1) == dict(RING.derive(RING.keys[1], "b", "k").headers())
    assert _names(enc, 2) == {}


def test_copies_carry_the_sources_keys_and_the_destinations_own() -> None:
    enc = decide(
        Op.COPY_OBJECT,
        "b",
        "dst",
        {"x-amz-server-side-encryption": "AES256"},
        RING,
        encrypt_by_default=False,
        copy_source=("src-b", "src"),
    )
    assert enc is not None
    h = _names(enc)
    assert (
        h[CUSTOMER + "key-md5"] == dict(RING.for_write("b", "dst").headers())[CUSTOMER + "key-md5"]
    )
    src = dict(RING.for_write("src-b", "src").headers(SOURCE))
    assert {k: h[k] for k in src} == src
    assert SOURCE + "key" not in _names(enc, 2)  # last try: the source as a plain object
    part_copy = decide(
        Op.UPLOAD_PART_COPY,
        "b",
        "dst",
        {},
        RING,
        encrypt_by_default=True,
        copy_source=("src-b", "src"),
    )
    assert part_copy is not None and part_copy.write is None and part_copy.sources


@pytest.mark.parametrize(
    "op",
    [
        Op.DELETE_OBJECT,
        Op.LIST_OBJECTS_V2,
        Op.COMPLETE_MULTIPART_UPLOAD,
        Op.OBJECT_SUBRESOURCE,
        Op.ABORT_MULTIPART_UPLOAD,
        Op.LIST_PARTS,
        Op.CREATE_BUCKET,
    ],
)
def test_operations_that_need_no_key_get_none(op: Op) -> None:
    assert decide(op, "b", "k", {}, RING, encrypt_by_default=True) is None


@pytest.mark.parametrize(
    ("attempt", "status", "again"),
    [
        (0, 400, True),  # InvalidArgument, or HEAD's bodiless 400
        (1, 400, True),
        (2, 400, False),  # none left: current, old, then no key
        (0, 403, False),
        (0, 404, False),
        (0, 200, False),
    ],
)
def test_only_a_400_with_a_key_left_moves_to_the_next_key(
    attempt: int, status: int, again: bool
) -> None:
    enc = decide(Op.GET_OBJECT, "b", "k", {}, RING, encrypt_by_default=False)
    assert enc is not None and enc.attempts == 3
    assert enc.retry_after(attempt, status) is again


@pytest.mark.parametrize(
    ("value", "source"),
    [
        ("/b/k", ("b", "k")),
        ("b/dir/k%3Fx?versionId=1", ("b", "dir/k?x")),
        ("/b/caf%C3%A9", ("b", "café")),
        ("/b", None),
        ("", None),
        (None, None),
    ],
)
def test_copy_source_names_bucket_and_key(value: str | None, source: object) -> None:
    assert copy_source(value) == source


def test_the_client_sees_sse_s3_and_never_a_key_or_its_md5() -> None:
    store = [
        ("ETag", '"e"'),
        ("x-amz-server-side-encryption-customer-algorithm", "AES256"),
        ("x-amz-server-side-encryption-customer-key-MD5", "bWQ1"),
        ("Content-Length", "3"),
    ]
    assert answer_headers(store) == [
        ("ETag", '"e"'),
        ("Content-Length", "3"),
        ("x-amz-server-side-encryption", "AES256"),
    ]
    assert answer_headers([("ETag", '"e"')]) == [("ETag", '"e"')]  # a plain object


def test_a_write_under_s3shim_key_answers_sse_s3_even_when_the_store_names_none() -> None:
    assert answer_headers([("ETag", '"e"')], written=True) == [
        ("ETag", '"e"'),
        ("x-amz-server-side-encryption", "AES256"),
    ]
    assert answer_headers([("ETag", '"e"')]) == [("ETag", '"e"')]
