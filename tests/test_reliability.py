"""Under faults, load and cancellation nothing is misdelivered, leaked or left hanging.

The worst bug a pool can have is handing one borrower another's reply; the
commonest is a slot that leaks on cancellation. Here many tasks send tagged
requests (the echo server answers each with its own tag) while the harness
injects faults and tasks are cancelled at random points, including between
their send and their receive. Every reply received must carry the receiver's
own tag; every other outcome must be a typed pool error; and after
``close_all()`` no socket, slot, task or loop complaint may be left.

The randomness is seeded; the request counts are bounded so that the whole
file runs in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from aio_websocket_pool import (
    ConnectionClosedError,
    ConnectionUnavailableError,
    State,
    WebsocketConnection,
    WebsocketConnectionPool,
)
from aio_websocket_pool.testing import (
    FAST_RECOVERY,
    STRAY_PREFIX,
    Chaos,
    LoopbackServer,
    Tally,
    TcpProxy,
    tagged_workload,
)
from helpers import BOUND, assert_consistent, pool_maker, pooled, round_trip, wait_until
from leaks import assert_no_leaks, consistent_throughout, strict_loop

pytestmark = pytest.mark.usefixtures("quiet_logs")

make_pool = pool_maker(max_connections=10, **FAST_RECOVERY)

#: Every kind of fault that Chaos injects with a proxy in front of the server.
ALL_FAULTS = (
    "close",
    "close instead of replying",
    "drop",
    "freeze",
    "refuse",
    "restart",
    "slow",
    "stray",
)


def assert_nothing_misdelivered(tally: Tally, requests: int) -> None:
    assert tally.misdelivered == []
    assert tally.untyped == []
    assert tally.requests == requests
    assert tally.succeeded > 0, tally


# -- no misdelivery ------------------------------------------------------------------------


async def test_no_misdelivery_under_cancellation_at_scale(websocket_server: LoopbackServer) -> None:
    """10,000 tagged requests; one in ten cancelled or abandoned at a random point."""
    websocket_server.stray_chance = 0.1  # strays after replies: drained before reuse
    pool = make_pool(websocket_server, max_connections=20)
    async with pool, consistent_throughout(pool):
        tally = await tagged_workload(pool, tasks=40, requests=250, seed=5, cancel_rate=0.1)
    assert_nothing_misdelivered(tally, 10_000)
    assert not tally.errors  # no fault was injected: nothing may fail
    assert tally.timed_out == 0
    assert tally.succeeded > 8_000
    assert tally.cancelled > 300
    assert tally.abandoned > 100
    await assert_no_leaks(pool, websocket_server)


async def test_no_misdelivery_and_no_leak_under_every_fault(
    websocket_server: LoopbackServer, websocket_proxy: TcpProxy
) -> None:
    async with strict_loop(debug=False):
        pool = make_pool(websocket_proxy.uri)
        chaos = Chaos(websocket_server, websocket_proxy, seed=11, interval=0.02)
        async with pool, consistent_throughout(pool), chaos.running():
            tally = await tagged_workload(pool, tasks=50, requests=40, seed=11)
        assert_nothing_misdelivered(tally, 2_000)
        assert sorted(chaos.injected) == sorted(ALL_FAULTS)
        await assert_no_leaks(pool, websocket_server, websocket_proxy)


@pytest.mark.parametrize("kind", ALL_FAULTS)
async def test_each_fault_alone_leaks_nothing(
    websocket_server: LoopbackServer, websocket_proxy: TcpProxy, kind: str
) -> None:
    async with strict_loop():
        pool = make_pool(websocket_proxy.uri)
        chaos = Chaos(websocket_server, websocket_proxy, seed=3, interval=0.02, kinds={kind})
        async with pool, chaos.running():
            tally = await tagged_workload(pool, tasks=20, requests=15, seed=3)
        assert_nothing_misdelivered(tally, 300)
        assert chaos.injected[kind] > 0
        await assert_no_leaks(pool, websocket_server, websocket_proxy)


async def test_strays_after_replies_are_drained_before_anyone_sees_them(
    websocket_server: LoopbackServer,
) -> None:
    """What ``check_server_data_on_release`` promises, given a quiet period long enough."""
    websocket_server.stray_messages = 2
    pool = make_pool(websocket_server, drain_quiet_period=0.05)
    async with pool:
        tally = await tagged_workload(pool, tasks=10, requests=10, cancel_rate=0)
    assert (tally.succeeded, tally.strays) == (100, 0)
    await assert_no_leaks(pool, websocket_server)


async def test_load_of_1000_tasks_over_50_connections(
    websocket_server: LoopbackServer, websocket_proxy: TcpProxy
) -> None:
    """Every task succeeds or gets a typed pool error; the limit holds throughout."""
    pool = make_pool(websocket_proxy.uri, max_connections=50, acquire_timeout=5.0)
    chaos = Chaos(websocket_server, websocket_proxy, seed=17, interval=0.02)
    async with pool, consistent_throughout(pool), chaos.running():
        tally = await tagged_workload(pool, tasks=1000, requests=3, seed=17)
    assert_nothing_misdelivered(tally, 3_000)
    assert pool.stats().opened >= 50  # all 50 connections were used
    await assert_no_leaks(pool, websocket_server, websocket_proxy)


# -- half-open and silent peers ------------------------------------------------------------


async def test_a_half_open_idle_connection_is_replaced_within_acquire_timeout(
    websocket_proxy: TcpProxy,
) -> None:
    pool = make_pool(
        websocket_proxy.uri,
        health_check_interval=0,
        acquire_timeout=1.0,
        check_server_data_on_release=False,
    )
    async with pool:
        async with pool.get_connection() as conn:
            await round_trip(conn, "before")
            # The pooled connection's: taking the lease's raw websocket would
            # (rightly) close the connection on release.
            websocket = pooled(conn).websocket
            assert websocket is not None
            websocket_proxy.link(websocket.local_address[1]).freeze()
        started = time.monotonic()
        async with pool.get_connection() as fresh:
            await round_trip(fresh, "after")
        assert time.monotonic() - started < 1.0
        assert pooled(fresh) is not pooled(conn)
        assert pooled(conn).is_closed
        assert pooled(conn).history[-1].reason == "health check failed: timed out"
        assert_consistent(pool)


async def test_a_borrower_stuck_on_a_silent_peer_is_freed_by_keepalive(
    websocket_server: LoopbackServer, websocket_proxy: TcpProxy
) -> None:
    """websockets' own keepalive (``ping_interval``, passed through) bounds a ``recv()``."""
    pool = make_pool(websocket_proxy.uri, ping_interval=0.05, ping_timeout=0.1)
    borrowed: list[WebsocketConnection] = []

    async def wait_for_a_reply_that_never_comes() -> None:
        async with asyncio.timeout(BOUND), pool.get_connection() as conn:
            borrowed.append(conn)
            await round_trip(conn, "before")
            websocket_proxy.freeze()
            await conn.send("never answered")
            await conn.recv()

    async with strict_loop(), pool:
        with pytest.raises(ConnectionClosedError):
            await wait_for_a_reply_that_never_comes()
        (conn,) = borrowed
        assert pooled(conn).is_closed
        assert pool.total_connections == 0
        websocket_proxy.thaw()
        await assert_no_leaks(pool, websocket_server, websocket_proxy)


