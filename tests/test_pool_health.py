"""Keeping dead, frozen and dirty connections away from borrowers, against a real server.

Every test talks to the loopback echo server (``tests/loopback.py``) and
injects one fault through its knobs: a peer close while a connection sits
idle, a frozen peer that never answers pings, refused handshakes, stray
messages after a reply, a borrower that leaves on an error, an idle timeout
(a warm-up against a server that refuses is ``tests/test_opening.py``'s). Each
checks what the borrower sees, what the pool's counters say, and why each
connection left (its history).

Waits poll a condition in a bounded loop (:func:`wait_until`); no test
asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from tenacity import RetryError
from websockets.exceptions import InvalidStatus

from aio_websocket_pool import (
    ConnectionUnavailableError,
    HandshakeRejectedError,
    State,
    TransitionRecord,
    WebsocketConnection,
    WebsocketConnectionPool,
)
from helpers import (
    BOUND,
    assert_consistent,
    exception_chain,
    pool_maker,
    pooled,
    round_trip,
    triggers,
    wait_until,
)
from loopback import LoopbackServer


class BorrowerError(Exception):
    """Raised by a borrower inside ``async with pool.get_connection()``."""


# -- helpers --------------------------------------------------------------------------


#: The sweep is slow, acquires give up instead of hanging, and closing a socket
#: whose peer is frozen is cut short (``close_timeout``); pings as the library does.
make_pool = pool_maker(cleanup_interval=60.0, acquire_timeout=BOUND, close_timeout=0.2)


def last(conn: WebsocketConnection) -> TransitionRecord:
    """The most recent transition of ``conn``."""
    return conn.history[-1]


def assert_closed(conn: WebsocketConnection, source: State, *reason_parts: str) -> None:
    """``conn`` was retired from ``source`` with a reason that mentions every part."""
    assert conn.is_closed
    record = last(conn)
    assert (record.trigger, record.source, record.dest) == ("close", source, State.CLOSED)
    assert record.reason is not None
    for part in reason_parts:
        assert part in record.reason, f"{part!r} not in {record.reason!r}"


def closed_port() -> int:
    """A port of 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- health check on reuse ------------------------------------------------------------


#: Whether the server closes TCP at once after its close frame, or only later
#: (``linger``: the client got the close code but waits in websockets' CLOSING state).
CLOSE_MODES = pytest.mark.parametrize("linger", [False, True], ids=["closed", "lingering"])


@CLOSE_MODES
@pytest.mark.parametrize("interval", [None, 0.0, 60.0], ids=["never", "always", "rarely"])
async def test_connection_closed_by_peer_while_idle_is_replaced_silently(
    server: LoopbackServer, interval: float | None, linger: bool
) -> None:
    # A dead socket is noticed without I/O, so even a pool that never pings drops it.
    async with make_pool(
        server.uri,
        health_check_interval=interval,
        health_check_timeout=0.1,
        close_timeout=5.0,  # how long the client waits in CLOSING for a lingering server
    ) as pool:
        lease = await pool.acquire()
        await round_trip(lease, "one")
        await pool.release(lease)
        first = pooled(lease)
        await server.close_connections(4000, linger=linger)
        await wait_until(lambda: not first.is_connected, "the client saw the close")

        second = await pool.acquire()
        server.thaw()  # let a lingering close finish

        assert pooled(second) is not first
        await round_trip(second, "two")
        assert_closed(first, State.IDLE, "close code 4000")
        assert triggers(first) == ["open", "acquire", "release", "close"]
        stats = pool.stats()
        assert (stats.opened, stats.closed, stats.total, stats.busy) == (2, 1, 1, 1)
        assert server.handshakes == 2
        assert_consistent(pool)
        await pool.release(second)
    assert server.open_connections == 0


