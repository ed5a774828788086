"""The shortest path through the pool: one request, one reply, counters back to zero."""

from __future__ import annotations

from aio_websocket_pool import WebsocketConnectionPool
from loopback import LoopbackServer


async def test_echo_round_trip_and_shutdown(server: LoopbackServer) -> None:
    async with WebsocketConnectionPool(server.uri, max_connections=2) as pool:
        async with pool.get_connection() as conn:
            await conn.send("hello")
            assert await conn.recv() == "hello"
            assert (pool.total_connections, pool.busy_connections) == (1, 1)
        assert (pool.total_connections, pool.available_connections) == (1, 1)
    assert pool.is_closed
    assert (pool.total_connections, pool.available_connections, pool.busy_connections) == (0, 0, 0)
    assert server.open_connections == 0
