"""The pool's policies, against a real server: lifetimes, a floor, a queue bound, expiry, shutdown.

Every test talks to the loopback echo server (``tests/loopback.py``) and turns
one policy on: ``max_lifetime``, ``min_connections``, ``max_waiting``,
:meth:`~WebsocketConnectionPool.expire_connections`, graceful
:meth:`~WebsocketConnectionPool.close`, and the health check skipped after a
keepalive pong. Each checks what borrowers see, why each connection left (its
history), the pool's counters and the server's sockets.

Waits poll a condition in a bounded loop (:func:`wait_until`); the only
timings asserted are lower bounds that a backoff guarantees.
"""

from __future__ import annotations

import asyncio
import time

import pytest

import aio_websocket_pool
from aio_websocket_pool import (
    ConnectionLease,
    ConnectionPoolExhaustedError,
    ConnectionPoolUnavailableError,
    LeaseEndedError,
    State,
    WebsocketConnection,
    WebsocketConnectionPool,
)
from aio_websocket_pool._exceptions import TooManyWaitersError
from helpers import (
    BOUND,
    assert_consistent,
    pool_maker,
    pooled,
    round_trip,
    settle,
    spawn,
    triggers,
    wait_until,
)
from loopback import LoopbackServer

#: Bounded acquires; no health-check pings unless a test asks for them.
make_pool = pool_maker(health_check_interval=None, acquire_timeout=BOUND)


# -- helpers ------------------------------------------------------------------------------


def assert_closed(conn: WebsocketConnection, source: State, reason_part: str) -> None:
    """``conn`` was closed from ``source`` for a reason that mentions ``reason_part``."""
    assert conn.is_closed
    record = conn.history[-1]
    assert (record.trigger, record.source, record.dest) == ("close", source, State.CLOSED)
    assert reason_part in (record.reason or ""), record.reason


async def queue_acquirers(
    pool: WebsocketConnectionPool, count: int
) -> list[asyncio.Task[ConnectionLease]]:
    """Start ``count`` more acquirers and wait until they all queue."""
    queued = pool.stats().waiting
    tasks = [spawn(pool.acquire()) for _ in range(count)]
    await wait_until(lambda: pool.stats().waiting == queued + count, f"{count} more queued")
    return tasks


async def server_closed_all(server: LoopbackServer) -> None:
    await wait_until(lambda: server.open_connections == 0, "the server saw every socket close")


# -- max_lifetime -------------------------------------------------------------------------


async def test_a_connection_past_max_lifetime_is_closed_on_release_and_replaced_lazily(
    server: LoopbackServer,
) -> None:
    """A connection is reused while young, closed on release once old, replaced only on demand."""
    async with make_pool(server, max_lifetime=0.3) as pool:
        first = await pool.acquire()
        await pool.release(first)
        lease = await pool.acquire()
        conn = pooled(lease)
        assert conn is pooled(first)  # young: reused
        await round_trip(lease, "young")
        await wait_until(lambda: conn.age > conn._lifetime, "older than its lifetime")

        await pool.release(lease)

        assert_closed(conn, State.BUSY, "older than max_lifetime")
        assert pool.total_connections == 0  # no replacement until someone asks
        assert server.handshakes == 1
        fresh = await pool.acquire()
        assert pooled(fresh) is not conn
        await round_trip(fresh, "fresh")
        assert server.handshakes == 2
        stats = assert_consistent(pool)
        assert (stats.opened, stats.closed, stats.busy) == (2, 1, 1)
        await pool.release(fresh)


async def test_lifetimes_are_jittered_within_ten_percent(server: LoopbackServer) -> None:
    """Connections opened together get different lifetimes, within ±10 % of max_lifetime."""
    async with make_pool(
        server, max_lifetime=100.0, max_connections=8, warmup_connections=8
    ) as pool:
        lifetimes = [conn._lifetime for conn in pool.connections]
        assert len(lifetimes) == 8
        assert all(90.0 <= lifetime <= 110.0 for lifetime in lifetimes), lifetimes
        assert len(set(lifetimes)) > 1, "every connection would retire at the same moment"
        assert_consistent(pool)


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


# -- expire_connections -------------------------------------------------------------------


async def test_expire_connections_retires_idle_now_and_busy_on_release(
    server: LoopbackServer,
) -> None:
    """expire_connections() closes idle ones now, busy ones on release, and spares later ones."""
    async with make_pool(server) as pool:
        busy, idle = await pool.acquire(), await pool.acquire()
        await pool.release(idle)

        pool.expire_connections()

        assert_closed(pooled(idle), State.IDLE, "expire_connections")
        assert busy.is_busy
        await round_trip(busy, "still mine")  # its borrower is not disturbed
        await pool.release(busy)
        assert_closed(pooled(busy), State.BUSY, "expire_connections")
        fresh = await pool.acquire()
        assert pooled(fresh) not in (pooled(busy), pooled(idle))
        await round_trip(fresh, "fresh")
        assert server.handshakes == 3
        await pool.release(fresh)
        again = await pool.acquire()
        assert pooled(again) is pooled(fresh)  # opened after the call: kept
        await pool.release(again)
        stats = assert_consistent(pool)
        assert (stats.opened, stats.closed, stats.idle) == (3, 2, 1)


# -- close(timeout) -----------------------------------------------------------------------


