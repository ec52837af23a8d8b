"""Recording after the store committed: the derivation and the self-copy, decided purely."""

from __future__ import annotations

import base64
import hashlib
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3shim import attach
from s3shim.attach import Outcome, Pending, Skip, StoredPart
from s3shim.checksums import Algorithm
from s3shim.integrity import RECORD_HEADER

NS = ' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


def crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def complete_xml(parts: list[tuple[int, str, str | None]], element: str = "ChecksumCRC32") -> bytes:
    body = "".join(
        f"<Part><PartNumber>{n}</PartNumber><ETag>&quot;{etag}&quot;</ETag>"
        + (f"<{element}>{value}</{element}>" if value is not None else "")
        + "</Part>"
        for n, etag, value in parts
    )
    return f"<CompleteMultipartUpload{NS}>{body}</CompleteMultipartUpload>".encode()


def list_parts_xml(parts: list[tuple[int, int, str]], truncated: bool = False) -> bytes:
    body = "".join(
        f"<Part><LastModified>x</LastModified><PartNumber>{n}</PartNumber>"
        f"<ETag>&quot;{etag}&quot;</ETag><Size>{size}</Size></Part>"
        for n, size, etag in parts
    )
    marker = parts[-1][0] if parts else 0
    return (
        f"<ListPartsResult{NS}><Bucket>b</Bucket><Key>k</Key><UploadId>u</UploadId>"
        f"<NextPartNumberMarker>{marker}</NextPartNumberMarker><MaxParts>1000</MaxParts>"
        f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>{body}</ListPartsResult>"
    ).encode()


@given(st.lists(st.binary(min_size=0, max_size=2000), min_size=1, max_size=6))
def test_the_derived_record_is_the_crc_of_the_whole_object(parts: list[bytes]) -> None:
    xml = complete_xml([(i + 1, md5(p), crc32(p)) for i, p in enumerate(parts)])
    stored = {i + 1: StoredPart(len(p), md5(p)) for i, p in enumerate(parts)}
    pending = attach.derive(attach.part_claims(xml), stored)
    assert pending.record == "CRC32:" + crc32(b"".join(parts))
    digest = hashlib.md5(b"".join(bytes.fromhex(md5(p)) for p in parts)).hexdigest()
    assert pending.etag == f'"{digest}-{len(parts)}"'


def test_only_the_completed_parts_count_not_every_uploaded_one() -> None:
    a, b, c = b"a" * 10, b"b" * 20, b"c" * 30
    xml = complete_xml([(1, md5(a), crc32(a)), (3, md5(c), crc32(c))])
    stored = {n: StoredPart(len(d), md5(d)) for n, d in ((1, a), (2, b), (3, c))}
    assert attach.derive(attach.part_claims(xml), stored).record == "CRC32:" + crc32(a + c)


@pytest.mark.parametrize(
    ("xml", "outcome"),
    [
        (complete_xml([(1, "e", None)]), Outcome.NO_PART_CHECKSUMS),
        (complete_xml([(1, "e", crc32(b"x")), (2, "e", None)]), Outcome.NO_PART_CHECKSUMS),
        (
            complete_xml(
                [(1, "e", base64.b64encode(hashlib.sha256(b"").digest()).decode())],
                "ChecksumSHA256",
            ),
            Outcome.UNCOMBINABLE,
        ),
        (b"<not-xml", Outcome.NO_PART_CHECKSUMS),
    ],
)
def test_a_complete_without_combinable_part_checksums_is_not_recorded(
    xml: bytes, outcome: Outcome
) -> None:
    with pytest.raises(Skip) as caught:
        attach.part_claims(xml)
    assert caught.value.outcome is outcome


