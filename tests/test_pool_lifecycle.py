"""Lifecycle of the pool: cancellation at every await point, close_all(), misuse, history.

Every test talks to the real loopback echo server. Each scenario ends with
:func:`shut_down`: ``close_all()``, then every counter back to zero, the state
index consistent with the connections, and every socket closed on the server
side too. The autouse fixture of ``conftest`` then fails the test if a task of
the pool is still running.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Literal

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.protocol import State as ProtocolState

from aio_websocket_pool import (
    ConnectionBusyError,
    ConnectionClosedError,
    ConnectionLease,
    ConnectionPoolExhaustedError,
    ConnectionPoolUnavailableError,
    ConnectionUnavailableError,
    LeaseEndedError,
    PoolStats,
    State,
    WebsocketConnection,
    WebsocketConnectionPool,
)
from helpers import (
    BOUND,
    assert_consistent,
    expect_cancelled,
    pool_maker,
    pooled,
    round_trip,
    settle,
    spawn,
    triggers,
    wait_until,
)
from loopback import LoopbackServer

POOL_LOGGER = "aio_websocket_pool"

LeaveMode = Literal["cancel", "wait_for", "acquire_timeout"]
LEAVE_MODES: tuple[LeaveMode, ...] = ("cancel", "wait_for", "acquire_timeout")


# -- helpers -----------------------------------------------------------------------------


#: Bounded waits; health-check pings off unless a test asks for them.
make_pool = pool_maker(health_check_interval=None, acquire_timeout=BOUND)


def assert_stats(pool: WebsocketConnectionPool, **expected: int) -> PoolStats:
    """:func:`assert_consistent`, and the named fields of ``pool.stats()`` are as given."""
    stats = assert_consistent(pool)
    actual = {name: getattr(stats, name) for name in expected}
    assert actual == expected, f"{stats}"
    return stats


async def shut_down(
    pool: WebsocketConnectionPool,
    server: LoopbackServer,
    connections: Iterable[WebsocketConnection] = (),
) -> None:
    """close_all(), then nothing is left: no slot, no waiter, no task, no socket.

    ``connections`` are leases (their pooled connections are checked) or pooled connections.
    """
    await pool.close_all()
    assert pool.is_closed
    assert_stats(pool, connecting=0, idle=0, busy=0, draining=0, total=0, waiting=0)
    assert not pool._tasks.workers
    assert not pool._tasks.closers
    for given in connections:
        conn = pooled(given) if isinstance(given, ConnectionLease) else given
        assert conn.is_closed, conn
        assert conn.websocket is None, conn
        assert not conn.is_connected
    await wait_until(lambda: server.open_connections == 0, "the server saw every socket close")


def the_opening_task() -> asyncio.Task[Any]:
    """The pool's one handshake task in flight."""
    [task] = [
        task
        for task in asyncio.all_tasks()
        if task.get_name().startswith("aio_websocket_pool ")
        and " open " in task.get_name()
        and not task.done()
    ]
    return task


async def leave_queue(pool: WebsocketConnectionPool, mode: LeaveMode) -> None:
    """Queue an acquirer behind a full pool, then make it leave the queue by ``mode``."""
    if mode == "acquire_timeout":  # the pool was made with a short acquire_timeout
        with pytest.raises(ConnectionPoolExhaustedError):
            await pool.acquire()
        return
    if mode == "wait_for":
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.acquire(), 0.05)
        return
    queued = pool.stats().waiting
    task = spawn(pool.acquire())
    await wait_until(lambda: pool.stats().waiting == queued + 1, "the acquirer is queued")
    await expect_cancelled(task)


# -- cancellation at each await point ----------------------------------------------------


