"""Multiplexed connections retired as the pool's policies say (``_mux_upkeep``); real servers.

A multiplexer holds its leases for good: the pool's ``max_lifetime`` and
``expire_connections()`` reach its connections through the upkeep, which
replaces each without failing a request or opening a gap in a subscription.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from aio_websocket_pool import (
    Multiplexer,
    State,
    SubscriptionState,
    WebsocketConnectionPool,
)
from aio_websocket_pool.testing import JsonRpcServer, LoopbackServer
from muxing import tag, tagged


async def eventually(condition: Callable[[], bool], seconds: float = 3.0) -> None:
    """Poll ``condition`` (a rotation has no event to wait on)."""
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def lease_ids(mux: object) -> set[str]:
    return {channel.lease.id for channel in mux._room.channels}  # type: ignore[attr-defined]


def retiring_pool(uri: str, *, max_connections: int) -> WebsocketConnectionPool:
    """A pool whose connections are retired 0.3 s after they opened (looked at every 0.05 s)."""
    return WebsocketConnectionPool(
        uri, max_connections=max_connections, max_lifetime=0.3, cleanup_interval=0.05,
        acquire_timeout=1.0,
    )  # fmt: skip


async def request_until_replaced(mux: Multiplexer) -> set[str]:
    """Request after request, each of which must succeed, until the first connections are gone.

    Returns the leases the multiplexer started with.
    """
    first = lease_ids(mux)
    n = 0
    async with asyncio.timeout(5.0):
        while lease_ids(mux) & first or not lease_ids(mux):
            n += 1  # sent while they retire: in flight, or queued until a replacement joins
            assert json.loads(await mux.request(tagged(n), key=n)) == {"tag": n}
    return first


async def test_a_connection_past_max_lifetime_is_replaced_without_failing_a_request(
    server: LoopbackServer,
) -> None:
    async with (
        retiring_pool(server.uri, max_connections=2) as pool,
        pool.multiplexed(key=tag, request_timeout=2.0) as mux,
    ):
        server.reply_delay = 0.05  # requests are in flight as the connection retires
        first = await request_until_replaced(mux)
        assert json.loads(await mux.request(tagged("after"), key="after")) == {"tag": "after"}
        stats = mux.stats()
        await eventually(lambda: pool.stats().total == 1)  # the old one closed
        assert pool.stats().multiplexed == 1
    assert (stats.lost, stats.timed_out, stats.connections) == (0, 0, 1)
    (old,) = first
    closed = [r for r in pool.history if old.startswith(r.connection_id) and r.dest is State.CLOSED]
    assert [r.reason for r in closed] == ["released with force_remove"]


async def test_without_a_free_slot_the_old_connection_closes_first_and_requests_wait(
    server: LoopbackServer,
) -> None:
    async with (
        retiring_pool(server.uri, max_connections=1) as pool,
        pool.multiplexed(key=tag, request_timeout=3.0) as mux,
    ):
        await request_until_replaced(mux)
        stats = mux.stats()
    assert (stats.lost, stats.timed_out) == (0, 0)


async def test_expire_connections_reaches_multiplexed_connections(
    server: LoopbackServer,
) -> None:
    async with (
        WebsocketConnectionPool(
            server.uri, max_connections=3, cleanup_interval=0.05, acquire_timeout=1.0
        ) as pool,
        pool.multiplexed(key=tag, connections=2) as mux,
    ):
        first = lease_ids(mux)
        pool.expire_connections()
        await eventually(lambda: len(lease_ids(mux)) == 2 and not lease_ids(mux) & first)
        assert json.loads(await mux.request(tagged(1), key=1)) == {"tag": 1}
        assert mux.stats().lost == 0


async def test_a_subscription_moves_to_the_replacement_with_no_gap(
    rpc_server: JsonRpcServer,
) -> None:
    async with (
        retiring_pool(rpc_server.uri, max_connections=2) as pool,
        pool.json_rpc(request_timeout=2.0) as rpc,
        rpc.subscribe("subscribe", unsubscribe="unsubscribe") as sub,
    ):
        old_id = sub.server_id
        await rpc_server.notify("before")
        assert await anext(sub) == "before"
        await eventually(lambda: sub.server_id != old_id)
        assert sub.state is SubscriptionState.ACTIVE
        await eventually(lambda: list(rpc_server.subscriptions) == [sub.server_id])
        await rpc_server.notify("after")
        assert await anext(sub) == "after"
        assert sub.gaps == []
        triggers = [r.trigger for r in rpc.history if r.connection_id == sub._lifecycle.subject]
        assert "move" in triggers
        assert "interrupt" not in triggers


async def test_without_a_free_slot_a_subscription_is_resubscribed_with_a_gap(
    rpc_server: JsonRpcServer,
) -> None:
    async with (
        retiring_pool(rpc_server.uri, max_connections=1) as pool,
        pool.json_rpc(request_timeout=2.0) as rpc,
        rpc.subscribe("subscribe", unsubscribe="unsubscribe") as sub,
    ):
        await eventually(lambda: len(sub.gaps) == 1 and sub.state is SubscriptionState.ACTIVE)
        await rpc_server.notify("after")
        assert await anext(sub) == "after"
        assert rpc.stats().lost == 0