def test_two_algorithms_in_one_upload_are_not_combined() -> None:
    xml = (
        f"<CompleteMultipartUpload{NS}>"
        f"<Part><PartNumber>1</PartNumber><ETag>e</ETag><ChecksumCRC32>{crc32(b'x')}"
        "</ChecksumCRC32></Part><Part><PartNumber>2</PartNumber><ETag>e</ETag>"
        "<ChecksumCRC32C>AAAAAA==</ChecksumCRC32C></Part></CompleteMultipartUpload>"
    ).encode()
    with pytest.raises(Skip) as caught:
        attach.part_claims(xml)
    assert caught.value.outcome is Outcome.UNCOMBINABLE


def test_a_part_the_store_does_not_list_leaves_the_object_unrecorded() -> None:
    xml = complete_xml([(1, md5(b"a"), crc32(b"a")), (2, md5(b"b"), crc32(b"b"))])
    with pytest.raises(Skip) as caught:
        attach.derive(attach.part_claims(xml), {1: StoredPart(1, md5(b"a"))})
    assert caught.value.outcome is Outcome.PARTS_UNKNOWN


def test_a_whole_object_checksum_from_the_client_must_agree() -> None:
    a, b = b"first", b"second"
    xml = complete_xml([(1, md5(a), crc32(a)), (2, md5(b), crc32(b))])
    stored = {1: StoredPart(len(a), md5(a)), 2: StoredPart(len(b), md5(b))}
    claims = attach.part_claims(xml)
    agreed = attach.derive(claims, stored, {"x-amz-checksum-crc32": crc32(a + b)})
    assert agreed.record == "CRC32:" + crc32(a + b)
    for headers in ({"x-amz-checksum-crc32": crc32(b"other")}, {"x-amz-checksum-sha1": "x"}):
        with pytest.raises(Skip) as caught:
            attach.derive(claims, stored, headers)
        assert caught.value.outcome is Outcome.DISAGREES
    # Settings are not values.
    assert attach.derive(claims, stored, {"x-amz-checksum-type": "COMPOSITE"}) == agreed


def test_a_listed_crc_must_be_the_one_verified_for_the_stored_part() -> None:
    a, b = b"first", b"second"
    stored = {1: StoredPart(len(a), md5(a)), 2: StoredPart(len(b), md5(b))}
    seen = {1: attach.SeenPart(md5(a), Algorithm.CRC32, crc32(a))}
    honest = complete_xml([(1, md5(a), crc32(a)), (2, md5(b), crc32(b))])
    assert attach.derive(attach.part_claims(honest), stored, seen=seen).record == (
        "CRC32:" + crc32(a + b)
    )
    wrong = complete_xml([(1, md5(a), crc32(b"other")), (2, md5(b), crc32(b))])
    with pytest.raises(Skip) as caught:
        attach.derive(attach.part_claims(wrong), stored, seen=seen)
    assert caught.value.outcome is Outcome.DISAGREES
    # A part uploaded again since (another ETag): what this process saw says nothing of it.
    again = {1: attach.SeenPart(md5(b"older"), Algorithm.CRC32, crc32(b"older"))}
    assert attach.derive(attach.part_claims(honest), stored, seen=again).record == (
        "CRC32:" + crc32(a + b)
    )
    # Verified as another algorithm: the listed value cannot be checked, so no record.
    other = {1: attach.SeenPart(md5(a), Algorithm.CRC32C, "AAAAAA==")}
    with pytest.raises(Skip):
        attach.derive(attach.part_claims(honest), stored, seen=other)


def test_a_store_whose_part_etags_are_not_md5s_gets_no_record() -> None:
    xml = complete_xml([(1, "e", crc32(b"a"))])
    with pytest.raises(Skip) as caught:
        attach.derive(attach.part_claims(xml), {1: StoredPart(1, "not-an-md5")})
    assert caught.value.outcome is Outcome.STORE


def test_list_parts_pages() -> None:
    page = attach.parse_list_parts(list_parts_xml([(1, 5, md5(b"1")), (2, 7, md5(b"2"))], True))
    assert page.parts == {1: StoredPart(5, md5(b"1")), 2: StoredPart(7, md5(b"2"))}
    assert page.next_marker == 2
    last = attach.parse_list_parts(list_parts_xml([(3, 1, md5(b"3"))]))
    assert last.next_marker is None
    assert attach.list_parts_query("u", 0) == (("uploadId", "u"), ("max-parts", "1000"))
    assert attach.list_parts_query("u", 2)[-1] == ("part-number-marker", "2")


