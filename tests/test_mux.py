"""The multiplexer (``_mux``, ``pool.multiplexed``): its life and its requests; real servers.

What a connection does with replies is in ``test_mux_channel.py``, the line
for room in ``test_mux_room.py``, messages nobody asked for in
``test_mux_strays.py``, the timeouts' heap in ``test_deadlines.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable

import pytest
from websockets.asyncio.server import ServerConnection, serve

from aio_websocket_pool import (
    ConnectionPoolUnavailableError,
    RequestLostError,
    RequestState,
    RequestTimeoutError,
    WebsocketConnectionPool,
    WebsocketError,
)
from aio_websocket_pool.testing import LoopbackServer
from muxing import pool_for, tag, tagged
from servers import PushingServer


async def test_concurrent_requests_over_two_connections_get_their_own_replies(
    any_server: PushingServer,
) -> None:
    async with pool_for(any_server.uri) as pool:
        async with pool.multiplexed(key=tag, connections=2, max_in_flight=64) as mux:
            assert pool.stats().busy == pool.stats().multiplexed == 2
            replies = await asyncio.gather(
                *(mux.request(json.dumps({"tag": n}), key=n, timeout=1.0) for n in range(200))
            )
            stats = mux.stats()
        assert pool.stats().multiplexed == 0
    assert [json.loads(reply)["tag"] for reply in replies] == list(range(200))
    assert (stats.sent, stats.answered, stats.in_flight, stats.connections) == (200, 200, 0, 2)


async def test_strays_pushed_among_the_replies_are_counted_and_never_answer_a_request(
    any_server: PushingServer,
) -> None:
    """Real servers batch what they send: strays land between replies, in one read or not."""
    async with (
        pool_for(any_server.uri) as pool,
        pool.multiplexed(key=tag, connections=2, max_in_flight=64) as mux,
    ):
        calls = [
            asyncio.create_task(mux.request(json.dumps({"tag": n}), key=n, timeout=2.0))
            for n in range(300)
        ]
        await any_server.push("a stray, not JSON", count=50)  # on each connection
        replies = await asyncio.gather(*calls)
        async with asyncio.timeout(2.0):
            while mux.stats().unmatched < 100:  # noqa: ASYNC110  (no event for it)
                await asyncio.sleep(0.01)
        stats = mux.stats()
    assert [json.loads(reply)["tag"] for reply in replies] == list(range(300))
    assert (stats.answered, stats.unmatched, stats.late_replies) == (300, 100, 0)


async def test_a_request_times_out_and_its_late_reply_is_counted_not_delivered(
    server: LoopbackServer,
) -> None:
    server.reply_delay = 0.2
    async with pool_for(server.uri) as pool, pool.multiplexed(key=tag) as mux:
        started = asyncio.get_running_loop().time()
        with pytest.raises(RequestTimeoutError) as timed_out:
            await mux.request(json.dumps({"tag": 1}), key=1, timeout=0.05)
        assert asyncio.get_running_loop().time() - started < 0.15
        assert isinstance(timed_out.value, TimeoutError)
        assert isinstance(timed_out.value, WebsocketError)
        assert mux.stats().in_flight == 0
        await asyncio.sleep(0.3)  # the reply comes
        stats = mux.stats()
        server.reply_delay = 0
        assert json.loads(await mux.request(json.dumps({"tag": 1}), key=1)) == {"tag": 1}
    assert (stats.timed_out, stats.late_replies, stats.unmatched) == (1, 1, 0)


async def test_a_request_timeout_and_an_outer_timeout_are_told_apart(
    server: LoopbackServer,
) -> None:
    """Its own timer raises RequestTimeoutError; an enclosing timeout stays the caller's."""
    server.reply_delay = 0.3
    async with pool_for(server.uri) as pool, pool.multiplexed(key=tag) as mux:
        async with asyncio.timeout(1.0):
            with pytest.raises(RequestTimeoutError):
                await mux.request(json.dumps({"tag": 1}), key=1, timeout=0.02)
        with pytest.raises(TimeoutError) as outer:
            async with asyncio.timeout(0.02):
                await mux.request(json.dumps({"tag": 2}), key=2, timeout=1.0)
        assert not isinstance(outer.value, RequestTimeoutError)
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
        stats = mux.stats()
    assert (stats.timed_out, stats.cancelled) == (1, 1)


