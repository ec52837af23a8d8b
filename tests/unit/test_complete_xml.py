"""CompleteMultipartUpload rewriting: client shapes, hostile XML, round-trips."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any
from xml.sax.saxutils import escape

import botocore.awsrequest
import botocore.session
import pytest
from botocore.serialize import create_serializer
from hypothesis import given, settings
from hypothesis import strategies as st

from s3shim import errors
from s3shim.checksums import Algorithm
from s3shim.complete_xml import (
    DEFAULT_MAX_SIZE,
    PART_CHECKSUM_ELEMENTS,
    S3_NAMESPACE,
    part_checksums,
    strip_part_checksums,
)
from testkit.shim import s3_client

DECL = '<?xml version="1.0" encoding="UTF-8"?>'
NS = f' xmlns="{S3_NAMESPACE}"'
EMPTY_MD5 = '"d41d8cd98f00b204e9800998ecf8427e"'
EMPTY_MD5_ESCAPED = EMPTY_MD5.replace('"', "&quot;")


def _malformed(body: bytes, **kw: Any) -> None:
    with pytest.raises(errors.S3Error) as e:
        strip_part_checksums(body, **kw)
    assert (e.value.code, e.value.status) == ("MalformedXML", 400)


# --- the shapes real clients send -----------------------------------------------------


# The Rust SDK (Convex): namespaced, compact, parts sorted, quotes escaped as &quot;,
# ChecksumCRC32 between ETag and PartNumber; an empty object is uploaded as one empty part.
CONVEX_BODIES = [
    pytest.param(
        "<Part><ETag>&quot;aaa&quot;</ETag><ChecksumCRC32>y/Q5Jg==</ChecksumCRC32>"
        "<PartNumber>1</PartNumber></Part>"
        "<Part><ETag>&quot;bbb&quot;</ETag><ChecksumCRC32>AAAAAA==</ChecksumCRC32>"
        "<PartNumber>2</PartNumber></Part>",
        '<Part><ETag>"aaa"</ETag><PartNumber>1</PartNumber></Part>'
        '<Part><ETag>"bbb"</ETag><PartNumber>2</PartNumber></Part>',
        {1: {Algorithm.CRC32: "y/Q5Jg=="}, 2: {Algorithm.CRC32: "AAAAAA=="}},
        id="two-parts",
    ),
    pytest.param(
        f"<Part><ETag>{EMPTY_MD5_ESCAPED}</ETag>"
        "<ChecksumCRC32>AAAAAA==</ChecksumCRC32><PartNumber>1</PartNumber></Part>",
        f"<Part><ETag>{EMPTY_MD5}</ETag><PartNumber>1</PartNumber></Part>",
        {1: {Algorithm.CRC32: "AAAAAA=="}},
        id="empty-upload",
    ),
]


@pytest.mark.parametrize(("parts", "stripped", "checksums"), CONVEX_BODIES)
def test_convex_shape(parts: str, stripped: str, checksums: dict[int, Any]) -> None:
    body = f"<CompleteMultipartUpload{NS}>{parts}</CompleteMultipartUpload>".encode()
    expected = f"{DECL}<CompleteMultipartUpload{NS}>{stripped}</CompleteMultipartUpload>"
    assert strip_part_checksums(body) == expected.encode()
    assert part_checksums(body) == checksums


def _botocore_body(parts: list[dict[str, Any]]) -> bytes:
    model = botocore.session.get_session().get_service_model("s3")
    op = model.operation_model("CompleteMultipartUpload")
    request = create_serializer(op.metadata["protocol"]).serialize_to_request(
        {"Bucket": "b", "Key": "k", "UploadId": "u", "MultipartUpload": {"Parts": parts}}, op
    )
    body = request["body"]
    assert isinstance(body, bytes)
    return body


def test_botocore_shape_equals_botocore_without_checksums() -> None:
    with_sums = [
        {"ETag": '"e1"', "PartNumber": 1, "ChecksumCRC32": "y/Q5Jg=="},
        {"ETag": '"e&<2>"', "PartNumber": 2, "ChecksumSHA256": "A" * 43 + "="},
        {"ETag": '"e3"', "PartNumber": 3, "ChecksumCRC64NVME": "rosUhgp5mIg="},
    ]
    without = [{k: v for k, v in p.items() if not k.startswith("Checksum")} for p in with_sums]
    body = _botocore_body(with_sums)
    assert body.startswith(b"<CompleteMultipartUpload " + NS[1:].encode())
    assert strip_part_checksums(body) == DECL.encode() + _botocore_body(without)


def test_boto3_client_body() -> None:
    # The body a real boto3 client puts on the wire, captured before sending.
    client = s3_client(
        "http://127.0.0.1:9", "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    )
    sent: list[bytes] = []

    def capture(request: botocore.awsrequest.AWSPreparedRequest, **_: Any) -> Any:
        body = request.body
        sent.append(body if isinstance(body, bytes) else body.read())
        result = (
            f"<CompleteMultipartUploadResult{NS}><Bucket>b</Bucket><Key>k</Key>"
            "<ETag>&quot;x-2&quot;</ETag></CompleteMultipartUploadResult>"
        )
        return botocore.awsrequest.AWSResponse(
            "http://127.0.0.1:9/b/k", 200, {}, _Raw(result.encode())
        )

    client.meta.events.register("before-send.s3.CompleteMultipartUpload", capture)
    client.complete_multipart_upload(
        Bucket="b",
        Key="k",
        UploadId="u",
        MultipartUpload={
            "Parts": [
                {"ETag": '"p1"', "PartNumber": 1, "ChecksumCRC32": "y/Q5Jg=="},
                {"ETag": '"p2"', "PartNumber": 2, "ChecksumCRC32": "AAAAAA=="},
            ]
        },
    )
    (body,) = sent
    assert b"<ChecksumCRC32>" in body
    assert (
        strip_part_checksums(body)
        == (
            f"{DECL}<CompleteMultipartUpload{NS}>"
            '<Part><ETag>"p1"</ETag><PartNumber>1</PartNumber></Part>'
            '<Part><ETag>"p2"</ETag><PartNumber>2</PartNumber></Part>'
            "</CompleteMultipartUpload>"
        ).encode()
    )


class _Raw:
    """Just enough of urllib3's response for botocore to read a body."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, *_: Any, **__: Any) -> Any:
        yield self._data