@pytest.mark.parametrize(
    "body",
    [
        b"<Error><Code>NoSuchUpload</Code></Error>",
        b'<!DOCTYPE x [<!ENTITY a "b">]><ListPartsResult>&a;</ListPartsResult>',
        b"<ListPartsResult><Part><PartNumber>1</PartNumber><Size>x</Size><ETag>e</ETag></Part>"
        b"</ListPartsResult>",
        b"<ListPartsResult><Part><PartNumber>1</PartNumber></Part></ListPartsResult>",
        b"<ListPartsResult><IsTruncated>true</IsTruncated></ListPartsResult>",
        b"<ListPartsResult",
    ],
)
def test_a_listing_that_is_not_one_is_refused(body: bytes) -> None:
    with pytest.raises(ValueError):
        attach.parse_list_parts(body)


PENDING = Pending("CRC32:AAAAAA==", '"abc-2"')


def test_only_an_unversioned_200_commits() -> None:
    assert attach.committed(PENDING, 200, {}) == PENDING
    assert attach.committed(PENDING, 200, {"x-amz-version-id": "null"}) == PENDING
    for status, headers, outcome in [
        (500, {}, Outcome.NOT_COMMITTED),
        (200, {"x-amz-version-id": "3sL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"}, Outcome.VERSIONED),
    ]:
        with pytest.raises(Skip) as caught:
            attach.committed(PENDING, status, headers)
        assert caught.value.outcome is outcome
    put = attach.streamed_put(Algorithm.CRC32, "AAAAAA==")
    assert attach.committed(put, 200, {"etag": '"d41d"'}).etag == '"d41d"'
    with pytest.raises(Skip):
        attach.committed(put, 200, {})


RGW_HEAD = [
    ("Content-Length", "10"),
    ("ETag", '"abc-2"'),
    ("x-rgw-object-type", "Normal"),
    ("Content-Type", "text/x-mine"),
    ("Cache-Control", "max-age=5"),
    ("x-amz-meta-a", "1"),
    ("x-amz-tagging-count", "0"),
    ("x-amz-request-id", "tx1"),
    ("Last-Modified", "Mon, 07 Dec 2026 11:52:59 GMT"),
]


def test_the_copy_carries_what_the_object_had() -> None:
    current = attach.check_current(PENDING, RGW_HEAD)
    assert current is not None
    assert current.headers == (
        ("content-type", "text/x-mine"),
        ("cache-control", "max-age=5"),
        ("x-amz-meta-a", "1"),
    )
    headers = attach.copy_headers("/b/k", PENDING, current, [("x-amz-grant-read", 'uri="u"')])
    assert dict(headers) == {
        "x-amz-copy-source": "/b/k",
        "x-amz-metadata-directive": "REPLACE",
        "x-amz-copy-source-if-match": '"abc-2"',
        "x-amz-copy-if-match": '"abc-2"',
        "content-type": "text/x-mine",
        "cache-control": "max-age=5",
        "x-amz-meta-a": "1",
        RECORD_HEADER: PENDING.record,
        "x-amz-grant-read": 'uri="u"',
    }


@pytest.mark.parametrize(
    ("change", "outcome"),
    [
        ({"etag": '"other-2"'}, Outcome.CHANGED),
        ({"x-rgw-object-type": "Appendable"}, Outcome.UNCOPYABLE),
        ({"x-rgw-object-type": None}, Outcome.STORE),
        ({"x-amz-server-side-encryption-customer-algorithm": "AES256"}, Outcome.UNCOPYABLE),
        ({RECORD_HEADER: "CRC32:BBBBBB=="}, Outcome.CHANGED),
        ({"x-amz-tagging-count": "1"}, Outcome.UNCOPYABLE),  # RGW 16 drops tags on a copy
    ],
)
def test_an_object_unfit_for_the_copy_is_left_alone(
    change: dict[str, str | None], outcome: Outcome
) -> None:
    head = [(n, v) for n, v in RGW_HEAD if n.lower() not in change]
    head += [(n, v) for n, v in change.items() if v is not None]
    with pytest.raises(Skip) as caught:
        attach.check_current(PENDING, head)
    assert caught.value.outcome is outcome


