"""Checks that a pool left nothing behind: sockets, slots, tasks, loop complaints.

The tests that inject faults wrap their bodies in :func:`strict_loop` and end
with :func:`assert_no_leaks`. Together with the autouse task check of
``conftest.py`` and pytest's warnings-as-errors (an unclosed transport is a
``ResourceWarning``), that is every kind of leak a test can see.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from typing import Any

from aio_websocket_pool import WebsocketConnectionPool
from aio_websocket_pool.testing import LoopbackServer, TcpProxy
from helpers import assert_consistent, wait_until


@contextlib.asynccontextmanager
async def strict_loop(*, debug: bool = True) -> AsyncIterator[list[dict[str, Any]]]:
    """Run the block in asyncio debug mode; fail if the loop reports anything.

    The loop reports a task destroyed while pending, an exception nobody
    retrieved, or a callback that raised, to its exception handler (not as a
    warning): this one collects those reports, and garbage is collected
    before the check, so that tasks dropped in the block are reported in it.
    Debug mode (``debug``) makes every callback several times slower: the
    tests with the most traffic do without it.

    Yields:
        The reports, as the loop made them (for a test that expects some).
    """
    loop = asyncio.get_running_loop()
    reports: list[dict[str, Any]] = []
    handler, debug = loop.get_exception_handler(), loop.get_debug()
    loop.set_debug(debug)
    loop.set_exception_handler(lambda _, context: reports.append(context))
    try:
        yield reports
        await asyncio.sleep(0)
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(handler)
        loop.set_debug(debug)
    assert not reports, f"the event loop reported: {[r.get('message') for r in reports]}"


async def assert_no_leaks(
    pool: WebsocketConnectionPool, server: LoopbackServer, proxy: TcpProxy | None = None
) -> None:
    """Close the pool; then every counter is zero and no socket is open anywhere."""
    await pool.close_all()
    stats = assert_consistent(pool)
    assert (stats.total, stats.waiting, stats.opened - stats.closed) == (0, 0, 0), stats
    assert not pool._tasks.workers, pool._tasks.workers
    assert not pool._tasks.closers, pool._tasks.closers
    if proxy is not None:
        await wait_until(lambda: proxy.open_connections == 0, "the proxy's links closed")
    await wait_until(lambda: server.open_sockets == 0, "the server's sockets closed")
    await wait_until(lambda: server.open_connections == 0, "the server's handlers returned")


@contextlib.asynccontextmanager
async def consistent_throughout(pool: WebsocketConnectionPool) -> AsyncIterator[None]:
    """Check :func:`~helpers.assert_consistent` every loop iteration or so during the block."""

    async def check_forever() -> None:
        while True:
            assert_consistent(pool)
            await asyncio.sleep(0.001)

    checker = asyncio.create_task(check_forever())
    try:
        yield
    finally:
        checker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await checker  # raises the AssertionError if a check failed
