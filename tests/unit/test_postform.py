"""s3shim.postform: the multipart/form-data parser and head encoder of POST object uploads.

Bodies come from real encoders (urllib3's encode_multipart_formdata, requests' file
encoder, fields from botocore's generate_presigned_post) and from hand-written bytes for
what encoders never produce. Every body is parsed at every split (or at random splits) and
must give the same events; file bytes include everything that resembles a delimiter.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pytest
import requests
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from urllib3 import encode_multipart_formdata

from s3shim import postform as pf
from s3shim.errors import S3Error
from testkit.shim import s3_client

B = "s3shimTestBoundary1234"
DELIM = b"\r\n--" + B.encode()


@dataclass
class Parsed:
    fields: list[pf.Field] = field(default_factory=list)
    file: pf.FileStart | None = None
    data: bytearray = field(default_factory=bytearray)
    tail: bytearray = field(default_factory=bytearray)
    trailing: list[pf.TrailingField] = field(default_factory=list)
    ends: int = 0
    order: list[str] = field(default_factory=list)

    def add(self, events: Iterable[pf.Event]) -> None:
        for ev in events:
            self.order.append(type(ev).__name__)
            if isinstance(ev, pf.Field):
                self.fields.append(ev)
            elif isinstance(ev, pf.FileStart):
                assert self.file is None
                self.file = ev
            elif isinstance(ev, pf.FileData):
                assert ev.data, "FileData is never empty"
                self.data += ev.data
            elif isinstance(ev, pf.Tail):
                assert ev.data
                self.tail += ev.data
            elif isinstance(ev, pf.TrailingField):
                self.trailing.append(ev)
            else:
                self.ends += 1

    def shape(self) -> list[str]:
        """The event order with runs of FileData/Tail folded (their split is free)."""
        out: list[str] = []
        for name in self.order:
            if name in ("FileData", "Tail") and out and out[-1] == name:
                continue
            out.append(name)
        return out


def parse(
    body: bytes, cuts: Sequence[int] = (), boundary: str = B, limits: pf.Limits | None = None
) -> Parsed:
    parser = pf.FormParser(boundary, limits)
    got = Parsed()
    start = 0
    for cut in [*sorted(cuts), len(body)]:
        got.add(parser.feed(body[start:cut]))
        start = cut
    got.add(parser.close())
    return got


def form(
    fields: Sequence[tuple[str, bytes]],
    file: bytes,
    *,
    filename: str = "photo.jpg",
    content_type: str = "image/jpeg",
    after: Sequence[tuple[str, bytes]] = (),
    boundary: str = B,
) -> bytes:
    parts: list[tuple[str, bytes | tuple[str, bytes, str]]] = [*fields]
    parts.append(("file", (filename, file, content_type)))
    parts += after
    body, ctype = encode_multipart_formdata(parts, boundary=boundary)
    assert pf.boundary_from_content_type(ctype) == boundary
    return body


def check_invariants(body: bytes, got: Parsed, file: bytes) -> None:
    assert got.file is not None and got.ends == 1
    assert bytes(got.data) == file
    head = got.file.head_length
    # Every byte after the head is reported exactly once, in order: file, then tail.
    assert body[:head] + got.data + got.tail == body
    assert got.tail.startswith(DELIM)
    # The head re-encoded from the parsed fields is the original head (same encoder rules).
    assert pf.encode_head(B, got.fields, got.file) == body[:head]


FIELDS = [
    ("key", b"uploads/${filename}"),
    ("acl", b"public-read"),
    ("x-amz-meta-note", "naïve ☃".encode()),
    ("policy", b"eyJleHBpcmF0aW9uIjogIjIwMzAtMDEtMDFUMDA6MDA6MDBaIn0="),
    ("empty", b""),
]
# Bytes that resemble a delimiter without being one.
NEAR = [b"\r", b"\n", b"\r\n", b"--", b"\r\n--", b"\r\n-", DELIM[:-1], b"--" + B.encode()]
NEAR_FILE = b"".join(x + b"x" for x in NEAR) + b"\r\n\r\n" + DELIM[:-1] + b"\r"


# -- Content-Type ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "boundary"),
    [
        ("multipart/form-data; boundary=abc", "abc"),
        ('multipart/form-data; boundary="a b:c"', "a b:c"),
        (
            "Multipart/Form-Data;charset=utf-8;BOUNDARY=----WebKitFormBoundaryX7",
            "----WebKitFormBoundaryX7",
        ),
        ("multipart/form-data; boundary=" + "x" * 70, "x" * 70),
    ],
)
def test_boundary_from_content_type(value: str, boundary: str) -> None:
    assert pf.boundary_from_content_type(value) == boundary


@pytest.mark.parametrize("value", [None, "", "application/json", "text/plain; boundary=abc"])
def test_not_a_form_is_precondition_failed(value: str | None) -> None:
    with pytest.raises(S3Error) as exc:
        pf.boundary_from_content_type(value)
    assert (exc.value.code, exc.value.status) == ("PreconditionFailed", 412)


@pytest.mark.parametrize(
    "value",
    [
        "multipart/form-data",
        "multipart/form-data; boundary=",
        'multipart/form-data; boundary=""',
        "multipart/form-data; boundary=" + "x" * 71,
        'multipart/form-data; boundary="abc "',
        "multipart/form-data; boundary=a@b",
        'multipart/form-data; boundary="abc',
        "multipart/form-data; boundary=a; boundary=b",
        "multipart/form-data; junk; boundary=a",
    ],
)
def test_bad_boundary_is_malformed(value: str) -> None:
    with pytest.raises(S3Error) as exc:
        pf.boundary_from_content_type(value)
    assert exc.value.code == "MalformedPOSTRequest"
    assert exc.value.message == (
        "The body of your POST request is not well-formed multipart/form-data."
    )


def test_parser_refuses_invalid_boundary() -> None:
    with pytest.raises(S3Error):
        pf.FormParser("bad@boundary")


# -- real encoders, every split --------------------------------------------------------------


def test_every_two_piece_split_gives_the_same_events() -> None:
    file = b"JFIF" + NEAR_FILE + bytes(range(256))
    body = form(FIELDS, file, after=[("submit", b"Upload")])
    whole = parse(body)
    check_invariants(body, whole, file)
    assert [(f.name, f.value) for f in whole.fields] == FIELDS
    assert whole.file is not None
    assert (whole.file.name, whole.file.filename, whole.file.content_type) == (
        "file",
        "photo.jpg",
        "image/jpeg",
    )
    assert [(t.name, t.value) for t in whole.trailing] == [("submit", b"Upload")]
    assert whole.shape() == ["Field"] * 5 + [
        "FileStart",
        "FileData",
        "Tail",
        "TrailingField",
        "End",
    ]
    for cut in range(1, len(body)):
        got = parse(body, [cut])
        check_invariants(body, got, file)
        assert got.fields == whole.fields and got.file == whole.file
        assert got.trailing == whole.trailing


def test_byte_at_a_time() -> None:
    file = NEAR_FILE * 3
    body = form(FIELDS, file)
    got = parse(body, range(1, len(body)))
    check_invariants(body, got, file)
    assert got.fields == parse(body).fields


delimiter_like = st.sampled_from(NEAR + [b"\r\n--" + B.encode()[:k] for k in range(len(B))])
file_bytes = st.lists(st.one_of(st.binary(max_size=40), delimiter_like), max_size=30).map(b"".join)
field_values = st.lists(st.one_of(st.binary(max_size=20), delimiter_like), max_size=6).map(b"".join)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    file=file_bytes,
    values=st.lists(field_values, max_size=4),
    trailing=st.lists(field_values, max_size=2),
    data=st.data(),
)
def test_random_splits_and_delimiter_like_bytes(
    file: bytes, values: list[bytes], trailing: list[bytes], data: st.DataObject
) -> None:
    dash = DELIM[2:]
    assume(all(DELIM not in v and not v.startswith(dash) for v in [file, *values, *trailing]))
    fields = [(f"f{i}", v) for i, v in enumerate(values)]
    after = [(f"t{i}", v) for i, v in enumerate(trailing)]
    body = form(fields, file, after=after)
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=12))
    got = parse(body, cuts)
    check_invariants(body, got, file)
    assert [(f.name, f.value) for f in got.fields] == fields
    assert [(t.name, t.value) for t in got.trailing] == after


def test_requests_encoder() -> None:
    req = requests.Request(
        "POST",
        "http://127.0.0.1/bkt",
        data={"key": "k", "Content-Type": "text/plain"},
        files={"file": ("ünï.txt", b"hello\r\n--", "text/plain")},
    ).prepare()
    assert isinstance(req.body, bytes)
    boundary = pf.boundary_from_content_type(str(req.headers["Content-Type"]))
    got = parse(req.body, [len(req.body) // 2], boundary=boundary)
    assert [(f.name, f.value) for f in got.fields] == [
        ("key", b"k"),
        ("Content-Type", b"text/plain"),
    ]
    assert got.file is not None and got.file.filename == "ünï.txt"
    assert bytes(got.data) == b"hello\r\n--"
    assert got.ends == 1


def test_fields_of_botocore_generate_presigned_post() -> None:
    s3 = s3_client("http://127.0.0.1:9", "AKIDEXAMPLE", "secret", signature_version="s3v4")
    post = s3.generate_presigned_post(
        "bkt", "a/${filename}", Fields={"acl": "private"}, Conditions=[{"acl": "private"}]
    )
    fields = [(k, v.encode()) for k, v in post["fields"].items()]
    file = os.urandom(3000)
    body = form(fields, file)
    got = parse(body, [100, 101, 1500])
    check_invariants(body, got, file)
    assert {f.name: f.value.decode() for f in got.fields} == post["fields"]


def test_file_data_is_passed_on_at_once() -> None:
    """Memory during the file is one look-behind: what is fed is reported at once, except
    at most the delimiter's length minus one, and only when it could start a delimiter."""
    body = form([("key", b"k")], b"A" * 300_000 + b"\r\n-" + b"B" * 1000)
    parser = pf.FormParser(B)
    head = body.index(b"AAAA")
    parser.feed(body[:head])
    reported = 0
    end = head + 300_000
    for start in range(head, end, 65_536):
        events = parser.feed(body[start : min(start + 65_536, end)])
        reported += sum(len(e.data) for e in events if isinstance(e, pf.FileData))
        assert reported == min(start + 65_536, end) - head  # nothing held back
    events = parser.feed(b"\r\n-")  # may start the delimiter: held back
    assert not [e for e in events if isinstance(e, pf.FileData)]
    events = parser.feed(b"B")  # cannot any more: released
    assert b"".join(e.data for e in events if isinstance(e, pf.FileData)) == b"\r\n-B"


