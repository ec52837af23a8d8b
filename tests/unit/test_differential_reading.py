"""Pure decisions where s3shim and the store could read one request two ways.

Each test names what the store (Ceph RGW 16, checked directly in
tests/e2e/test_differential_parsers.py) reads, and pins s3shim to the same reading, or to a
refusal. The Complete XML tests read s3shim's rewritten body with a reader built the way RGW's
is (expat without namespace processing, first matching child wins), independently of
s3shim's own parser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.parsers import expat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3shim import errors, sigv4
from s3shim.classify import Op, classify
from s3shim.complete_xml import S3_NAMESPACE, strip_part_checksums


def op_of(method: str, query: str, *headers: str) -> Op:
    pairs = sigv4.parse_query(query)
    return classify(method, "127.0.0.1", "/b/k", pairs, frozenset(headers)).op


# --- the operation a query names ---------------------------------------------------------


# RGW's handlers: PUT and DELETE test the uploadId's value (an empty one is a plain PutObject
# or DeleteObject), GET and POST test that the name exists, and POST tests uploadId before
# uploads (rgw_rest_s3.cc RGWHandler_REST_Obj_S3::op_*; each observed directly on RGW).
@pytest.mark.parametrize(
    ("method", "query", "op"),
    [
        ("PUT", "partNumber=1&uploadId=", Op.PUT_OBJECT),
        ("PUT", "partNumber=1&uploadId", Op.PUT_OBJECT),
        ("PUT", "partNumber=1&uploadId=u", Op.UPLOAD_PART),
        ("DELETE", "uploadId=", Op.DELETE_OBJECT),
        ("DELETE", "uploadId=u", Op.ABORT_MULTIPART_UPLOAD),
        ("GET", "uploadId=", Op.LIST_PARTS),
        ("POST", "uploadId=", Op.COMPLETE_MULTIPART_UPLOAD),
        ("POST", "uploads&uploadId=u", Op.COMPLETE_MULTIPART_UPLOAD),
        ("POST", "uploadId=u&uploads=", Op.COMPLETE_MULTIPART_UPLOAD),
        ("POST", "uploads", Op.CREATE_MULTIPART_UPLOAD),
    ],
)
def test_the_operation_is_the_one_rgw_runs(method: str, query: str, op: Op) -> None:
    assert op_of(method, query) is op


def test_an_empty_upload_id_with_a_copy_source_is_a_copy() -> None:
    assert op_of("PUT", "partNumber=1&uploadId=", "x-amz-copy-source") is Op.COPY_OBJECT
    assert op_of("PUT", "partNumber=1&uploadId=u", "x-amz-copy-source") is Op.UPLOAD_PART_COPY


@pytest.mark.parametrize(
    ("method", "query"),
    [
        ("PUT", "partNumber=1&partNumber=2&uploadId=u"),
        ("PUT", "partNumber=1&uploadId=a&uploadId=b"),
        ("PUT", "partNumber=1&uploadId=&uploadId=b"),
        ("POST", "uploadId=a&uploadId=b"),
        ("DELETE", "uploadId=a&uploadId="),
        ("GET", "uploadId=a&uploadId=b"),
    ],
)
def test_a_repeated_operation_parameter_is_refused(method: str, query: str) -> None:
    """s3shim reads these to name the operation, and the store reads one value (RGW: the
    last), while a signature covers both: which one would count is nobody's to guess."""
    with pytest.raises(errors.S3Error) as e:
        op_of(method, query)
    assert e.value.code == "InvalidArgument"


@pytest.mark.parametrize(
    ("method", "query", "op"),
    [
        # RGW's argument names are case-sensitive: uploadid is no upload id to it either.
        ("PUT", "partNumber=1&uploadid=u", Op.PUT_OBJECT),
        ("PUT", "PartNumber=1&uploadId=u", Op.PUT_OBJECT),
        # Names are percent-decoded before they are read, by both.
        ("PUT", "part%4Eumber=1&upload%49d=u", Op.UPLOAD_PART),
    ],
)
def test_parameter_names_are_read_as_rgw_reads_them(method: str, query: str, op: Op) -> None:
    assert op_of(method, query) is op


