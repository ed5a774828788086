"""Regression tests from the third review round (hooks, policies, signals), one per defect.

Each test asserts the behaviour the README and the docstrings promise, against
the real loopback server. Each was written first as a strict xfail that proved
the defect, and its mark came off with the fix.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import pytest

from aio_websocket_pool import (
    ConnectionBusyError,
    ConnectionClosedError,
    ConnectionPoolUnavailableError,
    LeaseEndedError,
    WebsocketConnection,
)
from aio_websocket_pool._backoff import MAX_DELAY, Backoff
from helpers import BOUND, assert_consistent, pool_maker, pooled, round_trip, settle, wait_until
from loopback import LoopbackServer

#: Bounded acquires, no sweep during a test, no health check unless a test asks.
make_pool = pool_maker(health_check_interval=None, acquire_timeout=BOUND, cleanup_interval=60.0)


def spawn(coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """A task the leak check does not mistake for one of the pool's."""
    return asyncio.create_task(coroutine, name="test task")


# -- policies ----------------------------------------------------------------------------


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
        await wait_until(lambda: pool._closing, "close() began")
        await pool.release(conn)
        await settle()
        assert pooled(conn).is_closed  # actual: draining, for drain_quiet_period
    finally:
        await pool.close_all()
        await asyncio.wait_for(closing, BOUND)


# -- server signals ------------------------------------------------------------------------


async def test_the_backoff_stays_capped_however_many_signals_come_in_a_row() -> None:
    """A server down for hours (about 1000 failed keeper rounds) still gets MAX_DELAY."""
    backoff = Backoff()
    # What 1024 earlier signals in a row leave behind; each waits up to MAX_DELAY
    # (10 s), so a server down for about three hours gets the keeper this far.
    backoff._signals = 1024
    assert 0 < backoff.trip() <= MAX_DELAY  # actual: OverflowError


# -- hooks and unsolicited messages --------------------------------------------------------


async def test_a_former_borrower_cannot_use_the_connection_while_on_release_runs(
    server: LoopbackServer,
) -> None:
    """After release(), the borrower's I/O is refused, as it is once the connection is idle."""
    in_hook, leave_hook = asyncio.Event(), asyncio.Event()

    async def on_release(conn: WebsocketConnection) -> None:
        in_hook.set()
        await leave_hook.wait()

    async with make_pool(server, on_release=on_release) as pool:
        conn = await pool.acquire()
        await pool.release(conn)
        await asyncio.wait_for(in_hook.wait(), BOUND)
        try:
            # Actual: the send goes through, and its echo waits for the next borrower.
            with pytest.raises(LeaseEndedError):
                await conn.send("after release")
        finally:
            leave_hook.set()


async def test_a_message_that_arrives_during_the_health_check_never_reaches_the_borrower(
    server: LoopbackServer,
) -> None:
    """A push received before acquire() returned is unsolicited, even if it came mid-ping."""
    async with make_pool(server, max_connections=1, health_check_interval=0) as pool:
        conn = await pool.acquire()
        await round_trip(conn, "first")
        await pool.release(conn)
        server.freeze()  # the pong of the coming health check waits for thaw()
        acquirer = spawn(pool.acquire())
        await wait_until(
            lambda: pooled(conn).is_busy, "the acquirer was granted the idle connection"
        )
        await settle()  # its ping is sent
        assert await server.push() == 1  # the server sends while the pool checks it
        await wait_until(
            lambda: pool.stats().unsolicited_messages == 1, "the push was taken as unsolicited"
        )
        assert not acquirer.done()
        server.thaw()  # the pong comes: the health check passes
        async with asyncio.timeout(BOUND):
            borrowed = await acquirer
        assert pooled(borrowed) is pooled(conn)
        await borrowed.send("second")
        reply = await asyncio.wait_for(borrowed.recv(), BOUND)  # actual: "stray push"
        await pool.release(borrowed)
    assert reply == "second"


