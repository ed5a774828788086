"""The figures the pool decides by, each defined once (``_figures``), on a real pool.

``slots in use`` is what ``max_connections`` bounds: connections holding a slot
plus sockets still finishing their closing handshake. ``missing minimum`` is what
``min_connections`` lacks. ``in use`` is busy or draining. Each is checked here
against the states it is derived from, step by step, on a real loopback server.
"""

from __future__ import annotations

import asyncio

from aio_websocket_pool import WebsocketConnectionPool
from aio_websocket_pool.testing import TcpProxy
from helpers import BOUND, assert_consistent, pool_maker, pooled, round_trip, wait_until
from loopback import LoopbackServer

make_pool = pool_maker(health_check_interval=None, acquire_timeout=BOUND, cleanup_interval=60.0)


def figures(pool: WebsocketConnectionPool) -> tuple[int, int, int]:
    """(slots in use, missing minimum, in use), as the pool computes them."""
    return pool._core.slots_in_use, pool._core.missing_minimum, pool._core.in_use


async def test_in_use_counts_busy_and_draining_connections(server: LoopbackServer) -> None:
    server.stray_messages = 1  # so that the drain has something to read for a moment
    async with make_pool(
        server, check_server_data_on_release=True, drain_quiet_period=0.2, drain_timeout=2.0
    ) as pool:
        assert figures(pool) == (0, 0, 0)
        lease = await pool.acquire()
        assert figures(pool) == (1, 0, 1)  # busy
        await round_trip(lease, "request")
        await pool.release(lease)
        assert pool.pending_connections == 1
        assert figures(pool) == (1, 0, 1)  # draining: still cleaned after its borrower
        await wait_until(lambda: pool.available_connections == 1, "the drain ended")
        assert figures(pool) == (1, 0, 0)  # idle: holds a slot, in use by nobody
        assert_consistent(pool)


async def test_missing_minimum_counts_what_holds_a_slot(server: LoopbackServer) -> None:
    server.hold_handshakes()
    async with make_pool(server, min_connections=2) as pool:
        await wait_until(lambda: pool.total_connections == 2, "the keeper began two handshakes")
        assert figures(pool) == (2, 0, 0)  # connecting connections hold their slots
        server.release_handshakes()
        await pool.wait(timeout=BOUND)
        [first, _] = pool.connections
        pool.expire_connections()  # both go; the keeper brings the minimum back
        await wait_until(lambda: pool.available_connections == 2, "the minimum is back")
        assert first not in pool.connections
        assert figures(pool)[1] == 0


async def test_slots_in_use_counts_sockets_still_closing(websocket_proxy: TcpProxy) -> None:
    """A socket whose peer does not answer the close still counts, until it is gone."""
    async with make_pool(websocket_proxy.uri, max_connections=1, close_timeout=0.5) as pool:
        lease = await pool.acquire()
        await round_trip(lease, "request")
        websocket = pooled(lease).websocket
        assert websocket is not None
        websocket_proxy.link(websocket.local_address[1]).freeze()  # the close goes unanswered
        await pool.release(lease, force_remove=True)  # a closing handshake, in the background
        assert pool.total_connections == 0
        assert figures(pool) == (1, 0, 0)  # the closing socket holds the only slot
        with_room = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0.1)
        assert not with_room.done()  # so the next acquire waits for it
        async with asyncio.timeout(BOUND):
            fresh = await with_room  # close_timeout dropped the socket: the slot is free
        assert figures(pool) == (1, 0, 1)
        await pool.release(fresh)
