"""s3shim reencrypt's decisions: an object's state from HEADs, the rewrite's requests, the
tags and ACL carried, where a stopped run resumes, the exit status."""

from __future__ import annotations

import base64
import hashlib
import json
from urllib.parse import parse_qsl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3shim.reencrypt_plan import (
    ALGORITHM_ANSWER,
    MAX_PUT_BYTES,
    Outcome,
    Rewrite,
    State,
    Summary,
    Watermark,
    candidates,
    carried_headers,
    grants,
    read_head,
    rewrite,
    tagging_header,
)
from s3shim.ssekeys import Keyring, parse_keys_file

NEW = {"id": "new", "key": base64.b64encode(bytes(range(7, 39))).decode()}
OLD = {"id": "old", "key": base64.b64encode(bytes(range(100, 132))).decode()}
RING: Keyring = parse_keys_file(json.dumps({"keys": [NEW, OLD]}), "test")
MD5 = hashlib.md5(b"bytes").hexdigest()
RECORD = "SHA256:" + base64.b64encode(hashlib.sha256(b"bytes").digest()).decode()


# ------------------------------------------------------------------------ the state
def test_keys_are_tried_as_the_proxy_tries_them() -> None:
    tried = candidates(RING, "b", "k")
    assert [k.master_id if k else None for k in tried] == ["new", "old", None]
    assert tried[0] == RING.for_write("b", "k")


def test_the_state_from_a_head() -> None:
    current, older = candidates(RING, "b", "k")[:2]
    encrypted = {ALGORITHM_ANSWER: "AES256"}
    assert read_head(current, 200, encrypted, "new") is State.CURRENT
    assert read_head(older, 200, encrypted, "new") is State.OLDER
    # RGW answers a HEAD with a key for a plain object as for any plain object.
    assert read_head(current, 200, {}, "new") is State.PLAIN
    assert read_head(None, 200, {}, "new") is State.PLAIN
    assert read_head(current, 400, {}, "new") is None  # the wrong key: try the next
    assert read_head(None, 404, {}, "new") is State.GONE


@pytest.mark.parametrize("status", [403, 500, 503, 301])
def test_a_store_error_is_not_a_state(status: int) -> None:
    with pytest.raises(ValueError, match=f"HTTP {status}"):
        read_head(None, status, {}, "new")


def test_an_sse_c_answer_without_a_key_is_not_believed() -> None:
    with pytest.raises(ValueError):
        read_head(None, 200, {ALGORITHM_ANSWER: "AES256"}, "new")


# ---------------------------------------------------------------------- the rewrite
HEAD = [
    ("Content-Length", "5"),
    ("ETag", f'"{MD5}"'),
    ("Content-Type", "text/x-a"),
    ("Content-Encoding", "gzip"),
    ("Content-Disposition", "attachment"),
    ("Content-Language", "fr"),
    ("Cache-Control", "max-age=5"),
    ("Expires", "Wed, 21 Oct 2015 07:28:00 GMT"),
    ("x-amz-website-redirect-location", "/x"),
    ("x-amz-storage-class", "STANDARD"),
    ("X-Amz-Meta-A", "1"),
    ("x-amz-meta-s3shim-checksum", RECORD),
    ("x-amz-tagging-count", "2"),
    ("Last-Modified", "Mon, 07 Dec 2026 15:15:11 GMT"),
    ("Accept-Ranges", "bytes"),
    ("x-amz-server-side-encryption", "AES256"),  # the store's own: the PUT is SSE-C
    ("x-amz-server-side-encryption-customer-algorithm", "AES256"),
    ("x-amz-server-side-encryption-customer-key-md5", "xx"),
    ("x-amz-request-id", "tx0"),
    ("x-rgw-object-type", "Normal"),
    ("Date", "Mon, 07 Dec 2026 15:15:11 GMT"),
]


def test_what_the_put_carries_again() -> None:
    assert dict(carried_headers(HEAD)) == {
        "content-type": "text/x-a",
        "content-encoding": "gzip",
        "content-disposition": "attachment",
        "content-language": "fr",
        "cache-control": "max-age=5",
        "expires": "Wed, 21 Oct 2015 07:28:00 GMT",
        "x-amz-website-redirect-location": "/x",
        "x-amz-storage-class": "STANDARD",
        "x-amz-meta-a": "1",
        "x-amz-meta-s3shim-checksum": RECORD,
    }


def _plan(state: State, headers: list[tuple[str, str]] = HEAD) -> Rewrite:
    older = candidates(RING, "b", "k")[1] if state is State.OLDER else None
    plan = rewrite(state, older, headers, RING.for_write("b", "k"))
    assert isinstance(plan, Rewrite)
    return plan