def test_feed_accepts_bytearray_and_memoryview() -> None:
    body = form([("key", b"k")], b"data")
    parser = pf.FormParser(B)
    got = Parsed()
    got.add(parser.feed(bytearray(body[:50])))
    got.add(parser.feed(memoryview(body)[50:]))
    got.add(parser.feed(b""))
    got.add(parser.close())
    check_invariants(body, got, b"data")


# -- what browsers and RFC 2046 allow ------------------------------------------------------


def raw_form(*parts: bytes, preamble: bytes = b"", epilogue: bytes = b"\r\n") -> bytes:
    d = b"--" + B.encode()
    return preamble + b"\r\n".join(d + b"\r\n" + p for p in parts) + b"\r\n" + d + b"--" + epilogue


KEY = b'Content-Disposition: form-data; name="key"\r\n\r\nk'
FILE = b'Content-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\ncontent'


def test_preamble_padding_and_epilogue() -> None:
    d = b"--" + B.encode()
    body = (
        b"ignored preamble\r\n"
        + d
        + b" \t\r\n"
        + KEY
        + b"\r\n"
        + d
        + b"\r\n"
        + FILE
        + b"\r\n"
        + d
        + b"--\r\nepilogue, ignored"
    )
    for cut in range(1, len(body)):
        got = parse(body, [cut])
        assert [(f.name, f.value) for f in got.fields] == [("key", b"k")]
        assert bytes(got.data) == b"content"
        assert got.tail.endswith(b"epilogue, ignored")
        assert got.file is not None
        assert body[: got.file.head_length] + got.data + got.tail == body