@pytest.mark.parametrize(
    ("interval", "idle_past", "pinged"),
    [
        (0.0, 0.0, True),  # pinged on every reuse
        (0.05, 0.1, True),  # idle for longer than the interval
        (None, 0.0, False),  # never pinged
        (60.0, 0.0, False),  # used too recently to be pinged
    ],
    ids=["interval-0", "idle-past-interval", "interval-none", "interval-large"],
)
async def test_frozen_connection_is_replaced_only_when_pinged(
    server: LoopbackServer, interval: float | None, idle_past: float, pinged: bool
) -> None:
    async with make_pool(
        server.uri, health_check_interval=interval, health_check_timeout=0.1
    ) as pool:
        lease = await pool.acquire()
        await round_trip(lease, "one")
        await pool.release(lease)
        first = pooled(lease)
        await wait_until(lambda: first.idle_for > idle_past, f"idle for {idle_past:g}s")
        server.freeze()

        second = await pool.acquire()

        if pinged:
            # The ping went unanswered: the caller gets a new connection, no error.
            assert pooled(second) is not first
            await round_trip(second, "two")
            assert_closed(first, State.BUSY, "health check failed", "timed out")
            assert triggers(first) == ["open", "acquire", "release", "acquire", "close"]
            assert (pool.stats().opened, pool.stats().closed) == (2, 1)
            assert server.handshakes == 2
        else:
            # No ping was sent, or it would have timed out and a new connection
            # would have been opened: the frozen one is handed out as it is.
            assert pooled(second) is first
            assert second.is_busy
            assert triggers(first) == ["open", "acquire", "release", "acquire"]
            assert (pool.stats().opened, pool.stats().closed, pool.stats().reused) == (1, 0, 1)
            assert server.handshakes == 1
        assert pool.total_connections == pool.busy_connections == 1
        assert_consistent(pool)
        await pool.release(second)


@pytest.mark.regression
async def test_a_cancelled_health_check_is_not_skipped_by_the_next_borrower(
    server: LoopbackServer,
) -> None:
    # The first ping cannot time out before its caller gives up, however slow the machine.
    pool = make_pool(
        server, health_check_interval=0.2, health_check_timeout=BOUND, close_timeout=0.1
    )
    lease = await pool.acquire()
    await pool.release(lease)
    frozen = pooled(lease)
    server.freeze()  # pings go unanswered from now on
    # idle longer than health_check_interval: needs a ping
    await wait_until(lambda: frozen.idle_for > 0.2, "idle past health_check_interval")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):  # this caller gives up mid-ping
            await pool.acquire()
    assert frozen.state is State.IDLE  # given back unverified
    frozen._pong_timeout = 0.1  # the next ping fails fast: no need to wait BOUND for it
    try:
        conn = await pool.acquire()
        # the never-verified connection is pinged, fails, and is replaced.
        assert pooled(conn) is not frozen, (
            "handed out a connection whose health check never completed"
        )
        assert frozen.is_closed
        assert [r.trigger for r in frozen.history] == [
            "open", "acquire", "release", "acquire", "release", "acquire", "close"
        ]  # fmt: skip
        assert "health check failed" in (frozen.history[-1].reason or "")
        assert server.handshakes == 2
        await round_trip(conn, "a verified connection")
    finally:
        await pool.close_all()
        server.thaw()


# -- retries ---------------------------------------------------------------------------


@pytest.mark.parametrize(("refusals", "status", "max_retries"), [(2, 503, 3), (1, 500, 2)])
async def test_transient_refusals_are_retried_until_the_handshake_succeeds(
    server: LoopbackServer, refusals: int, status: int, max_retries: int
) -> None:
    server.refuse(refusals, status)
    async with make_pool(server.uri, max_retries=max_retries) as pool:
        conn = await pool.acquire()
        await round_trip(conn, "hello")
        assert len(server.request_headers) == refusals + 1
        assert server.handshakes == 1
        # The retries happen inside one connection's handshake: one slot, one history.
        assert triggers(conn) == ["open", "acquire"]
        stats = pool.stats()
        assert (stats.opened, stats.failed_connects, stats.total) == (1, 0, 1)
        assert_consistent(pool)
        await pool.release(conn)


@pytest.mark.parametrize(
    ("refusals", "status", "max_retries", "requests"),
    [
        (1, 401, 3, 1),  # 4xx: not retried
        (1, 403, 3, 1),
        (5, 503, 3, 3),  # 5xx: retried until max_retries attempts were made
        (1, 503, 1, 1),
    ],
)
async def test_failed_handshake_raises_a_typed_error_and_frees_its_slot(
    server: LoopbackServer, refusals: int, status: int, max_retries: int, requests: int
) -> None:
    server.refuse(refusals, status)
    async with make_pool(server.uri, max_retries=max_retries, max_connections=1) as pool:
        with pytest.raises(ConnectionUnavailableError) as excinfo:
            await pool.acquire()

        error = excinfo.value
        if status < 500:
            assert isinstance(error, HandshakeRejectedError)
            assert error.status_code == status
        else:
            assert not isinstance(error, HandshakeRejectedError)
        assert isinstance(error.__cause__, InvalidStatus)
        assert error.__cause__.response.status_code == status
        assert not any(isinstance(exc, RetryError) for exc in exception_chain(error))
        assert len(server.request_headers) == requests
        assert pool.total_connections == 0
        stats = pool.stats()
        assert (stats.connecting, stats.failed_connects, stats.opened) == (0, 1, 0)
        assert_consistent(pool)

        # The only slot is free again: the next acquire opens a connection in it
        # (after the refusals still queued, which the retries absorb).
        conn = await pool.acquire()
        await round_trip(conn, "after")
        assert pool.stats().failed_connects == 1
        await pool.release(conn)


