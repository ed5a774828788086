"""Hooks fail cleanly, however they fail, and a hook's own bounded I/O works (issue 10).

A hook that awaits a future someone else cancelled raises ``CancelledError``
although its task was never cancelled: that is the hook failing, not the
pool closing, and it must cost only its connection. And a hook that bounds
its I/O with ``asyncio.wait_for`` (a new task on Python 3.11) must still be
allowed to talk on the connection it was given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

from aio_websocket_pool import (
    ConnectionHookError,
    WebsocketConnection,
    WebsocketConnectionPool,
)
from helpers import pool_maker, round_trip, wait_until
from loopback import LoopbackServer

make_pool = pool_maker(
    health_check_interval=None, acquire_timeout=1.0, hook_timeout=1.0, close_timeout=0.1
)

Hook = Callable[[WebsocketConnection], Awaitable[None]]


async def awaits_a_future_cancelled_elsewhere(conn: WebsocketConnection) -> None:
    """Raise ``CancelledError`` in a task nobody cancelled: awaiting work someone cancelled."""
    future = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(future.cancel)
    await future


async def outcome(coroutine: Coroutine[Any, Any, object]) -> BaseException | None:
    """Run ``coroutine`` in its own task; what it raised, ``CancelledError`` included.

    A ``CancelledError`` out of the pool must not cancel the test itself.
    """
    task = asyncio.create_task(coroutine, name="test borrower")
    async with asyncio.timeout(2):
        await asyncio.wait({task})
    if task.cancelled():
        return asyncio.CancelledError()
    return task.exception()


async def borrow_once(pool: WebsocketConnectionPool) -> None:
    async with pool.get_connection() as conn:
        await round_trip(conn, "request")


async def assert_slot_back_and_close_is_prompt(pool: WebsocketConnectionPool) -> None:
    """The failure was counted, the connection's slot came back, and close() returns."""
    await wait_until(lambda: pool.total_connections == 0, "the slot came back", within=1)
    assert pool.stats().hooks_failed == 1
    async with asyncio.timeout(2):
        await pool.close()


@pytest.mark.parametrize("hook", ["on_connect", "on_acquire"])
async def test_a_hook_raising_cancelled_error_of_its_own_is_a_hook_error(
    server: LoopbackServer, hook: str
) -> None:
    """Never ``ConnectionPoolUnavailableError("the pool was closed")``, never a bare cancel."""
    pool = make_pool(server, **{hook: awaits_a_future_cancelled_elsewhere})
    try:
        error = await outcome(borrow_once(pool))
        assert isinstance(error, ConnectionHookError), repr(error)
        assert error.hook == hook
        await assert_slot_back_and_close_is_prompt(pool)
    finally:
        await pool.close_all()


async def test_an_on_release_raising_cancelled_error_of_its_own_discards_the_connection(
    server: LoopbackServer,
) -> None:
    """Not left draining forever (today: its slot never returns, close() never returns)."""
    pool = make_pool(server, on_release=awaits_a_future_cancelled_elsewhere)
    try:
        assert await outcome(borrow_once(pool)) is None  # the borrower is done by then
        await assert_slot_back_and_close_is_prompt(pool)
    finally:
        await pool.close_all()


async def talks_with_wait_for(conn: WebsocketConnection) -> None:
    """A hook bounding its I/O as the docs suggest: each call a new task on 3.11."""
    await asyncio.wait_for(conn.send("hook"), 1)
    assert await asyncio.wait_for(conn.recv(), 1) == "hook"


@pytest.mark.parametrize(
    "hook",
    [
        pytest.param("on_connect"),
        "on_acquire",  # the connection is busy by then: anyone may talk, today already
        pytest.param("on_release"),
    ],
)
async def test_a_hook_may_bound_its_io_with_wait_for(server: LoopbackServer, hook: str) -> None:
    async with make_pool(server, max_connections=1, **{hook: talks_with_wait_for}) as pool:
        for _ in range(2):
            async with asyncio.timeout(2):
                await borrow_once(pool)
        await wait_until(lambda: pool.available_connections == 1, "back idle", within=1)
        assert pool.stats().hooks_failed == 0
        assert pool.stats().opened == 1  # the hook's connection was kept, never discarded