@pytest.mark.parametrize("second_waiter", [False, True], ids=["alone", "with-second-waiter"])
@pytest.mark.parametrize("mode", LEAVE_MODES)
async def test_a_waiter_that_left_the_queue_never_gets_a_connection(
    server: LoopbackServer, mode: LeaveMode, second_waiter: bool
) -> None:
    pool = make_pool(
        server, max_connections=1, acquire_timeout=0.1 if mode == "acquire_timeout" else BOUND
    )
    held = await pool.acquire()
    other: asyncio.Task[WebsocketConnection] | None = None
    if second_waiter and mode != "acquire_timeout":  # queued before the one that leaves
        other = spawn(pool.acquire())
        await wait_until(lambda: pool.stats().waiting == 1, "the second acquirer is queued")
    await leave_queue(pool, mode)
    if second_waiter and other is None:  # acquire_timeout would expire for both at once
        other = spawn(pool.acquire())
        # Its first step queues it; no poll interval, in which its short
        # acquire_timeout could run out, comes between that and the release.
        await asyncio.sleep(0)
    await wait_until(lambda: pool.stats().waiting == int(second_waiter), "queue as expected")
    assert_stats(pool, busy=1, total=1, acquired=1)

    await pool.release(held)
    if other is not None:
        got = await other
        assert pooled(got) is pooled(held)  # the one behind got it, nothing was lost
        assert_stats(pool, busy=1, idle=0, total=1, acquired=2, reused=1, waiting=0)
        await pool.release(got)
    await settle()
    assert_stats(pool, idle=1, busy=0, total=1, waiting=0, opened=1)
    assert not pool._core.waiting, "the waiter that left is still queued"
    again = await pool.acquire()
    assert pooled(again) is pooled(held)  # and the pool still works
    await round_trip(again, "still here")
    await pool.release(again)
    await shut_down(pool, server, [held])


@pytest.mark.parametrize("force_remove", [False, True], ids=["idle-grant", "new-slot-grant"])
# force_remove: the held connection is lost and removed, so the waiter gets a new slot.
async def test_a_waiter_cancelled_just_after_its_grant_gives_the_connection_back(
    server: LoopbackServer, force_remove: bool
) -> None:
    pool = make_pool(server, max_connections=1)
    held = await pool.acquire()
    waiter = spawn(pool.acquire())
    await wait_until(lambda: pool.stats().waiting == 1, "the acquirer is queued")
    if force_remove:
        # The peer drops it: released, its socket is dropped at once, freeing the
        # slot in the same step (a graceful close would hold it until it ends).
        await server.close_connections()
        await wait_until(lambda: not held.is_connected, "the client saw the close")
    await pool.release(held)
    await asyncio.sleep(0)  # the dispatch runs: the waiter is served but has not woken yet
    if force_remove:  # its slot was freed: the waiter was granted a new connection
        assert_stats(pool, connecting=1, waiting=0, acquired=1)
    else:
        assert_stats(pool, busy=1, waiting=0, acquired=2)
    assert not waiter.done()

    await expect_cancelled(waiter)
    await wait_until(lambda: pool.stats().connecting == 0, "the handshake finished")
    assert_stats(pool, idle=1, busy=0, total=1, waiting=0)
    (conn,) = pool.connections
    assert (conn is pooled(held)) is not force_remove
    if force_remove:  # opened for the waiter that left, parked idle, never handed out
        assert triggers(conn) == ["open"]
    else:  # granted to the waiter that left, given back at once
        assert triggers(conn) == ["open", "acquire", "release", "acquire", "release"]
    lease = await pool.acquire()
    assert pooled(lease) is conn
    await round_trip(lease, "not lost")
    await pool.release(lease)
    await shut_down(pool, server, [held, conn])


