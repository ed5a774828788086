"""The multiplexer (``_mux``, ``pool.multiplexed``): its life and its requests; real servers.

What a connection does with replies is in ``test_mux_channel.py``, the line
for room in ``test_mux_room.py``, messages nobody asked for in
``test_mux_strays.py``, the timeouts' heap in ``test_deadlines.py``.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from aio_websocket_pool import (
    ConnectionPoolUnavailableError,
    RequestLostError,
    RequestState,
    RequestTimeoutError,
    WebsocketConnectionPool,
    WebsocketError,
)
from aio_websocket_pool.testing import LoopbackServer
from muxing import pool_for, tag
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
