"""The pool's policies, against a real server: lifetimes, expiry, shutdown.

Every test talks to the loopback echo server (``tests/loopback.py``) and turns
one policy on: ``max_lifetime`` at release,
:meth:`~WebsocketConnectionPool.expire_connections`, graceful
:meth:`~WebsocketConnectionPool.close`. (``min_connections`` and the sweep are
``tests/test_maintenance.py``'s; ``max_waiting`` and the health check before a
hand-out ``tests/test_handout.py``'s.) Each checks what borrowers see, why each
connection left (its history), the pool's counters and the server's sockets.

Waits poll a condition in a bounded loop (:func:`wait_until`); the only
timings asserted are lower bounds that a backoff guarantees.
"""

from __future__ import annotations

import asyncio

import pytest

from aio_websocket_pool import (
    ConnectionPoolUnavailableError,
    LeaseEndedError,
    State,
    WebsocketConnectionPool,
)
from helpers import (
    BOUND,
    assert_closed,
    assert_consistent,
    pooled,
    queue_acquirers,
    round_trip,
    server_closed_all,
    settle,
    spawn,
    wait_until,
)
from helpers import (
    unpinged_pool as make_pool,
)
from loopback import LoopbackServer

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