@pytest.mark.parametrize("max_retries", [1, 2])
async def test_connection_refused_raises_unavailable_chained_from_oserror(
    max_retries: int,
) -> None:
    async with make_pool(f"ws://127.0.0.1:{closed_port()}/", max_retries=max_retries) as pool:
        with pytest.raises(ConnectionUnavailableError) as excinfo:
            await pool.acquire()

        error = excinfo.value
        assert not isinstance(error, HandshakeRejectedError)
        assert isinstance(error.__cause__, OSError)
        assert not any(isinstance(exc, RetryError) for exc in exception_chain(error))
        assert pool.total_connections == 0
        stats = pool.stats()
        assert (stats.connecting, stats.failed_connects, stats.opened) == (0, 1, 0)
        assert_consistent(pool)


@pytest.mark.parametrize("refusals", [1, 2], ids=["waiter-connects", "waiter-fails-too"])
async def test_failed_connect_wakes_a_waiter_for_the_freed_slot(
    server: LoopbackServer, refusals: int
) -> None:
    server.refuse(refusals, 401)
    server.hold_handshakes()  # keeps the first handshake in flight while the second queues
    async with make_pool(server.uri, max_connections=1) as pool:
        first = asyncio.create_task(pool.acquire())
        second = asyncio.create_task(pool.acquire())
        await wait_until(lambda: pool.stats().waiting == 1, "the second acquirer waits")
        assert pool.stats().connecting == 1
        await wait_until(lambda: server.handshakes_in_flight == 1, "the first handshake is held")
        server.release_handshakes()

        async with asyncio.timeout(BOUND):
            results = await asyncio.gather(first, second, return_exceptions=True)

        assert isinstance(results[0], HandshakeRejectedError)
        assert results[0].status_code == 401
        if refusals == 1:
            conn = results[1]
            assert isinstance(conn, WebsocketConnection)
            await round_trip(conn, "woken")
            await pool.release(conn)
        else:
            assert isinstance(results[1], HandshakeRejectedError)
            assert results[1].status_code == 401
        stats = pool.stats()
        assert (stats.failed_connects, stats.waiting, stats.total) == (refusals, 0, 2 - refusals)
        assert len(server.request_headers) == 2
        assert_consistent(pool)


# -- draining ----------------------------------------------------------------------------


def draining_pool(uri: str, **kwargs: Any) -> WebsocketConnectionPool:
    """A pool that drains every released connection, with short quiet periods."""
    options: dict[str, Any] = {
        "check_server_data_on_release": True,
        "drain_quiet_period": 0.1,
        "drain_timeout": 2.0,
        **kwargs,
    }
    return make_pool(uri, **options)


@pytest.mark.parametrize(("strays", "settle_reason"), [(0, None), (2, "2 messages drained")])
async def test_release_drains_in_the_background_then_reuses_the_connection(
    server: LoopbackServer, strays: int, settle_reason: str | None
) -> None:
    server.stray_messages = strays
    async with draining_pool(server.uri) as pool:
        lease = await pool.acquire()
        await round_trip(lease, "request")

        await pool.release(lease)
        conn = pooled(lease)

        # release() returned without waiting for the drain.
        assert conn.is_draining
        assert conn.state is State.DRAINING
        stats = pool.stats()
        assert (stats.draining, stats.idle, stats.busy, stats.total) == (1, 0, 0, 1)
        assert pool.pending_connections == 1
        assert_consistent(pool)

        await wait_until(lambda: pool.available_connections == 1, "the drain settled")
        assert pool.pending_connections == 0
        assert triggers(conn) == ["open", "acquire", "drain", "settle"]
        assert last(conn).reason == settle_reason

        again = await pool.acquire()
        assert pooled(again) is conn
        await round_trip(again, "next")  # the real reply, not a stray left from before
        assert server.handshakes == 1
        assert pool.stats().reused == 1
        assert_consistent(pool)
        await pool.release(again)


