"""``acquire()`` as a whole is bounded by what the caller asked, whatever the idle sockets do.

The wait, the health checks of dead idle connections and reading what
arrived while they were idle all count: an acquire returns or fails within
``acquire_timeout`` plus at most one ``health_check_timeout`` (issue 10).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.server import ServerConnection

from aio_websocket_pool import WebsocketConnectionPool, WebsocketError
from aio_websocket_pool.testing import STRAY_PREFIX, TcpProxy
from helpers import pool_maker, round_trip
from loopback import LoopbackServer

pytestmark = pytest.mark.usefixtures("quiet_logs")

ACQUIRE_TIMEOUT = 1.0
HEALTH_CHECK_TIMEOUT = 0.3
#: What the bound allows for scheduling on a loaded machine.
SLACK = 0.5
#: The longest one acquire may take.
BOUND = ACQUIRE_TIMEOUT + HEALTH_CHECK_TIMEOUT + SLACK

#: Every reuse is checked, so every idle connection's fate is decided at acquire.
make_pool = pool_maker(
    health_check_interval=0,
    health_check_timeout=HEALTH_CHECK_TIMEOUT,
    acquire_timeout=ACQUIRE_TIMEOUT,
    connection_timeout=0.5,
    close_timeout=0.1,
)


async def timed_acquire(pool: WebsocketConnectionPool) -> tuple[float, str | None]:
    """Acquire once (and use and release what it got): seconds taken, and the id or ``None``.

    A typed pool error is an allowed outcome too (``None``): only the time is at stake.
    An acquire that outlives :data:`BOUND` is cut off there (``TimeoutError``).
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with asyncio.timeout(BOUND), pool.get_connection() as conn:
            elapsed = loop.time() - started
            await round_trip(conn, "request")
            return elapsed, conn.id
    except WebsocketError:
        return loop.time() - started, None


async def hold_idle(pool: WebsocketConnectionPool, count: int) -> list[str]:
    """Open ``count`` connections at once and leave them all idle; return their ids."""
    leases = [await pool.acquire() for _ in range(count)]
    ids = [lease.id for lease in leases]
    for lease in leases:
        await round_trip(lease, "warm")
        await pool.release(lease)
    return ids


async def test_one_acquire_does_not_ping_every_silently_dead_idle_connection(
    websocket_proxy: TcpProxy,
) -> None:
    """After a blip froze all 8 idle sockets: one failed check, then a fresh connection.

    Checked one by one, 8 would take 8 x health_check_timeout: beyond the bound.
    """
    async with make_pool(websocket_proxy.uri, max_connections=10) as pool:
        dead = await hold_idle(pool, 8)
        websocket_proxy.freeze()  # the existing links only: new connections flow
        elapsed, got = await timed_acquire(pool)
        assert elapsed < BOUND
        assert pool.stats().health_checks_failed <= 2
        assert got is not None
        assert got not in dead
    websocket_proxy.thaw()


@contextlib.asynccontextmanager
async def trickling(
    server_side: ServerConnection, pause: float, *, forever: bool
) -> AsyncIterator[None]:
    """Have the server send fragmented messages on one connection during the block.

    Each message is a first fragment, ``pause`` seconds of nothing, then the
    last fragment; with ``forever`` one message never ends, else one follows
    another.
    """

    async def fragments() -> AsyncIterator[str]:
        yield f"{STRAY_PREFIX}start "
        await asyncio.sleep(3600 if forever else pause)
        yield "end"

    async def send_forever() -> None:
        while True:
            await server_side.send(fragments())

    task = asyncio.create_task(send_forever())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.wait({task})


@pytest.mark.parametrize(
    "forever",
    [
        # Today's hand-out check times out on it after one health_check_timeout.
        pytest.param(True, id="one-message-forever"),
        # Today's check reads them one by one, each within the timeout: without end.
        pytest.param(False, id="one-slow-message-after-another"),
    ],
)
async def test_a_trickling_server_cannot_hold_an_acquire(
    server: LoopbackServer, forever: bool
) -> None:
    async with make_pool(server, max_connections=2) as pool:
        await hold_idle(pool, 1)
        (server_side,) = server.connections
        async with trickling(server_side, HEALTH_CHECK_TIMEOUT * 0.6, forever=forever):
            await asyncio.sleep(0.1)  # the first fragment has arrived
            elapsed, _ = await timed_acquire(pool)
        assert elapsed < BOUND
