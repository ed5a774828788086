"""Borrowing a lone connection (``_standalone``): acquire, release and session, as in 0.1.0.

Against the real loopback echo server: a standalone connection opens on its
first acquire, is busy for one borrower at a time and idle again after a
release, and closes for good when its ``async with`` ends; a pooled one
refuses to be borrowed except through its pool.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from aio_websocket_pool import ConnectionBusyError, State, WebsocketConnection
from helpers import BOUND, pool_maker, pooled, round_trip, triggers, wait_until
from loopback import LoopbackServer

make_pool = pool_maker(health_check_interval=None, acquire_timeout=BOUND)


async def test_standalone_connection_as_context_manager(server: LoopbackServer) -> None:
    async with WebsocketConnection(uri=server.uri) as conn:
        assert conn.is_busy
        assert conn.is_connected
        assert not conn.is_draining
        assert abs(conn.last_activity - time.time()) < BOUND
        await round_trip(conn, "standalone")
        latency = await conn.ping()
        assert isinstance(latency, float)
        assert 0.0 < latency < BOUND  # a measured round trip, not a default
        assert conn.latency == latency
        assert server.open_connections == 1
    assert conn.is_closed
    assert not conn.is_connected
    assert not conn.is_busy
    assert conn.websocket is None
    assert triggers(conn) == ["open", "acquire", "close"]
    await wait_until(lambda: server.open_connections == 0, "the server saw the socket close")


async def test_standalone_connection_sessions(server: LoopbackServer) -> None:
    conn = WebsocketConnection(uri=server.uri)
    assert not conn.is_connected
    for n in range(2):
        async with conn.session() as same:
            assert same is conn
            assert conn.is_busy
            with pytest.raises(ConnectionBusyError):
                await conn.acquire()
            await round_trip(conn, f"session {n}")
        assert not conn.is_busy
        assert conn.is_connected
        assert abs(conn.last_activity - time.time()) < BOUND
        with pytest.raises(ConnectionBusyError):
            await conn.send("outside a session")
    assert isinstance(await conn.ping(), float)
    assert server.handshakes == 1
    await conn.close()
    await conn.close()  # idempotent
    assert conn.is_closed
    assert triggers(conn) == ["open", "acquire", "release", "acquire", "release", "close"]
    await wait_until(lambda: server.open_connections == 0, "the server saw the socket close")


@pytest.mark.regression
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


async def test_a_pooled_connection_refuses_to_be_borrowed_but_through_its_pool(
    server: LoopbackServer,
) -> None:
    async with make_pool(server) as pool:
        lease = await pool.acquire()
        connection = pooled(lease)
        with pytest.raises(ConnectionBusyError, match="belongs to a pool: use pool"):
            await connection.acquire()
        with pytest.raises(ConnectionBusyError, match="release what pool"):
            await connection.release()
        assert lease.is_busy  # still the lease's
        await pool.release(lease)
        with pytest.raises(ConnectionBusyError, match="belongs to a pool: use pool"):
            await connection.acquire()
        assert connection.state is State.IDLE
        assert triggers(connection) == ["open", "acquire", "release"]