async def test_a_drained_message_counts_as_traffic(server: LoopbackServer) -> None:
    # idle_for (which the health check and the idle sweep go by) restarts with
    # each stray message the drain reads, as with any message received.
    server.stray_messages = 1
    async with draining_pool(server.uri) as pool:
        conn = await pool.acquire()
        await round_trip(conn, "request")
        await pool.release(conn)
        released_at = time.monotonic()  # the drain task reads the stray after this

        await wait_until(lambda: pool.available_connections == 1, "the drain settled")

        assert last(pooled(conn)).reason == "1 messages drained"
        since_release = time.monotonic() - released_at
        assert pooled(conn).idle_for < since_release, "the drained message did not count"


def reject_strays(message: str | bytes) -> bool:
    return not (isinstance(message, str) and message.startswith("stray"))


def explode(message: str | bytes) -> bool:
    raise ValueError(f"cannot judge {len(message)} characters")


@pytest.mark.parametrize(
    ("condition", "reason"),
    [
        (reject_strays, "drain_condition rejected a drained message"),
        (explode, "drain_condition raised ValueError"),
    ],
    ids=["rejects", "raises"],
)
async def test_drain_condition_that_refuses_a_message_discards_the_connection(
    server: LoopbackServer, condition: Callable[[str | bytes], bool], reason: str
) -> None:
    server.stray_messages = 1
    async with draining_pool(server.uri, drain_condition=condition) as pool:
        lease = await pool.acquire()
        await round_trip(lease, "request")
        await pool.release(lease)
        conn = pooled(lease)

        await wait_until(lambda: conn.is_closed, "the drain gave up on the connection")

        assert_closed(conn, State.DRAINING, reason)
        assert triggers(conn) == ["open", "acquire", "drain", "close"]
        stats = pool.stats()
        assert (stats.total, stats.closed) == (0, 1)
        assert_consistent(pool)
        await wait_until(lambda: server.open_connections == 0, "the server saw the close")
        fresh = await pool.acquire()
        assert pooled(fresh) is not conn
        await pool.release(fresh)


async def test_drain_that_never_goes_quiet_discards_the_connection(
    server: LoopbackServer,
) -> None:
    # A steady stream, never silent for drain_quiet_period, outlasting drain_timeout.
    server.stray_messages = 100
    server.stray_interval = 0.02
    async with draining_pool(server.uri, drain_quiet_period=0.2, drain_timeout=0.5) as pool:
        lease = await pool.acquire()
        await round_trip(lease, "request")
        await pool.release(lease)
        conn = pooled(lease)

        await wait_until(lambda: conn.is_closed, "the drain timed out")

        assert_closed(conn, State.DRAINING, "drain_timeout=0.5s", "messages drained")
        assert pool.stats().closed == 1
        assert pool.total_connections == 0
        assert_consistent(pool)
        await wait_until(lambda: server.open_connections == 0, "the server saw the close")


@pytest.mark.parametrize("max_connections", [1, 2], ids=["waits-for-it", "opens-another"])
async def test_a_draining_connection_is_never_handed_out(
    server: LoopbackServer, max_connections: int
) -> None:
    async with draining_pool(
        server.uri, drain_quiet_period=0.5, max_connections=max_connections
    ) as pool:
        lease = await pool.acquire()
        await round_trip(lease, "one")
        await pool.release(lease)
        first = pooled(lease)
        assert first.is_draining

        acquiring = asyncio.create_task(pool.acquire())
        if max_connections == 1:
            await wait_until(lambda: pool.stats().waiting == 1, "the acquirer waits")
            assert first.is_draining  # the only connection is not handed out mid-drain
        second = await acquiring

        if max_connections == 1:
            assert pooled(second) is first
            assert triggers(first) == ["open", "acquire", "drain", "settle", "acquire"]
        else:
            assert pooled(second) is not first
            assert "acquire" not in triggers(first)[2:]
        assert second.is_busy
        await round_trip(second, "two")
        assert_consistent(pool)
        await pool.release(second)
        await wait_until(
            lambda: pool.available_connections == max_connections, "every drain settled"
        )
        assert_consistent(pool)


# -- a borrower that leaves on an error --------------------------------------------------


