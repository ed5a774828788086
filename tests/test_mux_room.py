"""Which connection a request goes out on, and the line for room (``_mux_room``); real servers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Hashable
from urllib.parse import urlsplit

import pytest

from aio_websocket_pool import (
    ConnectionPoolUnavailableError,
    RequestLostError,
    RequestState,
    RequestTimeoutError,
    WebsocketConnectionPool,
)
from aio_websocket_pool.testing import JsonRpcServer, LoopbackServer, TcpProxy
from muxing import leave_behind_a_busy_call, pool_for, tag, tagged


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


async def test_a_request_goes_out_on_the_connection_with_the_fewest_in_flight(
    server: LoopbackServer,
) -> None:
    server.reply_delay = 0.2  # the server answers one request per connection at a time
    async with (
        pool_for(server.uri) as pool,
        pool.multiplexed(key=tag, connections=2, max_in_flight=4) as mux,
    ):
        calls = [asyncio.create_task(mux.request(json.dumps({"tag": n}), key=n)) for n in (1, 2)]
        async with asyncio.timeout(1.0):
            while server.requests_in_flight < 2:  # noqa: ASYNC110  (the server's count has no event)
                await asyncio.sleep(0.005)
        assert mux.stats().in_flight == 2
        await asyncio.gather(*calls)


async def test_a_queued_request_cancelled_before_its_turn_gives_the_room_to_the_next(
    server: LoopbackServer,
) -> None:
    """``key`` runs in the reader as the first reply comes: the queued one is cancelled first."""
    to_cancel: list[asyncio.Task[str | bytes]] = []

    def cancelling_key(message: str | bytes) -> Hashable | None:
        if to_cancel:
            to_cancel.pop().cancel()
        return tag(message)

    server.reply_delay = 0.05
    async with (
        pool_for(server.uri) as pool,
        pool.multiplexed(key=cancelling_key, max_in_flight=1) as mux,
    ):
        first = asyncio.create_task(mux.request(json.dumps({"tag": 1}), key=1))
        await asyncio.sleep(0)
        cancelled = asyncio.create_task(mux.request(json.dumps({"tag": 2}), key=2))
        await asyncio.sleep(0)
        last = asyncio.create_task(mux.request(json.dumps({"tag": 3}), key=3))
        await asyncio.sleep(0)
        assert (mux.stats().in_flight, mux.stats().queued) == (1, 2)
        to_cancel.append(cancelled)
        assert json.loads(await first) == {"tag": 1}
        assert json.loads(await last) == {"tag": 3}
        with pytest.raises(asyncio.CancelledError):
            await cancelled
    assert [(r.source, r.dest) for r in mux.history if r.trigger == "cancel"] == [
        (RequestState.QUEUED, RequestState.CANCELLED)
    ]


async def test_a_replacement_connection_lets_the_queued_requests_go(
    server: LoopbackServer,
) -> None:
    async with pool_for(server.uri) as pool, pool.multiplexed(key=tag, max_in_flight=1) as mux:
        server.close_instead_of_replying(1)
        lost = asyncio.create_task(mux.request(json.dumps({"tag": 1}), key=1))
        await asyncio.sleep(0)
        queued = asyncio.create_task(mux.request(json.dumps({"tag": 2}), key=2, timeout=2.0))
        with pytest.raises(RequestLostError):
            await lost
        assert json.loads(await queued) == {"tag": 2}
        assert mux.stats().connections == 1
    assert [(r.source, r.dest) for r in mux.history if r.connection_id.endswith("req-2")] == [
        (RequestState.QUEUED, RequestState.SENT),
        (RequestState.SENT, RequestState.ANSWERED),
    ]


async def test_a_request_pinned_to_a_full_connection_waits_for_room_there(
    rpc_server: JsonRpcServer,
) -> None:
    """An unsubscribe goes out on its subscription's connection only, within max_in_flight."""
    async with (
        WebsocketConnectionPool(rpc_server.uri, acquire_timeout=1.0) as pool,
        pool.json_rpc(connections=1, max_in_flight=1, request_timeout=2.0) as rpc,
    ):
        slow, leaving = await leave_behind_a_busy_call(rpc, 0.5)
        assert (rpc.stats().in_flight, rpc.stats().queued) == (1, 1)
        assert rpc_server.subscriptions  # not unsubscribed yet
        assert await slow == "busy"
        await leaving
        assert rpc_server.subscriptions == {}


async def test_the_pool_closing_under_an_open_multiplexer_fails_its_requests_as_unavailable(
    server: LoopbackServer,
) -> None:
    server.reply_delay = 0.3
    async with pool_for(server.uri) as pool, pool.multiplexed(key=tag, max_in_flight=1) as mux:
        in_flight = asyncio.create_task(mux.request(tagged(1), key=1, timeout=5.0))
        queued = asyncio.create_task(mux.request(tagged(2), key=2, timeout=5.0))
        async with asyncio.timeout(1.0):
            while mux.stats().queued < 1:  # noqa: ASYNC110  (no event for it)
                await asyncio.sleep(0.005)
        await pool.close_all()  # close() would wait for the multiplexer to give its leases back
        async with asyncio.timeout(1.0):  # at once, not when their 5 s timeouts end
            with pytest.raises(RequestLostError):
                await in_flight
            with pytest.raises(ConnectionPoolUnavailableError):
                await queued
            with pytest.raises(ConnectionPoolUnavailableError):
                await mux.request(tagged(3), key=3, timeout=5.0)