@pytest.mark.parametrize("method", ["acquire", "acquire_new"])
@pytest.mark.parametrize("other_waiter", [False, True], ids=["alone", "with-waiter"])
@pytest.mark.parametrize("mode", ["cancel", "wait_for"])
async def test_cancel_during_handshake_leaves_the_connection_to_others(
    server: LoopbackServer, mode: str, other_waiter: bool, method: str
) -> None:
    server.hold_handshakes()  # in flight until the test lets it finish
    pool = make_pool(server, max_connections=1)
    acquire: Callable[[], Coroutine[Any, Any, WebsocketConnection]] = getattr(pool, method)
    opening = acquire()
    opener = spawn(asyncio.wait_for(opening, 0.05) if mode == "wait_for" else opening)
    await wait_until(lambda: server.handshakes_in_flight == 1, "the handshake started")
    other = spawn(pool.acquire()) if other_waiter else None
    await wait_until(lambda: pool.stats().waiting == int(other_waiter), "waiter queued")
    assert_stats(pool, connecting=1, total=1)

    if mode == "wait_for":
        with pytest.raises(TimeoutError):
            await opener
    else:
        await expect_cancelled(opener)
    # The handshake belongs to the pool: it goes on, and the slot stays taken meanwhile.
    assert_stats(pool, connecting=1, total=1, busy=0)
    assert server.handshakes_in_flight == 1
    server.release_handshakes()
    if other is not None:
        conn = await other
        assert_stats(pool, busy=1, total=1, opened=1, acquired=1, reused=0)
    else:
        await wait_until(lambda: pool.stats().connecting == 0, "the handshake finished")
        assert_stats(pool, idle=1, busy=0, total=1, opened=1, acquired=0)
        conn = await pool.acquire()
    assert triggers(conn) == ["open", "acquire"]
    assert server.handshakes == 1  # the abandoned handshake was not wasted
    await round_trip(conn, "handed on")
    await pool.release(conn)
    assert_stats(pool, idle=1, busy=0, total=1)
    await shut_down(pool, server, [conn])


async def test_cancel_during_health_check_ping_never_leaks_a_busy_connection(
    server: LoopbackServer,
) -> None:
    # The ping cannot time out before the test cancels it, however slow the machine.
    pool = make_pool(server, health_check_interval=0, health_check_timeout=BOUND, close_timeout=0.2)
    lease = await pool.acquire()
    await pool.release(lease)
    frozen = pooled(lease)
    server.freeze()  # the server stops reading: the health check's ping gets no pong

    pinger = spawn(pool.acquire())
    await wait_until(lambda: pool.busy_connections == 1, "the health check is pinging")
    await settle()
    assert not pinger.done()
    assert frozen.websocket is not None
    # websockets 16 renamed pong_waiters to pending_pings.
    in_flight = getattr(frozen.websocket, "pending_pings", None)
    if in_flight is None:
        in_flight = getattr(frozen.websocket, "pong_waiters", None)
    assert in_flight, "no ping in flight"
    await expect_cancelled(pinger)
    # Cut short, the health check proved nothing: the connection is given back
    # idle (neither kept busy for nobody nor closed), and still owes its check.
    assert_stats(pool, busy=0, idle=1, total=1, waiting=0, closed=0)
    assert frozen.state is State.IDLE
    assert triggers(frozen) == ["open", "acquire", "release", "acquire", "release"]

    # The next borrower does not get the frozen connection: its ping times out
    # (shortened from here on, so that the test need not wait BOUND for it).
    frozen._pong_timeout = 0.1
    fresh = await pool.acquire()
    assert pooled(fresh) is not frozen
    assert frozen.is_closed
    assert "health check failed" in (frozen.history[-1].reason or "")
    assert server.handshakes == 2
    await round_trip(fresh, "healthy")
    await pool.release(fresh)
    assert_stats(pool, idle=1, busy=0, total=1, opened=2, closed=1)
    await pool.close_all()
    server.thaw()
    await shut_down(pool, server, [frozen, fresh])