def test_file_field_name_is_case_insensitive() -> None:
    body = raw_form(KEY, FILE.replace(b'name="file"', b'name="FiLe"'))
    got = parse(body)
    assert got.file is not None and got.file.name == "FiLe"
    assert bytes(got.data) == b"content"


def test_a_text_file_part_without_filename() -> None:
    body = raw_form(KEY, b'Content-Disposition: form-data; name="file"\r\n\r\ntext')
    got = parse(body)
    assert got.file is not None and got.file.filename is None and got.file.content_type is None
    assert bytes(got.data) == b"text"


def test_empty_file_and_lone_close_delimiter_end() -> None:
    body = raw_form(KEY, FILE.replace(b"content", b""), epilogue=b"")
    got = parse(body)
    assert got.data == b"" and got.ends == 1
    assert "FileData" not in got.order


def test_quoted_parameters_as_browsers_write_them() -> None:
    cd = 'Content-Disposition: form-data; name="file"; filename="na\u00efve a%22b.txt"'.encode()
    got = parse(raw_form(KEY, cd + b"\r\nContent-Type: text/plain\r\n\r\nx"))
    assert got.file is not None
    assert got.file.filename == "na\u00efve a%22b.txt"
    assert got.file.content_type == "text/plain"


def disposition(value: bytes, extra: bytes = b"") -> bytes:
    """A form whose first field has this Content-Disposition value (and more header lines)."""
    return raw_form(b"Content-Disposition: " + value + b"\r\n" + extra + b"\r\nv", FILE)