# -- found in the review of the line for room (fixed; each docstring says what it was)


@pytest.mark.regression
async def test_a_room_freed_is_never_lost_on_a_request_pinned_to_another_connection(
    rpc_server: JsonRpcServer,
) -> None:
    """Before the fix: _mux_room.py:Room.wake_one/_mux.py:Multiplexer.exchange: the one wake a
    freed room gives goes to the first waiter even when it is pinned to another, full
    connection; that one finds no room and queues again without passing the wake on: the
    unpinned request behind it waits (here: times out) while a connection sits idle
    """
    async with (
        WebsocketConnectionPool(rpc_server.uri, acquire_timeout=1.0) as pool,
        pool.json_rpc(connections=2, max_in_flight=1, request_timeout=3.0) as rpc,
    ):
        subscription = rpc.subscribe("subscribe", unsubscribe="unsubscribe")
        await subscription.__aenter__()  # on the first connection (both had none in flight)
        long = asyncio.create_task(rpc.call("sleep", [1.5, "long"]))  # fills the first
        await asyncio.sleep(0)
        short = asyncio.create_task(rpc.call("sleep", [0.1, "short"]))  # fills the second
        await asyncio.sleep(0)
        leaving = asyncio.create_task(subscription.__aexit__(None, None, None))  # pinned: queued
        await asyncio.sleep(0)
        unpinned = asyncio.create_task(rpc.call("echo", ["x"], timeout=1.0))  # queued behind it
        await asyncio.sleep(0.02)
        assert (rpc.stats().in_flight, rpc.stats().queued) == (2, 2)
        # 'short' is answered at 0.1 s: its connection is free for the unpinned call.
        outcome = await asyncio.gather(unpinned, return_exceptions=True)
        await asyncio.gather(short, long, leaving)
        assert list(outcome) == [["x"]], outcome


@pytest.mark.regression
async def test_a_request_granted_room_as_the_multiplexer_closes_fails_at_once(
    server: LoopbackServer,
) -> None:
    """Before the fix: _mux.py:Multiplexer.aclose/_mux_room.py:Room.wait: a queued request granted
    room just before the multiplexer closes runs after the close, finds no connection and joins
    the line again, which nobody will fail, with its deadline forgotten (Deadlines.close): it
    waits for ever instead of RequestLostError, past its timeout
    """
    server.reply_delay = 0.05
    async with pool_for(server.uri) as pool:
        async with pool.multiplexed(key=tag, max_in_flight=1) as mux:
            queued = asyncio.create_task(mux.request(tagged("b"), key="b", timeout=0.5))
            # Its answer frees the room for 'queued', whose turn comes after this task leaves.
            await mux.request(tagged("a"), key="a", timeout=0.5)
        try:
            async with asyncio.timeout(1.5):  # three times its own timeout
                with pytest.raises(RequestLostError):
                    await queued
        finally:
            queued.cancel()


@pytest.mark.regression
async def test_a_request_pinned_to_a_connection_lost_while_it_waits_fails_at_once(
    rpc_server: JsonRpcServer,
) -> None:
    """Before the fix: _mux.py:Multiplexer._lost/_mux_room.py:Room.leave: a connection lost wakes
    nobody in line, so a request pinned to it waits until a replacement joins, or its timeout:
    leaving a subscription whose connection died raises RequestTimeoutError after
    request_timeout instead of returning at once (RequestLostError, suppressed)
    """
    async with (
        TcpProxy(urlsplit(rpc_server.uri).port or 0).running() as proxy,
        WebsocketConnectionPool(proxy.uri, acquire_timeout=5.0) as pool,
        pool.json_rpc(connections=1, max_in_flight=1, request_timeout=0.5) as rpc,
    ):
        subscription = rpc.subscribe("subscribe", unsubscribe="unsubscribe")
        await subscription.__aenter__()
        busy = asyncio.create_task(rpc.call("sleep", [5.0, "busy"], timeout=5.0))
        await asyncio.sleep(0)
        leaving = asyncio.create_task(subscription.__aexit__(None, None, None))
        await asyncio.sleep(0.02)
        assert rpc.stats().queued == 1  # the unsubscribe, pinned to the one connection
        proxy.delay = 0.6  # the replacement's handshake takes over a second from now
        proxy.abort()  # the connection is lost: its subscription went with it
        with pytest.raises(RequestLostError):
            await busy
        async with asyncio.timeout(0.3):
            assert await leaving is False