@pytest.mark.parametrize("drain", [False, True], ids=["no-drain", "drain"])
async def test_cancel_between_send_and_recv_never_hands_on_a_stale_reply(
    server: LoopbackServer, drain: bool
) -> None:
    pool = make_pool(
        server,
        max_connections=1,
        check_server_data_on_release=drain,
        drain_quiet_period=0.3,
        drain_timeout=BOUND,
    )
    borrowed: list[WebsocketConnection] = []
    sent = asyncio.Event()

    async def borrower() -> None:
        async with pool.get_connection() as conn:
            borrowed.append(pooled(conn))
            await conn.send("stale")
            sent.set()
            await asyncio.Event().wait()  # cancelled here: the echo of "stale" is owed

    task = spawn(borrower())
    await sent.wait()
    await expect_cancelled(task)
    (first,) = borrowed
    # Drained or not, it is closed: a drain cannot tell a late reply from silence.
    assert first.is_closed
    assert "drain" not in triggers(first)
    assert "reply may still be owed" in (first.history[-1].reason or "")

    async with pool.get_connection() as conn:
        assert pooled(conn) is not first
        await round_trip(conn, "fresh")  # its own reply, never "stale"
    if drain:
        await wait_until(lambda: pooled(conn).state is State.IDLE, "the clean release drained")
    assert_stats(pool, idle=1, total=1, opened=2, closed=1)
    await shut_down(pool, server, [first, conn])


@pytest.mark.parametrize(
    ("how", "final"),
    [("plain", State.IDLE), ("drain", State.IDLE), ("force_remove", State.CLOSED)],
)
async def test_release_completes_although_its_caller_is_cancelled(
    server: LoopbackServer, how: str, final: State
) -> None:
    pool = make_pool(
        server,
        check_server_data_on_release=how == "drain",
        drain_quiet_period=0.2,
        drain_timeout=BOUND,
    )
    conn = await pool.acquire()
    await conn.send("x")  # the echo is still unread when it is released

    async def releaser() -> None:
        current = asyncio.current_task()
        assert current is not None
        current.cancel()  # the caller is cancelled while it releases
        await pool.release(conn, force_remove=how == "force_remove")
        await asyncio.sleep(0)

    task = spawn(releaser())
    with pytest.raises(asyncio.CancelledError):
        await task
    connection = pooled(conn)
    assert not connection.is_busy
    await wait_until(lambda: connection.state is final, f"the connection is {final}")
    assert_stats(pool, busy=0, draining=0, total=int(final is State.IDLE))
    if how == "drain":
        assert triggers(connection)[-2:] == ["drain", "settle"]
        assert connection.history[-1].reason == "1 messages drained"
    await shut_down(pool, server, [conn])


async def test_a_cancelled_close_all_is_finished_by_the_next_one(server: LoopbackServer) -> None:
    pool = make_pool(server, max_connections=3, close_timeout=0.5)
    conns = [await pool.acquire() for _ in range(3)]
    await pool.release(conns[0])
    await pool.release(conns[1])
    websockets = [pooled(conn).websocket for conn in conns]
    sockets: list[ClientConnection] = [ws for ws in websockets if ws is not None]
    assert len(sockets) == 3
    server.freeze()  # closing handshakes get no answer: close_all() has to wait for them

    closing = spawn(pool.close_all())
    await wait_until(lambda: bool(pool._tasks.closers), "close_all() is closing sockets")
    await settle()
    assert not closing.done()
    await expect_cancelled(closing)
    assert pool.is_closed
    assert_stats(pool, total=0, idle=0, busy=0)

    # A second call must finish what the cancelled one started: every socket closed.
    await pool.close_all()
    states = [ws.state for ws in sockets]
    server.thaw()
    assert states == [ProtocolState.CLOSED] * 3, "sockets left open after close_all() returned"
    await shut_down(pool, server, conns)


@pytest.mark.regression
async def test_a_cancelled_first_acquire_leaves_no_slot_connecting_forever(
    server: LoopbackServer,
) -> None:
    pool = make_pool(server, max_connections=2, warmup_connections=2, acquire_timeout=0.3)
    # The first acquire starts the pool; its caller is cancelled right away
    # (e.g. a request that timed out), while the warm-up handshakes are queued.
    first = asyncio.create_task(pool.acquire(), name="test task")
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    try:
        # The warm-up handshakes belong to the pool: they finish, and wait idle.
        await wait_until(lambda: pool.stats().connecting == 0, "the warm-up handshakes ended")
        assert_consistent(pool)
        assert pool.available_connections == 2
        conn = await pool.acquire()
        await round_trip(conn, "x")
        await pool.release(conn)
    finally:
        await pool.close_all()
    assert pool.total_connections == 0, pool.stats()


