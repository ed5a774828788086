"""Acquiring from the pool: reuse, waiting in line, limits, bursts, fresh connections.

Every test talks to the real loopback echo server. After each step of a
multi-step test, :func:`assert_consistent` checks that the pool's counters are
exactly what the states of its connections say they should be.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import pytest

from aio_websocket_pool import (
    ConnectionPoolExhaustedError,
    State,
    TransitionRecord,
    WebsocketConnection,
    WebsocketConnectionPool,
)
from helpers import (
    BOUND,
    assert_consistent,
    pool_maker,
    pooled,
    round_trip,
    settle,
    spawn,
    wait_until,
)
from loopback import LoopbackServer

AcquireMethod = Literal["acquire", "acquire_new"]
T = TypeVar("T")


# -- helpers -----------------------------------------------------------------------------


#: Health-check pings off unless a test asks for them.
make_pool = pool_maker(health_check_interval=None)


async def start_queued(
    pool: WebsocketConnectionPool, coro: Coroutine[Any, Any, T]
) -> asyncio.Task[T]:
    """Run ``coro`` (which acquires from ``pool``) as a task; return once it is queued.

    A started pool queues an acquirer in the task's first step (no I/O comes
    before), so one turn of the loop suffices and the check below holds at
    once: no polling interval during which a short ``acquire_timeout`` could
    expire. A pool that still has to start is polled for, within the bound.
    """
    before = pool.stats().waiting
    task = asyncio.create_task(coro)
    await asyncio.sleep(0)  # the task's first step runs before this returns
    await wait_until(
        lambda: pool.stats().waiting == before + 1 or task.done(), "the acquirer is queued"
    )
    assert not task.done(), "the acquirer did not wait"
    return task


async def start_waiter(
    pool: WebsocketConnectionPool, method: AcquireMethod = "acquire"
) -> asyncio.Task[WebsocketConnection]:
    """Start one ``pool.acquire()`` (or ``acquire_new()``) and return once it is queued."""
    return await start_queued(pool, getattr(pool, method)())


@dataclass
class TransitionWatch:
    """What a pool looked like after each transition of any of its connections."""

    transitions: int = 0
    peak_total: int = 0
    problems: list[str] = field(default_factory=list)


def watch_transitions(
    pool: WebsocketConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> TransitionWatch:
    """Record the peak ``total_connections`` and check consistency after every transition.

    A new connection is counted from before its first transition, so the peak
    seen here is the true peak. Failures are collected, not raised, because
    transitions also happen inside the pool's background tasks.
    """
    watch = TransitionWatch()
    original = pool._core.on_transition

    def observe(connection: WebsocketConnection, record: TransitionRecord) -> None:
        original(connection, record)
        watch.transitions += 1
        watch.peak_total = max(watch.peak_total, pool.total_connections)
        try:
            assert_consistent(pool)
        except AssertionError as exc:
            watch.problems.append(f"after {record}: {exc}")

    monkeypatch.setattr(pool._core, "on_transition", observe)
    return watch


async def use_new(
    pool: WebsocketConnectionPool, via: Literal["acquire_new", "get_new_connection"], tag: str
) -> WebsocketConnection:
    """Borrow a fresh connection through ``via``, echo ``tag`` on it, give it back."""
    if via == "acquire_new":
        conn = await pool.acquire_new()
        try:
            await round_trip(conn, tag)
        finally:
            await pool.release(conn)
        return conn
    async with pool.get_new_connection() as conn:
        await round_trip(conn, tag)
    return conn


# -- reuse ---------------------------------------------------------------------------------


async def test_sequential_uses_reuse_one_connection(server: LoopbackServer) -> None:
    async with make_pool(server, max_connections=5) as pool:
        seen: list[WebsocketConnection] = []
        for n in range(100):
            async with pool.get_connection() as conn:
                assert conn.is_busy
                assert_consistent(pool)
                await round_trip(conn, f"use {n}")
                seen.append(conn)
            assert_consistent(pool)
            assert (pool.total_connections, pool.available_connections) == (1, 1)
        assert all(pooled(conn) is pooled(seen[0]) for conn in seen)
        assert server.handshakes == 1
        stats = pool.stats()
        assert (stats.acquired, stats.reused, stats.opened, stats.closed) == (100, 99, 1, 0)
    assert server.open_connections == 0


async def test_lifo_reuse_hands_out_most_recently_released(server: LoopbackServer) -> None:
    async with make_pool(server, max_connections=5) as pool:
        a = await pool.acquire()
        b = await pool.acquire()
        assert pooled(a) is not pooled(b)
        assert_consistent(pool)
        await pool.release(a)
        assert_consistent(pool)
        await pool.release(b)
        assert_consistent(pool)
        first = await pool.acquire()
        assert pooled(first) is pooled(b)
        assert_consistent(pool)
        second = await pool.acquire()
        assert pooled(second) is pooled(a)
        assert_consistent(pool)
        await pool.release(first)
        await pool.release(second)
        assert_consistent(pool)
        assert server.handshakes == 2


# -- waiting instead of failing ------------------------------------------------------------


async def test_second_acquire_waits_for_release(server: LoopbackServer) -> None:
    async with make_pool(server, max_connections=1) as pool:
        held = await pool.acquire()
        assert_consistent(pool)
        waiter = await start_waiter(pool)
        assert_consistent(pool)
        await asyncio.sleep(0.05)
        assert not waiter.done(), "the waiter was served while the only connection was held"
        assert pool.stats().waiting == 1
        await pool.release(held)
        got = await asyncio.wait_for(waiter, BOUND)
        assert pooled(got) is pooled(held)
        assert got.is_busy
        assert_consistent(pool)
        assert pool.stats().waiting == 0
        await round_trip(got, "after waiting")
        await pool.release(got)
        assert_consistent(pool)
        assert server.handshakes == 1


async def test_acquire_timeout_none_waits_until_released(server: LoopbackServer) -> None:
    async with make_pool(server, max_connections=1, acquire_timeout=None) as pool:
        held = await pool.acquire()
        waiter = await start_waiter(pool)
        assert_consistent(pool)
        await asyncio.sleep(0.1)
        assert not waiter.done()
        assert pool.stats().waiting == 1
        await pool.release(held)
        got = await asyncio.wait_for(waiter, BOUND)
        assert pooled(got) is pooled(held)
        assert_consistent(pool)
        await pool.release(got)
        assert_consistent(pool)
        assert server.handshakes == 1


@pytest.mark.parametrize("waiters", [2, 5, 20])
async def test_waiters_are_served_in_arrival_order(server: LoopbackServer, waiters: int) -> None:
    async with make_pool(server, max_connections=1, acquire_timeout=None) as pool:
        served: list[int] = []

        async def acquirer(n: int) -> WebsocketConnection:
            conn = await pool.acquire()
            served.append(n)
            return conn

        current: WebsocketConnection = await pool.acquire()
        tasks: list[asyncio.Task[WebsocketConnection]] = []
        for n in range(waiters):
            tasks.append(await start_queued(pool, acquirer(n)))
            assert_consistent(pool)
        for n, task in enumerate(tasks):
            await pool.release(current)
            current = await asyncio.wait_for(task, BOUND)
            await settle()
            assert served == list(range(n + 1)), "a waiter was served out of turn"
            assert all(not later.done() for later in tasks[n + 1 :])
            assert pool.stats().waiting == waiters - n - 1
            assert_consistent(pool)
        await pool.release(current)
        assert_consistent(pool)
        assert server.handshakes == 1


async def test_new_acquire_does_not_barge_ahead_of_waiters(server: LoopbackServer) -> None:
    async with make_pool(server, max_connections=1, acquire_timeout=None) as pool:
        served: list[int | str] = []

        async def acquirer(n: int) -> None:
            conn = await pool.acquire()
            served.append(n)
            await round_trip(conn, f"waiter {n}")
            await pool.release(conn)

        held = await pool.acquire()
        tasks: list[asyncio.Task[None]] = []
        for n in range(3):
            tasks.append(await start_queued(pool, acquirer(n)))
        await pool.release(held)  # returns without yielding: nobody has been served yet
        # The connection is idle right now, with three waiters queued: the ideal
        # moment for a newcomer to barge in. It must queue behind them instead.
        assert (pool.available_connections, pool.stats().waiting) == (1, 3)
        assert_consistent(pool)
        async with asyncio.timeout(BOUND):  # not wait_for: that would run it in a later task
            late = await pool.acquire()
        served.append("late")
        assert served == [0, 1, 2, "late"]
        assert pooled(late) is pooled(held)
        await asyncio.wait_for(asyncio.gather(*tasks), BOUND)
        await pool.release(late)
        assert_consistent(pool)
        assert server.handshakes == 1


@pytest.mark.regression
async def test_acquirers_that_give_up_do_not_pile_up_behind_a_long_wait(
    server: LoopbackServer,
) -> None:
    pool = make_pool(server, max_connections=1, acquire_timeout=None)
    held = await pool.acquire()
    head = asyncio.create_task(pool.acquire(), name="test task")  # waits as long as it takes
    await wait_until(lambda: pool.stats().waiting == 1, "the head waiter is queued")
    quitters = [asyncio.create_task(pool.acquire(), name="test task") for _ in range(200)]
    await wait_until(lambda: pool.stats().waiting == 201, "every acquirer is queued")
    for quitter in quitters:
        quitter.cancel()
    await asyncio.gather(*quitters, return_exceptions=True)
    assert all(quitter.cancelled() for quitter in quitters)
    assert pool.stats().waiting == 1
    assert len(pool._core.waiting) <= 2, "the queue keeps the acquirers that left"
    await pool.release(held)
    got = await asyncio.wait_for(head, BOUND)
    assert pooled(got) is pooled(held)
    await pool.release(got)
    await pool.close_all()


@pytest.mark.regression
async def test_an_acquirer_that_gave_up_is_uncounted_once_the_dispatch_drops_it(
    server: LoopbackServer,
) -> None:
    pool = make_pool(server, max_connections=1, acquire_timeout=None)
    held = await pool.acquire()
    head = asyncio.create_task(pool.acquire(), name="test task")
    await wait_until(lambda: pool.stats().waiting == 1, "the head waiter is queued")
    quitter = asyncio.create_task(pool.acquire(), name="test task")
    await wait_until(lambda: pool.stats().waiting == 2, "the quitter is queued")
    quitter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await quitter
    # One dead entry of two is not yet half the queue: it stays, and is counted.
    assert (len(pool._core.waiting), pool._core.waiting.departed) == (2, 1)
    await pool.release(held)
    got = await asyncio.wait_for(head, BOUND)
    assert pooled(got) is pooled(held)
    # The dispatch served the head and dropped the dead entry behind it: the
    # count of dead entries still queued is zero again, not a stale one.
    assert (len(pool._core.waiting), pool._core.waiting.departed) == (0, 0)
    await pool.release(got)
    await pool.close_all()


# -- many borrowers ------------------------------------------------------------------------


async def test_200_tasks_share_10_connections(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with make_pool(server, max_connections=10, acquire_timeout=BOUND) as pool:
        watch = watch_transitions(pool, monkeypatch)

        async def worker(n: int) -> str:
            async with pool.get_connection() as conn:
                await conn.send(f"task {n}")
                reply = await conn.recv()
                assert isinstance(reply, str)
                return reply

        replies = await asyncio.wait_for(asyncio.gather(*(worker(n) for n in range(200))), BOUND)
        assert replies == [f"task {n}" for n in range(200)]
        assert_consistent(pool)
        assert server.peak_connections <= 10
        assert server.handshakes == 10
        assert watch.peak_total == 10  # reached, never exceeded (checked at every transition)
        assert watch.problems == []
        stats = pool.stats()
        assert (stats.acquired, stats.reused, stats.idle, stats.waiting) == (200, 190, 10, 0)


# -- acquire_timeout -----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["acquire", "acquire_new"])
async def test_acquire_timeout_zero_fails_at_once_when_full(
    server: LoopbackServer, method: AcquireMethod
) -> None:
    async with make_pool(server, max_connections=1, acquire_timeout=0) as pool:
        held = await pool.acquire()
        task = asyncio.create_task(getattr(pool, method)())
        await asyncio.sleep(0)  # one step of the task: no waiting in line
        assert task.done()
        with pytest.raises(ConnectionPoolExhaustedError):
            task.result()
        assert pool.stats().waiting == 0
        assert_consistent(pool)
        await pool.release(held)
        again = await pool.acquire()
        assert pooled(again) is pooled(held)
        await pool.release(again)
        assert_consistent(pool)
        assert server.handshakes == 1


@pytest.mark.parametrize("method", ["acquire", "acquire_new"])
async def test_acquire_timeout_raises_after_waiting_and_leaves_no_trace(
    server: LoopbackServer, method: AcquireMethod
) -> None:
    timeout = 0.05
    async with make_pool(server, max_connections=1, acquire_timeout=timeout) as pool:
        loop = asyncio.get_running_loop()
        held = await pool.acquire()
        # Taken before the acquirer starts its clock: however late the test task
        # runs, the acquirer cannot give up before a full acquire_timeout passed.
        started = loop.time()
        task = await start_waiter(pool, method)
        assert_consistent(pool)
        with pytest.raises(ConnectionPoolExhaustedError, match=r"acquire_timeout=0\.05s"):
            await asyncio.wait_for(task, BOUND)
        assert loop.time() - started >= timeout * 0.99, "it gave up before acquire_timeout"
        assert pool.stats().waiting == 0
        assert_consistent(pool)
        await pool.release(held)
        await settle()
        # The timed-out waiter must not have been handed the released connection.
        assert (pool.available_connections, pool.busy_connections) == (1, 0)
        assert_consistent(pool)
        again = await pool.acquire()
        assert pooled(again) is pooled(held)
        assert_consistent(pool)
        await pool.release(again)
        assert server.handshakes == 1


async def test_waiter_behind_a_timed_out_one_is_served(server: LoopbackServer) -> None:
    async with make_pool(server, max_connections=1, acquire_timeout=0.05) as pool:
        held = await pool.acquire()
        expired = await start_waiter(pool)
        with pytest.raises(ConnectionPoolExhaustedError):
            await asyncio.wait_for(expired, BOUND)
        fresh = await start_waiter(pool)
        await pool.release(held)
        got = await asyncio.wait_for(fresh, BOUND)
        assert pooled(got) is pooled(held)
        assert_consistent(pool)
        await pool.release(got)
        assert_consistent(pool)


async def test_a_waiter_granted_as_its_acquire_timeout_runs_out_gets_the_connection(
    server: LoopbackServer,
) -> None:
    timeout = 0.05
    async with make_pool(server, max_connections=1, acquire_timeout=timeout) as pool:
        held = await pool.acquire()
        waiter = await start_waiter(pool)
        await pool.release(held)  # the grant is dispatched at the next turn of the loop
        # Block the loop past acquire_timeout: in that next turn the dispatch
        # grants the connection and then, in the same turn, the timeout fires.
        # The waiter must take what it was granted, not fail and leave it busy.
        time.sleep(timeout * 2)  # noqa: ASYNC251  (blocking on purpose)
        got = await asyncio.wait_for(waiter, BOUND)
        assert pooled(got) is pooled(held)
        stats = assert_consistent(pool)
        assert (stats.busy, stats.idle, stats.waiting, stats.acquired) == (1, 0, 0, 2)
        await round_trip(got, "granted in time")
        await pool.release(got)
        assert_consistent(pool)


# -- parallel cold bursts ------------------------------------------------------------------


async def test_cold_burst_connects_in_parallel(server: LoopbackServer) -> None:
    # The server answers no handshake until all 100 are in flight at once, which
    # never happens if the pool serialises them (0.1.0 had exactly one in flight).
    server.hold_handshakes()
    async with make_pool(server, max_connections=100, acquire_timeout=BOUND) as pool:
        burst = asyncio.gather(*(pool.acquire() for _ in range(100)))
        await wait_until(lambda: server.handshakes_in_flight == 100, "100 handshakes at once")
        assert pool.stats().connecting == 100
        server.release_handshakes()
        conns = await asyncio.wait_for(burst, BOUND)
        assert len({pooled(conn) for conn in conns}) == 100
        assert all(conn.is_busy for conn in conns)
        assert server.peak_handshakes_in_flight == 100
        assert server.handshakes == 100
        assert_consistent(pool)
        assert (pool.busy_connections, pool.total_connections) == (100, 100)
        for conn in conns:
            await pool.release(conn)
        assert_consistent(pool)
        assert (pool.available_connections, pool.busy_connections) == (100, 0)


async def test_burst_beyond_max_connections_stays_within_limit(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.hold_handshakes()
    async with make_pool(server, max_connections=10, acquire_timeout=BOUND) as pool:
        watch = watch_transitions(pool, monkeypatch)

        async def borrower(n: int) -> None:
            conn = await pool.acquire()
            try:
                assert pool.total_connections <= 10
                await round_trip(conn, f"burst {n}")
                await asyncio.sleep(0.001)
            finally:
                await pool.release(conn)

        burst = asyncio.gather(*(borrower(n) for n in range(100)))
        # All ten slots open in parallel, and the other 90 borrowers wait in line.
        await wait_until(lambda: server.handshakes_in_flight == 10, "10 handshakes at once")
        await wait_until(lambda: pool.stats().waiting == 90, "the other borrowers wait")
        assert (pool.stats().connecting, server.handshakes_in_flight) == (10, 10)
        server.release_handshakes()
        await asyncio.wait_for(burst, BOUND)
        assert server.peak_connections <= 10
        assert server.handshakes == 10
        assert server.peak_handshakes_in_flight == 10
        assert watch.peak_total == 10  # reached, never exceeded (checked at every transition)
        assert watch.problems == []
        assert_consistent(pool)
        assert (pool.available_connections, pool.stats().acquired) == (10, 100)


@pytest.mark.regression
async def test_a_socket_still_closing_holds_its_place_under_max_connections(
    server: LoopbackServer,
) -> None:
    pool = make_pool(server, max_connections=1, close_timeout=BOUND)
    try:
        conn = await pool.acquire()
        server.freeze()  # the server will not answer the closing handshake for now
        await pool.release(conn, force_remove=True)
        assert pool.total_connections == 0  # retired...
        waiter = spawn(pool.acquire())
        await wait_until(lambda: pool.stats().waiting == 1, "the acquirer waits")
        # ...but its socket is still open: no second socket may be opened yet.
        assert server.handshakes == 1
        server.thaw()  # the close completes, and only then is the capacity free
        fresh = await asyncio.wait_for(waiter, BOUND)
        assert pooled(fresh) is not pooled(conn)
        await round_trip(fresh, "after the close")
        await pool.release(fresh)
    finally:
        server.thaw()
        await pool.close_all()
    assert server.peak_connections == 1


# -- fresh connections ---------------------------------------------------------------------


@pytest.mark.parametrize("via", ["acquire_new", "get_new_connection"])
async def test_new_connection_always_handshakes(
    server: LoopbackServer, via: Literal["acquire_new", "get_new_connection"]
) -> None:
    async with make_pool(server, max_connections=5) as pool:
        conns = []
        for n in range(3):
            conns.append(await use_new(pool, via, f"new {n}"))
            assert server.handshakes == n + 1
            assert_consistent(pool)
        assert len({pooled(conn) for conn in conns}) == 3
        assert (pool.total_connections, pool.available_connections) == (3, 3)
        assert pool.stats().reused == 0
        # An ordinary acquire reuses instead (the most recently released one).
        async with pool.get_connection() as conn:
            assert pooled(conn) is pooled(conns[-1])
        assert server.handshakes == 3
        assert_consistent(pool)


@pytest.mark.parametrize(
    ("release_order", "evicted"),
    [((1, 0, 2), 1), ((2, 1, 0), 2), ((0, 1, 2), 0)],
)
async def test_acquire_new_when_full_closes_least_recently_used_idle(
    server: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    release_order: tuple[int, int, int],
    evicted: int,
) -> None:
    async with make_pool(server, max_connections=3) as pool:
        watch = watch_transitions(pool, monkeypatch)
        conns = [await pool.acquire_new() for _ in range(3)]
        assert_consistent(pool)
        for n in release_order:
            await pool.release(conns[n])
            assert_consistent(pool)
        newest = await pool.acquire_new()
        assert_consistent(pool)
        assert all(pooled(newest) is not pooled(conn) for conn in conns)
        assert pooled(conns[evicted]).is_closed
        assert all(pooled(conn).state is State.IDLE for n, conn in enumerate(conns) if n != evicted)
        assert server.handshakes == 4
        assert (pool.total_connections, pool.available_connections) == (3, 2)
        await wait_until(lambda: server.open_connections == 3, "the server saw the eviction")
        await round_trip(newest, "newest")
        await pool.release(newest)
        assert_consistent(pool)
        assert watch.peak_total == 3
        assert watch.problems == []


async def test_acquire_new_waits_when_all_busy_then_replaces_released(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with make_pool(server, max_connections=2, acquire_timeout=BOUND) as pool:
        watch = watch_transitions(pool, monkeypatch)
        first, second = await pool.acquire(), await pool.acquire()
        waiter = await start_waiter(pool, "acquire_new")
        assert_consistent(pool)
        await pool.release(first)
        fresh = await asyncio.wait_for(waiter, BOUND)
        assert pooled(fresh) is not pooled(first)
        assert pooled(fresh) is not pooled(second)
        assert pooled(first).is_closed
        assert server.handshakes == 3
        assert_consistent(pool)
        await round_trip(fresh, "fresh")
        await pool.release(fresh)
        await pool.release(second)
        assert_consistent(pool)
        assert watch.peak_total == 2
        assert watch.problems == []


@pytest.mark.regression
async def test_making_room_never_opens_more_sockets_than_max_connections(
    server: LoopbackServer,
) -> None:
    async with make_pool(server, max_connections=1) as pool:
        conn = await pool.acquire()
        await pool.release(conn)
        fresh = await pool.acquire_new()  # drops the idle one at once to make room
        await round_trip(fresh, "x")
        await pool.release(fresh)
    assert pooled(conn).is_closed
    assert server.handshakes == 2
    # docs/configuration.md: max_connections "bounds the sockets the pool opens to the server".
    assert server.peak_connections == 1


# -- start() and warm-up -------------------------------------------------------------------


async def test_start_warms_up_connections_in_parallel(server: LoopbackServer) -> None:
    server.hold_handshakes()  # answered once all three are in flight at once
    pool = make_pool(server, max_connections=5, warmup_connections=3)
    try:
        assert not pool.is_started
        starting = asyncio.create_task(pool.start())
        await wait_until(lambda: server.handshakes_in_flight == 3, "3 handshakes at once")
        assert not starting.done(), "start() returned before its warm-up connections opened"
        server.release_handshakes()
        await asyncio.wait_for(starting, BOUND)
        assert pool.is_started
        assert server.handshakes == 3
        assert server.peak_handshakes_in_flight == 3
        assert (pool.available_connections, pool.total_connections) == (3, 3)
        assert pool.stats().acquired == 0
        assert_consistent(pool)
        await pool.start()
        assert server.handshakes == 3
        assert pool.total_connections == 3
        assert_consistent(pool)
        async with pool.get_connection() as conn:
            assert pooled(conn) in pool.connections
            await round_trip(conn, "warm")
        assert server.handshakes == 3
        assert_consistent(pool)
    finally:
        await pool.close_all()
    assert server.open_connections == 0


@pytest.mark.regression
async def test_first_acquirer_is_served_first_while_the_warm_up_runs(
    server: LoopbackServer,
) -> None:
    server.hold_handshakes()
    pool = make_pool(server, max_connections=1, warmup_connections=1)
    order: list[str] = []

    async def use(name: str) -> None:
        conn = await pool.acquire()
        order.append(name)
        await pool.release(conn)

    try:
        first = spawn(use("first"))  # starts the pool, which warms up its one connection
        await wait_until(lambda: server.handshakes_in_flight == 1, "the warm-up is in flight")
        second = spawn(use("second"))  # arrives later, finds the pool full, queues
        await wait_until(lambda: pool.stats().waiting == 2, "both acquirers are queued")
        server.release_handshakes()
        await asyncio.wait_for(asyncio.gather(first, second), BOUND)
    finally:
        await pool.close_all()
    # First come, first served (README: "a newcomer never jumps the queue").
    assert order == ["first", "second"]


# -- len() and repr() ----------------------------------------------------------------------


async def test_len_and_repr_show_the_counts(server: LoopbackServer) -> None:
    pool = make_pool(server, max_connections=5)
    assert len(pool) == 0
    assert "not started" in repr(pool)
    try:
        a = await pool.acquire()
        b = await pool.acquire()
        await pool.release(a)
        assert len(pool) == pool.total_connections == 2
        shown = repr(pool)
        assert " open " in shown
        assert server.uri in shown
        assert str(pool.stats()) in shown
        assert "1 idle" in shown
        assert "1 busy" in shown
        assert "(2/5)" in shown
        assert_consistent(pool)
        await pool.release(b)
    finally:
        await pool.close_all()
    assert len(pool) == 0
    assert "closed" in repr(pool)
    assert "(0/5)" in repr(pool)


# -- 0.1.0 API shapes ----------------------------------------------------------------------


async def test_v010_keyword_uri_and_manual_acquire_release(server: LoopbackServer) -> None:
    async with WebsocketConnectionPool(uri=server.uri, max_connections=3) as pool:
        assert pool.uri == server.uri
        conn = await pool.acquire()
        try:
            await conn.send("Hello")
            assert await conn.recv() == "Hello"
            assert pool.busy_connections == 1
        finally:
            await pool.release(conn)
        assert_consistent(pool)
        assert (pool.available_connections, pool.busy_connections) == (1, 0)
        again = await pool.acquire()
        try:
            assert again.id == conn.id  # the same connection, a new lease
        finally:
            await pool.release(again)
        assert server.handshakes == 1


async def test_v010_release_force_remove_closes_it(server: LoopbackServer) -> None:
    async with WebsocketConnectionPool(uri=server.uri, max_connections=3) as pool:
        keep = await pool.acquire()
        conn = await pool.acquire()
        try:
            await round_trip(conn, "Hello")
        finally:
            await pool.release(conn, force_remove=True)
        assert pooled(conn).is_closed
        assert pooled(conn) not in pool.connections
        assert (pool.total_connections, pool.busy_connections) == (1, 1)
        assert_consistent(pool)
        await wait_until(lambda: server.open_connections == 1, "the server saw the close")
        await pool.release(keep)
        replacement = await pool.acquire()
        assert replacement.id == keep.id  # the same connection, a new lease
        await pool.release(replacement)
        assert pool.stats().closed == 1
        assert_consistent(pool)


async def test_v010_properties(server: LoopbackServer) -> None:
    pool = WebsocketConnectionPool(
        uri=server.uri,
        max_connections=3,
        check_server_data_on_release=True,
        drain_quiet_period=0.05,
        drain_timeout=BOUND,
    )
    try:
        assert (pool.is_started, pool.is_closed) == (False, False)
        assert (
            pool.total_connections,
            pool.available_connections,
            pool.busy_connections,
            pool.pending_connections,
        ) == (0, 0, 0, 0)
        conn = await pool.acquire()  # starts the pool by itself
        assert pool.is_started
        assert (pool.total_connections, pool.busy_connections) == (1, 1)
        assert_consistent(pool)
        await round_trip(conn, "Hello")
        await pool.release(conn)
        assert (pool.pending_connections, pool.busy_connections) == (1, 0)
        assert_consistent(pool)
        await wait_until(lambda: pool.available_connections == 1, "the drain settled")
        assert (pool.pending_connections, pool.total_connections) == (0, 1)
        assert_consistent(pool)
    finally:
        await pool.close_all()
    assert (pool.is_closed, pool.total_connections, pool.available_connections) == (True, 0, 0)
    assert server.open_connections == 0
