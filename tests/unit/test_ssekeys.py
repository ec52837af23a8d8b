"""The SSE master keys file and the per-object SSE-C keys derived from it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3shim.ssekeys import (
    COPY_SOURCE_PREFIX,
    Keyring,
    KeysFileError,
    MasterKey,
    parse_keys_file,
)

WHERE = "S3SHIM_SSE_KEYS_FILE: /etc/s3shim/sse-keys.json"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _file(*entries: dict[str, object]) -> str:
    return json.dumps({"keys": list(entries)})


def _rfc5869(ikm: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF-SHA256 with no salt, written from RFC 5869 as an oracle independent of the library."""
    prk = hmac.new(b"\x00" * 32, ikm, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


SECRET_A = bytes(range(32))
SECRET_B = bytes(range(100, 132))
RING = Keyring((MasterKey("2026-12", SECRET_A), MasterKey("2026-01", SECRET_B)))


def test_derivation_is_hkdf_sha256_over_length_prefixed_id_bucket_and_key() -> None:
    info = b"s3shim/sse-c/v1" + b"".join(
        len(p).to_bytes(4, "big") + p for p in (b"2026-12", b"convex", b"files/a b")
    )
    assert RING.for_write("convex", "files/a b").key == _rfc5869(SECRET_A, info)


def test_every_input_changes_the_key() -> None:
    base = RING.for_write("b", "k").key
    assert RING.derive(RING.keys[1], "b", "k").key != base
    assert RING.for_write("b2", "k").key != base
    assert RING.for_write("b", "k2").key != base
    # No concatenation ambiguity: the boundary between bucket and key is part of the input.
    assert RING.for_write("ab", "c").key != RING.for_write("a", "bc").key


@given(st.text(min_size=1, max_size=40), st.text(max_size=80))
def test_derivation_is_deterministic_and_32_bytes(bucket: str, key: str) -> None:
    first = RING.for_write(bucket, key)
    assert first == RING.for_write(bucket, key)
    assert len(first.key) == 32
    assert first.master_id == "2026-12"


def test_reads_try_the_current_key_first_then_the_older_ones_in_file_order() -> None:
    tried = RING.for_read("b", "k")
    assert [k.master_id for k in tried] == ["2026-12", "2026-01"]
    assert tried[0] == RING.for_write("b", "k")


def test_headers_carry_the_key_and_its_md5_in_base64() -> None:
    ok = RING.for_write("b", "k")
    h = dict(ok.headers())
    assert h == {
        "x-amz-server-side-encryption-customer-algorithm": "AES256",
        "x-amz-server-side-encryption-customer-key": _b64(ok.key),
        "x-amz-server-side-encryption-customer-key-md5": _b64(hashlib.md5(ok.key).digest()),
    }
    copy = dict(ok.headers(COPY_SOURCE_PREFIX))
    assert set(copy) == {
        "x-amz-copy-source-server-side-encryption-customer-" + s
        for s in ("algorithm", "key", "key-md5")
    }


def test_no_repr_shows_key_material() -> None:
    ok = RING.for_write("b", "k")
    for text in (repr(RING), repr(RING.current), repr(ok), str(ok)):
        for secret in (SECRET_A, SECRET_B, ok.key):
            assert _b64(secret) not in text
            assert repr(secret) not in text
            assert secret.hex() not in text


def test_a_good_file_gives_its_keys_current_first() -> None:
    a, b = os.urandom(32), os.urandom(32)
    ring = parse_keys_file(
        _file({"id": "new", "key": _b64(a)}, {"id": "old", "key": _b64(b)}), WHERE
    )
    assert ring.keys == (MasterKey("new", a), MasterKey("old", b))


GOOD = _b64(bytes(range(32)))


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{", "is not valid JSON"),
        ("[]", 'must hold {"keys": [...]}'),
        ('{"keys": []}', 'must hold {"keys": [...]}'),
        (_file({"id": "a"}), 'exactly "id" and "key"'),
        (_file({"id": "a", "key": GOOD, "note": "x"}), 'exactly "id" and "key"'),
        (_file({"id": "", "key": GOOD}), "keys[0].id must be"),
        (_file({"id": "a/b", "key": GOOD}), "keys[0].id must be"),
        (_file({"id": 7, "key": GOOD}), "keys[0].id must be"),
        (_file({"id": "a", "key": GOOD}, {"id": "a", "key": _b64(SECRET_B)}), "appears twice"),
        (_file({"id": "a", "key": _b64(os.urandom(16))}), "base64 of 32 random bytes"),
        (_file({"id": "a", "key": _b64(os.urandom(33))}), "base64 of 32 random bytes"),
        (_file({"id": "a", "key": GOOD[:-2] + "!!"}), "base64 of 32 random bytes"),
        (_file({"id": "a", "key": 5}), "base64 of 32 random bytes"),
        (_file({"id": "a", "key": _b64(b"\x00" * 32)}), "is not random"),
        (_file({"id": "a", "key": _b64(b"abcd" * 8)}), "is not random"),
        (_file({"id": "a", "key": GOOD}, {"id": "b", "key": GOOD}), "same as an earlier"),
    ],
)
def test_a_bad_file_is_refused_naming_the_entry(text: str, says: str) -> None:
    with pytest.raises(KeysFileError) as err:
        parse_keys_file(text, WHERE)
    message = str(err.value)
    assert message.startswith(WHERE)
    assert says in message


@given(st.binary(min_size=1, max_size=48))
def test_no_error_message_holds_any_part_of_the_key(raw: bytes) -> None:
    b64 = _b64(raw)
    text = _file({"id": "k1", "key": b64}, {"id": "k1", "key": b64})
    with pytest.raises(KeysFileError) as err:
        parse_keys_file(text, WHERE)
    message = str(err.value)
    assert all(b64[i : i + 8] not in message for i in range(max(1, len(b64) - 7)))