async def test_a_cancelled_request_leaves_nothing_behind(server: LoopbackServer) -> None:
    server.reply_delay = 0.1
    async with pool_for(server.uri) as pool, pool.multiplexed(key=tag) as mux:
        tasks_before = len(asyncio.all_tasks())
        call = asyncio.create_task(mux.request(json.dumps({"tag": "x"}), key="x"))
        await asyncio.sleep(0.02)
        assert mux.stats().in_flight == 1
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert mux.stats().in_flight == 0
        assert len(asyncio.all_tasks()) == tasks_before
        await asyncio.sleep(0.15)
        stats = mux.stats()
    assert (stats.cancelled, stats.late_replies) == (1, 1)
    assert [record.dest for record in mux.history] == [RequestState.SENT, RequestState.CANCELLED]


async def test_a_lost_connection_fails_its_requests_at_once_and_is_replaced(
    server: LoopbackServer,
) -> None:
    async with pool_for(server.uri) as pool, pool.multiplexed(key=tag) as mux:
        server.close_instead_of_replying(1)
        started = asyncio.get_running_loop().time()
        with pytest.raises(RequestLostError):
            await mux.request(json.dumps({"tag": 1}), key=1, timeout=1.0)
        assert asyncio.get_running_loop().time() - started < 0.5
        reply = await mux.request(json.dumps({"tag": 2}), key=2, timeout=1.0)  # on its replacement
        assert json.loads(reply) == {"tag": 2}
        assert pool.stats().connections_lost == 1
        assert pool.stats().multiplexed == 1
        assert mux.stats().lost == 1


async def test_leaving_fails_requests_in_flight_and_closes_the_connections(
    server: LoopbackServer,
) -> None:
    server.reply_delay = 0.5
    async with pool_for(server.uri) as pool:
        async with pool.multiplexed(key=tag) as mux:
            call = asyncio.create_task(mux.request(json.dumps({"tag": 1}), key=1))
            await asyncio.sleep(0.02)
        with pytest.raises(RequestLostError):
            await call
        with pytest.raises(ConnectionPoolUnavailableError):
            await mux.request("{}", key=2)
        assert (pool.stats().busy, pool.stats().idle) == (0, 0)


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"connections": 0}, ValueError),
        ({"max_in_flight": 0}, ValueError),
        ({"connections": 3}, ValueError),  # above max_connections=2
        ({"connections": 1.5}, TypeError),
        ({"key": "id"}, TypeError),
        ({"request_timeout": -1}, ValueError),
    ],
    ids=["no-connections", "no-room", "above-max", "float", "key-not-callable", "timeout"],
)
def test_bad_arguments_are_refused_at_once(arguments: dict[str, object], error: type) -> None:
    pool = WebsocketConnectionPool("ws://127.0.0.1:9/", max_connections=2)
    with pytest.raises(error):
        pool.multiplexed(**{"key": tag, **arguments})  # type: ignore[arg-type]


async def test_a_key_in_flight_twice_an_unhashable_key_or_a_non_message_is_refused(
    server: LoopbackServer,
) -> None:
    server.reply_delay = 0.05
    async with pool_for(server.uri) as pool, pool.multiplexed(key=tag) as mux:
        call = asyncio.create_task(mux.request(json.dumps({"tag": 1}), key=1))
        await asyncio.sleep(0.01)
        with pytest.raises(ValueError, match="in flight already"):
            await mux.request(json.dumps({"tag": 1}), key=1)
        with pytest.raises(TypeError):
            await mux.request("{}", key=[1])  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="None"):
            await mux.request("{}", key=None)
        with pytest.raises(TypeError, match="str or bytes"):
            await mux.request(1, key=2)  # type: ignore[arg-type]
        assert mux.stats().in_flight == 1
        await call