def test_no_namespace_pretty_printed() -> None:
    # Java SDK v1 / hand-written shape: declaration, no namespace, indentation, SHA256.
    body = b"""<?xml version="1.0" encoding="UTF-8"?>
<CompleteMultipartUpload>
  <Part>
    <PartNumber>1</PartNumber>
    <ETag>"a b"</ETag>
    <ChecksumSHA256>FeKw08M4keuw8e9gnsQZQgwg4yDOlMZfvIwzEkSOsiU=</ChecksumSHA256>
  </Part>
  <!-- a comment -->
  <?pi ignored?>
  <Part>
    <PartNumber>2</PartNumber>
    <ETag><![CDATA["<b>"]]></ETag>
    <ChecksumType>COMPOSITE</ChecksumType>
  </Part>
</CompleteMultipartUpload>
"""
    assert (
        strip_part_checksums(body)
        == (
            f"{DECL}<CompleteMultipartUpload>"
            '<Part><PartNumber>1</PartNumber><ETag>"a b"</ETag></Part>'
            '<Part><PartNumber>2</PartNumber><ETag>"&lt;b&gt;"</ETag></Part>'
            "</CompleteMultipartUpload>"
        ).encode()
    )


def test_prefixed_namespace_is_normalised() -> None:
    body = (
        f'<s3:CompleteMultipartUpload xmlns:s3="{S3_NAMESPACE}">'
        "<s3:Part><s3:ETag>x</s3:ETag><s3:ChecksumCRC32C>4waSgw==</s3:ChecksumCRC32C>"
        "<s3:PartNumber>1</s3:PartNumber></s3:Part></s3:CompleteMultipartUpload>"
    ).encode()
    assert (
        strip_part_checksums(body)
        == (
            f"{DECL}<CompleteMultipartUpload{NS}>"
            "<Part><ETag>x</ETag><PartNumber>1</PartNumber></Part></CompleteMultipartUpload>"
        ).encode()
    )