# Part heads another parser could read otherwise than s3shim does (RGW splits the
# disposition on every ';' whatever the quoting; RFC 2045 parsers unescape backslashes).
AMBIGUOUS_PART_HEADS = [
    pytest.param(disposition(b'form-data; name="a;name=file;x="'), id="semicolon-in-name"),
    pytest.param(disposition(b'form-data; name="k"; filename="a;b"'), id="semicolon-in-filename"),
    pytest.param(disposition(b'form-data; name="k"; filename="a\\"'), id="backslash-filename"),
    pytest.param(disposition(b'form-data; name="k\\"'), id="backslash-name"),
    pytest.param(disposition(b'form-data; name="k x"'), id="space-in-name"),
    pytest.param(disposition(b'form-data; name="k"; filename=" a"'), id="filename-blank"),
    pytest.param(disposition(b'form-data; name="k"; filename="a\tb"'), id="filename-tab"),
    pytest.param(disposition('form-data; name="n\u00e4me"'.encode()), id="non-ascii-name"),
    pytest.param(disposition(b'form-data; name=""'), id="empty-name"),
    pytest.param(disposition(b'form-data; name="k"; name="file"'), id="repeated-name"),
    pytest.param(
        disposition(b'form-data; name="k"; filename="a"; filename="b"'), id="repeated-filename"
    ),
    pytest.param(disposition(b"form-data; name=\"k\"; filename*=UTF-8''a"), id="filename-star"),
    pytest.param(disposition(b'form-data; name="k"; size=3'), id="unknown-parameter"),
    pytest.param(disposition(b'inline; name="k"'), id="not-form-data"),
    pytest.param(disposition(b'form-data; name="k"', b"X-Other: 1\r\n"), id="unknown-header"),
    pytest.param(
        disposition(b'form-data; name="k"', b"Content-Transfer-Encoding: base64\r\n"),
        id="transfer-encoding",
    ),
    pytest.param(
        disposition(b'form-data; name="k"', b"Content-Type: a\r\nContent-Type: b\r\n"),
        id="two-content-types",
    ),
    pytest.param(disposition(b'form-data; name="k"', b"Content-Type: \x01\r\n"), id="ctl-type"),
]


