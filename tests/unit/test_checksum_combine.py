"""Combining CRCs: the checksum of a concatenation from its pieces' checksums and lengths."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3shim.checksums import COMBINABLE, Algorithm, combine, new_checksum

CRCS = sorted(COMBINABLE, key=lambda a: a.value)


def b64(alg: Algorithm, data: bytes) -> str:
    c = new_checksum(alg)
    c.update(data)
    return c.b64digest()


@pytest.mark.parametrize("alg", CRCS)
@given(pieces=st.lists(st.binary(max_size=3000), max_size=8))
def test_combine_is_the_checksum_of_the_concatenation(alg: Algorithm, pieces: list[bytes]) -> None:
    assert combine(alg, [(b64(alg, p), len(p)) for p in pieces]) == b64(alg, b"".join(pieces))


@pytest.mark.parametrize("alg", CRCS)
def test_large_pieces_combine_without_reading_them(alg: Algorithm) -> None:
    # A 5 MiB part repeated: lengths past 32 bits of bits, as multipart parts are.
    part = bytes(range(256)) * (5 * 4096)
    whole = b64(alg, part * 3)
    assert combine(alg, [(b64(alg, part), len(part))] * 3) == whole


@pytest.mark.parametrize("alg", CRCS)
def test_a_wrong_length_gives_another_value(alg: Algorithm) -> None:
    a, b = b"first piece", b"second"
    right = combine(alg, [(b64(alg, a), len(a)), (b64(alg, b), len(b))])
    assert combine(alg, [(b64(alg, a), len(a)), (b64(alg, b), len(b) + 1)]) != right


def test_hashes_and_foreign_values_are_refused() -> None:
    with pytest.raises(ValueError):
        combine(Algorithm.SHA256, [(b64(Algorithm.SHA256, b"x"), 1)])
    with pytest.raises(ValueError):  # a CRC64NVME value given as a CRC32
        combine(Algorithm.CRC32, [(b64(Algorithm.CRC64NVME, b"x"), 1)])
    with pytest.raises(ValueError):
        combine(Algorithm.CRC32, [(b64(Algorithm.CRC32, b"x"), -1)])