async def test_a_key_queued_already_is_refused(server: LoopbackServer) -> None:
    """Two requests with one key, both waiting for room, would both be registered under it."""
    server.reply_delay = 0.05
    async with pool_for(server.uri) as pool, pool.multiplexed(key=tag, max_in_flight=1) as mux:
        first = asyncio.create_task(mux.request(json.dumps({"tag": 1}), key=1))
        queued = asyncio.create_task(mux.request(json.dumps({"tag": 2}), key=2))
        await asyncio.sleep(0.01)
        assert (mux.stats().in_flight, mux.stats().queued) == (1, 1)
        with pytest.raises(ValueError, match="in flight already"):
            await mux.request(json.dumps({"tag": 2}), key=2)
        assert [json.loads(r)["tag"] for r in await asyncio.gather(first, queued)] == [1, 2]


# -- found in the review of the multiplexer (each fixed; its comment says what it was)


def by_key(message: str | bytes) -> Hashable | None:
    """The correlation key of an echoed request: its ``key`` field."""
    return json.loads(message)["key"]  # type: ignore[no-any-return]


# Found in review, fixed: _mux.py Multiplexer.aclose -> _fail_in_flight calls set_exception on
# the future of a request whose task was cancelled but has not run yet (the future is
# cancelled, the entry still registered): InvalidStateError out of __aexit__, the readers are
# never cancelled and the leases never given back (busy in the pool for good)
@pytest.mark.regression
async def test_leaving_right_after_cancelling_a_request_gives_the_leases_back(
    server: LoopbackServer,
) -> None:
    server.reply_delay = 0.5
    async with pool_for(server.uri) as pool:
        async with pool.multiplexed(key=by_key) as mux:
            call = asyncio.create_task(mux.request(json.dumps({"key": "x"}), key="x"))
            await asyncio.sleep(0.05)  # sent; its reply is 0.5 s away
            call.cancel()  # a shutdown that cancels its workers, then leaves the client
        with pytest.raises(asyncio.CancelledError):
            await call
        assert (pool.stats().busy, pool.stats().multiplexed) == (0, 0)
        # Its caller was cancelled; the exit came before it ran again, so the exit ended it.
        assert mux.stats().cancelled + mux.stats().lost == 1


@pytest.fixture
async def stalling_echo() -> AsyncIterator[tuple[str, list[float]]]:
    """An echo server that, after its next replies, stalls the event loop for given seconds.

    The stall is the loop's (server and client share it): the reply is in the
    client's socket and the client's timers run out during it, as under a GC
    pause or a CPU-bound callback. The next loop iteration then sees the reply
    arrive and the request's timeout expire together, the reply first.
    """
    stalls: list[float] = []

    async def handler(connection: ServerConnection) -> None:
        async for message in connection:
            await connection.send(message)
            if stalls:
                time.sleep(stalls.pop(0))  # noqa: ASYNC251  (the stall is the point)

    async with serve(handler, "127.0.0.1", 0) as server:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/", stalls


# Found in review, fixed: _mux.py Multiplexer._take: a reply read after its request's timeout
# cancelled the caller's future, but before the caller ran, is popped and set_result() on the
# cancelled future raises InvalidStateError: the reader task dies (its channel stays, unread,
# and every later request on it times out) and the caller gets CancelledError from
# exchange()'s 'answered in the very turn' branch although nobody cancelled it
@pytest.mark.regression
async def test_a_reply_arriving_with_its_timeout_neither_kills_the_reader_nor_cancels(
    stalling_echo: tuple[str, list[float]],
) -> None:
    uri, stalls = stalling_echo
    async with pool_for(uri) as pool, pool.multiplexed(key=by_key) as mux:
        stalls.append(0.3)  # longer than the first request's timeout
        try:
            first = await mux.request(json.dumps({"key": 1}), key=1, timeout=0.1)
        except TimeoutError:  # RequestTimeoutError: as good an outcome as the reply
            first = None
        except asyncio.CancelledError:
            pytest.fail("request() raised CancelledError; nobody cancelled it")
        assert first in (None, json.dumps({"key": 1}))
        # The reader goes on: the next request on the same connection is answered.
        assert json.loads(await mux.request(json.dumps({"key": 2}), key=2, timeout=1.0)) == {
            "key": 2
        }


