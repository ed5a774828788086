"""``pool.stats()``, against a real server: each figure counts what actually happened.

Every test makes one thing happen for real on the loopback echo server
(``tests/loopback.py``): a wait for the only connection, a slow handshake, a
peer that closes an idle connection, a frozen peer, a failing hook, stray
messages. It then checks the figure that must count it, and the others that
must not, and that the counters agree with the connections' states
(:func:`assert_consistent`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import pytest

from aio_websocket_pool import State, WebsocketConnection, WebsocketConnectionPool
from aio_websocket_pool._exceptions import ConnectionHookError
from aio_websocket_pool._stats import Timing
from helpers import BOUND, assert_consistent, pool_maker, pooled, round_trip, wait_until
from loopback import LoopbackServer

#: Bounded acquires; no health-check pings unless a test asks for them.
make_pool = pool_maker(health_check_interval=None, acquire_timeout=BOUND)

#: How long a test holds the only connection while another acquirer waits for it.
HOLD = 0.05


def spawn(pool: WebsocketConnectionPool, *, new: bool = False) -> asyncio.Task[WebsocketConnection]:
    """An acquirer task (named so that the leak check does not mistake it)."""
    acquire = pool.acquire_new() if new else pool.acquire()
    return asyncio.create_task(acquire, name="test acquirer")


async def test_stats_count_connections_by_state(server: LoopbackServer) -> None:
    """stats() counts connecting, idle, busy and draining connections, one of each here."""
    cleaning = asyncio.Event()

    async def on_release(conn: WebsocketConnection) -> None:
        if conn is pooled(draining):
            await cleaning.wait()

    async with make_pool(server, max_connections=4, on_release=on_release) as pool:
        busy, draining, idle = [await pool.acquire() for _ in range(3)]
        await pool.release(idle)
        await wait_until(lambda: pooled(idle).state is State.IDLE, "the idle one was cleaned")
        await pool.release(draining)  # its on_release waits: it stays draining
        server.hold_handshakes()
        connecting = spawn(pool, new=True)
        await wait_until(lambda: server.handshakes_in_flight == 1, "a handshake is in flight")

        stats = assert_consistent(pool)
        counts = (stats.connecting, stats.idle, stats.busy, stats.draining, stats.total)
        assert counts == (1, 1, 1, 1, 4)
        assert (stats.waiting, stats.max_connections) == (0, 4)

        server.release_handshakes()
        cleaning.set()
        async with asyncio.timeout(BOUND):
            await pool.release(await connecting)
        await pool.release(busy)
        await wait_until(lambda: pool.available_connections == 4, "all four idle")
        assert_consistent(pool)


async def test_acquire_wait_counts_every_acquire_and_the_longest_wait(
    server: LoopbackServer,
) -> None:
    """acquire_wait counts each acquire, and its max covers a wait for a held connection."""
    async with make_pool(server, max_connections=1) as pool:
        held = await pool.acquire()
        waiter = spawn(pool)
        await wait_until(lambda: pool.stats().waiting == 1, "the second acquirer waits")
        await asyncio.sleep(HOLD)  # the wait being measured, not a synchronisation
        await pool.release(held)
        async with asyncio.timeout(BOUND):
            conn = await waiter
        await pool.release(conn)

        wait = assert_consistent(pool).acquire_wait
        assert wait.count == 2
        assert wait.max >= HOLD
        assert wait.total >= wait.max
        assert wait.mean == pytest.approx(wait.total / 2)


@pytest.mark.parametrize("delay", [0.0, 0.05])
async def test_connect_time_counts_every_connection_opened(
    server: LoopbackServer, delay: float
) -> None:
    """connect_time counts each connection opened, handshake delay included, reuses not."""
    server.handshake_delay = delay
    async with make_pool(server, max_connections=3) as pool:
        conns = await asyncio.gather(*(pool.acquire() for _ in range(3)))
        for conn in conns:
            await pool.release(conn)
        await pool.release(await pool.acquire())  # reused: nothing opened, nothing timed

        stats = assert_consistent(pool)
        assert stats.connect_time.count == stats.opened == 3
        assert stats.connect_time.total > 0.0
        assert stats.connect_time.max >= delay
        assert stats.acquire_wait.count == 4


@pytest.mark.parametrize("held", [False, True], ids=["while-idle", "while-busy"])
async def test_a_connection_closed_by_the_peer_is_counted_lost_once_noticed(
    server: LoopbackServer, held: bool
) -> None:
    """A connection the peer closed counts as lost once the pool notices it, not before."""
    async with make_pool(server) as pool:
        lease = await pool.acquire()
        conn = pooled(lease)
        if not held:
            await pool.release(lease)
        await server.close_connections()
        await wait_until(lambda: not conn.is_connected, "the client saw the close")
        assert pool.stats().connections_lost == 0  # nobody looked at it yet

        if held:
            await pool.release(lease)  # its release notices
        fresh = await pool.acquire()

        assert pooled(fresh) is not conn
        assert conn.is_closed
        stats = assert_consistent(pool)
        assert (stats.connections_lost, stats.closed, stats.health_checks_failed) == (1, 1, 0)
        await pool.release(fresh)


async def test_a_failed_health_check_is_counted(server: LoopbackServer) -> None:
    """A health check that got no pong counts as failed, not as a lost connection."""
    async with make_pool(
        server, health_check_interval=0, health_check_timeout=0.1, close_timeout=0.2
    ) as pool:
        conn = await pool.acquire()
        await pool.release(conn)
        server.freeze()  # no pong will come

        fresh = await pool.acquire()

        assert pooled(fresh) is not pooled(conn)
        stats = assert_consistent(pool)
        # Silent, not closed: a failed check, not a lost connection.
        assert (stats.health_checks_failed, stats.connections_lost, stats.closed) == (1, 0, 1)
        server.thaw()
        await pool.release(fresh)


# -- hooks_failed -------------------------------------------------------------------------


async def refuse_connection(conn: WebsocketConnection) -> None:
    raise RuntimeError("rejected")


async def refuse_message(conn: WebsocketConnection, message: str | bytes) -> None:
    raise RuntimeError("rejected")


async def make_a_hook_fail(
    pool: WebsocketConnectionPool, server: LoopbackServer, hook: str
) -> None:
    """Drive ``pool`` until its failing ``hook`` ran (and failed) once."""
    if hook in ("on_connect", "on_acquire"):
        with pytest.raises(ConnectionHookError):
            await pool.acquire()
        return
    if hook == "on_unsolicited":
        server.stray_messages = 1
        server.stray_interval = 0.02  # after the reply, while the connection is idle
    lease = await pool.acquire()
    await round_trip(lease, "request")
    await pool.release(lease)
    # on_unsolicited gets the message as it arrives, while idle: no acquire is needed.
    await wait_until(lambda: pooled(lease).is_closed, f"{hook} failed")
    fresh = await pool.acquire()
    assert pooled(fresh) is not pooled(lease)
    await pool.release(fresh)


@pytest.mark.parametrize("hook", ["on_connect", "on_acquire", "on_release", "on_unsolicited"])
async def test_a_failing_hook_is_counted(server: LoopbackServer, hook: str) -> None:
    """A failure of any hook counts once in hooks_failed."""
    failing: Any = refuse_message if hook == "on_unsolicited" else refuse_connection
    async with make_pool(server, **{hook: failing}) as pool:
        assert pool.stats().hooks_failed == 0
        await make_a_hook_fail(pool, server, hook)
        stats = assert_consistent(pool)
        assert stats.hooks_failed == 1
        assert stats.closed + stats.failed_connects == 1  # the connection it ran on went


# -- messages drained, messages unsolicited -----------------------------------------------


@pytest.mark.parametrize("drain", [True, False], ids=["drained", "unsolicited"])
async def test_stray_messages_are_counted_where_they_were_read(
    server: LoopbackServer, drain: bool
) -> None:
    """Stray messages count as drained or as unsolicited, by who read them."""
    server.stray_messages = 3
    server.stray_interval = 0.01  # after the reply: read by a drain, or arriving while idle
    async with make_pool(
        server, check_server_data_on_release=drain, drain_quiet_period=0.1, drain_timeout=2.0
    ) as pool:
        conn = await pool.acquire()
        await round_trip(conn, "request")
        await pool.release(conn)
        if drain:
            await wait_until(lambda: pool.available_connections == 1, "the drain settled")
        else:  # counted as they arrive, while idle, before any acquire
            await wait_until(lambda: pool.stats().unsolicited_messages == 3, "all came while idle")
        again = await pool.acquire()
        assert pooled(again) is pooled(conn)

        stats = assert_consistent(pool)
        assert (stats.messages_drained, stats.unsolicited_messages) == ((3, 0) if drain else (0, 3))
        await pool.release(again)


# -- the value types ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timing", "mean"),
    [(Timing(), 0.0), (Timing(1, 0.5, 0.5), 0.5), (Timing(4, 2.0, 1.5), 0.5)],
)
def test_timing_mean_is_the_total_over_the_count(timing: Timing, mean: float) -> None:
    """Timing.mean is total / count, and 0.0 before anything was timed."""
    assert timing.mean == pytest.approx(mean)


async def test_stats_are_a_frozen_snapshot(server: LoopbackServer) -> None:
    """stats() is a snapshot: it does not change with the pool, and cannot be changed."""
    async with make_pool(server) as pool:
        before = pool.stats()
        conn = await pool.acquire()

        assert (before.busy, before.acquired, before.acquire_wait) == (0, 0, Timing())
        assert (pool.stats().busy, pool.stats().acquired) == (1, 1)
        with pytest.raises(dataclasses.FrozenInstanceError):
            before.busy = 1  # type: ignore[misc]
        with pytest.raises(dataclasses.FrozenInstanceError):
            before.acquire_wait.count = 1  # type: ignore[misc]
        await pool.release(conn)
        assert_consistent(pool)


async def test_a_timing_listener_that_raises_is_removed_and_costs_nothing_else(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A broken listener (an exporter's bug) must not strand the connection it was timing."""
    seen: list[str] = []

    def broken(what: str, seconds: float) -> None:
        del seconds
        raise RuntimeError(what)

    async with make_pool(server) as pool:
        pool._core.totals.listeners.extend([broken, lambda what, _: seen.append(what)])
        async with pool.get_connection() as conn:
            await round_trip(conn, "timed")
        async with pool.get_connection() as conn:
            await round_trip(conn, "again")
        assert pool._core.totals.listeners[0] is not broken
        assert seen.count("acquire_wait") == 2  # the listener after it was still told
        stats = assert_consistent(pool)
        assert (stats.busy, stats.idle, stats.acquire_wait.count) == (0, 1, 2)
    failures = [r for r in caplog.records if "timing listener" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].levelno == logging.ERROR