async def test_close_all_returns_within_close_timeout_when_every_peer_is_silent(
    websocket_server: LoopbackServer, websocket_proxy: TcpProxy
) -> None:
    pool = make_pool(websocket_proxy.uri, close_timeout=0.2)
    async with strict_loop():
        held = [await pool.acquire() for _ in range(3)]
        await pool.release(held.pop())
        websocket_proxy.freeze()
        started = time.monotonic()
        await pool.close_all()
        assert time.monotonic() - started < 0.2 + 0.5
        assert all(pooled(conn).is_closed for conn in held)
        websocket_proxy.thaw()
        await assert_no_leaks(pool, websocket_server, websocket_proxy)


# -- server restart ------------------------------------------------------------------------


@pytest.mark.parametrize("code", [1001, 1012])
async def test_after_a_restart_the_pool_recovers_on_the_next_acquire(
    websocket_server: LoopbackServer, code: int
) -> None:
    server = websocket_server
    async with make_pool(server) as pool:
        async with pool.get_connection() as conn:
            await round_trip(conn, "before")
        await server.stop(code)
        with pytest.raises(ConnectionUnavailableError) as info:
            await pool.acquire()
        assert isinstance(info.value.__cause__, OSError)
        assert pooled(conn).is_closed
        assert any(f"close code {code}" in (r.reason or "") for r in pooled(conn).history)
        assert pool.total_connections == 0

        await server.start()
        async with pool.get_connection() as again:
            await round_trip(again, "after")
        assert_consistent(pool)
    await assert_no_leaks(pool, server)


