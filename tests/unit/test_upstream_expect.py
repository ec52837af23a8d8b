"""s3shim.upstream: Expect: 100-continue — the head alone, the body held until the store's
100 Continue (or continue_timeout of silence), a final answer first taking nothing from the
body and ending the connection, and a held body never asked for sent again on a new
connection when the pooled one turns out closed."""

from __future__ import annotations

import pytest

from s3shim.upstream import UpstreamError
from testkit.scripted_store import (
    CONTINUE,
    EXPECT,
    FORBIDDEN,
    OK,
    WAIT,
    Pulled,
    RecordingTransport,
    StoreConn,
    answering,
    expect_headers,
    get,
    only_conn,
    pieces,
    store_and_client,
    until,
)


@pytest.mark.parametrize("continues", [1, 2], ids=["one-100", "two-100s"])  # moto sends two
async def test_a_body_with_expect_waits_for_the_stores_100_continue(continues: int) -> None:
    data = bytes(range(256)) * 1024
    body = Pulled(data)
    pulls_at_head: list[int] = []

    async def store(conn: StoreConn) -> None:
        head = await conn.read_head()
        assert head is not None and b"\r\nExpect: 100-continue\r\n" in head
        pulls_at_head.append(body.pulls)
        await conn.send(CONTINUE * continues)
        await conn.read_body(head)
        await conn.send(OK)
        await answering(OK)(conn)

    # A continue_timeout no test reaches: only the store's 100 can release the body.
    async with store_and_client(store, continue_timeout=WAIT * 10) as (store_, up):
        async with await up.request("PUT", "/b/k", expect_headers(len(data)), body()) as r:
            assert (r.status, await r.read()) == (200, b"ok")
        assert pulls_at_head == [0]  # nothing was asked of the body before the store's 100
        assert up._idle  # a clean exchange: the connection is pooled
        await get(up)
    assert store_.requests[0].body == data and store_.accepted == 1


async def test_a_final_answer_before_100_continue_takes_nothing_from_the_body() -> None:
    data = b"x" * 300_000
    body = Pulled(data)
    rest: list[bytes] = []

    async def store(conn: StoreConn) -> None:
        if conn.index:  # the next request's new connection
            return await answering(OK)(conn)
        head = await conn.read_head()
        assert head is not None and b"Expect: 100-continue" in head
        await conn.send(FORBIDDEN)
        rest.append(await conn.until_eof())  # what the client sent after the head

    async with store_and_client(store, continue_timeout=WAIT * 10) as (store_, up):
        async with await up.request("PUT", "/b/k", expect_headers(len(data)), body()) as r:
            assert (r.status, await r.read()) == (403, b"denied")
        # Never pooled: the store may read what follows as the body or as a next request.
        assert not up._idle
        await until(lambda: bool(rest))
        assert await get(up) is not None  # on a new connection
    assert rest == [b""] and body.pulls == 0
    assert store_.accepted == 2


async def test_a_store_that_ignores_expect_gets_the_body_after_continue_timeout() -> None:
    data = b"y" * 200_000

    async def store(conn: StoreConn) -> None:
        got = await conn.read_request()  # no 100 Continue: the body comes anyway
        assert got is not None and got.complete
        await conn.send(OK)
        await answering(OK)(conn)

    async with store_and_client(store, continue_timeout=0.01) as (store_, up):
        async with await up.request("PUT", "/b/k", expect_headers(len(data)), Pulled(data)()) as r:
            assert (r.status, await r.read()) == (200, b"ok")
        assert up._idle
    assert store_.requests[0].body == data


async def test_a_100_continue_after_the_body_went_anyway_is_skipped() -> None:
    data = b"z" * 1000

    async def store(conn: StoreConn) -> None:
        got = await conn.read_request()
        assert got is not None and got.complete
        await conn.send(CONTINUE + OK)  # late: the client had stopped waiting for it
        await answering(OK)(conn)

    async with store_and_client(store, continue_timeout=0.01) as (_, up):
        async with await up.request("PUT", "/b/k", expect_headers(len(data)), Pulled(data)()) as r:
            assert (r.status, await r.read()) == (200, b"ok")
        assert up._idle  # the framing stayed clean