def test_an_object_carrying_the_record_already_needs_no_copy() -> None:
    assert attach.check_current(PENDING, [*RGW_HEAD, (RECORD_HEADER, PENDING.record)]) is None


RGW_ACL = (
    b'<?xml version="1.0" encoding="UTF-8"?><AccessControlPolicy xmlns="http://s3.amazonaws.com/'
    b'doc/2006-03-01/"><Owner><ID>s3shim</ID><DisplayName>s3shim tests</DisplayName></Owner>'
    b'<AccessControlList><Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
    b' xsi:type="Group"><URI>http://acs.amazonaws.com/groups/global/AllUsers</URI></Grantee>'
    b'<Permission>READ</Permission></Grant><Grant><Grantee xmlns:xsi="http://www.w3.org/2001/'
    b'XMLSchema-instance" xsi:type="CanonicalUser"><ID>s3shim</ID><DisplayName>s3shim tests'
    b"</DisplayName></Grantee><Permission>FULL_CONTROL</Permission></Grant>"
    b"</AccessControlList></AccessControlPolicy>"
)


def test_the_grants_become_the_headers_that_set_exactly_them() -> None:
    assert attach.grant_headers(RGW_ACL) == (
        ("x-amz-grant-full-control", 'id="s3shim"'),
        ("x-amz-grant-read", 'uri="http://acs.amazonaws.com/groups/global/AllUsers"'),
    )
    with pytest.raises(ValueError):
        attach.grant_headers(b"<Error><Code>AccessDenied</Code></Error>")


def test_the_copy_must_answer_a_result_with_the_same_etag() -> None:
    ok = b"<CopyObjectResult><LastModified>x</LastModified><ETag>abc-2</ETag></CopyObjectResult>"
    attach.copied(PENDING, 200, ok)
    for status, body, outcome in [
        (412, b"", Outcome.CHANGED),
        (200, b"<Error><Code>InternalError</Code></Error>", Outcome.FAILED),
        (
            200,
            b"<CopyObjectResult><ETag>&quot;new&quot;</ETag></CopyObjectResult>",
            Outcome.CHANGED,
        ),
        (403, b"", Outcome.FAILED),
    ]:
        with pytest.raises(Skip) as caught:
            attach.copied(PENDING, status, body)
        assert caught.value.outcome is outcome


def test_a_streamed_put_is_followed_up_only_without_a_record_of_its_own() -> None:
    alg = Algorithm.CRC64NVME
    got = attach.streamed_put_record(True, True, [("content-length", "5")], alg, "AAAAAAAAAAA=")
    assert got == Pending("CRC64NVME:AAAAAAAAAAA=", None)
    sent_with_record = [(RECORD_HEADER, "CRC32:AAAAAA==")]
    assert attach.streamed_put_record(True, True, sent_with_record, alg, "AAAAAAAAAAA=") is None
    assert attach.streamed_put_record(False, True, [], alg, "AAAAAAAAAAA=") is None  # off
    assert attach.streamed_put_record(True, False, [], alg, "AAAAAAAAAAA=") is None  # unsigned
    assert attach.streamed_put_record(True, True, [], None, None) is None


def test_an_upload_part_the_store_took() -> None:
    query = [("partNumber", "3"), ("uploadId", "u")]
    assert attach.verified_part(query, 200, '"e"') == ("u", 3, '"e"')
    assert attach.verified_part(query, 500, '"e"') is None
    assert attach.verified_part(query, 200, None) is None
    assert attach.verified_part([("partNumber", "x"), ("uploadId", "u")], 200, '"e"') is None
