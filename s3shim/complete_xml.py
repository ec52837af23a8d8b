"""CompleteMultipartUpload bodies: drop the per-part checksums a non-AWS store rejects.

Sans-I/O: bytes in, bytes out. Parsing is expat with DOCTYPE refused outright, so no entity
of any kind (external, or a "billion laughs" expansion) is ever declared or expanded. Every
element is in the root's namespace and spelled with the root's prefix, so a reader without
namespace processing (RGW's) finds the same part list in the body as s3shim does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.parsers import expat

from s3shim import errors
from s3shim.checksums import Algorithm, decode_checksum_value

S3_NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"

# S3 allows 10,000 parts and one checksum per part. With its longest checksum (SHA-512, 88
# base64 characters), an &quot;-escaped ETag, prefixed names and indentation a part is
# ~300 B, so 10,000 parts stay under 3 MB; 4 MiB leaves slack. S3-compatible servers bound
# this body likewise (Swift's s3api 2 MiB, OpenIO 3 MiB) and answer MalformedXML beyond.
DEFAULT_MAX_SIZE = 4 * 1024 * 1024

# S3's schema nests three deep (CompleteMultipartUpload/Part/ETag); a little slack, but a
# bound, so serialising cannot recurse without limit.
_MAX_DEPTH = 8
# A real body has 1 + 10,000 * 4 elements at most (Part, ETag, PartNumber, one checksum).
# Bounding the count bounds memory: 4 MiB of "<a/>" would otherwise build a million nodes.
_MAX_ELEMENTS = 100_000

# Every per-part checksum element S3's API model knows (the newer ones too, which no store
# s3shim fronts understands), plus ChecksumType.
PART_CHECKSUM_ELEMENTS = frozenset(
    {alg.xml_element for alg in Algorithm}
    | {
        "ChecksumMD5",
        "ChecksumSHA512",
        "ChecksumXXHASH3",
        "ChecksumXXHASH64",
        "ChecksumXXHASH128",
        "ChecksumType",
    }
)
_BY_ELEMENT = {alg.xml_element: alg for alg in Algorithm}


@dataclass(slots=True)
class _Element:
    name: str  # local name; every element shares the root's namespace
    attrs: list[tuple[str, str]]
    content: list[_Element | str] = field(default_factory=list)

    def children(self) -> list[_Element]:
        return [c for c in self.content if isinstance(c, _Element)]

    def text(self) -> str:
        return "".join(c for c in self.content if isinstance(c, str))


class _Refused(Exception):
    """Raised inside expat callbacks; stops the parse at once."""


def _parse(body: bytes, max_size: int) -> tuple[_Element, str]:
    """Return the root element and its namespace ("" for none); S3Error if unacceptable."""
    if len(body) > max_size or not body.strip():
        raise errors.malformed_xml()

    # "uri local prefix" names; a space cannot occur in a namespace URI.
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.namespace_prefixes = True
    parser.ordered_attributes = True
    root_ns: str | None = None
    root_prefix = ""
    stack: list[_Element] = []
    roots: list[_Element] = []
    pending: list[str] = []
    count = 0

    def refuse(*_: object) -> None:
        raise _Refused

    def start(qname: str, attrs: list[str]) -> None:
        nonlocal root_ns, root_prefix, count
        names = qname.split(" ")
        ns, local, prefix = (*names, "")[:3] if len(names) > 1 else ("", qname, "")
        if root_ns is None:
            if local != "CompleteMultipartUpload" or ns not in ("", S3_NAMESPACE):
                raise _Refused
            root_ns, root_prefix = ns, prefix
        elif (
            ns != root_ns
            # The namespace spelled as the root spells it: a reader without namespaces (RGW)
            # takes a:Part for no Part at all, and would complete another part list.
            or prefix != root_prefix
            or len(stack) >= _MAX_DEPTH
            or count >= _MAX_ELEMENTS
        ):
            raise _Refused
        count += 1
        flush()
        # Namespaced attributes (xsi:…) mean nothing to a store and would need their prefix
        # declared again: dropped. Plain ones are kept.
        pairs = [(attrs[i], attrs[i + 1]) for i in range(0, len(attrs), 2) if " " not in attrs[i]]
        element = _Element(local, pairs)
        if stack:
            stack[-1].content.append(element)
        else:
            roots.append(element)
        stack.append(element)

    def end(_qname: str) -> None:
        flush()
        element = stack.pop()
        if not stack or element.name == "Part" or element.children():
            # A container: its text can only be indentation, which goes. A leaf's text is
            # data and stays exactly as sent.
            element.content = [c for c in element.content if not isinstance(c, str) or c.strip()]

    def text(data: str) -> None:
        # expat hands text over in pieces (split at line ends and references): collect
        # them and join once, as repeated concatenation is quadratic.
        if stack:
            pending.append(data)

    def flush() -> None:
        if pending:
            stack[-1].content.append("".join(pending))
            pending.clear()

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(body, True)
    except (_Refused, expat.ExpatError, LookupError, ValueError):
        # LookupError/ValueError: an encoding Python does not know, or cannot decode.
        raise errors.malformed_xml() from None
    return roots[0], root_ns or ""


def _escape_text(s: str) -> str:
    # \r only survives parsing as a character reference, so write it back as one.
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


def _escape_attr(s: str) -> str:
    return _escape_text(s).replace('"', "&quot;").replace("\n", "&#10;").replace("\t", "&#9;")


def _serialise(element: _Element, out: list[str], ns_decl: str = "") -> None:
    out.append("<" + element.name + ns_decl)
    for name, value in element.attrs:
        out.append(f' {name}="{_escape_attr(value)}"')
    out.append(">")
    for c in element.content:
        if isinstance(c, _Element):
            _serialise(c, out)
        else:
            out.append(_escape_text(c))
    out.append("</" + element.name + ">")


def strip_part_checksums(body: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
    """Remove every ``<ChecksumXXX>`` (and ``<ChecksumType>``) from each ``<Part>``.

    Everything else (PartNumber, ETag text, order) is kept; the result is compact UTF-8
    with an XML declaration, in S3's default namespace if the client used it.
    Raises MalformedXML for an empty, oversized, ill-formed or DOCTYPE-carrying body, or one
    that spells the namespace two ways.
    """
    root, ns = _parse(body, max_size)
    for part in root.children():
        if part.name == "Part":
            part.content = [
                c
                for c in part.content
                if not (isinstance(c, _Element) and c.name in PART_CHECKSUM_ELEMENTS)
            ]
    out = ['<?xml version="1.0" encoding="UTF-8"?>']
    _serialise(root, out, f' xmlns="{ns}"' if ns else "")
    return "".join(out).encode("utf-8")


def part_checksums(
    body: bytes, *, max_size: int = DEFAULT_MAX_SIZE
) -> dict[int, dict[Algorithm, str]]:
    """Part number → the checksums the client listed for it (base64, as sent).

    S3's answers: a part checksum that is not canonical base64 of the right size, or two in
    one part, is InvalidArgument; part numbers not strictly ascending are InvalidPartOrder;
    a missing or non-numeric PartNumber is MalformedXML.
    """
    root, _ = _parse(body, max_size)
    result: dict[int, dict[Algorithm, str]] = {}
    last = 0
    for part in root.children():
        if part.name != "Part":
            continue
        number: int | None = None
        sums: dict[Algorithm, str] = {}
        for child in part.children():
            if child.name == "PartNumber":
                digits = child.text().strip()
                if not digits.isascii() or not digits.isdigit():
                    raise errors.malformed_xml()
                number = int(digits)
            elif child.name in _BY_ELEMENT:
                alg = _BY_ELEMENT[child.name]
                value = child.text().strip()
                try:
                    decode_checksum_value(alg, value)
                except errors.S3Error:
                    raise _bad_part_checksum() from None
                if sums:
                    raise _bad_part_checksum()
                sums[alg] = value
        if number is None:
            raise errors.malformed_xml()
        if number <= last:
            raise _invalid_part_order()
        last = number
        result[number] = sums
    return result


def _bad_part_checksum() -> errors.S3Error:
    return errors.invalid_argument("Invalid Base64 or multiple checksums present in request")


def _invalid_part_order() -> errors.S3Error:
    return errors.invalid_part_order()
