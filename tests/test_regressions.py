"""Regression tests for defects found in review, one test per defect.

Each of these failed before its fix: a slot that stayed "connecting" forever,
a health check skipped after a cancelled one, secrets in websockets' DEBUG log
or in a constructor error, two handshakes for one standalone connection, a
cancellation turned into InvalidTransitionError, and a sweep task left behind
by a failed ``async with pool``.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse

import pytest

from aio_websocket_pool import (
    ConnectionPoolUnavailableError,
    State,
    WebsocketConnection,
    WebsocketConnectionPool,
)
from helpers import BOUND, assert_consistent, pool_maker, pooled, round_trip, settle, wait_until
from loopback import LoopbackServer

make_pool = pool_maker(health_check_interval=None, acquire_timeout=BOUND)


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
    assert pool._index.events["fail"] == 1
    assert server.handshakes == 0


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


async def test_percent_encoded_credentials_stay_out_of_the_debug_log(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    # A password with a reserved character must be percent-encoded in a URI;
    # a non-ASCII query token is sent percent-encoded by websockets.
    password, token = "p@ss-SECRET", "clé-SECRET"
    uri = (
        f"ws://alice:{urllib.parse.quote(password, safe='')}@127.0.0.1:{server.port}/?token={token}"
    )
    caplog.set_level(logging.DEBUG)
    pool = make_pool(uri)
    async with pool, pool.get_connection() as conn:
        await round_trip(conn, "x")
    # websockets 15 sends the user-info as written, 16+ percent-decodes it first.
    sent = server.request_headers[0]["Authorization"]
    assert sent.startswith("Basic ")
    leaked = [
        r.getMessage()
        for r in caplog.records
        if not r.name.startswith("websockets.server")
        and (sent.removeprefix("Basic ") in r.getMessage() or "SECRET" in r.getMessage())
    ]
    assert not leaked, leaked


def test_undecodable_user_info_is_a_value_error_without_the_password() -> None:
    with pytest.raises(ValueError) as info:  # noqa: PT011  (the message is checked below)
        WebsocketConnectionPool("ws://alice:pw%FF-SECRET@127.0.0.1:1/")
    # a ValueError naming `uri`, carrying no secret in repr or args.
    assert "SECRET" not in repr(info.value), repr(info.value)
    assert "uri" in str(info.value), str(info.value)


async def test_concurrent_acquires_of_a_standalone_connection_open_one_socket(
    server: LoopbackServer,
) -> None:
    server.hold_handshakes()  # both handshakes are in flight at once
    conn = WebsocketConnection(uri=server.uri)
    acquiring = asyncio.gather(conn.acquire(), conn.acquire(), return_exceptions=True)
    await wait_until(lambda: server.handshakes_in_flight == 2, "both handshakes in flight")
    server.release_handshakes()
    results = await asyncio.wait_for(acquiring, BOUND)
    # Expected (as 0.1.0's busy check): one caller gets it, the other a
    # ConnectionBusyError; the socket the loser opened is closed at once.
    assert sorted(type(r).__name__ for r in results) == ["ConnectionBusyError", "NoneType"]
    assert conn.is_busy
    assert [record.trigger for record in conn.history] == ["open", "acquire"]
    await wait_until(lambda: server.open_connections == 1, "the loser's socket closed")
    await round_trip(conn, "the winner's socket")
    await conn.close()
    await wait_until(lambda: server.open_connections == 0, "no socket left open")


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
    assert len(pool._waiters) <= 2, "the queue keeps the acquirers that left"
    await pool.release(held)
    got = await asyncio.wait_for(head, BOUND)
    assert pooled(got) is pooled(held)
    await pool.release(got)
    await pool.close_all()


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
    assert (len(pool._waiters), pool._departed) == (2, 1)
    await pool.release(held)
    got = await asyncio.wait_for(head, BOUND)
    assert pooled(got) is pooled(held)
    # The dispatch served the head and dropped the dead entry behind it: the
    # count of dead entries still queued is zero again, not a stale one.
    assert (len(pool._waiters), pool._departed) == (0, 0)
    await pool.release(got)
    await pool.close_all()