# --- the path and query the store is sent -----------------------------------------------


@pytest.mark.parametrize(
    ("raw_path", "key", "sent"),
    [
        ("/b/a%2Fb", "a/b", "/b/a/b"),
        ("/b/a%2fb", "a/b", "/b/a/b"),
        ("/b/a%252Fb", "a%2Fb", "/b/a%252Fb"),
        ("/b/a+b", "a+b", "/b/a%2Bb"),
        ("/b/a%3Fb", "a?b", "/b/a%3Fb"),
        ("/b/a#b", "a#b", "/b/a%23b"),
        ("/b/a%zzb", "a%zzb", "/b/a%25zzb"),
        ("/b/a%2", "a%2", "/b/a%252"),
        ("/b/a%FFb", "a\udcffb", "/b/a%FFb"),
        ("/b/../c/k", "../c/k", "/b/../c/k"),
    ],
)
def test_the_path_sent_decodes_to_the_key_s3shim_read(raw_path: str, key: str, sent: str) -> None:
    """The store gets the canonical path the signature covers; decoded once (as RGW does),
    it is the key s3shim classified, byte for byte, whatever the client's spelling."""
    t = classify("PUT", "h", raw_path, [], frozenset())
    assert t.key == key
    assert sigv4.canonical_uri(t.upstream_path) == sent
    assert sigv4.percent_decode(sent) == "/b/" + key


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=30))
def test_any_key_round_trips_through_the_canonical_path(key: str) -> None:
    sent = sigv4.canonical_uri("/b/" + sigv4.uri_encode(key, keep_slash=True))
    assert sigv4.percent_decode(sent) == "/b/" + key


@pytest.mark.parametrize(
    ("raw_query", "pairs", "sent"),
    [
        # '+' is a literal plus for s3shim; the store is sent %2B, which RGW reads as '+'
        # (a raw '+' in a query it reads as a space: see the e2e test).
        ("prefix=a+b", [("prefix", "a+b")], "prefix=a%2Bb"),
        ("prefix=a%2bb", [("prefix", "a+b")], "prefix=a%2Bb"),
        ("prefix=a%zz", [("prefix", "a%zz")], "prefix=a%25zz"),
        ("uploads", [("uploads", "")], "uploads="),
        ("uploads=", [("uploads", "")], "uploads="),
    ],
)
def test_the_query_sent_is_the_canonical_reading(
    raw_query: str, pairs: list[tuple[str, str]], sent: str
) -> None:
    assert sigv4.parse_query(raw_query) == pairs
    assert sigv4.canonical_query(pairs) == sent


# --- the Complete XML, read as RGW reads it ---------------------------------------------


@dataclass
class _Node:
    name: str  # the qualified name as written: RGW does no namespace processing
    children: list[_Node] = field(default_factory=list)
    text: str = ""

    def first(self, name: str) -> _Node | None:
        return next((c for c in self.children if c.name == name), None)