@pytest.mark.parametrize("body", AMBIGUOUS_PART_HEADS)
def test_part_heads_other_parsers_could_read_otherwise_are_refused(body: bytes) -> None:
    err = refused(body)
    assert (err.code, err.status) == ("MalformedPOSTRequest", 400)


# -- limits ---------------------------------------------------------------------------------


def test_default_limits_are_s3s() -> None:
    assert pf.Limits() == pf.Limits(20 * 1024, 128, 8 * 1024, 20 * 1024)


def test_head_limit_is_exact() -> None:
    body = form(FIELDS, b"file")
    head = parse(body).file
    assert head is not None
    parse(body, limits=pf.Limits(head_bytes=head.head_length))
    cuts: Sequence[int]
    for cuts in ([], range(1, len(body))):
        with pytest.raises(S3Error) as exc:
            parse(body, cuts, limits=pf.Limits(head_bytes=head.head_length - 1))
        assert exc.value.code == "MaxPostPreDataLengthExceededError"
        assert exc.value.message == (
            "Your POST request fields preceding the upload file were too large."
        )


def test_an_endless_field_is_refused_before_it_is_buffered() -> None:
    parser = pf.FormParser(B)
    parser.feed(b"--" + B.encode() + b"\r\n" + b'Content-Disposition: form-data; name="x"\r\n\r\n')
    fed = 0
    with pytest.raises(S3Error) as exc:
        while True:
            parser.feed(b"v" * 1000)
            fed += 1000
    assert exc.value.code == "MaxPostPreDataLengthExceededError"
    assert fed <= pf.MAX_HEAD_BYTES
    with pytest.raises(RuntimeError):
        parser.feed(b"more")  # a refused body stays refused


def test_a_20_kib_field_is_refused_by_default() -> None:
    with pytest.raises(S3Error) as exc:
        parse(form([("x-amz-meta-big", b"v" * 20 * 1024)], b"f"))
    assert exc.value.code == "MaxPostPreDataLengthExceededError"
    parse(form([("x-amz-meta-big", b"v" * 19 * 1024)], b"f"))


def test_field_count_limit() -> None:
    body = form([("a", b"1"), ("b", b"2")], b"f")
    parse(body, limits=pf.Limits(fields=2))
    with pytest.raises(S3Error) as exc:
        parse(body, limits=pf.Limits(fields=1))
    assert exc.value.code == "MaxPostPreDataLengthExceededError"
    # The parts after the file have their own count.
    trailing = form([("a", b"1")], b"f", after=[("x", b"1"), ("y", b"2")])
    parse(trailing, limits=pf.Limits(fields=2))
    with pytest.raises(S3Error) as exc:
        parse(trailing, limits=pf.Limits(fields=1))
    assert exc.value.code == "MalformedPOSTRequest"


def test_part_header_limit() -> None:
    body = form([("key", b"k")], b"f", filename="n" * 500)
    size = len(b'Content-Disposition: form-data; name="file"; filename=""\r\n') + 500
    size += len(b"Content-Type: image/jpeg\r\n")
    parse(body, limits=pf.Limits(part_header_bytes=size))
    with pytest.raises(S3Error) as exc:
        parse(body, limits=pf.Limits(part_header_bytes=size - 1))
    assert exc.value.code == "MalformedPOSTRequest"