@pytest.mark.regression
async def test_a_failed_async_with_pool_leaves_no_task_running(
    server: LoopbackServer,
) -> None:
    server.hold_handshakes()  # the warm-up never ends: the caller gives up
    pool = make_pool(server, warmup_connections=1)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1), pool:  # slow warm-up: the caller gives up
            pass
    await settle()
    left = sorted(
        task.get_name()
        for task in asyncio.all_tasks()
        if task.get_name().startswith("aio_websocket_pool") and not task.done()
    )
    closed, total = pool.is_closed, pool.total_connections
    await pool.close_all()  # what nobody calls in real code: __aexit__ never ran
    # a failed __aenter__ shuts the pool down, leaving no task behind.
    assert left == [], left
    assert (closed, total) == (True, 0)


# -- close_all() ---------------------------------------------------------------------------


@pytest.mark.parametrize("calls", ["twice", "concurrently"])
async def test_close_all_shuts_everything_in_flight_down(
    server: LoopbackServer, calls: str, caplog: pytest.LogCaptureFixture
) -> None:
    pool = make_pool(
        server,
        max_connections=3,
        warmup_connections=2,
        check_server_data_on_release=True,
        drain_quiet_period=BOUND,  # a drain stays in progress until close_all()
        drain_timeout=2 * BOUND,
    )
    await pool.start()
    assert_stats(pool, idle=2, total=2)
    busy = await pool.acquire()
    draining = await pool.acquire()
    await round_trip(draining, "drained")
    await pool.release(draining)
    assert_stats(pool, busy=1, draining=1, total=2)

    server.hold_handshakes()  # in flight until close_all() cancels it
    opener = spawn(pool.acquire_new())
    await wait_until(lambda: server.handshakes_in_flight == 1, "a handshake is in flight")
    (connecting,) = (c for c in pool.connections if c.state is State.CONNECTING)
    waiters = [spawn(pool.acquire()) for _ in range(3)]
    await wait_until(lambda: pool.stats().waiting == 3, "three acquirers are queued")
    assert_stats(pool, busy=1, draining=1, connecting=1, total=3, waiting=3)

    caplog.clear()
    if calls == "twice":
        await pool.close_all()
        await pool.close_all()
    else:
        await asyncio.gather(pool.close_all(), pool.close_all(), pool.close_all())
    assert_stats(pool, total=0, waiting=0, opened=2, closed=2, failed_connects=1)

    # Every waiter and the acquirer whose handshake was cancelled are told the pool closed.
    for task in [opener, *waiters]:
        with pytest.raises(ConnectionPoolUnavailableError):
            await task
    assert connecting.is_closed
    assert connecting.history[-1].trigger == "fail"
    # The drain was cancelled and its connection closed.
    assert pooled(draining).is_closed
    assert triggers(pooled(draining))[-2:] == ["drain", "close"]
    assert pooled(draining).history[-1].reason == "pool closed"
    # The borrower's connection was closed under it, ending its lease; giving it
    # back is a silent no-op.
    assert pooled(busy).is_closed
    with pytest.raises(LeaseEndedError):
        await busy.send("too late")
    with pytest.raises(LeaseEndedError):
        await busy.recv()
    await pool.release(busy)
    await pool.release(busy, force_remove=True)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    await shut_down(pool, server, [busy, draining, connecting])


