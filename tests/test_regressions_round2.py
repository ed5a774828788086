"""Regression tests from the second review round, one per defect.

Each failed before its fix: an acquirer that started the pool queued behind
later arrivals, an acquire returned a connection close_all() had closed, a
retired socket still closing let the pool exceed max_connections, a drain let
a late reply reach the next borrower, release(None) and bytes-like sends
broke 0.1.0 code, and a standalone connect could not be retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import pytest

from aio_websocket_pool import (
    ConnectionPoolUnavailableError,
    ConnectionUnavailableError,
    WebsocketConnection,
)
from helpers import BOUND, pool_maker, pooled, round_trip, wait_until
from loopback import LoopbackServer

make_pool = pool_maker(health_check_interval=None, acquire_timeout=BOUND)


def spawn(coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    return asyncio.create_task(coroutine, name="test task")


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


# -- pool behaviour ----------------------------------------------------------------------


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


async def test_a_reply_owed_to_a_cancelled_borrower_never_reaches_the_next_one(
    server: LoopbackServer,
) -> None:
    pool = make_pool(
        server, max_connections=1, check_server_data_on_release=True,
        drain_quiet_period=0.1, drain_timeout=1.0,
    )  # fmt: skip
    try:
        conn = await pool.acquire()
        await pool.release(conn)
        await wait_until(lambda: pool.available_connections == 1, "the first drain settled")
        server.freeze()  # a slow server: the reply comes after drain_quiet_period
        with pytest.raises(TimeoutError):  # noqa: PT012  (the borrower's whole block times out)
            async with asyncio.timeout(0.05), pool.get_connection() as conn:
                await conn.send("old request")
                await conn.recv()  # the borrower gives up waiting for its reply
        # Closed rather than drained: a drain cannot tell a late reply from silence.
        assert pooled(conn).is_closed
        server.thaw()  # the reply owed to the first borrower is on its way
        async with pool.get_connection() as conn:
            await conn.send("new request")
            reply = await asyncio.wait_for(conn.recv(), BOUND)
    finally:
        await pool.close_all()
    # README: the pool "never hands a borrower another borrower's reply".
    assert reply == "new request"


# -- 0.1.0 behaviour not listed in "Migrating from 0.1.0" ----------------------------------


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


async def test_send_accepts_a_bytearray_as_in_0_1_0(server: LoopbackServer) -> None:
    async with make_pool(server) as pool, pool.get_connection() as conn:
        # 0.1.0 passed it to websockets, which sends any bytes-like as a binary frame.
        await conn.send(bytearray(b"frame"))
        assert await conn.recv() == b"frame"


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