async def send_then_fail(
    pool: WebsocketConnectionPool, message: str, used: list[WebsocketConnection]
) -> None:
    """Borrow a connection, send ``message`` and leave on an error before the reply."""
    async with pool.get_connection() as conn:
        used.append(pooled(conn))
        await conn.send(message)
        raise BorrowerError


@pytest.mark.parametrize("drain", [False, True], ids=["closed", "drained"])
async def test_dirty_exit_never_leaks_the_pending_reply_to_the_next_borrower(
    server: LoopbackServer, drain: bool
) -> None:
    options: dict[str, Any] = {"max_connections": 1}
    if drain:
        options |= {
            "check_server_data_on_release": True,
            "drain_quiet_period": 0.1,
            "drain_timeout": 2.0,
        }
    async with make_pool(server.uri, **options) as pool:
        used: list[WebsocketConnection] = []
        with pytest.raises(BorrowerError):
            await send_then_fail(pool, "stale reply", used)
        [dirty] = used

        async with pool.get_connection() as conn:
            await round_trip(conn, "fresh request")  # never "stale reply"
            assert_consistent(pool)

        # Drained or not, it is closed: a drain cannot tell a late reply from silence.
        assert pooled(conn) is not dirty
        assert server.handshakes == 2
        assert_closed(dirty, State.BUSY, "borrower left on an error")
        assert "drain" not in triggers(dirty)
        assert pool.stats().closed == 1
        assert_consistent(pool)


# -- the idle sweep ------------------------------------------------------------------------


async def test_idle_sweep_closes_idle_connections_but_not_busy_ones(
    server: LoopbackServer,
) -> None:
    async with make_pool(server.uri, idle_timeout=0.1, cleanup_interval=0.05) as pool:
        idle = await pool.acquire()
        busy = await pool.acquire()
        await round_trip(idle, "idle")
        await round_trip(busy, "busy")
        await pool.release(idle)

        await wait_until(lambda: server.open_connections == 1, "the sweep closed one")

        assert_closed(pooled(idle), State.IDLE, "idle_timeout=0.1s")
        assert pool.stats().closed == 1
        # Unused for longer than idle_timeout, over many sweeps, yet held: kept.
        await wait_until(lambda: busy.idle_for > 0.5, "the busy one is past idle_timeout")
        assert busy.is_busy
        assert busy.is_connected
        await round_trip(busy, "still here")
        stats = pool.stats()
        assert (stats.total, stats.busy, stats.closed) == (1, 1, 1)
        assert_consistent(pool)
        await pool.release(busy)
        assert pool.available_connections == 1  # the round trip above restarted its idle clock
        await wait_until(lambda: server.open_connections == 0, "the sweep closed the other")
        assert_closed(pooled(busy), State.IDLE, "idle_timeout")
        assert pool.total_connections == 0
        assert_consistent(pool)


async def test_idle_sweep_keeps_connections_idle_for_less_than_idle_timeout(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with make_pool(server.uri, idle_timeout=60.0, cleanup_interval=0.01) as pool:
        sweeps = 0
        sweep = pool._core.sweep

        def counted_sweep() -> None:
            nonlocal sweeps
            sweep()
            sweeps += 1

        monkeypatch.setattr(pool._core, "sweep", counted_sweep)
        conn = await pool.acquire()
        await round_trip(conn, "hello")
        await pool.release(conn)

        await wait_until(lambda: sweeps >= 3, "three sweeps ran")

        assert pooled(conn).state is State.IDLE
        assert pooled(conn).is_connected
        stats = pool.stats()
        assert (stats.idle, stats.closed) == (1, 0)
        again = await pool.acquire()
        assert pooled(again) is pooled(conn)
        await round_trip(again, "still here")
        await pool.release(again)
        assert server.handshakes == 1


@CLOSE_MODES
async def test_idle_sweep_removes_a_connection_the_peer_closed(
    server: LoopbackServer, linger: bool
) -> None:
    async with make_pool(
        server.uri,
        idle_timeout=60.0,
        cleanup_interval=0.05,
        close_timeout=5.0,  # how long the client waits in CLOSING for a lingering server
    ) as pool:
        conn = await pool.acquire()
        await round_trip(conn, "hello")
        await pool.release(conn)

        await server.close_connections(4001, linger=linger)
        await wait_until(lambda: pooled(conn).is_closed, "the sweep removed it")
        server.thaw()  # let a lingering close finish

        assert_closed(pooled(conn), State.IDLE, "close code 4001")
        stats = pool.stats()
        assert (stats.total, stats.closed) == (0, 1)
        assert_consistent(pool)