async def test_close_all_closes_every_socket_and_silences_borrowers(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    pool = make_pool(server, max_connections=4)
    conns = [await pool.acquire() for _ in range(4)]
    for conn in conns[:2]:
        await pool.release(conn)
    await wait_until(lambda: server.open_connections == 4, "the server sees 4 sockets")
    assert_stats(pool, idle=2, busy=2, total=4)
    borrowed = conns[3]
    left_block = asyncio.Event()
    in_block = asyncio.Event()

    async def borrower() -> None:
        async with pool.get_connection() as conn:
            assert pooled(conn) is pooled(borrowed)  # the most recently released one
            in_block.set()
            await left_block.wait()
            with pytest.raises(LeaseEndedError):  # closing it ended the lease
                await conn.send("after close_all")
            with pytest.raises(LeaseEndedError):
                await conn.recv()
        # leaving the block after close_all() releases nothing and warns about nothing

    async def receiver() -> None:  # blocked in recv() when close_all() comes
        with pytest.raises(ConnectionClosedError):
            await conns[2].recv()

    await pool.release(borrowed)
    task = spawn(borrower())
    receiving = spawn(receiver())
    await in_block.wait()
    await settle()
    assert not receiving.done()
    caplog.clear()
    await pool.close_all()
    # Closed before close_all() returned.
    assert all(pooled(conn).websocket is None for conn in conns)
    left_block.set()
    await task
    await receiving
    await pool.release(conns[2])
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    await shut_down(pool, server, conns)


@pytest.mark.parametrize("health_check_interval", [None, 0], ids=["no-ping", "ping"])
async def test_close_all_between_grant_and_wakeup_hands_out_nothing(
    server: LoopbackServer, health_check_interval: float | None
) -> None:
    pool = make_pool(server, max_connections=1, health_check_interval=health_check_interval)
    held = await pool.acquire()
    waiter = spawn(pool.acquire())
    await wait_until(lambda: pool.stats().waiting == 1, "the acquirer is queued")
    await pool.release(held)
    await asyncio.sleep(0)  # the dispatch runs: granted, not yet woken
    assert_stats(pool, busy=1, waiting=0)
    assert not waiter.done()

    await pool.close_all()
    with pytest.raises(ConnectionPoolUnavailableError):
        await waiter  # never the connection close_all() just closed
    await shut_down(pool, server, [held])


async def test_a_waiter_cancelled_after_close_all_failed_it_ends_cancelled(
    server: LoopbackServer,
) -> None:
    pool = make_pool(server, max_connections=1)
    held = await pool.acquire()
    waiter = spawn(pool.acquire())
    await wait_until(lambda: pool.stats().waiting == 1, "the acquirer is queued")
    closer = spawn(pool.close_all())
    await asyncio.sleep(0)  # close_all() failed the waiter's future; the waiter has not woken
    assert pool.is_closed
    assert not waiter.done()
    await expect_cancelled(waiter)  # its own cancellation wins over the pool's error
    await closer
    await shut_down(pool, server, [held])


async def test_close_all_during_a_health_check_ping(server: LoopbackServer) -> None:
    pool = make_pool(server, health_check_interval=0, health_check_timeout=BOUND, close_timeout=0.2)
    lease = await pool.acquire()
    await pool.release(lease)
    frozen = pooled(lease)
    server.freeze()
    pinger = spawn(pool.acquire())
    await wait_until(lambda: pool.busy_connections == 1, "the health check is pinging")
    await settle()
    assert not pinger.done()

    await pool.close_all()
    with pytest.raises(ConnectionPoolUnavailableError):
        await pinger
    assert triggers(frozen)[-2:] == ["acquire", "close"]
    assert frozen.history[-1].reason == "pool closed"
    server.thaw()
    await shut_down(pool, server, [frozen])


@pytest.mark.parametrize(
    "method", ["acquire", "acquire_new", "get_connection", "get_new_connection"]
)
async def test_nothing_is_handed_out_after_close_all(server: LoopbackServer, method: str) -> None:
    pool = make_pool(server)
    async with pool.get_connection() as conn:
        await round_trip(conn, "before")
    await pool.close_all()

    async def borrow() -> None:
        if method.startswith("get_"):
            async with getattr(pool, method)():
                pytest.fail("a connection was handed out by a closed pool")
        else:
            await getattr(pool, method)()

    with pytest.raises(ConnectionPoolUnavailableError):
        await borrow()
    await pool.start()  # does nothing once closed
    assert_stats(pool, total=0, opened=1, acquired=1)
    assert server.handshakes == 1
    await shut_down(pool, server, [conn])


@pytest.mark.regression
async def test_close_all_in_the_turn_a_handshake_was_queued_frees_its_slot(
    server: LoopbackServer,
) -> None:
    pool = make_pool(server)
    await pool.start()
    acquirer = asyncio.create_task(pool.acquire(), name="test task")
    await asyncio.sleep(0)  # the acquirer queued a handshake task that has not run yet
    assert pool.stats().connecting == 1
    await pool.close_all()  # cancels that task before its first step
    with pytest.raises(ConnectionPoolUnavailableError):
        await acquirer
    assert pool.total_connections == 0, pool.stats()
    assert pool._core.index.events["fail"] == 1
    assert server.handshakes == 0


@pytest.mark.regression
async def test_acquire_does_not_return_a_connection_close_all_closed(
    server: LoopbackServer,
) -> None:
    server.handshake_delay = 0.05
    pool = make_pool(server)
    await pool.start()
    acquirer = spawn(pool.acquire())
    await asyncio.sleep(0)  # the acquirer claimed a slot; its handshake task is running
    await the_opening_task()  # the handshake finished; the acquirer has not woken yet
    await pool.close_all()
    # As when a reused connection was granted before close_all(): the pool is
    # closed, nothing is handed out.
    try:
        conn = await acquirer
    except ConnectionPoolUnavailableError:
        return
    pytest.fail(f"acquire() returned {conn!r} after close_all() closed it")


# -- misuse --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "misuse", ["twice", "twice-after-force-remove", "other-pool", "standalone"]
)
async def test_release_misuse_changes_nothing_and_warns(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture, misuse: str
) -> None:
    pool = make_pool(server)
    other = make_pool(server)
    standalone = WebsocketConnection(uri=server.uri)
    conn = await pool.acquire()
    target: WebsocketConnection
    if misuse == "twice":
        await pool.release(conn)
        target, releaser = conn, pool
    elif misuse == "twice-after-force-remove":
        await pool.release(conn, force_remove=True)
        target, releaser = conn, pool
    elif misuse == "other-pool":
        target, releaser = conn, other  # still busy in its own pool
    else:
        await standalone.acquire()
        target, releaser = standalone, pool
    inspected = pooled(target) if isinstance(target, ConnectionLease) else target
    before = (pool.stats(), other.stats(), inspected.state, inspected.history)
    caplog.clear()

    await releaser.release(target)

    if misuse == "other-pool":
        # Given back to the pool it came from, not kept busy for nobody.
        assert (other.stats(), inspected.state) == (before[1], State.IDLE)
        assert inspected.history[-1].trigger == "release"
    else:
        assert (pool.stats(), other.stats(), inspected.state, inspected.history) == before
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, caplog.text
    assert warnings[0].name == POOL_LOGGER
    assert target.id in warnings[0].getMessage()
    assert_consistent(pool)
    assert_consistent(other)
    if pooled(conn).is_busy:
        await pool.release(conn)
    await standalone.close()
    await other.close_all()
    assert_stats(other, total=0, opened=0, acquired=0)
    await shut_down(pool, server, [conn])