def test_every_checksum_element_goes_and_the_rest_stays() -> None:
    sums = "".join(f"<{name}>v</{name}>" for name in sorted(PART_CHECKSUM_ELEMENTS))
    body = (
        f'<CompleteMultipartUpload><Part a="1" xmlns:xsi="x" xsi:type="t">{sums}'
        "<ETag>e</ETag><Future>f</Future><PartNumber>7</PartNumber></Part>"
        "<Other>o</Other></CompleteMultipartUpload>"
    ).encode()
    assert (
        strip_part_checksums(body)
        == (
            f'{DECL}<CompleteMultipartUpload><Part a="1"><ETag>e</ETag><Future>f</Future>'
            "<PartNumber>7</PartNumber></Part><Other>o</Other></CompleteMultipartUpload>"
        ).encode()
    )
    assert {a.xml_element for a in Algorithm} < PART_CHECKSUM_ELEMENTS
    assert "ChecksumType" in PART_CHECKSUM_ELEMENTS


def test_checksum_elements_outside_parts_are_left() -> None:
    body = b"<CompleteMultipartUpload><ChecksumCRC32>x</ChecksumCRC32></CompleteMultipartUpload>"
    assert strip_part_checksums(body) == DECL.encode() + body


def test_other_encodings_come_out_utf8() -> None:
    text = (
        '<?xml version="1.0" encoding="UTF-16"?><CompleteMultipartUpload><Part><ETag>é€</ETag>'
        "<ChecksumSHA1>x</ChecksumSHA1></Part></CompleteMultipartUpload>"
    )
    out = strip_part_checksums(text.encode("utf-16"))
    assert (
        out
        == (
            f"{DECL}<CompleteMultipartUpload><Part><ETag>é€</ETag></Part></CompleteMultipartUpload>"
        ).encode()
    )


def test_special_characters_survive() -> None:
    body = (
        b"<CompleteMultipartUpload><Part>"
        b"<ETag>&amp;&lt;&gt;&#13;&#x1F600;\"'</ETag><PartNumber> 1 </PartNumber>"
        b"</Part></CompleteMultipartUpload>"
    )
    out = strip_part_checksums(body)
    etag = ET.fromstring(out).find("Part/ETag")
    assert etag is not None and etag.text == "&<>\r\U0001f600\"'"
    assert b"<PartNumber> 1 </PartNumber>" in out


