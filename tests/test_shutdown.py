"""Shutdown is prompt and honest, and a pool is used from its own event loop only (issue 10).

``close_all()`` in the middle of a hand-out fails that hand-out instead of
returning a closed connection; ``close()`` stops a drain that is running;
a connection discarded in an unknown state is aborted, not left to
websockets' ``close_timeout``; and a pool taken into a second event loop
says so at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from aio_websocket_pool import (
    ConnectionPoolUnavailableError,
    WebsocketConnection,
    WebsocketConnectionPool,
    WrongEventLoopError,
)
from aio_websocket_pool.testing import STRAY_PREFIX
from helpers import pool_maker, round_trip, wait_until
from loopback import LoopbackServer

pytestmark = pytest.mark.usefixtures("quiet_logs")

make_pool = pool_maker(health_check_interval=None, acquire_timeout=1.0, close_timeout=0.1)


class _BorrowerError(Exception):
    """Raised by a borrower inside its block, as application code might."""


async def test_close_all_during_on_acquire_fails_that_acquire(server: LoopbackServer) -> None:
    """Never a closed connection handed out as if it were fine."""
    entered = asyncio.Event()

    async def on_acquire(conn: WebsocketConnection) -> None:
        entered.set()
        await asyncio.sleep(0.3)

    pool = make_pool(server, on_acquire=on_acquire)
    acquirer = asyncio.create_task(pool.acquire(), name="test acquirer")
    try:
        async with asyncio.timeout(1):
            await entered.wait()
            await pool.close_all()
            with pytest.raises(ConnectionPoolUnavailableError):
                await acquirer
    finally:
        acquirer.cancel()
        await asyncio.wait({acquirer})
        await pool.close_all()


@contextlib.asynccontextmanager
async def pushing_every(server: LoopbackServer, seconds: float) -> AsyncIterator[None]:
    """The server pushes a stray on every connection every ``seconds`` during the block."""

    async def push_forever() -> None:
        while True:
            await server.push(f"{STRAY_PREFIX}tick")
            await asyncio.sleep(seconds)

    pusher = asyncio.create_task(push_forever())
    try:
        yield
    finally:
        pusher.cancel()
        await asyncio.wait({pusher})


async def test_close_stops_a_drain_that_is_running(server: LoopbackServer) -> None:
    """Instead of waiting out its drain_timeout, which a chatty server never lets end early."""
    pool = make_pool(server, check_server_data_on_release=True, drain_timeout=5)
    try:
        async with pushing_every(server, 0.05):
            async with pool.get_connection() as conn:
                await round_trip(conn, "request")
            await wait_until(lambda: pool.pending_connections == 1, "draining", within=1)
            await asyncio.sleep(0.1)  # the drain is reading ticks
            async with asyncio.timeout(1):
                await pool.close()
    finally:
        await pool.close_all()


async def leave_with_unread_data(
    pool: WebsocketConnectionPool, server: LoopbackServer, sockets: list[ClientConnection]
) -> None:
    """Borrow, let 100 pushes pile up unread, and leave the block on an error (dirty).

    The websockets connection underneath goes into ``sockets``.
    """
    async with pool.get_connection() as conn:
        await round_trip(conn, "request")
        assert conn.websocket is not None
        sockets.append(conn.websocket)
        for _ in range(100):  # more than websockets reads ahead of its reader
            await server.push(f"{STRAY_PREFIX}unread")
        await asyncio.sleep(0.05)
        raise _BorrowerError


async def test_a_connection_discarded_with_unread_data_is_aborted(server: LoopbackServer) -> None:
    """Its socket closes at once: a closing handshake could wait out close_timeout behind it."""
    sockets: list[ClientConnection] = []
    async with make_pool(server, close_timeout=10) as pool:
        try:
            with pytest.raises(_BorrowerError):
                await leave_with_unread_data(pool, server, sockets)
            await wait_until(lambda: server.open_sockets == 0, "the socket closed", within=0.5)
        finally:
            for websocket in sockets:  # else, today, the pool's exit waits out the 10 s
                websocket.transport.abort()


def test_a_pool_used_from_a_second_event_loop_says_so_at_once() -> None:
    """One ``asyncio.run`` per job, one pool for all: a typed error, not a RuntimeError forever."""
    held = [WebsocketConnectionPool("ws://127.0.0.1:9/", max_retries=1, acquire_timeout=1)]

    async def first_job() -> None:
        await held[0].start()

    async def second_job() -> BaseException | None:
        try:
            async with asyncio.timeout(1):
                await held[0].acquire()
        except Exception as exc:
            return exc
        return None

    asyncio.run(first_job())
    error = asyncio.run(second_job())
    assert isinstance(error, WrongEventLoopError), repr(error)
    assert "event loop" in str(error)
    error = None  # its frames hold the pool
    with pytest.warns(ResourceWarning, match="garbage-collected while open"):
        drop(held)  # it could not be closed: its loop is gone


def drop(references: list[Any]) -> None:
    """Let go of the only references to these objects, and collect them now."""
    references.clear()
    gc.collect()