def test_tail_limit() -> None:
    body = form([("key", b"k")], b"f", after=[("submit", b"x" * 100)])
    tail = len(parse(body).tail)
    parse(body, limits=pf.Limits(tail_bytes=tail))
    cuts: Sequence[int]
    for cuts in ([], range(1, len(body))):
        with pytest.raises(S3Error) as exc:
            parse(body, cuts, limits=pf.Limits(tail_bytes=tail - 1))
        assert exc.value.code == "MalformedPOSTRequest"


# -- refused bodies -------------------------------------------------------------------------


def refused(body: bytes) -> S3Error:
    """The error for ``body``, which must be the same at every split."""
    codes = set()
    first: S3Error | None = None
    for cuts in ([], [len(body) // 2], range(1, len(body))):
        with pytest.raises(S3Error) as exc:
            parse(body, cuts)
        codes.add((exc.value.code, exc.value.message))
        first = first or exc.value
    assert len(codes) == 1, codes
    assert first is not None
    return first


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"no delimiter at all", id="no-delimiter"),
        pytest.param(raw_form(KEY, FILE)[:-20], id="truncated-in-file"),
        pytest.param(raw_form(KEY, FILE)[:60], id="truncated-in-headers"),
        pytest.param(raw_form(KEY, FILE)[:-3], id="truncated-in-close"),
        pytest.param(raw_form(KEY, FILE).replace(b"\r\n", b"\n"), id="bare-lf"),
        pytest.param(raw_form(b"\r\nno headers", FILE), id="no-content-disposition"),
        pytest.param(raw_form(b"Content-Type: text/plain\r\n\r\nv", FILE), id="no-disposition"),
        pytest.param(
            raw_form(b'Content-Disposition: attachment; name="k"\r\n\r\nv', FILE), id="attachment"
        ),
        pytest.param(raw_form(b"Content-Disposition: form-data\r\n\r\nv", FILE), id="no-name"),
        pytest.param(
            raw_form(b'Content-Disposition: form-data; name="k\r\n\r\nv', FILE), id="open-quote"
        ),
        pytest.param(
            raw_form(b'Content-Disposition: form-data;\r\n name="k"\r\n\r\nv', FILE), id="folded"
        ),
        pytest.param(raw_form(b"Content-Disposition form-data\r\n\r\nv", FILE), id="no-colon"),
        pytest.param(
            raw_form(
                b'Content-Disposition: form-data; name="a"\r\n'
                b'Content-Disposition: form-data; name="b"\r\n\r\nv',
                FILE,
            ),
            id="two-dispositions",
        ),
        pytest.param(
            raw_form(KEY, FILE).replace(B.encode() + b"\r\n", B.encode() + b"x\r\n", 1),
            id="junk-after-delimiter",
        ),
        pytest.param(
            raw_form(KEY, FILE).replace(
                b"content\r\n--" + B.encode(), b"content\r\n--" + B.encode() + b"X"
            ),
            id="boundary-prefix-in-file",
        ),
        pytest.param(
            raw_form(KEY, FILE.replace(b"content", b"--" + B.encode() + b"x")),
            id="file-opens-with-delimiter-line",
        ),
        pytest.param(
            raw_form(KEY.replace(b"\r\nk", b"\r\n--" + B.encode() + b"x"), FILE),
            id="value-opens-with-delimiter-line",
        ),
    ],
)
def test_malformed_bodies(body: bytes) -> None:
    err = refused(body)
    assert (err.code, err.status) == ("MalformedPOSTRequest", 400)


def test_a_form_without_file() -> None:
    err = refused(raw_form(KEY))
    assert (err.code, err.message) == (
        "InvalidArgument",
        "POST requires exactly one file upload per request.",
    )


def test_a_second_file_after_the_first() -> None:
    err = refused(raw_form(KEY, FILE, FILE))
    assert (err.code, err.message) == (
        "InvalidArgument",
        "POST requires exactly one file upload per request.",
    )