# Found in review, fixed: _mux.py Multiplexer.exchange: the 'in flight already' check looks
# only at registered requests, not queued ones; two queued requests with one key both get room
# and the second overwrites the first in channel.pending: the second caller is handed the
# first one's reply, and the first times out
@pytest.mark.regression
async def test_two_queued_requests_with_one_key_never_get_each_others_reply(
    server: LoopbackServer,
) -> None:
    server.reply_delay = 0.1
    async with pool_for(server.uri) as pool, pool.multiplexed(key=by_key, max_in_flight=2) as mux:
        holders = [
            asyncio.create_task(mux.request(json.dumps({"key": k}), key=k)) for k in ("a", "b")
        ]
        await asyncio.sleep(0.01)  # both rooms taken
        first, second = (
            asyncio.create_task(
                mux.request(json.dumps({"key": "x", "who": who}), key="x", timeout=1.0)
            )
            for who in (1, 2)
        )
        await asyncio.sleep(0.01)
        for holder in holders:
            holder.cancel()  # two rooms free at once: both queued requests go out
        outcomes = await asyncio.gather(first, second, return_exceptions=True)
    # Refusing the duplicate (ValueError) would do; another caller's reply never.
    got = {
        who: json.loads(outcome)["who"] if isinstance(outcome, str) else type(outcome).__name__
        for who, outcome in zip((1, 2), outcomes, strict=True)
    }
    assert got[2] != 1, f"request 2 was handed request 1's reply: {got}"
    assert got in ({1: 1, 2: 2}, {1: 1, 2: "ValueError"}), got


# Found in review, fixed: _mux.py Multiplexer.exchange registers the request before
# lease.send() and only unregisters it for timeouts, cancellations and connection errors: a
# send that raises anything else (the TypeError of a message that is neither str nor bytes)
# leaves it 'sent' for good: its key 'in flight already', its room taken, in_flight 1 for ever
@pytest.mark.regression
async def test_a_request_whose_send_fails_leaves_nothing_behind(server: LoopbackServer) -> None:
    async with pool_for(server.uri) as pool, pool.multiplexed(key=by_key, max_in_flight=1) as mux:
        with pytest.raises(TypeError):  # a dict where its JSON text was meant
            await mux.request({"key": 1}, key=1, timeout=1.0)  # type: ignore[arg-type]
        assert mux.stats().in_flight == 0
        # The key is free again, and so is the room.
        reply = await mux.request(json.dumps({"key": 1}), key=1, timeout=0.5)
        assert json.loads(reply) == {"key": 1}


# Found in review, fixed: _mux.py Multiplexer.exchange/_take: a key is free again the moment
# its request times out, though its reply may still come; a new request with that key (the
# docs' GraphQL example uses key='1') is handed the late reply of the one that timed out,
# contrary to 'a reply that comes after it is counted and given to nobody'
@pytest.mark.regression
async def test_a_late_reply_never_answers_a_new_request_with_the_same_key(
    server: LoopbackServer,
) -> None:
    server.reply_delay = 0.2
    async with pool_for(server.uri) as pool, pool.multiplexed(key=by_key) as mux:
        with pytest.raises(TimeoutError):
            await mux.request(json.dumps({"key": "1", "attempt": 1}), key="1", timeout=0.05)
        try:  # the retry, with the same key
            reply = await mux.request(json.dumps({"key": "1", "attempt": 2}), key="1", timeout=1.0)
        except ValueError:  # refusing the key while a reply to it may come would do
            return
        assert json.loads(reply)["attempt"] == 2, f"the retry was handed {reply}"


# Found in review, fixed: _mux.py Multiplexer._wait_for_room: a request that times out or is
# cancelled while queued leaves its future in _waiters; only _wake_one pops them, and nothing
# wakes while no connection is open (server down, replacement failing): the deque grows with
# every request for the whole outage (WaitingLine sweeps its dead entries)
@pytest.mark.regression
async def test_requests_that_give_up_while_no_connection_is_open_leave_no_entry(
    server: LoopbackServer, quiet_logs: None
) -> None:
    async with (
        WebsocketConnectionPool(
            server.uri, acquire_timeout=0.2, max_retries=1, connection_timeout=0.2
        ) as pool,
        pool.multiplexed(key=by_key) as mux,
    ):
        await server.stop()  # the connection goes; its replacement keeps failing
        await asyncio.sleep(0.1)
        assert mux.stats().connections == 0
        for n in range(300):
            with pytest.raises(TimeoutError):
                await mux.request(json.dumps({"key": n}), key=n, timeout=0.001)
        assert mux.stats().queued == 0
        # Private, as the pool's own leak tests look at WaitingLine: dead entries must not
        # pile up (the pool sweeps them once they are half its line).
        assert len(mux._room._line) < 150


