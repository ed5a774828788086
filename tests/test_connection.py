"""What a connection says about itself (``_connection``): state, clocks, history, repr.

A standalone ``WebsocketConnection`` against the loopback echo server; its
acquire/release sessions are ``tests/test_standalone.py``'s, and a pooled one's
life is the pool's tests'.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from aio_websocket_pool import ConnectionUnavailableError, State, WebsocketConnection
from helpers import round_trip
from loopback import LoopbackServer


async def test_its_flags_follow_its_state_through_a_session(server: LoopbackServer) -> None:
    conn = WebsocketConnection(uri=server.uri)
    assert (conn.state, conn.is_connected, conn.age, conn.latency) == (
        State.CONNECTING, False, 0.0, 0.0
    )  # fmt: skip
    async with conn:
        assert (conn.state, conn.is_busy, conn.is_connected) == (State.BUSY, True, True)
        await round_trip(conn, "hello")
    assert (conn.is_closed, conn.is_connected, conn.is_busy, conn.is_draining) == (
        True, False, False, False
    )  # fmt: skip
    assert [record.dest for record in conn.history][-1] is State.CLOSED


async def test_traffic_sets_its_clocks_and_a_quiet_spell_lets_them_run(
    server: LoopbackServer,
) -> None:
    async with WebsocketConnection(uri=server.uri) as conn:
        await round_trip(conn, "traffic")
        assert conn.idle_for < 0.5
        assert abs(conn.last_activity - time.time()) < 0.5
        await asyncio.sleep(0.05)
        assert conn.idle_for >= 0.05  # nothing sent or received meanwhile
        quiet = conn.idle_for
        await round_trip(conn, "more traffic")
        assert conn.idle_for < quiet
        assert conn.age >= 0.05


async def test_a_ping_measures_latency_and_counts_as_traffic(server: LoopbackServer) -> None:
    async with WebsocketConnection(uri=server.uri) as conn:
        await asyncio.sleep(0.02)
        latency = await conn.ping()
        assert latency > 0
        assert conn.latency == pytest.approx(latency)
        assert conn.idle_for < 0.02


async def test_its_repr_names_it_and_its_state_and_never_a_secret(server: LoopbackServer) -> None:
    conn = WebsocketConnection(uri=f"{server.uri}?token=SECRET-1")
    assert "SECRET" not in repr(conn)
    assert repr(conn).endswith("[connecting]>")
    assert str(conn) == f"WebsocketConnection({conn.id})"


async def test_a_failed_handshake_leaves_it_to_be_connected_again() -> None:
    """Standalone: a refused handshake is not the end of the object (a pool's would be)."""
    conn = WebsocketConnection(uri="ws://127.0.0.1:9/")
    with pytest.raises(ConnectionUnavailableError):
        await conn.connect()
    assert not conn.is_connected
    assert (conn.state, conn.history) == (State.CONNECTING, ())  # nothing to retire: try again
    with pytest.raises(ConnectionUnavailableError):
        await conn.connect()