def test_feed_after_close() -> None:
    parser = pf.FormParser(B)
    parser.feed(raw_form(KEY, FILE))
    parser.close()
    with pytest.raises(RuntimeError):
        parser.feed(b"x")


# -- the writer -----------------------------------------------------------------------------


S = pf.STORE_BOUNDARY_PREFIX + "0" * 32


def store_body(body: bytes, got: Parsed, fields: Sequence[pf.Field]) -> bytes:
    """The store's form for ``body`` as FormUpload writes it: new head, file, new tail."""
    assert got.file is not None
    head = pf.encode_head(S, fields, got.file)
    client_tail = len(body) - got.file.head_length - len(got.data)
    new = head + got.data + pf.encode_tail(client_tail, B, S)
    assert pf.store_length(len(body), got.file.head_length, len(head), B, S) == len(new)
    return new


def test_the_store_form_parses_back_to_what_was_verified() -> None:
    file = NEAR_FILE
    body = form(FIELDS, file, after=[("submit", b"go")])
    got = parse(body)
    new_fields = [f for f in got.fields if f.name != "acl"] + [pf.Field("added", b"v")]
    again = parse(store_body(body, got, new_fields), boundary=S)
    assert again.fields == new_fields and again.file is not None
    assert again.file == pf.FileStart("file", "photo.jpg", "image/jpeg", again.file.head_length)
    assert bytes(again.data) == file
    assert again.trailing == []  # parts after the file are not forwarded


@pytest.mark.parametrize("epilogue", [b"", b"\r\n", b"\r\nsome epilogue\r\n"])
@pytest.mark.parametrize("boundary", ["x", B, "b" * 70])
def test_the_store_tail_is_as_long_as_announced_for_any_client_tail(
    epilogue: bytes, boundary: str
) -> None:
    d = b"--" + boundary.encode()
    body = d + b"\r\n" + FILE + b"\r\n" + d + b"\r\n" + KEY + b"\r\n" + d + b"--" + epilogue
    got = parse(body, boundary=boundary)
    assert got.file is not None
    head = pf.encode_head(S, got.fields, got.file)
    client_tail = len(body) - got.file.head_length - len(got.data)
    new = head + got.data + pf.encode_tail(client_tail, boundary, S)
    assert pf.store_length(len(body), got.file.head_length, len(head), boundary, S) == len(new)
    again = parse(new, boundary=S)
    assert bytes(again.data) == b"content" and again.ends == 1


def test_the_writer_writes_only_unambiguous_part_heads() -> None:
    start = pf.FileStart("file", "a.txt", None, 0)
    with pytest.raises(ValueError):
        pf.encode_head(S, [pf.Field("k", b"a\r\n--" + S.encode() + b"b")], start)
    with pytest.raises(ValueError):  # a delimiter line right after the part's headers
        pf.encode_head(S, [pf.Field("k", b"--" + S.encode() + b"x")], start)
    for bad in (pf.Field('we"ird', b"v"), pf.Field("a;b", b"v"), pf.Field("k", b"v", "a;b")):
        with pytest.raises(ValueError):
            pf.encode_head(S, [bad], start)
    with pytest.raises(ValueError):
        pf.encode_head(S, [pf.Field("k", b"v", None, "text/plain\r\nX: y")], start)
    pf.encode_head(S, [pf.Field("k", b"x--" + S.encode())], start)  # not at a line start


def test_store_boundaries_are_fresh_and_valid() -> None:
    seen = {pf.new_boundary() for _ in range(100)}
    assert len(seen) == 100
    for b in seen:
        assert pf.boundary_from_content_type(f"multipart/form-data; boundary={b}") == b


def test_store_length_refuses_impossible_lengths() -> None:
    for args in ((10, 11, 5), (10, -1, 5), (10, 5, -1)):
        with pytest.raises(ValueError):
            pf.store_length(*args, B, S)
    with pytest.raises(ValueError):
        pf.encode_tail(len(B) + 5, B, S)  # shorter than the client's close delimiter