# --- hostile and broken bodies --------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<CompleteMultipartUpload><Part><ETag>&lol4;</ETag></Part></CompleteMultipartUpload>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<CompleteMultipartUpload><Part><ETag>&xxe;</ETag></Part></CompleteMultipartUpload>"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY % p SYSTEM "http://127.0.0.1:9/evil.dtd"> %p;]>
<CompleteMultipartUpload/>"""


@pytest.mark.parametrize(
    "body",
    [
        BILLION_LAUGHS,
        EXTERNAL_ENTITY,
        PARAMETER_ENTITY,
        b'<!DOCTYPE CompleteMultipartUpload SYSTEM "x.dtd"><CompleteMultipartUpload/>',
        b"<!DOCTYPE CompleteMultipartUpload><CompleteMultipartUpload/>",
        b"<CompleteMultipartUpload><Part><ETag>&undefined;</ETag></Part></CompleteMultipartUpload>",
    ],
    ids=["billion-laughs", "external", "parameter", "system-dtd", "bare-doctype", "undefined"],
)
def test_doctype_and_entities_refused(body: bytes) -> None:
    _malformed(body)
    with pytest.raises(errors.S3Error):
        part_checksums(body)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b" \r\n\t ",
        b"<CompleteMultipartUpload>",
        b"<CompleteMultipartUpload><Part></CompleteMultipartUpload>",
        b"<CompleteMultipartUpload/><CompleteMultipartUpload/>",
        b"<CompleteMultipartUpload/>junk",
        b"CompleteMultipartUpload",
        b"<ListBucketResult/>",
        b'<CompleteMultipartUpload xmlns="http://example.com/"/>',
        f'<CompleteMultipartUpload{NS}><Part xmlns=""/></CompleteMultipartUpload>'.encode(),
        b'<CompleteMultipartUpload><x:Part xmlns:x="urn:x"/></CompleteMultipartUpload>',
        b"<CompleteMultipartUpload><p:Part/></CompleteMultipartUpload>",
        b"<CompleteMultipartUpload><Part><ETag>\xff</ETag></Part></CompleteMultipartUpload>",
        b'<?xml version="1.0" encoding="no-such-codec"?><CompleteMultipartUpload/>',
        b"<CompleteMultipartUpload>" + b"<a>" * 10 + b"</a>" * 10 + b"</CompleteMultipartUpload>",
    ],
)
def test_malformed(body: bytes) -> None:
    _malformed(body)


def test_size_bound() -> None:
    body = b"<CompleteMultipartUpload>" + b" " * 100 + b"</CompleteMultipartUpload>"
    assert strip_part_checksums(body, max_size=len(body))
    _malformed(body, max_size=len(body) - 1)
    _malformed(
        b"<CompleteMultipartUpload>" + b" " * DEFAULT_MAX_SIZE + b"</CompleteMultipartUpload>"
    )


def test_element_count_bound() -> None:
    # Small in bytes, huge in nodes: refused before it costs memory.
    _malformed(b"<CompleteMultipartUpload>" + b"<a/>" * 200_000 + b"</CompleteMultipartUpload>")


def test_text_in_many_pieces_is_linear() -> None:
    # expat reports each reference separately; joining them must not be quadratic.
    n = (DEFAULT_MAX_SIZE - 100) // 5
    body = b"<CompleteMultipartUpload><Part><ETag>" + b"&amp;" * n + b"</ETag></Part>"
    # No timing assertion (the suite has none): a quadratic join would make this test take
    # minutes, which CI's time limit would show; here only the result is checked.
    out = strip_part_checksums(body + b"</CompleteMultipartUpload>")
    assert out.count(b"&amp;") == n


def test_largest_real_request_fits() -> None:
    # 10,000 parts (S3's maximum), each with S3's longest checksum (SHA-512: 88 base64
    # characters; S3 allows one per part), an &quot;-escaped ETag, prefixed element names
    # and indentation: still well under the default bound.
    part = (
        "\n    <s3:Part>\n        <s3:ETag>&quot;"
        + "f" * 32
        + "&quot;</s3:ETag>\n        <s3:ChecksumSHA512>"
        + "A" * 86
        + "==</s3:ChecksumSHA512>\n        <s3:PartNumber>{n}</s3:PartNumber>\n    </s3:Part>"
    )
    body = (
        f'{DECL}\n<s3:CompleteMultipartUpload xmlns:s3="{S3_NAMESPACE}">'
        + "".join(part.replace("{n}", str(n)) for n in range(1, 10_001))
        + "\n</s3:CompleteMultipartUpload>\n"
    ).encode()
    assert len(body) < 0.75 * DEFAULT_MAX_SIZE
    out = strip_part_checksums(body)
    assert out.count(b"<Part>") == 10_000
    assert b"Checksum" not in out


# --- part_checksums -------------------------------------------------------------------


def _part_error(parts: str) -> errors.S3Error:
    with pytest.raises(errors.S3Error) as e:
        part_checksums(f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode())
    return e.value


def test_part_checksums_errors() -> None:
    e = _part_error(
        "<Part><PartNumber>1</PartNumber><ChecksumCRC32>y/Q5Jh==</ChecksumCRC32></Part>"
    )
    assert (e.code, e.message) == (
        "InvalidArgument",
        "Invalid Base64 or multiple checksums present in request",
    )
    e = _part_error(
        "<Part><PartNumber>1</PartNumber><ChecksumCRC32>y/Q5Jg==</ChecksumCRC32>"
        "<ChecksumCRC32C>4waSgw==</ChecksumCRC32C></Part>"
    )
    assert e.code == "InvalidArgument"
    e = _part_error(
        "<Part><PartNumber>2</PartNumber></Part><Part><PartNumber>1</PartNumber></Part>"
    )
    assert e.code == "InvalidPartOrder"
    e = _part_error(
        "<Part><PartNumber>1</PartNumber></Part><Part><PartNumber>1</PartNumber></Part>"
    )
    assert e.code == "InvalidPartOrder"
    assert _part_error("<Part><ETag>x</ETag></Part>").code == "MalformedXML"
    assert _part_error("<Part><PartNumber>one</PartNumber></Part>").code == "MalformedXML"
    arabic_indic_one = "\u0661"  # str.isdigit() says yes; S3 wants ASCII digits
    e = _part_error(f"<Part><PartNumber>{arabic_indic_one}</PartNumber></Part>")
    assert e.code == "MalformedXML"


def test_part_checksums_without_checksums() -> None:
    body = (
        b"<CompleteMultipartUpload><Part><PartNumber>3</PartNumber></Part>"
        b"</CompleteMultipartUpload>"
    )
    assert part_checksums(body) == {3: {}}


# --- round-trip property --------------------------------------------------------------

_XML_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Cn")), min_size=0, max_size=12
)
_NON_CHECKSUM = st.sampled_from(["ETag", "PartNumber", "Size", "LastModified"])
_CHECKSUM = st.sampled_from(sorted(PART_CHECKSUM_ELEMENTS))
_PART = st.lists(st.tuples(st.one_of(_NON_CHECKSUM, _CHECKSUM), _XML_TEXT), max_size=6)


@settings(max_examples=200)
@given(
    parts=st.lists(_PART, max_size=8),
    namespaced=st.booleans(),
    indent=st.sampled_from(["", "\n", "\n  ", "\t"]),
    quote_entities=st.booleans(),
)
def test_round_trip_keeps_all_but_checksums(
    parts: list[list[tuple[str, str]]], namespaced: bool, indent: str, quote_entities: bool
) -> None:
    entities = {'"': "&quot;", "'": "&apos;"} if quote_entities else {}
    xml = [f"<CompleteMultipartUpload{NS if namespaced else ''}>"]
    for children in parts:
        xml.append(f"{indent}<Part>")
        for name, text in children:
            xml.append(f"{indent}{indent}<{name}>{escape(text, entities)}</{name}>")
        xml.append(f"{indent}</Part>")
    xml.append(f"{indent}</CompleteMultipartUpload>")

    out = strip_part_checksums("".join(xml).encode())

    assert out.startswith(DECL.encode())
    assert b"\n" not in out.replace(b"&#10;", b"")  # compact
    root = ET.fromstring(out)
    prefix = "{" + S3_NAMESPACE + "}" if namespaced else ""
    assert root.tag == prefix + "CompleteMultipartUpload"
    got = [[(child.tag.removeprefix(prefix), child.text or "") for child in part] for part in root]
    want = [
        [(name, text) for name, text in children if name not in PART_CHECKSUM_ELEMENTS]
        for children in parts
    ]
    assert got == want
    assert all(part.tag == prefix + "Part" for part in root)
