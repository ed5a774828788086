"""Sizing a running pool, as in psycopg_pool: ``resize()``, ``check()`` and ``wait()``.

``resize`` changes the limits without cutting off a borrower: shrinking
retires idle connections now and busy ones only when they come back; growing
serves the waiters at once. ``check`` pings every idle connection now, due or
not, and retires those that do not answer (a frozen link of the TCP proxy:
the socket stays open, only a ping tells). ``wait`` returns once the pool
holds what it is meant to keep open. All against the real loopback server.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from aio_websocket_pool import (
    ConnectionLease,
    ConnectionPoolExhaustedError,
    ConnectionPoolUnavailableError,
    ConnectionUnavailableError,
    State,
    WebsocketConnectionPool,
)
from aio_websocket_pool.testing import TcpProxy
from helpers import assert_consistent, pool_maker, pooled, round_trip, wait_until
from loopback import LoopbackServer

#: No health checks on hand-out: only check() pings.
make_pool = pool_maker(
    health_check_interval=None, acquire_timeout=1.0, close_timeout=0.1, max_retries=1
)


async def borrow_all(pool: WebsocketConnectionPool, count: int) -> list[ConnectionLease]:
    """Borrow ``count`` connections at once, so that each is a new one, opened in order."""
    return [await pool.acquire() for _ in range(count)]


async def release_all(pool: WebsocketConnectionPool, leases: list[ConnectionLease]) -> None:
    for lease in leases:
        await pool.release(lease)


# -- resize: growing ------------------------------------------------------------------------


async def test_growing_serves_the_waiters_at_once(server: LoopbackServer) -> None:
    async with make_pool(server, max_connections=1, acquire_timeout=2.0) as pool:
        held = await pool.acquire()
        waiters = [asyncio.create_task(pool.acquire()) for _ in range(2)]
        await wait_until(lambda: pool.stats().waiting == 2, "both wait")
        pool.resize(max_connections=3)
        assert pool.stats().max_connections == 3
        async with asyncio.timeout(1):  # far less than acquire_timeout
            served = await asyncio.gather(*waiters)
        assert len({held.id, *(lease.id for lease in served)}) == 3
        for lease in served:
            await round_trip(lease, "in a new slot")
        await release_all(pool, [held, *served])
        assert_consistent(pool)


# -- resize: shrinking ----------------------------------------------------------------------


async def test_shrinking_retires_idle_connections_oldest_first(server: LoopbackServer) -> None:
    async with make_pool(server, max_connections=3) as pool:
        leases = await borrow_all(pool, 3)
        await release_all(pool, leases)  # the last one opened is also the last released
        pool.resize(max_connections=1)
        assert pool.total_connections == pool.available_connections == 1  # at once
        assert [conn.id for conn in pool.connections] == [leases[-1].id]
        retired = [pooled(lease) for lease in leases[:-1]]
        await wait_until(lambda: all(conn.is_closed for conn in retired), "both retired")
        assert all("resized" in (conn.history[-1].reason or "") for conn in retired)
        async with pool.get_connection() as again:
            assert again.id == leases[-1].id
        assert pool.stats().max_connections == 1
        assert_consistent(pool)


async def test_shrinking_never_cuts_off_a_borrower(server: LoopbackServer) -> None:
    """Busy connections above the new limit keep working; they close when they come back."""
    async with make_pool(server, max_connections=2) as pool:
        first, second = await borrow_all(pool, 2)
        pool.resize(max_connections=1)
        assert pool.busy_connections == 2
        await round_trip(first, "still mine")
        await round_trip(second, "still mine too")
        with pytest.raises(ConnectionPoolExhaustedError):  # no new slot above the limit
            await pool.acquire(timeout=0.05)
        await pool.release(first)
        await wait_until(lambda: pooled(first).is_closed, "above the limit: closed on return")
        assert pool.total_connections == 1
        await round_trip(second, "unaffected")
        await pool.release(second)
        assert pool.available_connections == 1  # within the limit: kept
        async with pool.get_connection() as again:
            assert again.id == second.id
        assert_consistent(pool)


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        pytest.param({"max_connections": 0}, ValueError, id="max-zero"),
        pytest.param({"max_connections": 2.0}, TypeError, id="max-float"),
        pytest.param({"max_connections": True}, TypeError, id="max-bool"),
        pytest.param({"min_connections": -1}, ValueError, id="min-negative"),
        pytest.param({"min_connections": "1"}, TypeError, id="min-str"),
        pytest.param({"min_connections": 4}, ValueError, id="min-above-max"),
        pytest.param({"max_connections": 1}, ValueError, id="max-below-min"),
        pytest.param({"max_connections": 5, "min_connections": 6}, ValueError, id="both"),
    ],
)
async def test_a_bad_resize_raises_and_leaves_the_pool_as_it_was(
    server: LoopbackServer, arguments: dict[str, object], error: type[Exception]
) -> None:
    async with make_pool(server, max_connections=3, min_connections=2) as pool:
        await pool.wait(timeout=1)
        config = pool._core.config
        with pytest.raises(error):
            pool.resize(**arguments)  # type: ignore[arg-type]
        assert pool._core.config is config
        assert pool.stats().max_connections == 3
        assert pool.total_connections == 2
        assert_consistent(pool)


@pytest.mark.parametrize("minimum_before", [0, 1])
async def test_raising_min_connections_opens_them(
    server: LoopbackServer, minimum_before: int
) -> None:
    """Whether or not the pool kept a minimum before, the new one is kept from now on."""
    async with make_pool(server, max_connections=3, min_connections=minimum_before) as pool:
        await pool.wait(timeout=1)
        pool.resize(min_connections=3)
        await pool.wait(timeout=1)
        assert pool.available_connections == 3
        assert_consistent(pool)


async def test_after_shrinking_min_connections_are_replaced_within_the_new_limits(
    server: LoopbackServer,
) -> None:
    async with make_pool(
        server, max_connections=3, min_connections=3, cleanup_interval=0.02
    ) as pool:
        await pool.wait(timeout=1)
        pool.resize(max_connections=1, min_connections=1)
        await wait_until(lambda: server.open_connections == 1, "the two retired sockets closed")
        server.peak_connections = 1  # from now on: what the server sees after the resize
        await server.close_connections(1000)  # the one left dies (the sweep sees it): one short
        await wait_until(lambda: pool.stats().opened > 3, "a replacement opened")
        await pool.wait(timeout=1)
        await asyncio.sleep(0.1)  # time for any more replacements to open
        assert pool.total_connections == server.open_connections == 1
        assert pool.stats().opened == 4  # one replacement, not one per old minimum
        assert server.peak_connections == 1
        assert_consistent(pool)


async def test_shrinking_below_the_warm_up_lets_wait_return(server: LoopbackServer) -> None:
    """The pool cannot hold the warm-up any more: it is as full as it may be."""
    async with make_pool(server, max_connections=3, warmup_connections=3) as pool:
        await pool.wait(timeout=1)
        pool.resize(max_connections=2)
        await pool.wait(timeout=0.5)
        assert pool.total_connections == 2


async def test_a_pool_shrunk_before_it_starts_warms_up_within_the_limit(
    server: LoopbackServer,
) -> None:
    pool = make_pool(server, max_connections=3, warmup_connections=3)
    pool.resize(max_connections=1)
    async with pool:
        assert pool.total_connections <= 1
        assert server.peak_connections <= 1
        assert_consistent(pool)


# -- check ---------------------------------------------------------------------------------


async def test_check_retires_a_dead_idle_connection_and_keeps_the_rest(
    websocket_proxy: TcpProxy,
) -> None:
    async with make_pool(websocket_proxy.uri, max_connections=3, health_check_timeout=0.2) as pool:
        dead, alive, busy = await borrow_all(pool, 3)
        await release_all(pool, [dead, alive])
        websocket = pooled(dead).websocket
        assert websocket is not None
        websocket_proxy.link(websocket.local_address[1]).freeze()
        seen_before = pooled(alive).last_activity
        async with asyncio.timeout(1):
            await pool.check()
        assert pooled(dead).is_closed
        assert [conn.id for conn in pool.connections if conn.state is State.IDLE] == [alive.id]
        assert pooled(alive).last_activity > seen_before  # pinged too, though not due
        assert pool.stats().health_checks_failed == 1
        await round_trip(busy, "a borrower is not checked")
        await pool.release(busy)
        assert_consistent(pool)


async def test_check_with_nothing_idle_returns_at_once(server: LoopbackServer) -> None:
    async with make_pool(server) as pool:
        lease = await pool.acquire()
        started = time.monotonic()
        await pool.check()
        assert time.monotonic() - started < 0.1
        await round_trip(lease, "untouched")
        await pool.release(lease)


# -- wait ----------------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["min_connections", "warmup_connections"])
async def test_wait_starts_the_pool_and_returns_once_they_are_open(
    server: LoopbackServer, option: str
) -> None:
    pool = make_pool(server, max_connections=3, **{option: 2})
    try:
        async with asyncio.timeout(1):
            await pool.wait(timeout=1)
        assert pool.is_started
        assert pool.available_connections == 2
        assert server.open_connections == 2
    finally:
        await pool.close_all()


async def test_wait_times_out_naming_the_pool_then_succeeds(server: LoopbackServer) -> None:
    server.hold_handshakes()
    async with make_pool(server, min_connections=1, name="feeds") as pool:
        try:
            started = time.monotonic()
            with pytest.raises(ConnectionUnavailableError, match=r"^feeds: 0 of 1 connections"):
                await pool.wait(timeout=0.2)
            assert 0.2 <= time.monotonic() - started < 1.0
        finally:
            server.release_handshakes()
        await pool.wait(timeout=1)
        assert pool.available_connections == 1


async def test_wait_refuses_a_negative_timeout(server: LoopbackServer) -> None:
    async with make_pool(server, min_connections=1) as pool:
        with pytest.raises(ValueError, match="timeout"):
            await pool.wait(timeout=-1)


async def test_wait_on_a_closed_pool_raises(server: LoopbackServer) -> None:
    pool = make_pool(server, min_connections=1)
    await pool.close_all()
    with pytest.raises(ConnectionPoolUnavailableError):
        await pool.wait(timeout=0.5)