def test_the_get_and_the_put_of_an_object_under_an_older_key() -> None:
    plan = _plan(State.OLDER)
    older = candidates(RING, "b", "k")[1]
    assert older is not None
    assert plan.get_headers() == [("if-match", f'"{MD5}"'), *older.headers()]
    put = plan.put_headers("a=1", [("x-amz-grant-read", 'id="x"')])
    assert put == [
        *carried_headers(HEAD),
        *RING.for_write("b", "k").headers(),
        ("if-match", MD5),  # unquoted: RGW 16 never matches the quoted form
        ("x-amz-tagging", "a=1"),
        ("x-amz-grant-read", 'id="x"'),
        ("content-length", "5"),
    ]
    assert plan.record == RECORD and plan.tag_count == 2
    assert plan.content_md5 is None  # an encrypted object's ETag is not an MD5 everywhere


def test_a_plain_single_part_object_is_put_with_its_md5() -> None:
    plan = _plan(State.PLAIN)
    assert plan.get_headers() == [("if-match", f'"{MD5}"')]
    md5 = base64.b64encode(hashlib.md5(b"bytes").digest()).decode()
    assert ("content-md5", md5) in plan.put_headers(None, [])
    assert not [n for n, _ in plan.put_headers(None, []) if n == "x-amz-tagging"]


def test_a_multipart_object_has_no_md5() -> None:
    headers = [(n, '"0123456789abcdef0123456789abcdef-3"' if n == "ETag" else v) for n, v in HEAD]
    plan = _plan(State.PLAIN, headers)
    assert plan.content_md5 is None and plan.etag.endswith("-3")


def test_a_record_s3shim_did_not_write_is_not_checked() -> None:
    headers = [(n, "SHA256:nope" if n == "x-amz-meta-s3shim-checksum" else v) for n, v in HEAD]
    assert _plan(State.PLAIN, headers).record is None


@pytest.mark.parametrize(
    ("change", "outcome"),
    [
        (("Content-Length", str(MAX_PUT_BYTES + 1)), Outcome.TOO_LARGE),
        (("Content-Length", "x"), Outcome.FAILED),
        (("ETag", ""), Outcome.FAILED),
    ],
)
def test_objects_left_alone(change: tuple[str, str], outcome: Outcome) -> None:
    headers = [change if n == change[0] else (n, v) for n, v in HEAD]
    assert rewrite(State.PLAIN, None, headers, RING.for_write("b", "k")) is outcome


def test_the_largest_single_put_is_rewritten() -> None:
    headers = [
        ("Content-Length", str(MAX_PUT_BYTES)) if n == "Content-Length" else (n, v) for n, v in HEAD
    ]
    assert _plan(State.PLAIN, headers).length == MAX_PUT_BYTES


# ------------------------------------------------------------------- tags and ACLs
def _tagging(tags: list[tuple[str, str]]) -> bytes:
    from xml.sax.saxutils import escape

    inner = "".join(f"<Tag><Key>{escape(k)}</Key><Value>{escape(v)}</Value></Tag>" for k, v in tags)
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Tagging xmlns="http://s3.amazonaws.com/doc/'
        f'2006-03-01/"><TagSet>{inner}</TagSet></Tagging>'
    ).encode()


def test_rgw_tagging_answer_as_a_header() -> None:
    assert tagging_header(_tagging([("a", "1"), ("b", "x y")])) == "a=1&b=x%20y"
    assert tagging_header(_tagging([])) == ""


_TAG_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=0, max_size=20)


@given(st.lists(st.tuples(_TAG_TEXT.filter(bool), _TAG_TEXT), max_size=10))
def test_tags_survive_the_header(tags: list[tuple[str, str]]) -> None:
    header = tagging_header(_tagging(tags))
    assert parse_qsl(header, keep_blank_values=True) == tags


def test_a_tagging_answer_with_a_dtd_is_refused() -> None:
    with pytest.raises(ValueError):
        tagging_header(b'<!DOCTYPE x [<!ENTITY e "boom">]><Tagging>&e;</Tagging>')


def _acl(owner: str, *grants: tuple[str, str, str, str]) -> bytes:
    body = "".join(
        f'<Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:type="{kind}"><{tag}>{value}</{tag}></Grantee><Permission>{perm}</Permission></Grant>'
        for kind, tag, value, perm in grants
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><AccessControlPolicy xmlns="http://s3.amazonaws'
        f'.com/doc/2006-03-01/"><Owner><ID>{owner}</ID><DisplayName>d</DisplayName></Owner>'
        f"<AccessControlList>{body}</AccessControlList></AccessControlPolicy>"
    ).encode()


ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
OWNER_FULL = ("CanonicalUser", "ID", "me", "FULL_CONTROL")


def test_a_private_acl_keeps_its_owner_grant() -> None:
    # The rewritten object's owner is the store key's user: the old owner keeps its grant.
    assert grants(_acl("me", OWNER_FULL)) == (("x-amz-grant-full-control", 'id="me"'),)


