"""The pool's upkeep (``_maintenance``): the ``min_connections`` keeper and the idle sweep.

Against the loopback echo server: connections opened to the floor and again
after they close, never swept below it, backing off while the server refuses;
idle connections past ``max_lifetime`` retired by the sweep.
"""

from __future__ import annotations

import asyncio

import pytest

from aio_websocket_pool import (
    State,
    WebsocketConnectionPool,
)
from helpers import (
    assert_closed,
    assert_consistent,
    pooled,
    server_closed_all,
    triggers,
    wait_until,
)
from helpers import (
    unpinged_pool as make_pool,
)
from loopback import LoopbackServer

# -- the sweep ---------------------------------------------------------------------------


async def test_an_idle_connection_past_max_lifetime_is_retired_by_the_sweep(
    server: LoopbackServer,
) -> None:
    """The sweep retires an idle connection that outlived its lifetime."""
    async with make_pool(server, max_lifetime=0.2, cleanup_interval=0.02) as pool:
        lease = await pool.acquire()
        await pool.release(lease)
        conn = pooled(lease)
        await wait_until(lambda: conn.is_closed, "the sweep retired it")

        assert_closed(conn, State.IDLE, "older than max_lifetime")
        assert triggers(conn) == ["open", "acquire", "release", "close"]
        assert pool.total_connections == 0
        assert_consistent(pool)
        await server_closed_all(server)


# -- min_connections ----------------------------------------------------------------------


async def test_min_connections_are_opened_in_the_background_after_start(
    server: LoopbackServer,
) -> None:
    """start() leads to min_connections idle connections, opened by the pool on its own."""
    async with make_pool(server, min_connections=3) as pool:
        await wait_until(lambda: pool.available_connections == 3, "three idle connections")
        assert server.handshakes == 3
        assert all(triggers(conn) == ["open"] for conn in pool.connections)
        stats = assert_consistent(pool)
        assert (stats.total, stats.acquired) == (3, 0)


@pytest.mark.parametrize("how", ["server-closes", "expired"])
async def test_min_connections_are_reopened_after_they_close(
    server: LoopbackServer, how: str
) -> None:
    """Connections lost or expired below the minimum are replaced in the background."""
    async with make_pool(server, min_connections=2, cleanup_interval=0.02) as pool:
        await wait_until(lambda: pool.available_connections == 2, "the minimum is open")
        old = set(pool.connections)
        if how == "server-closes":
            await server.close_connections()  # the sweep finds them dead
        else:
            pool.expire_connections()

        await wait_until(
            lambda: pool.available_connections == 2 and not old & set(pool.connections),
            "two new idle connections",
        )

        assert all(conn.is_closed for conn in old)
        assert server.handshakes == 4
        stats = assert_consistent(pool)
        assert stats.connections_lost == (2 if how == "server-closes" else 0)


@pytest.mark.regression
async def test_min_connections_are_reopened_when_the_pool_is_at_max_connections(
    server: LoopbackServer,
) -> None:
    """A fixed-size pool (min == max) gets its connection back after expire_connections()."""
    async with make_pool(server, min_connections=1, max_connections=1) as pool:
        await wait_until(lambda: pool.available_connections == 1, "the keeper opened one")
        [first] = pool.connections
        pool.expire_connections()  # closes it gracefully: its socket holds the slot a moment
        # (Not a wait for the server to see no connection: the keeper may open the
        # new one before a look at the server would catch that moment.)
        # The docstring: "re-opened ... after idle cleanup, expiry or failures".
        await wait_until(
            lambda: pool.available_connections == 1 and first not in pool.connections,
            "the keeper re-opened the minimum",
            within=1.0,
        )
        assert server.handshakes == 2


async def test_idle_cleanup_never_goes_below_min_connections(server: LoopbackServer) -> None:
    """Idle cleanup closes the surplus but keeps min_connections, however long they idle."""
    async with make_pool(
        server, min_connections=1, max_connections=3, idle_timeout=0.05, cleanup_interval=0.02
    ) as pool:
        await wait_until(lambda: pool.available_connections == 1, "the minimum is open")
        conns = [await pool.acquire() for _ in range(3)]
        for conn in conns:
            await pool.release(conn)

        await wait_until(lambda: pool.total_connections == 1, "idle cleanup down to the minimum")
        (kept,) = pool.connections
        # Idle for four times idle_timeout: many sweeps passed it by.
        await wait_until(lambda: kept.idle_for > 0.2, "kept idles well past idle_timeout")

        assert kept.state is State.IDLE
        assert pool.total_connections == 1
        for conn in conns:
            if pooled(conn) is not kept:
                assert_closed(pooled(conn), State.IDLE, "idle_timeout")
        assert server.handshakes == 3  # nothing was closed and re-opened in a loop
        assert_consistent(pool)


async def test_min_connections_back_off_while_the_server_refuses(server: LoopbackServer) -> None:
    """Refused reopenings are retried one at a time, after growing pauses, until one succeeds."""
    server.refuse(3, 500)
    loop = asyncio.get_running_loop()
    async with make_pool(server, min_connections=1, max_retries=1) as pool:
        started = loop.time()
        await wait_until(lambda: pool.available_connections == 1, "the minimum is open at last")
        elapsed = loop.time() - started

        # One attempt per round, each round after a longer pause: no storm.
        assert len(server.request_headers) == 4
        assert server.handshakes == 1
        # The pauses are at least 0.05 + 0.1 + 0.2 s (exponential, "equal jitter").
        assert elapsed >= 0.3
        stats = assert_consistent(pool)
        assert (stats.failed_connects, stats.opened) == (3, 1)


def test_min_connections_above_max_connections_is_rejected() -> None:
    """A minimum above the maximum fails at construction."""
    with pytest.raises(ValueError, match="min_connections"):
        WebsocketConnectionPool("ws://127.0.0.1:9/", min_connections=3, max_connections=2)
