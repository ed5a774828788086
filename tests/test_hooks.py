"""The pool's hooks, against a real server: when each runs, what it may do, what its failure costs.

Every test talks to the loopback echo server (``tests/loopback.py``). A hook
that works proves it ran at the right moment by talking on the connection (an
"auth" or "reset" message and its echo) and by what it saw (the connection's
state, the pool's counters). A hook that fails (raises, or outlives
``hook_timeout``) must cost only its connection: the slot comes back, the
reason is in the history without the exception's text, and the borrower gets
another connection or a :class:`ConnectionHookError`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Literal

import pytest
from websockets.asyncio.server import ServerConnection, serve

import aio_websocket_pool
from aio_websocket_pool import LeaseEndedError, State, WebsocketConnection, WebsocketConnectionPool
from aio_websocket_pool._exceptions import ConnectionHookError
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

#: Bounded acquires; no health-check pings, so that the only I/O is the hooks' and the test's.
make_pool = pool_maker(health_check_interval=None, acquire_timeout=BOUND)

#: Put in a failing hook's exception message: it must show up nowhere.
SECRET = "hook-secret-token-5f0c"  # noqa: S105  (a fake token that must never be shown)

Failure = Literal["raises", "stalls"]
#: How a hook fails, and what the history then says about it (besides the hook's name).
FAILURES = pytest.mark.parametrize(
    ("failure", "reason_part"),
    [("raises", "raised RuntimeError"), ("stalls", "did not finish within hook_timeout")],
)
#: The ``hook_timeout`` of pools whose hooks stall (short, so the tests stay fast).
SHORT_HOOK_TIMEOUT = 0.05

Hook = Callable[[WebsocketConnection], Awaitable[None]]


# -- helpers ------------------------------------------------------------------------------


def failing_hook(failure: Failure, seen: list[WebsocketConnection] | None = None) -> Hook:
    """A hook that raises (with :data:`SECRET` in the message) or never returns.

    Each connection it is called with is appended to ``seen``.
    """

    async def hook(conn: WebsocketConnection) -> None:
        if seen is not None:
            seen.append(conn)
        if failure == "raises":
            raise RuntimeError(f"token {SECRET} rejected")
        await asyncio.Event().wait()

    return hook


def assert_retired(conn: WebsocketConnection, trigger: str, source: State, *parts: str) -> None:
    """``conn`` left ``source`` through ``trigger`` with a reason naming every part, no secret."""
    assert conn.is_closed
    record = conn.history[-1]
    assert (record.trigger, record.source, record.dest) == (trigger, source, State.CLOSED)
    assert record.reason is not None
    for part in parts:
        assert part in record.reason, f"{part!r} not in {record.reason!r}"
    assert SECRET not in record.reason


# -- on_connect ---------------------------------------------------------------------------


async def test_on_connect_runs_once_per_connection_before_it_is_handed_out(
    server: LoopbackServer,
) -> None:
    """on_connect talks on each new connection, still connecting, once, before anyone gets it."""
    seen: list[tuple[WebsocketConnection, State]] = []

    async def on_connect(conn: WebsocketConnection) -> None:
        await round_trip(conn, "auth")  # it may talk on the connection
        seen.append((conn, conn.state))

    async with make_pool(server, max_connections=2, on_connect=on_connect) as pool:
        first, second = await asyncio.gather(pool.acquire(), pool.acquire())
        # Still connecting while it ran: no acquirer could have been handed it.
        assert len(seen) == 2
        assert set(seen) == {(pooled(first), State.CONNECTING), (pooled(second), State.CONNECTING)}
        for conn in (first, second):
            await round_trip(conn, "after auth")  # the hook read its own echo
            await pool.release(conn)
        for _ in range(2):
            conn = await pool.acquire()
            await round_trip(conn, "reused")
            await pool.release(conn)

        assert len(seen) == 2  # not again for the reused ones
        assert server.handshakes == 2
        stats = assert_consistent(pool)
        assert (stats.opened, stats.acquired, stats.hooks_failed) == (2, 4, 0)


@FAILURES
async def test_a_failing_on_connect_raises_a_hook_error_and_frees_the_slot(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture, failure: Failure, reason_part: str
) -> None:
    """A failing on_connect costs the acquirer a typed error, the pool nothing; no secret leaks."""
    caplog.set_level(logging.DEBUG)
    seen: list[WebsocketConnection] = []
    async with make_pool(
        server,
        max_connections=1,
        on_connect=failing_hook(failure, seen),
        hook_timeout=SHORT_HOOK_TIMEOUT,
    ) as pool:
        with pytest.raises(ConnectionHookError) as excinfo:
            await pool.acquire()

        error = excinfo.value
        assert error.hook == "on_connect"
        cause = RuntimeError if failure == "raises" else TimeoutError
        assert isinstance(error.__cause__, cause)
        (conn,) = seen
        assert_retired(conn, "fail", State.CONNECTING, "on_connect", reason_part)
        assert triggers(conn) == ["fail"]
        assert pool.total_connections == 0
        stats = assert_consistent(pool)
        assert (stats.hooks_failed, stats.failed_connects, stats.opened) == (1, 1, 0)
        # Its socket was dropped, not left open on the server.
        await wait_until(lambda: server.open_connections == 0, "the server saw the socket close")
        for shown in (str(error), repr(error), repr(pool), repr(conn)):
            assert SECRET not in shown
        # The hook's own exception is its author's to see: only the report of the
        # hook's failure (one WARNING, the traceback at DEBUG) quotes it.
        quoting = [r for r in caplog.records if SECRET in r.getMessage()]
        assert all(r.getMessage().startswith(f"on_connect failed on {conn.id}") for r in quoting)
        assert sum(r.levelno == logging.WARNING for r in quoting) == (failure == "raises")


async def test_on_connect_finishes_for_the_pool_when_its_acquirer_leaves(
    server: LoopbackServer,
) -> None:
    """An acquirer that leaves mid-on_connect leaves an initialised connection to the pool."""
    entered = asyncio.Event()
    go_on = asyncio.Event()
    seen: list[WebsocketConnection] = []

    async def on_connect(conn: WebsocketConnection) -> None:
        seen.append(conn)
        entered.set()
        await go_on.wait()
        await round_trip(conn, "auth")

    async with make_pool(server, on_connect=on_connect, hook_timeout=BOUND) as pool:
        acquirer = spawn(pool.acquire())
        async with asyncio.timeout(BOUND):
            await entered.wait()
        acquirer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await acquirer
        go_on.set()
        # The handshake (hook included) belongs to the pool: the connection is kept.
        await wait_until(lambda: pool.available_connections == 1, "parked idle")

        (conn,) = seen
        lease = await pool.acquire()
        assert pooled(lease) is conn
        await round_trip(lease, "request")
        assert seen == [conn]  # not initialised twice
        stats = assert_consistent(pool)
        assert (stats.opened, stats.acquired, stats.hooks_failed) == (1, 1, 0)
        await pool.release(lease)


@pytest.mark.parametrize(
    "warm",
    [
        pytest.param(True, id="opened-in-background"),
        pytest.param(
            False,
            id="opened-for-the-acquirer",
        ),
    ],
)
async def test_messages_left_over_from_on_connect_never_reach_the_first_borrower(
    server: LoopbackServer, warm: bool
) -> None:
    """What the server sent during on_connect goes to on_unsolicited, not to the first borrower."""
    server.stray_messages = 1  # the server answers "auth" with its echo and one more message
    received: list[str | bytes] = []

    async def on_connect(conn: WebsocketConnection) -> None:
        await round_trip(conn, "auth")
        await wait_until(lambda: conn._buffered_frames() == 1, "the extra message arrived")

    async def on_unsolicited(conn: WebsocketConnection, message: str | bytes) -> None:
        received.append(message)

    async with make_pool(
        server,
        on_connect=on_connect,
        on_unsolicited=on_unsolicited,
        warmup_connections=int(warm),
    ) as pool:
        conn = await pool.acquire()
        await conn.send("request")
        assert await conn.recv() == "request", "the borrower got a message meant for on_connect"
        assert received == ["stray 0"]
        await pool.release(conn)
        assert_consistent(pool)


def test_connection_hook_error_is_public() -> None:
    """The error acquire() raises for a failing hook can be imported from the package."""
    assert getattr(aio_websocket_pool, "ConnectionHookError", None) is ConnectionHookError
    assert "ConnectionHookError" in aio_websocket_pool.__all__


# -- on_acquire ---------------------------------------------------------------------------


async def test_on_acquire_runs_before_every_hand_out_new_or_reused(server: LoopbackServer) -> None:
    """on_acquire runs, on a busy connection it may talk on, before each hand-out."""
    seen: list[tuple[WebsocketConnection, State]] = []

    async def on_acquire(conn: WebsocketConnection) -> None:
        await round_trip(conn, "check")  # it may talk on the connection
        seen.append((conn, conn.state))

    async with make_pool(server, on_acquire=on_acquire) as pool:
        conn = await pool.acquire()
        assert seen == [(pooled(conn), State.BUSY)]
        await pool.release(conn)
        again = await pool.acquire()
        assert pooled(again) is pooled(conn)
        assert seen == [(pooled(conn), State.BUSY)] * 2
        await round_trip(again, "borrower")  # the hook read its own echo
        await pool.release(again)
        stats = assert_consistent(pool)
        assert (stats.opened, stats.acquired, stats.reused, stats.hooks_failed) == (1, 2, 1, 0)


@pytest.mark.parametrize("idle", [1, 2], ids=["replaced-by-new", "replaced-by-idle"])
async def test_on_acquire_failing_on_a_reused_connection_is_invisible_to_the_caller(
    server: LoopbackServer, idle: int
) -> None:
    """A reused connection that fails on_acquire is closed and the caller gets another."""
    doomed: set[WebsocketConnection] = set()

    async def on_acquire(conn: WebsocketConnection) -> None:
        if conn in doomed:
            raise RuntimeError(SECRET)

    async with make_pool(server, on_acquire=on_acquire) as pool:
        conns = [await pool.acquire() for _ in range(idle)]
        for conn in conns:
            await pool.release(conn)
        failing = pooled(conns[-1])  # released last: handed out first
        doomed.add(failing)

        got = await pool.acquire()

        assert pooled(got) is not failing
        # The other idle one, else a new one.
        assert (pooled(got) in {pooled(conn) for conn in conns}) is (idle == 2)
        await round_trip(got, "fine")
        assert_retired(failing, "close", State.BUSY, "on_acquire raised RuntimeError")
        assert server.handshakes == 2
        stats = assert_consistent(pool)
        assert (stats.opened, stats.closed, stats.hooks_failed) == (2, 1, 1)
        await wait_until(lambda: server.open_connections == 1, "the failed one's socket closed")
        await pool.release(got)


@FAILURES
async def test_on_acquire_failing_on_a_new_connection_raises_a_hook_error(
    server: LoopbackServer, failure: Failure, reason_part: str
) -> None:
    """A new connection that fails on_acquire is closed and the caller gets a typed error."""
    seen: list[WebsocketConnection] = []
    async with make_pool(
        server, on_acquire=failing_hook(failure, seen), hook_timeout=SHORT_HOOK_TIMEOUT
    ) as pool:
        with pytest.raises(ConnectionHookError) as excinfo:
            await pool.acquire()

        assert excinfo.value.hook == "on_acquire"
        assert SECRET not in str(excinfo.value)
        (conn,) = seen  # one attempt: a hook that always fails opens no stream of connections
        assert_retired(conn, "close", State.BUSY, "on_acquire", reason_part)
        assert pool.total_connections == 0
        stats = assert_consistent(pool)
        assert (stats.opened, stats.closed, stats.hooks_failed) == (1, 1, 1)
        await wait_until(lambda: server.open_connections == 0, "the server saw the socket close")


@pytest.mark.parametrize("reused", [False, True], ids=["new", "reused"])
async def test_an_acquirer_cancelled_during_on_acquire_leaks_nothing(
    server: LoopbackServer, reused: bool
) -> None:
    """Cancelled mid-on_acquire, the connection is closed: no busy slot is left for nobody."""
    stall = asyncio.Event()
    entered: list[WebsocketConnection] = []

    async def on_acquire(conn: WebsocketConnection) -> None:
        if stall.is_set():
            entered.append(conn)
            await asyncio.Event().wait()

    async with make_pool(server, on_acquire=on_acquire, hook_timeout=BOUND) as pool:
        if reused:
            await pool.release(await pool.acquire())
        stall.set()
        acquirer = spawn(pool.acquire())
        await wait_until(lambda: bool(entered), "on_acquire is running")
        acquirer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await acquirer

        (conn,) = entered
        # What the hook left half done is unknown: the connection is not reused.
        assert_retired(conn, "close", State.BUSY, "cancelled during on_acquire")
        assert pool.total_connections == 0
        await wait_until(lambda: server.open_connections == 0, "the server saw the socket close")
        stall.clear()
        fresh = await pool.acquire()
        assert pooled(fresh) is not conn
        await round_trip(fresh, "after")
        stats = assert_consistent(pool)
        assert (stats.busy, stats.total, stats.hooks_failed) == (1, 1, 0)
        await pool.release(fresh)


# -- on_release ---------------------------------------------------------------------------


async def test_on_release_runs_on_every_release_before_the_connection_is_reused(
    server: LoopbackServer,
) -> None:
    """on_release runs on each release, draining, and the next borrower waits for it."""
    gate = asyncio.Event()
    seen: list[tuple[WebsocketConnection, State, int]] = []

    async def on_release(conn: WebsocketConnection) -> None:
        await round_trip(conn, "reset")  # it may talk on the connection
        seen.append((conn, conn.state, pool.pending_connections))
        await gate.wait()

    pool = make_pool(server, max_connections=1, on_release=on_release)
    async with pool:
        conn = await pool.acquire()
        await round_trip(conn, "one")
        await pool.release(conn)  # returns at once: the hook runs in the background
        waiter = spawn(pool.acquire())
        await wait_until(lambda: bool(seen) and pool.stats().waiting == 1, "hook runs, one waits")
        assert seen == [(pooled(conn), State.DRAINING, 1)]
        assert not waiter.done()  # the next borrower waits for the hook to finish
        stats = assert_consistent(pool)
        assert (stats.draining, stats.idle, stats.busy) == (1, 0, 0)

        gate.set()
        async with asyncio.timeout(BOUND):
            again = await waiter
        assert pooled(again) is pooled(conn)
        await round_trip(again, "two")  # the hook read its own echo
        await pool.release(again)
        await wait_until(lambda: pool.available_connections == 1, "the second hook finished")
        assert seen == [(pooled(conn), State.DRAINING, 1)] * 2
        assert triggers(pooled(conn)) == ["open", *["acquire", "drain", "settle"] * 2]
        stats = assert_consistent(pool)
        assert (stats.opened, stats.reused, stats.hooks_failed) == (1, 1, 0)


@FAILURES
async def test_a_failing_on_release_discards_the_connection(
    server: LoopbackServer, failure: Failure, reason_part: str
) -> None:
    """A connection whose on_release fails is closed, and the next acquire opens a new one."""
    async with make_pool(
        server, on_release=failing_hook(failure), hook_timeout=SHORT_HOOK_TIMEOUT
    ) as pool:
        conn = await pool.acquire()
        await round_trip(conn, "one")
        await pool.release(conn)
        await wait_until(lambda: pooled(conn).is_closed, "the hook failed")

        assert_retired(pooled(conn), "close", State.DRAINING, "on_release", reason_part)
        assert pool.total_connections == 0
        assert pool.stats().hooks_failed == 1
        fresh = await pool.acquire()
        assert fresh.id != conn.id
        await round_trip(fresh, "two")
        assert server.handshakes == 2
        assert_consistent(pool)
        await wait_until(lambda: server.open_connections == 1, "the failed one's socket closed")


@pytest.mark.regression
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


@pytest.mark.regression
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


# -- on_unsolicited -----------------------------------------------------------------------


@pytest.mark.parametrize("with_hook", [True, False], ids=["hook", "no-hook"])
async def test_messages_pushed_while_idle_never_reach_the_next_borrower(
    server: LoopbackServer, with_hook: bool
) -> None:
    """Messages that arrive while idle go to on_unsolicited (or are dropped), counted either way.

    At once, as they arrive: nothing waits in the connection for its next hand-out.
    """
    server.stray_messages = 2
    server.stray_interval = 0.02  # they arrive after the reply, while the connection is idle
    received: list[tuple[WebsocketConnection, str | bytes]] = []

    async def on_unsolicited(conn: WebsocketConnection, message: str | bytes) -> None:
        received.append((conn, message))

    async with make_pool(server, on_unsolicited=on_unsolicited if with_hook else None) as pool:
        conn = await pool.acquire()
        await round_trip(conn, "request")
        await pool.release(conn)
        expected = [(pooled(conn), "stray 0"), (pooled(conn), "stray 1")] if with_hook else []
        await wait_until(
            lambda: pool.stats().unsolicited_messages == 2 and received == expected,
            "both arrived while idle and were taken, with no acquire",
        )
        assert pooled(conn)._buffered_frames() == 0  # nothing left for the next borrower
        assert pool.available_connections == 1  # and it is kept

        again = await pool.acquire()

        assert pooled(again) is pooled(conn)
        await round_trip(again, "next")  # its own reply, not a message from before
        assert received == expected
        stats = assert_consistent(pool)
        assert (stats.unsolicited_messages, stats.messages_drained, stats.hooks_failed) == (2, 0, 0)
        await pool.release(again)


@pytest.mark.parametrize("with_on_release", [False, True], ids=["drain", "on_release-then-drain"])
async def test_drained_messages_go_to_on_unsolicited_after_on_release(
    server: LoopbackServer, with_on_release: bool
) -> None:
    """A drain runs after on_release, and hands what it reads to on_unsolicited."""
    server.stray_messages = 2
    events: list[object] = []

    async def on_release(conn: WebsocketConnection) -> None:
        events.append(("on_release", conn))

    async def on_unsolicited(conn: WebsocketConnection, message: str | bytes) -> None:
        events.append((conn, message))

    async with make_pool(
        server,
        check_server_data_on_release=True,
        drain_quiet_period=0.05,
        drain_timeout=2.0,
        on_release=on_release if with_on_release else None,
        on_unsolicited=on_unsolicited,
    ) as pool:
        conn = await pool.acquire()
        await round_trip(conn, "request")
        await pool.release(conn)
        await wait_until(lambda: pool.available_connections == 1, "the drain settled")

        connection = pooled(conn)
        hooked: list[object] = [("on_release", connection)] if with_on_release else []
        assert events == [*hooked, (connection, "stray 0"), (connection, "stray 1")]
        assert connection.history[-1].reason == "2 messages drained"
        stats = assert_consistent(pool)
        assert (stats.messages_drained, stats.unsolicited_messages) == (2, 0)
        again = await pool.acquire()
        assert pooled(again) is connection
        await round_trip(again, "next")
        await pool.release(again)


# -- checked at construction --------------------------------------------------------------


@pytest.mark.parametrize("hook", ["on_connect", "on_acquire", "on_release", "on_unsolicited"])
def test_a_hook_that_is_not_async_is_rejected_at_construction(hook: str) -> None:
    """A plain function as a hook fails at construction, not at the first hand-out."""

    def plain(*args: object) -> None:
        del args

    with pytest.raises(TypeError, match=hook):
        WebsocketConnectionPool("ws://127.0.0.1:9/", **{hook: plain})  # type: ignore[arg-type]


@pytest.mark.parametrize("hook_timeout", [0, 0.0, -1.0])
def test_a_hook_timeout_that_is_not_positive_is_rejected(hook_timeout: float) -> None:
    """hook_timeout must be a positive number of seconds."""
    with pytest.raises(ValueError, match="hook_timeout"):
        WebsocketConnectionPool("ws://127.0.0.1:9/", hook_timeout=hook_timeout)


@pytest.mark.parametrize("warm", [True, False], ids=["opened-in-background", "opened-for-acquirer"])
async def test_a_greeting_reaches_the_first_borrower_when_there_is_no_on_connect(
    warm: bool,
) -> None:
    """Without on_connect, what the server sends on connect goes to the first borrower.

    Only what arrives after a hand-out, while nobody holds the connection, is unsolicited.
    """

    async def greet_then_echo(websocket: ServerConnection) -> None:
        await websocket.send("welcome")
        async for message in websocket:
            await websocket.send(message)

    async with serve(greet_then_echo, "127.0.0.1", 0) as greeter:
        port = greeter.sockets[0].getsockname()[1]
        pool = make_pool(f"ws://127.0.0.1:{port}", warmup_connections=1 if warm else 0)
        async with pool:
            async with pool.get_connection() as conn:
                if warm:  # the greeting arrived while it sat idle, before its first hand-out
                    await wait_until(
                        lambda: pooled(conn)._buffered_frames() > 0, "the greeting arrived"
                    )
                assert await conn.recv() == "welcome"
                await round_trip(conn, "first")
            assert pool.stats().unsolicited_messages == 0