def test_rgw_public_read_acl_as_headers() -> None:
    """As RGW 16 answers GetObjectAcl for an object put with ACL=public-read."""
    body = _acl("me", ("Group", "URI", ALL_USERS, "READ"), OWNER_FULL)
    assert grants(body) == (
        ("x-amz-grant-full-control", 'id="me"'),
        ("x-amz-grant-read", f'uri="{ALL_USERS}"'),
    )


def test_several_grantees_of_one_permission_share_a_header() -> None:
    body = _acl(
        "me",
        OWNER_FULL,
        ("CanonicalUser", "ID", "you", "READ"),
        ("AmazonCustomerByEmail", "EmailAddress", "a@b.c", "READ"),
        ("CanonicalUser", "ID", "them", "WRITE_ACP"),
        ("CanonicalUser", "ID", "them", "READ_ACP"),
    )
    assert grants(body) == (
        ("x-amz-grant-full-control", 'id="me"'),
        ("x-amz-grant-read", 'id="you", emailAddress="a@b.c"'),
        ("x-amz-grant-read-acp", 'id="them"'),
        ("x-amz-grant-write-acp", 'id="them"'),
    )


@pytest.mark.parametrize(
    "grant",
    [
        ("CanonicalUser", "ID", 'a", id="b', "READ"),  # would end the quoted value early
        ("CanonicalUser", "ID", "a, b", "READ"),  # would read as two grantees
        ("CanonicalUser", "ID", "you", "READ-EVERYTHING"),
    ],
)
def test_a_grant_a_header_cannot_carry_leaves_the_object_alone(
    grant: tuple[str, str, str, str],
) -> None:
    assert grants(_acl("me", OWNER_FULL, grant)) is None


def test_an_answer_that_is_no_acl_leaves_the_object_alone() -> None:
    assert grants(b"<Error><Code>AccessDenied</Code></Error>") is None


# -------------------------------------------------------------------- the watermark
def test_the_resume_point_follows_the_first_open_key() -> None:
    mark = Watermark()
    a, b, c = mark.listed("a"), mark.listed("b"), mark.listed("c")
    assert mark.resume_after == ""
    mark.finished(b, Outcome.REENCRYPTED)
    assert mark.resume_after == ""  # a still open
    mark.finished(a, Outcome.CURRENT)
    assert mark.resume_after == "b"
    mark.finished(c, Outcome.FAILED)  # may succeed next time: held back
    assert mark.resume_after == "b" and mark.listed_count == 3


def test_a_resumed_run_starts_from_its_start_after() -> None:
    mark = Watermark("k5")
    assert mark.resume_after == "k5"
    mark.finished(mark.listed("k6"), Outcome.UNKNOWN_KEY)  # for good: run again won't help
    assert mark.resume_after == "k6"


@given(st.lists(st.sampled_from(list(Outcome)), min_size=1, max_size=30), st.randoms())
def test_everything_up_to_the_resume_point_is_done_for_good(
    outcomes: list[Outcome], rnd: object
) -> None:
    import random

    assert isinstance(rnd, random.Random)
    mark = Watermark()
    keys = [f"k{i:03d}" for i in range(len(outcomes))]
    indexes = [mark.listed(k) for k in keys]
    order = list(range(len(keys)))
    rnd.shuffle(order)
    for i in order:
        mark.finished(indexes[i], outcomes[i])
    done = 0
    while done < len(outcomes) and not outcomes[done].retry:
        done += 1
    assert mark.resume_after == (keys[done - 1] if done else "")


# ---------------------------------------------------------------------- the summary
def test_exit_statuses() -> None:
    s = Summary()
    s.add("a", Outcome.CURRENT)
    s.add("b", Outcome.REENCRYPTED)
    assert s.exit_status == 0 and s.left == []
    assert s.line() == "current=1 reencrypted=1"
    s.add("c", Outcome.CHANGED)
    assert s.exit_status == 3
    s.add("d", Outcome.MISMATCHED)
    assert s.exit_status == 1
    assert s.left == [(Outcome.CHANGED, "c"), (Outcome.MISMATCHED, "d")]
    s.stopped = True
    assert s.exit_status == 4
    assert s.line() == "current=1 reencrypted=1 mismatched=1 changed=1"


def test_a_failed_listing_is_a_store_failure() -> None:
    s = Summary()
    s.add("a", Outcome.GONE)
    s.listing_error = "HTTP 503"
    assert s.exit_status == 3


def test_a_dry_run_that_would_rewrite_is_not_a_failure() -> None:
    s = Summary()
    s.add("a", Outcome.WOULD_REENCRYPT)
    assert s.exit_status == 0 and s.line() == "current=0 reencrypted=0 would-reencrypt=1"