async def test_a_bytes_body_with_expect_is_held_too() -> None:
    writes_at_100: list[int] = []
    recorder: RecordingTransport | None = None

    async def serve(conn: StoreConn) -> None:
        assert await conn.read_request() is not None  # the GET that makes a pooled connection
        await conn.send(OK)
        head = await conn.read_head()
        assert head is not None and recorder is not None
        writes_at_100.append(len(recorder.writes))
        await conn.send(CONTINUE)
        got = await conn.read_body(head)
        assert got.body == b"abc"
        await conn.send(OK)

    async with store_and_client(serve, continue_timeout=WAIT * 10) as (_, up):
        await get(up)
        conn = only_conn(up)
        conn.transport = recorder = RecordingTransport(conn.transport)
        async with await up.request("PUT", "/b/k", expect_headers(3), b"abc") as r:
            assert r.status == 200
    assert writes_at_100 == [1]  # the head alone
    assert recorder.writes[1] == [b"abc"]


async def test_the_store_closing_before_100_continue_is_an_error_with_the_body_untouched() -> None:
    async def store(conn: StoreConn) -> None:
        await conn.read_head()  # and closes

    body = Pulled(b"q" * 1000)
    async with store_and_client(store, continue_timeout=WAIT * 10) as (_, up):
        with pytest.raises(UpstreamError):
            await up.request("PUT", "/b/k", expect_headers(1000), body())
    assert body.pulls == 0


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ([("content-length", "3"), ("Expect", "200-ok")], b"abc"),
        ([("content-length", "3"), EXPECT, EXPECT], b"abc"),
        ([EXPECT], None),
        ([("content-length", "0"), EXPECT], b""),
    ],
    ids=["another-expectation", "twice", "no-body", "empty-body"],
)
async def test_an_expectation_is_100_continue_once_with_a_body(
    headers: list[tuple[str, str]], body: bytes | None
) -> None:
    async with store_and_client(answering(OK)) as (store, up):
        with pytest.raises(ValueError):
            await up.request("PUT", "/b/k", headers, body)
    assert store.accepted == 0


# -- sent again on a new connection, or never --------------------------------------------------


@pytest.mark.parametrize("kind", ["streamed", "bytes"])
async def test_a_held_body_the_store_never_asked_for_is_sent_again_on_a_fresh_connection(
    kind: str,
) -> None:
    async def closing(conn: StoreConn) -> None:
        if conn.index == 0:
            await conn.read_request()
            await conn.send(OK)
            await conn.read_head()  # as it closes an idle connection, the head arrives
            conn.writer.close()
        else:
            head = await conn.read_head()
            assert head is not None
            await conn.send(CONTINUE)
            await conn.read_body(head)
            await conn.send(OK)

    body = Pulled(b"abc")
    async with store_and_client(closing, continue_timeout=WAIT * 10) as (store, up):
        await get(up)
        data = body() if kind == "streamed" else b"abc"
        async with await up.request("PUT", "/b/k", expect_headers(3), data) as r:
            assert (r.status, await r.read()) == (200, b"ok")
    assert store.accepted == 2
    assert [r.body for r in store.requests] == [b"", b"abc"]
    assert body.pulls == (1 if kind == "streamed" else 0)  # asked for once, on the new one


async def test_a_held_post_is_never_sent_twice() -> None:
    # Held and never asked for, but the store may have acted on its head alone.
    async def closing(conn: StoreConn) -> None:
        await conn.read_request()
        await conn.send(OK)
        await conn.read_head()
        conn.writer.close()

    body = Pulled(b"xml")
    async with store_and_client(closing, continue_timeout=WAIT * 10) as (store, up):
        await get(up)
        with pytest.raises(UpstreamError):
            await up.request("POST", "/b/k?uploadId=1", expect_headers(3), body())
    assert store.accepted == 1 and body.pulls == 0


async def test_a_held_body_once_asked_for_is_never_sent_twice() -> None:
    async def closing(conn: StoreConn) -> None:
        await conn.read_request()
        await conn.send(OK)
        head = await conn.read_head()  # ignores the expectation; the body comes anyway
        assert head is not None
        await conn.reader.readexactly(3)
        conn.writer.close()

    async with store_and_client(closing, continue_timeout=0.01) as (store, up):
        await get(up)
        with pytest.raises(UpstreamError):
            await up.request("PUT", "/b/k", expect_headers(3), pieces([b"abc"]))
    assert store.accepted == 1
