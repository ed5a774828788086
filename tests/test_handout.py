"""What an acquire waits for and checks before a hand-out (``_handout``), on a real server.

The line's bound (``max_waiting``), and the health check before reuse: skipped
after a recent keepalive pong, failed by a frozen peer.
"""

from __future__ import annotations

import asyncio
import time

import pytest

import aio_websocket_pool
from aio_websocket_pool import (
    ConnectionPoolExhaustedError,
    State,
)
from aio_websocket_pool._exceptions import TooManyWaitersError
from helpers import (
    BOUND,
    assert_closed,
    assert_consistent,
    pooled,
    queue_acquirers,
    round_trip,
    spawn,
    wait_until,
)
from helpers import (
    unpinged_pool as make_pool,
)
from loopback import LoopbackServer

# -- max_waiting --------------------------------------------------------------------------


async def test_acquirers_beyond_max_waiting_fail_at_once(server: LoopbackServer) -> None:
    """Beyond max_waiting queued acquirers, acquire() fails at once; those in line are served."""
    async with make_pool(server, max_connections=1, max_waiting=2) as pool:
        held = await pool.acquire()
        waiters = await queue_acquirers(pool, 2)

        with pytest.raises(TooManyWaitersError) as excinfo:
            await pool.acquire()

        assert isinstance(excinfo.value, ConnectionPoolExhaustedError)
        assert "max_waiting=2" in str(excinfo.value)
        assert pool.stats().waiting == 2  # the two in line keep their places
        for waiter in waiters:
            await pool.release(held)
            async with asyncio.timeout(BOUND):
                held = await waiter
            await round_trip(held, "served")
        await pool.release(held)
        stats = assert_consistent(pool)
        assert (stats.acquired, stats.opened, stats.waiting) == (3, 1, 0)


async def test_max_waiting_zero_never_queues(server: LoopbackServer) -> None:
    """max_waiting=0 fails when nothing is free and serves at once when something is."""
    async with make_pool(server, max_connections=1, max_waiting=0) as pool:
        held = await pool.acquire()
        with pytest.raises(TooManyWaitersError):
            await pool.acquire()
        assert pool.stats().waiting == 0
        await pool.release(held)
        again = await pool.acquire()  # something free: no queueing needed
        assert pooled(again) is pooled(held)
        await pool.release(again)
        assert_consistent(pool)


@pytest.mark.parametrize("leave", ["cancel", "wait_for"])
async def test_a_waiter_that_left_frees_its_place_in_line(
    server: LoopbackServer, leave: str
) -> None:
    """A waiter that gave up no longer counts against max_waiting."""
    async with make_pool(server, max_connections=1, max_waiting=1) as pool:
        held = await pool.acquire()
        if leave == "cancel":
            (gone,) = await queue_acquirers(pool, 1)
            gone.cancel()
            with pytest.raises(asyncio.CancelledError):
                await gone
        else:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(pool.acquire(), 0.05)

        (waiter,) = await queue_acquirers(pool, 1)  # not TooManyWaitersError

        await pool.release(held)
        async with asyncio.timeout(BOUND):
            got = await waiter
        assert pooled(got) is pooled(held)
        await pool.release(got)
        assert_consistent(pool)


@pytest.mark.regression
async def test_a_waiter_cancelled_as_another_arrives_leaves_room_under_max_waiting(
    server: LoopbackServer,
) -> None:
    """With max_waiting=1, the place a cancelled waiter left is free for the next acquirer."""
    async with make_pool(server, max_connections=1, max_waiting=1) as pool:
        held = await pool.acquire()
        first = spawn(pool.acquire())
        await wait_until(lambda: pool.stats().waiting == 1, "the first acquirer waits")
        # One loop iteration: the held connection is retired (a dispatch is scheduled,
        # its socket still closes, so the pool stays full), a newcomer arrives, and the
        # waiter gives up. Nobody else waits, so the newcomer may queue.
        await pool.release(held, force_remove=True)
        newcomer = spawn(pool.acquire())
        first.cancel()
        async with asyncio.timeout(BOUND):
            conn = await newcomer  # actual: TooManyWaitersError, 1 acquirer already waits
        with pytest.raises(asyncio.CancelledError):
            await first
        await round_trip(conn, "after the close")
        await pool.release(conn)
        assert_consistent(pool)


def test_too_many_waiters_error_is_public() -> None:
    """The error acquire() raises beyond max_waiting can be imported from the package."""
    assert getattr(aio_websocket_pool, "TooManyWaitersError", None) is TooManyWaitersError
    assert "TooManyWaitersError" in aio_websocket_pool.__all__


# -- latency, and the health check a keepalive pong makes unnecessary ----------------------


async def test_a_recent_keepalive_pong_skips_the_health_check(server: LoopbackServer) -> None:
    """A keepalive pong within health_check_interval makes the health-check ping unnecessary."""
    interval = 0.05
    async with make_pool(server, health_check_interval=interval, ping_interval=0.02) as pool:
        lease = await pool.acquire()
        await round_trip(lease, "one")
        await pool.release(lease)
        conn = pooled(lease)
        # No traffic for twice the interval, yet a keepalive pong proved the peer alive.
        await wait_until(
            lambda: (
                conn.idle_for > 2 * interval and conn._unproven_for(time.monotonic()) < interval / 2
            ),
            "idle past the interval, with a recent pong",
        )

        again = await pool.acquire()

        assert pooled(again) is conn
        assert conn.latency > 0.0  # measured by the keepalive
        # A health-check ping would have counted as traffic and reset idle_for.
        assert conn.idle_for > 2 * interval
        await round_trip(again, "two")
        stats = assert_consistent(pool)
        assert (stats.health_checks_failed, stats.reused, stats.opened) == (0, 1, 1)
        await pool.release(again)


async def test_without_keepalive_a_frozen_peer_fails_the_health_check(
    server: LoopbackServer,
) -> None:
    """Without keepalive, a connection idle past the interval is pinged, and replaced if silent."""
    interval = 0.05
    async with make_pool(
        server,
        health_check_interval=interval,
        health_check_timeout=0.1,
        ping_interval=None,
        close_timeout=0.2,
    ) as pool:
        lease = await pool.acquire()
        await round_trip(lease, "one")
        await pool.release(lease)
        conn = pooled(lease)
        await wait_until(lambda: conn.idle_for > interval, "idle past the interval")
        server.freeze()

        fresh = await pool.acquire()

        assert pooled(fresh) is not conn
        assert_closed(conn, State.BUSY, "health check failed")
        server.thaw()
        await round_trip(fresh, "two")
        stats = assert_consistent(pool)
        assert (stats.health_checks_failed, stats.opened, stats.closed) == (1, 2, 1)
        await pool.release(fresh)