async def test_close_fails_queued_and_new_acquirers_at_once(server: LoopbackServer) -> None:
    """close() fails the queue and newcomers at once, and waits for the borrower."""
    pool = make_pool(server, max_connections=1)
    held = await pool.acquire()
    (waiter,) = await queue_acquirers(pool, 1)
    closing = asyncio.create_task(pool.close(timeout=BOUND), name="test close")
    async with asyncio.timeout(BOUND):
        with pytest.raises(ConnectionPoolUnavailableError):
            await waiter
    with pytest.raises(ConnectionPoolUnavailableError):
        await pool.acquire()
    assert not closing.done()  # still waiting for the borrower

    await round_trip(held, "finishing")
    await pool.release(held)
    async with asyncio.timeout(BOUND):
        await closing
    assert_closed(pooled(held), State.BUSY, "pool closing")
    assert pool.is_closed
    assert_consistent(pool)
    await server_closed_all(server)


async def test_close_lets_a_borrower_finish_then_closes_its_connection(
    server: LoopbackServer,
) -> None:
    """close() closes idle ones now; a borrower finishes its round trip, then its one closes."""
    pool = make_pool(server)
    busy, idle = await pool.acquire(), await pool.acquire()
    await pool.release(idle)
    closing = asyncio.create_task(pool.close(timeout=BOUND), name="test close")
    await wait_until(lambda: pooled(idle).is_closed, "the idle one closed at once")
    assert_closed(pooled(idle), State.IDLE, "pool closing")

    await round_trip(busy, "request")  # a full round trip, during the shutdown
    await pool.release(busy)
    async with asyncio.timeout(BOUND):
        await closing

    assert_closed(pooled(busy), State.BUSY, "pool closing")
    stats = assert_consistent(pool)
    assert (stats.total, stats.opened, stats.closed) == (0, 2, 2)
    await server_closed_all(server)


async def test_close_closes_what_is_not_given_back_within_the_timeout(
    server: LoopbackServer,
) -> None:
    """After close()'s timeout, connections still held are closed under their borrowers."""
    pool = make_pool(server)
    held = await pool.acquire()

    await pool.close(timeout=0.05)

    assert pooled(held).is_closed
    with pytest.raises(LeaseEndedError):  # closing it ended the lease
        await held.send("too late")
    await pool.release(held)  # ignored: nothing to give back
    assert (pool.total_connections, pool.is_closed) == (0, True)
    assert_consistent(pool)
    await server_closed_all(server)


async def test_close_waits_for_a_connection_being_opened_for_an_acquirer(
    server: LoopbackServer,
) -> None:
    """close() lets an acquirer whose handshake is in flight use its connection, then closes it."""
    # close()'s docstring: connections "being opened for" a borrower are closed as they come back.
    pool = make_pool(server)
    server.hold_handshakes()
    acquirer = spawn(pool.acquire())
    await wait_until(lambda: server.handshakes_in_flight == 1, "the handshake is in flight")
    closing = asyncio.create_task(pool.close(timeout=BOUND), name="test close")
    await wait_until(lambda: pool._core.closing, "close() began")
    server.release_handshakes()
    try:
        async with asyncio.timeout(BOUND):
            conn = await acquirer
        await round_trip(conn, "opened during close")
        await pool.release(conn)
        assert_closed(pooled(conn), State.BUSY, "pool closing")
    finally:
        async with asyncio.timeout(BOUND):
            await closing
    assert_consistent(pool)
    await server_closed_all(server)


@pytest.mark.regression
async def test_a_close_cancelled_while_waiting_for_borrowers_still_shuts_the_pool_down(
    server: LoopbackServer,
) -> None:
    """asyncio.wait_for(pool.close(), t) that times out leaves no pool task behind."""
    pool = make_pool(server)
    try:
        conn = await pool.acquire()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.close(), 0.05)  # the borrower keeps its connection
        with pytest.raises(ConnectionPoolUnavailableError):
            await pool.acquire()  # the pool is not open any more...
        await pool.release(conn)
        # ...so it must end up closed, as close_all() leaves it when cancelled.
        await wait_until(lambda: pool.is_closed, "the pool closed", within=1.0)
    finally:
        await pool.close_all()


@pytest.mark.regression
async def test_a_connection_given_back_during_close_is_closed_at_once_not_drained(
    server: LoopbackServer,
) -> None:
    """close(): borrowed connections "are closed as they come back"."""
    pool = make_pool(
        server, check_server_data_on_release=True, drain_quiet_period=BOUND,
        drain_timeout=2 * BOUND,
    )  # fmt: skip
    conn = await pool.acquire()
    closing = spawn(pool.close())
    try:
        await wait_until(lambda: pool._core.closing, "close() began")
        await pool.release(conn)
        await settle()
        assert pooled(conn).is_closed  # actual: draining, for drain_quiet_period
    finally:
        await pool.close_all()
        await asyncio.wait_for(closing, BOUND)


@pytest.mark.parametrize("bad", [-1, -0.5, float("nan")])
async def test_close_with_a_timeout_that_is_not_a_duration_is_rejected(bad: float) -> None:
    """close() refuses a negative or NaN timeout, and shuts nothing down."""
    pool = WebsocketConnectionPool("ws://127.0.0.1:9/")
    with pytest.raises(ValueError, match="timeout"):
        await pool.close(timeout=bad)
    assert not pool.is_closed  # nothing was shut down by the refused call


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