def rgw_part_list(body: bytes) -> list[tuple[str, str]] | None:
    """(PartNumber text, ETag text) per Part as RGW reads a CompleteMultipartUpload: expat
    without namespaces, the root's direct Part children, the first PartNumber and ETag of
    each; None where RGW answers MalformedXML (no such root, or a Part without them)."""
    parser = expat.ParserCreate()
    stack: list[_Node] = []
    roots: list[_Node] = []

    def start(name: str, _attrs: dict[str, str]) -> None:
        node = _Node(name)
        (stack[-1].children if stack else roots).append(node)
        stack.append(node)

    def end(_name: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        if stack:
            stack[-1].text += data

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.Parse(body, True)
    root = roots[0]
    if root.name != "CompleteMultipartUpload":
        return None
    parts = []
    for part in (c for c in root.children if c.name == "Part"):
        number, etag = part.first("PartNumber"), part.first("ETag")
        if number is None or etag is None:
            return None
        parts.append((number.text, etag.text))
    return parts


NS = f' xmlns="{S3_NAMESPACE}"'


def _part(n: str, etag: str, extra: str = "") -> str:
    return f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag>{extra}</Part>"


_CDATA_ETAG = '<![CDATA["<e>"]]>'
# Bodies both readers accept: RGW's reading of what s3shim sends must be RGW's reading of
# what the client signed, checksums aside.
SAME_READING = {
    "baseline": f"<CompleteMultipartUpload{NS}>{_part('1', 'e1')}{_part('2', 'e2')}"
    "</CompleteMultipartUpload>",
    "no-namespace": f"<CompleteMultipartUpload>{_part('1', 'e1')}</CompleteMultipartUpload>",
    "entity": f"<CompleteMultipartUpload{NS}>{_part('&#50;', '&quot;e&quot;')}"
    "</CompleteMultipartUpload>",
    "cdata": f"<CompleteMultipartUpload{NS}>{_part('<![CDATA[2]]>', _CDATA_ETAG)}"
    "</CompleteMultipartUpload>",
    "comments": f"<CompleteMultipartUpload{NS}><!--x-->"
    f"{_part('1<!--y-->2', 'e<!-- -->1')}</CompleteMultipartUpload>",
    "pi": f"<CompleteMultipartUpload{NS}><?x y?>{_part('2', 'e2', '<?z?>')}"
    "</CompleteMultipartUpload>",
    "duplicate-partnumber": f"<CompleteMultipartUpload{NS}>"
    "<Part><PartNumber>1</PartNumber><PartNumber>2</PartNumber><ETag>e</ETag></Part>"
    "</CompleteMultipartUpload>",
    "duplicate-etag": f"<CompleteMultipartUpload{NS}>"
    "<Part><PartNumber>2</PartNumber><ETag>a</ETag><ETag>b</ETag></Part>"
    "</CompleteMultipartUpload>",
    "duplicate-part": f"<CompleteMultipartUpload{NS}>{_part('2', 'a')}{_part('2', 'a')}"
    "</CompleteMultipartUpload>",
    "whitespace": f"<CompleteMultipartUpload{NS}>\n {_part(' 2 ', ' e ')}\n"
    "</CompleteMultipartUpload>",
    "nested-part": f"<CompleteMultipartUpload{NS}><Part>{_part('1', 'a')}"
    "<PartNumber>2</PartNumber><ETag>b</ETag></Part></CompleteMultipartUpload>",
    "wrapped-part": f"<CompleteMultipartUpload{NS}><X>{_part('1', 'a')}</X>{_part('2', 'b')}"
    "</CompleteMultipartUpload>",
    "text-in-part": f"<CompleteMultipartUpload{NS}><Part>1<PartNumber>2</PartNumber>"
    "<ETag>b</ETag></Part></CompleteMultipartUpload>",
    "attribute": f'<CompleteMultipartUpload{NS}><Part PartNumber="1"><PartNumber>2</PartNumber>'
    "<ETag>b</ETag></Part></CompleteMultipartUpload>",
    "checksums": f"<CompleteMultipartUpload{NS}>"
    f"{_part('1', 'a', '<ChecksumCRC32>AAAAAA==</ChecksumCRC32><ChecksumType>x</ChecksumType>')}"
    "</CompleteMultipartUpload>",
    "bom": f"\ufeff<CompleteMultipartUpload{NS}>{_part('1', 'a')}</CompleteMultipartUpload>",
    "latin-1": '<?xml version="1.0" encoding="ISO-8859-1"?>'
    f"<CompleteMultipartUpload{NS}>{_part('1', 'café')}</CompleteMultipartUpload>",
}


def _encoded(text: str) -> bytes:
    return text.encode("latin-1" if "ISO-8859-1" in text else "utf-8")


@pytest.mark.parametrize("name", sorted(SAME_READING))
def test_rgw_reads_the_rewritten_xml_as_it_reads_the_signed_one(name: str) -> None:
    body = _encoded(SAME_READING[name])
    assert rgw_part_list(strip_part_checksums(body)) == rgw_part_list(body)


def test_a_prefix_on_every_element_is_read_as_the_default_namespace() -> None:
    """RGW reads s3:Part as no Part at all (MalformedXML directly); s3shim hands it the same
    elements unprefixed, the reading a namespace-aware reader (AWS) has of them."""
    body = (
        f'<s3:CompleteMultipartUpload xmlns:s3="{S3_NAMESPACE}"><s3:Part>'
        "<s3:PartNumber>2</s3:PartNumber><s3:ETag>e</s3:ETag></s3:Part>"
        "</s3:CompleteMultipartUpload>"
    ).encode()
    assert rgw_part_list(body) is None
    assert rgw_part_list(strip_part_checksums(body)) == [("2", "e")]


@pytest.mark.parametrize(
    "body",
    [
        # The same namespace under two spellings: a namespace-aware reader sees two Parts, RGW
        # one (it skips a:Part), so the part list would depend on the reader.
        f"<CompleteMultipartUpload{NS}>{_part('2', 'e2')}"
        f'<a:Part xmlns:a="{S3_NAMESPACE}"><a:PartNumber>1</a:PartNumber><a:ETag>e1</a:ETag>'
        "</a:Part></CompleteMultipartUpload>",
        f'<s3:CompleteMultipartUpload xmlns:s3="{S3_NAMESPACE}" xmlns="{S3_NAMESPACE}">'
        "<Part><PartNumber>1</PartNumber><ETag>e</ETag></Part></s3:CompleteMultipartUpload>",
        f'<CompleteMultipartUpload{NS}><Part><s3:PartNumber xmlns:s3="{S3_NAMESPACE}">1'
        "</s3:PartNumber><PartNumber>2</PartNumber><ETag>e</ETag></Part>"
        "</CompleteMultipartUpload>",
        # RGW skips a PartNumber in another namespace and reads the next one.
        f'<CompleteMultipartUpload{NS}><Part><x:PartNumber xmlns:x="urn:x">1</x:PartNumber>'
        "<PartNumber>2</PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload>",
        # RGW expands an internal entity; s3shim declares none.
        '<!DOCTYPE CompleteMultipartUpload [<!ENTITY n "2">]>'
        f"<CompleteMultipartUpload{NS}>{_part('&n;', 'e')}</CompleteMultipartUpload>",
    ],
    ids=["two-spellings-part", "prefixed-root-bare-part", "two-spellings-leaf", "foreign", "dtd"],
)
def test_xml_whose_part_list_depends_on_the_reader_is_refused(body: str) -> None:
    with pytest.raises(errors.S3Error) as e:
        strip_part_checksums(body.encode())
    assert e.value.code == "MalformedXML"


_TEXT = st.sampled_from(["1", "2", " 3 ", "&#52;", "<![CDATA[5]]>", "6<!--c-->", "&quot;e&quot;"])
_LEAF = st.tuples(st.sampled_from(["PartNumber", "ETag", "ChecksumCRC32", "Other"]), _TEXT)


@given(
    st.lists(st.lists(_LEAF, max_size=5), max_size=4),
    st.booleans(),
    st.sampled_from(["", " ", "\n  "]),
)
def test_generated_bodies_keep_rgws_reading(
    parts: list[list[tuple[str, str]]], namespaced: bool, indent: str
) -> None:
    inner = "".join(
        indent + "<Part>" + "".join(f"<{n}>{t}</{n}>" for n, t in leaves) + "</Part>"
        for leaves in parts
    )
    body = f"<CompleteMultipartUpload{NS if namespaced else ''}>{inner}</CompleteMultipartUpload>"
    assert rgw_part_list(strip_part_checksums(body.encode())) == rgw_part_list(body.encode())