async def test_on_release_runs_only_for_connections_that_on_acquire_handed_out(
    server: LoopbackServer,
) -> None:
    """on_acquire and on_release come in pairs: no unsubscribe without a subscribe."""
    acquired: list[WebsocketConnection] = []
    released: list[WebsocketConnection] = []

    async def on_acquire(conn: WebsocketConnection) -> None:
        acquired.append(conn)

    async def on_release(conn: WebsocketConnection) -> None:
        released.append(conn)

    async with make_pool(
        server, max_connections=1, health_check_interval=0, on_acquire=on_acquire,
        on_release=on_release,
    ) as pool:  # fmt: skip
        conn = await pool.acquire()
        await pool.release(conn)
        await wait_until(lambda: pool.available_connections == 1, "on_release ran")
        server.freeze()  # the next health check waits for its pong
        acquirer = spawn(pool.acquire())
        await wait_until(lambda: pooled(conn).is_busy, "the acquirer was granted it")
        await settle()  # its ping is sent
        acquirer.cancel()  # the caller gives up during the health check
        with pytest.raises(asyncio.CancelledError):
            await acquirer
        server.thaw()
        await wait_until(lambda: pool.available_connections == 1, "it is idle again")
        assert (len(acquired), len(released)) == (1, 1)  # actual: (1, 2)


# -- get_connection() ----------------------------------------------------------------------


async def test_one_get_connection_object_entered_by_two_tasks_keeps_their_connections_apart(
    server: LoopbackServer,
) -> None:
    """Each exit gives back its own connection (or the second entry is refused)."""
    async with make_pool(server) as pool:
        borrow = pool.get_connection()
        entered: list[WebsocketConnection] = []
        second_may_leave = asyncio.Event()

        async def first() -> None:
            async with borrow as conn:
                entered.append(conn)
                await wait_until(lambda: len(entered) == 2, "both entered")

        async def second() -> None:
            await wait_until(lambda: len(entered) == 1, "the first entered")
            try:
                async with borrow as conn:
                    entered.append(conn)
                    await second_may_leave.wait()
                    assert conn.is_busy, "released under its borrower by the other exit"
            except ConnectionBusyError:  # a refused second entry is correct as well
                entered.append(entered[0])

        tasks = [spawn(first()), spawn(second())]
        await wait_until(tasks[0].done, "the first left its block")
        second_may_leave.set()
        async with asyncio.timeout(BOUND):
            await asyncio.gather(*tasks)
        assert pool.busy_connections == 0  # actual: the first borrower's stays busy
        assert_consistent(pool)


# -- secrets -------------------------------------------------------------------------------


async def test_a_secret_in_a_close_reason_is_masked_in_the_frame_log(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that quotes the API key in its close reason does not put it in the log."""
    secret = "k3y-0f-th3-t3st-cl13nt"  # noqa: S105  (a test value)
    caplog.set_level(logging.DEBUG, logger="websockets")
    async with make_pool(server, headers={"X-Api-Key": secret}) as pool:
        conn = await pool.acquire()
        [server_side] = server.connections
        await server_side.close(1008, f"key {secret} revoked")
        with pytest.raises(ConnectionClosedError):
            await conn.recv()
        await pool.release(conn)
    # The client's log only: the server's is the test harness's, not the library's.
    client_lines = [r.getMessage() for r in caplog.records if r.name == "websockets.client"]
    assert any(line.startswith("< CLOSE 1008") for line in client_lines), client_lines
    assert not [line for line in client_lines if secret in line]


async def test_closing_the_connection_inside_get_connection_is_not_release_misuse(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    """``conn.close()`` in the block gives the slot back; leaving the block warns of nothing."""
    caplog.set_level(logging.WARNING, logger="aio_websocket_pool")
    async with make_pool(server) as pool:
        async with pool.get_connection() as conn:
            await conn.close()
        assert pool.total_connections == 0
        assert not [r for r in caplog.records if r.name == "aio_websocket_pool"]
        async with pool.get_connection() as again:
            await round_trip(again, "after")