@pytest.mark.regression
async def test_release_of_none_warns_as_in_0_1_0(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    # 0.1.0 code: conn = None; try: conn = await pool.acquire() ...
    # finally: await pool.release(conn)
    async with make_pool(server) as pool:
        await pool.release(None)  # type: ignore[arg-type]
    # 0.1.0 logs "not in busy set" and returns.
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [(r.name, r.getMessage()) for r in warnings] == [
        ("aio_websocket_pool", f"{pool.name}: release of None ignored: not what a pool's "
         "acquire() handed out"),
    ]  # fmt: skip


@pytest.mark.parametrize("operation", ["send", "recv"])
@pytest.mark.parametrize(
    ("force_remove", "error"),
    [(False, LeaseEndedError), (True, LeaseEndedError)],
    ids=["released", "force-removed"],
)
async def test_io_on_a_connection_not_acquired_is_refused(
    server: LoopbackServer, operation: str, force_remove: bool, error: type[Exception]
) -> None:
    pool = make_pool(server)
    conn = await pool.acquire()
    await pool.release(conn, force_remove=force_remove)
    before = pool.stats()
    with pytest.raises(error):
        await (conn.send("not yours") if operation == "send" else conn.recv())
    assert pool.stats() == before
    assert_consistent(pool)
    await shut_down(pool, server, [conn])


# -- the standalone WebsocketConnection of 0.1.0: connecting ------------------------------


@pytest.mark.regression
async def test_a_connect_cancelled_after_close_ends_cancelled(
    server: LoopbackServer,
) -> None:
    server.hold_handshakes()
    conn = WebsocketConnection(uri=server.uri)
    connecting = asyncio.create_task(conn.connect(), name="test task")
    await wait_until(lambda: server.handshakes_in_flight == 1, "the handshake is in flight")
    await conn.close()  # e.g. shutdown closes it
    connecting.cancel()
    # the task ends cancelled (CancelledError), as asked.
    with pytest.raises(asyncio.CancelledError):
        await connecting
    # closed once, while connecting, and nothing more (no "fail" for the cancellation).
    assert conn.is_closed
    assert [(r.trigger, r.reason) for r in conn.history] == [("fail", "closed by its user")]
    assert conn.websocket is None


@pytest.mark.regression
async def test_a_standalone_connect_can_be_retried_after_a_failed_handshake(
    server: LoopbackServer,
) -> None:
    conn = WebsocketConnection(uri=server.uri)
    server.refuse(1, 503)  # the server is restarting
    with pytest.raises(ConnectionUnavailableError):
        await conn.connect()
    try:
        # 0.1.0 tries the handshake again, and the server is back.
        await conn.connect()
        assert conn.is_connected
    finally:
        await conn.close()


async def test_a_pooled_connection_cannot_be_acquired_directly(server: LoopbackServer) -> None:
    pool = make_pool(server)
    conn = await pool.acquire()
    await pool.release(conn)
    with pytest.raises(ConnectionBusyError):
        await conn.acquire()
    assert_stats(pool, idle=1, busy=0, total=1, acquired=1)
    with pytest.raises(LeaseEndedError):  # the lease's own release: misuse, refused
        await conn.release()
    assert_stats(pool, idle=1, busy=0, total=1, acquired=1)
    await shut_down(pool, server, [conn])


# -- history -------------------------------------------------------------------------------


@pytest.mark.parametrize("history_size", [None, 5, 3, 1])
async def test_history_records_each_transition(
    server: LoopbackServer, history_size: int | None
) -> None:
    kwargs = {} if history_size is None else {"history_size": history_size}
    pool = make_pool(server, **kwargs)
    started = time.time()
    conn = await pool.acquire()
    await pool.release(conn)
    again = await pool.acquire()
    assert pooled(again) is pooled(conn)
    await pool.release(again, force_remove=True)

    expected = [
        ("open", State.CONNECTING, State.IDLE),
        ("acquire", State.IDLE, State.BUSY),
        ("release", State.BUSY, State.IDLE),
        ("acquire", State.IDLE, State.BUSY),
        ("close", State.BUSY, State.CLOSED),
    ]
    kept = expected[-history_size:] if history_size is not None else expected
    history = pooled(conn).history
    assert [(r.trigger, r.source, r.dest) for r in history] == kept
    assert all(r.connection_id == conn.id for r in history)
    assert [r.at for r in history] == sorted(r.at for r in history)
    assert all(abs(r.at - started) < BOUND for r in history)
    assert [r.reason for r in history[:-1]] == [None] * (len(history) - 1)
    assert "force_remove" in (history[-1].reason or "")
    assert "force_remove" in str(history[-1])
    assert f"{conn.id} close: busy -> closed" in str(history[-1])
    assert_stats(pool, total=0, opened=1, acquired=2, reused=1, closed=1)
    await shut_down(pool, server, [conn])
