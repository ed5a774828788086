"""The generic multiplexer (``pool.multiplexed``), against real loopback servers.

The echo servers answer a request with itself, so a request that carries its
key is its own reply: enough to match, time out, cancel and lose requests.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Hashable

import pytest

from aio_websocket_pool import (
    ConnectionPoolUnavailableError,
    RequestLostError,
    RequestState,
    RequestTimeoutError,
    WebsocketConnection,
    WebsocketConnectionPool,
    WebsocketError,
)
from aio_websocket_pool.testing import LoopbackServer
from servers import PushingServer


def tag(message: str | bytes) -> Hashable | None:
    """The key of an echoed request: its ``tag`` field (strays are not JSON: no key)."""
    return json.loads(message)["tag"]  # type: ignore[no-any-return]


def pool_for(uri: str, **kwargs: object) -> WebsocketConnectionPool:
    return WebsocketConnectionPool(uri, acquire_timeout=1.0, cleanup_interval=0.2, **kwargs)  # type: ignore[arg-type]


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


async def test_requests_beyond_max_in_flight_wait_for_room_within_their_timeout(
    server: LoopbackServer,
) -> None:
    server.reply_delay = 0.1
    async with pool_for(server.uri) as pool, pool.multiplexed(key=tag, max_in_flight=1) as mux:
        first = asyncio.create_task(mux.request(json.dumps({"tag": 1}), key=1))
        await asyncio.sleep(0.01)
        with pytest.raises(RequestTimeoutError):
            await mux.request(json.dumps({"tag": 2}), key=2, timeout=0.03)
        second = asyncio.create_task(mux.request(json.dumps({"tag": 3}), key=3))
        await asyncio.sleep(0.01)
        assert (mux.stats().in_flight, mux.stats().queued) == (1, 1)
        assert [json.loads(r)["tag"] for r in await asyncio.gather(first, second)] == [1, 3]
    assert [(r.source, r.dest) for r in mux.history if r.trigger == "time_out"] == [
        (RequestState.QUEUED, RequestState.TIMED_OUT)
    ]


async def test_unmatched_messages_go_to_on_unsolicited_and_the_reader_goes_on(
    server: LoopbackServer,
) -> None:
    seen: list[str | bytes] = []

    async def on_unsolicited(conn: WebsocketConnection, message: str | bytes) -> None:
        seen.append(message)

    async with (
        pool_for(server.uri, on_unsolicited=on_unsolicited) as pool,
        pool.multiplexed(key=tag) as mux,
    ):
        await server.push("stray: not JSON")
        await server.push(json.dumps({"tag": "nobody's"}))
        assert json.loads(await mux.request(json.dumps({"tag": 5}), key=5)) == {"tag": 5}
        await asyncio.sleep(0.02)
        assert mux.stats().unmatched == 2
    assert seen == ["stray: not JSON", json.dumps({"tag": "nobody's"})]


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


@pytest.mark.regression
async def test_a_reply_taken_after_its_caller_was_cancelled_is_late_and_the_reader_goes_on(
    server: LoopbackServer,
) -> None:
    """The reply's turn comes after the cancellation and before the caller runs to end it.

    ``key`` runs in the reader as it takes the reply: cancelling the caller
    there puts the two in that order, every time. (Before: the reader set the
    result of the cancelled future, died of InvalidStateError, and every later
    request on that connection timed out.)
    """
    to_cancel: list[asyncio.Task[str | bytes]] = []

    def cancelling_key(message: str | bytes) -> Hashable | None:
        if to_cancel:
            to_cancel.pop().cancel()
        return tag(message)

    async with (
        pool_for(server.uri) as pool,
        pool.multiplexed(key=cancelling_key, request_timeout=1.0) as mux,
    ):
        caller = asyncio.create_task(mux.request(json.dumps({"tag": 1}), key=1))
        to_cancel.append(caller)
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert json.loads(await mux.request(json.dumps({"tag": 2}), key=2)) == {"tag": 2}
        stats = mux.stats()
    assert (stats.cancelled, stats.late_replies, stats.answered, stats.unmatched) == (1, 1, 1, 0)


async def test_settled_keys_are_kept_for_a_bounded_window(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A duplicate reply is late while its key is remembered, a stray once it is forgotten."""
    monkeypatch.setattr("aio_websocket_pool._mux.SETTLED_KEYS_KEPT", 2)
    async with pool_for(server.uri) as pool, pool.multiplexed(key=tag) as mux:
        for n in range(1, 6):
            await mux.request(json.dumps({"tag": n}), key=n)
        for n in (5, 4, 1):  # the last two at least are remembered; 1 is long gone
            await server.push(json.dumps({"tag": n}))
        assert json.loads(await mux.request(json.dumps({"tag": 6}), key=6)) == {"tag": 6}
        stats = mux.stats()
    assert (stats.late_replies, stats.unmatched) == (2, 1)


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