# -- a hostile server ------------------------------------------------------------------------


async def test_an_oversized_message_closes_the_connection_and_frees_its_slot(
    websocket_server: LoopbackServer,
) -> None:
    """websockets' ``max_size`` (1 MiB by default) bounds what one message may cost."""
    async with make_pool(websocket_server, max_size=1024) as pool:
        conn = await pool.acquire()
        await websocket_server.push(STRAY_PREFIX + "x" * 2048)
        with pytest.raises(ConnectionClosedError, match="close code 1009"):
            await conn.recv()
        await pool.release(conn)
        assert pooled(conn).state is State.CLOSED
        assert pool.total_connections == 0
        async with pool.get_connection() as fresh:
            await round_trip(fresh, "x" * 1000)
        await wait_until(lambda: websocket_server.open_connections == 1, "the server saw it")
    await assert_no_leaks(pool, websocket_server)


def test_the_pool_leaves_max_size_to_websockets() -> None:
    """The default is websockets' own: the pool passes ``max_size`` only if given."""
    pool = WebsocketConnectionPool("ws://127.0.0.1:9/")
    assert "max_size" not in pool._core.config.connect_kwargs


# -- borrowers that misuse their leases ----------------------------------------------------


@contextlib.asynccontextmanager
async def idle_bursts(server: LoopbackServer, size: int = 100) -> AsyncIterator[None]:
    """During the block, the server pushes bursts of ``size`` strays to its idle connections."""

    async def burst_forever() -> None:
        while True:
            for _ in range(size):
                await server.push(f"{STRAY_PREFIX}burst", which="idle")
            await asyncio.sleep(0.05)

    bursts = asyncio.create_task(burst_forever())
    try:
        yield
    finally:
        bursts.cancel()
        await asyncio.wait({bursts})


async def test_no_misdelivery_when_borrowers_misuse_their_leases(
    websocket_server: LoopbackServer,
) -> None:
    """Receives timed out in the block or left pending, stale handles, bursts while idle.

    Without a drain on release (the default): nothing but the pool's own
    ownership of its connections stands between a late reply and the next borrower.
    """
    pool = make_pool(websocket_server, check_server_data_on_release=False)
    async with pool, consistent_throughout(pool), idle_bursts(websocket_server):
        tally = await tagged_workload(
            pool, tasks=20, requests=20, seed=23, cancel_rate=0.1, misuse_rate=0.4
        )
    assert tally.misdelivered == []
    assert tally.untyped == []
    assert tally.stale_misjudged == 0
    assert tally.requests == 400
    assert tally.succeeded > 0, tally
    assert tally.gave_up > 0, tally
    assert tally.stale > 0, tally
    await assert_no_leaks(pool, websocket_server)
