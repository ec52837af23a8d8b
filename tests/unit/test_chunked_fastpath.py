"""The aws-chunked decoder's shortcuts give exactly what its general steps give.

The decoder parses the size line every SDK writes with one regex and falls back to the
step-by-step parse for anything else; these tests hold the two to the same sizes,
signatures and errors on any line.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from s3shim.chunked import (
    _COMMON_SIZE_LINE_RE,
    ChunkedBodyError,
    _parse_any_size_line,
    _parse_size_line,
)

SETTINGS = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_HEX = "0123456789abcdefABCDEF"
_hex = st.text(alphabet=_HEX, min_size=0, max_size=18)
_signature = st.text(alphabet=_HEX + "g;=", min_size=62, max_size=66) | st.text(
    alphabet=_HEX, min_size=64, max_size=64
)
_extension = st.sampled_from(
    ["", ";chunk-signature=", ";chunk-signature", ";x=1", ";", "; chunk-", ";CHUNK-SIGNATURE="]
)
_end = st.sampled_from(["\r\n", "\n", "", "\r", " \r\n", "\r\n\r\n"])


@st.composite
def common_lines(draw: st.DrawFn) -> bytes:
    """Exactly what the SDKs write: ``<hex>[;chunk-signature=<64 hex>]\r\n``, any case."""
    line = draw(st.text(alphabet=_HEX, min_size=1, max_size=16))
    if draw(st.booleans()):
        line += ";chunk-signature=" + draw(st.text(alphabet=_HEX, min_size=64, max_size=64))
    return (line + "\r\n").encode()


@st.composite
def near_misses(draw: st.DrawFn) -> bytes:
    """Lines close to those, wrong in every way the general parse has a word for."""
    line = draw(_hex)
    extension = draw(_extension)
    if extension:
        line += extension + (draw(_signature) if extension.endswith("=") else "")
    if draw(st.booleans()):
        line += draw(_extension) + draw(st.text(alphabet="0123456789abcdef=;x", max_size=70))
    return (line + draw(_end)).encode()


def outcome(
    parse: Callable[[bytes, bool], tuple[int, str | None]], line: bytes, signed: bool
) -> object:
    try:
        return parse(line, signed)
    except ChunkedBodyError as err:
        return (err.code, err.status, err.message)


@SETTINGS
@given(line=common_lines() | near_misses() | st.binary(max_size=100), signed=st.booleans())
def test_the_one_regex_size_line_parse_agrees_with_the_general_one(
    line: bytes, signed: bool
) -> None:
    common = _COMMON_SIZE_LINE_RE.fullmatch(line) is not None
    event(f"common form: {common}")
    assert outcome(_parse_size_line, line, signed) == outcome(_parse_any_size_line, line, signed)


def test_the_lines_sdks_write_take_the_one_regex() -> None:
    for line in [
        b"10000;chunk-signature="
        + b"ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n",
        b"400;chunk-signature="
        + b"0055627C9E194CB4542BAE2AA5492E3C1575BBB81B612B7D234B86A503EF5497\r\n",
        b"0\r\n",
        b"FFFF\r\n",
    ]:
        assert _COMMON_SIZE_LINE_RE.fullmatch(line) is not None