# -- found in the review of late replies, the direct websocket, the pool closing (fixed)


@pytest.mark.regression
async def test_one_callers_unencodable_message_never_loses_another_callers_request(
    server: LoopbackServer,
) -> None:
    """Before the fix: _mux.py:Multiplexer.request/exchange: a str that cannot be UTF-8 encoded (a
    lone surrogate) fails inside websockets' send_context, which closes the whole connection:
    every other caller's request in flight on it is lost, and this caller gets RequestLostError
    """
    server.reply_delay = 0.1
    async with pool_for(server.uri) as pool, pool.multiplexed(key=tag) as mux:
        other = asyncio.create_task(mux.request(tagged("other"), key="other", timeout=1.0))
        await asyncio.sleep(0.02)  # sent; its echo is 0.1 s away
        with pytest.raises((UnicodeEncodeError, ValueError)):  # this caller's own mistake
            await mux.request('{"tag": 1, "name": "\udcff"}', key=1, timeout=1.0)
        assert json.loads(await other) == {"tag": "other"}
        assert pool.stats().connections_lost == 0


# -- the reader takes frames inside websockets' data_received (the frame sink)


@contextlib.asynccontextmanager
async def serving(handler: Callable[[ServerConnection], Awaitable[None]]) -> AsyncIterator[str]:
    # A logger above DEBUG: the oldest websockets we support cannot log a frame of invalid UTF-8.
    quiet = logging.getLogger("tests.test_mux.server")
    quiet.setLevel(logging.INFO)
    async with serve(handler, "127.0.0.1", 0, logger=quiet) as server:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"


async def test_a_reply_sent_in_fragments_is_assembled_whole() -> None:
    async def fragmenting_echo(connection: ServerConnection) -> None:
        async for message in connection:
            assert isinstance(message, str)
            await connection.send([message[:3], message[3:-1], message[-1:]])

    async with (
        serving(fragmenting_echo) as uri,
        pool_for(uri) as pool,
        pool.multiplexed(key=tag) as mux,
    ):
        replies = await asyncio.gather(*(mux.request(tagged(n), key=n) for n in range(20)))
    assert [json.loads(reply) for reply in replies] == [{"tag": n} for n in range(20)]


async def test_a_text_reply_that_is_not_utf8_drops_the_connection_and_fails_its_requests() -> None:
    async def bad_text(connection: ServerConnection) -> None:
        async for message in connection:
            if message == tagged("bad"):
                await connection.send(b'{"tag": "bad", "x": "\xff"}', text=True)
            else:
                await connection.send(message)

    async with (
        serving(bad_text) as uri,
        pool_for(uri) as pool,
        pool.multiplexed(key=tag) as mux,
    ):
        (first,) = (channel.lease.id for channel in mux._room.channels)
        with pytest.raises(RequestLostError, match="UTF-8"):
            await mux.request(tagged("bad"), key="bad", timeout=1.0)
        assert json.loads(await mux.request(tagged(1), key=1, timeout=1.0)) == {"tag": 1}
        assert [channel.lease.id for channel in mux._room.channels] != [first]


async def test_a_message_the_server_sent_before_the_multiplexer_took_the_connection_is_seen() -> (
    None
):
    """A greeting right after the handshake is kept for the first borrower: here, the reader."""

    async def greeting_echo(connection: ServerConnection) -> None:
        await connection.send("hello, not JSON")
        async for message in connection:
            await connection.send(message)

    async with serving(greeting_echo) as uri, pool_for(uri) as pool:
        await asyncio.sleep(0)
        async with pool.multiplexed(key=tag) as mux:
            assert json.loads(await mux.request(tagged(1), key=1, timeout=1.0)) == {"tag": 1}
            async with asyncio.timeout(1.0):
                while mux.stats().unmatched < 1:  # noqa: ASYNC110  (no event for it)
                    await asyncio.sleep(0.01)
            assert mux.stats().unmatched == 1
