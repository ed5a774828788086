"""aio-websocket-pool 0.1.0's README, run as written against this pool.

Each test is one example of that README (../shared/reference/seed-README.md),
kept as close to its text as the loopback server allows: users switch to us
without changing a line. The 0.1.0 constructor defaults are checked in
test_config.py.
"""

from __future__ import annotations

import pytest

import aio_websocket_pool
from aio_websocket_pool import (
    ConnectionBusyError,
    ConnectionClosedError,
    ConnectionPoolExhaustedError,
    ConnectionPoolUnavailableError,
    ConnectionUnavailableError,
    WebsocketConnection,
    WebsocketConnectionPool,
    WebsocketError,
)
from helpers import pooled, wait_until
from loopback import LoopbackServer


def test_error_classes_are_the_0_1_0_hierarchy() -> None:
    for error in (
        ConnectionBusyError,
        ConnectionUnavailableError,
        ConnectionClosedError,
        ConnectionPoolExhaustedError,
        ConnectionPoolUnavailableError,
    ):
        assert issubclass(error, WebsocketError)
    assert issubclass(WebsocketError, RuntimeError)
    assert aio_websocket_pool.__title__ == "aio_websocket_pool"


async def test_quick_start(server: LoopbackServer) -> None:
    async with WebsocketConnectionPool(uri=server.uri) as pool, pool.get_connection() as conn:
        await conn.send("Hello, World!")
        response = await conn.recv()
    assert response == "Hello, World!"


async def test_basic_pool_configuration(server: LoopbackServer) -> None:
    pool = WebsocketConnectionPool(
        uri=server.uri,
        max_connections=10,
        idle_timeout=60.0,
        connection_timeout=10.0,
        max_retries=3,
        warmup_connections=2,  # Pre-create 2 connections
        headers={"Authorization": "Bearer token123"},
    )
    async with pool:
        assert pool.available_connections == 2
        conn = await pool.acquire()
        try:
            await conn.send("Hello")
            response = await conn.recv()
        finally:
            await pool.release(conn)
    assert response == "Hello"
    assert server.request_headers[0]["Authorization"] == "Bearer token123"


@pytest.mark.parametrize("stray", [0, 2])
async def test_connection_health_monitoring_with_draining(
    server: LoopbackServer, stray: int
) -> None:
    server.stray_messages = stray
    pool = WebsocketConnectionPool(
        uri=server.uri,
        max_connections=1,  # so that the next borrower waits for the drain
        check_server_data_on_release=True,
        drain_timeout=5.0,
        drain_quiet_period=0.05,
    )
    async with pool:
        async with pool.get_connection() as conn:
            await conn.send("REQUEST")
            response = await conn.recv()
        assert response == "REQUEST"
        assert pool.pending_connections == 1  # checked for additional server data
        async with pool.get_connection() as again:  # waits for the drain, then reuses it
            assert again.id == conn.id  # the same connection, a new lease
            assert again is not conn
            await again.send("NEXT")
            assert await again.recv() == "NEXT"
    assert server.handshakes == 1


async def test_custom_drain_condition(server: LoopbackServer) -> None:
    def custom_drain_condition(message: str | bytes) -> bool:
        # Only drain messages that look like server notifications
        return (message if isinstance(message, str) else message.decode()).startswith(
            '{"type":"notification"'
        )

    server.stray_messages = 1  # "stray 0" is not a notification: the connection is dropped
    pool = WebsocketConnectionPool(
        uri=server.uri,
        check_server_data_on_release=True,
        drain_condition=custom_drain_condition,
        drain_quiet_period=0.05,
    )
    async with pool:
        async with pool.get_connection() as conn:
            await conn.send("x")
            assert await conn.recv() == "x"
        async with pool.get_connection() as fresh:
            assert fresh.id != conn.id
    assert pooled(conn).is_closed
    assert "drain_condition" in (pooled(conn).history[-1].reason or "")


async def test_force_new_connection(server: LoopbackServer) -> None:
    async with WebsocketConnectionPool(uri=server.uri) as pool:
        async with pool.get_connection() as first:
            pass
        async with pool.get_new_connection() as conn:
            assert conn.id != first.id
            await conn.send("Important message")
            assert await conn.recv() == "Important message"
    assert server.handshakes == 2


async def test_monitoring_and_manual_management(server: LoopbackServer) -> None:
    async with WebsocketConnectionPool(uri=server.uri) as pool:
        conn = await pool.acquire()
        try:
            await conn.send("Hello")
            await conn.recv()
            assert (pool.total_connections, pool.busy_connections) == (1, 1)
        finally:
            await pool.release(conn)
        assert (pool.available_connections, pool.pending_connections) == (1, 0)

        conn = await pool.acquire()
        try:
            await conn.send("Hello")
            await conn.recv()
        finally:
            await pool.release(conn, force_remove=True)
        assert pool.total_connections == 0
        assert pooled(conn).is_connected is False
        assert pooled(conn).is_busy is False


async def test_error_handling_catches_exhaustion(server: LoopbackServer) -> None:
    async with WebsocketConnectionPool(
        uri=server.uri, max_connections=1, acquire_timeout=0
    ) as pool:
        held = await pool.acquire()
        try:
            async with pool.get_connection() as conn:
                await conn.send("Hello")
        except ConnectionPoolExhaustedError as exc:
            caught: WebsocketError = exc
        await pool.release(held)
    assert isinstance(caught, ConnectionPoolExhaustedError)


@pytest.mark.parametrize(
    "settings",
    [
        {"max_connections": 100, "warmup_connections": 10, "idle_timeout": 120.0,
         "connection_timeout": 5.0, "max_retries": 5, "cleanup_interval": 10.0},
        {"max_connections": 50, "warmup_connections": 5, "idle_timeout": 30.0,
         "connection_timeout": 3.0, "check_server_data_on_release": True,
         "drain_timeout": 2.0, "drain_quiet_period": 0.5},
        {"max_connections": 5, "warmup_connections": 1, "idle_timeout": 30.0,
         "connection_timeout": 10.0, "max_retries": 2, "cleanup_interval": 5.0},
    ],
    ids=["high-traffic", "low-latency", "resource-constrained"],
)  # fmt: skip
async def test_best_practice_configurations_start_and_serve(
    server: LoopbackServer, settings: dict[str, object]
) -> None:
    async with WebsocketConnectionPool(uri=server.uri, **settings) as pool:  # type: ignore[arg-type]
        assert pool.available_connections == settings["warmup_connections"]
        async with pool.get_connection() as conn:
            await conn.send("ping")
            assert await conn.recv() == "ping"


async def test_standalone_connection_as_a_context_manager(server: LoopbackServer) -> None:
    async with WebsocketConnection(uri=server.uri) as conn:
        assert conn.is_busy
        assert conn.is_connected
        await conn.send("solo")
        assert await conn.recv() == "solo"
    assert not conn.is_connected


async def test_kwargs_reach_websockets_connect(server: LoopbackServer) -> None:
    async with WebsocketConnectionPool(
        uri=server.uri, user_agent_header="compat-agent/1.0", max_size=64
    ) as pool:
        async with pool.get_connection() as conn:
            await conn.send("x" * 64)
            assert await conn.recv() == "x" * 64
        async with pool.get_connection() as conn:
            await conn.send("y" * 65)  # the echo exceeds max_size: websockets closes with 1009
            with pytest.raises(ConnectionClosedError, match="1009"):
                await conn.recv()
    assert server.request_headers[0]["User-Agent"] == "compat-agent/1.0"


async def test_a_standalone_connection_the_peer_closed_is_not_reopened(
    server: LoopbackServer,
) -> None:
    conn = WebsocketConnection(uri=server.uri)
    await conn.connect()
    await conn.connect()  # already open: nothing happens
    assert server.handshakes == 1
    await server.close_connections(1001)
    await wait_until(lambda: not conn.is_connected, "the client saw the close")
    with pytest.raises(ConnectionUnavailableError, match="has been closed"):
        await conn.connect()
    assert conn.is_closed
    assert conn.history[-1].reason == "closed by peer: close code 1001"
    assert server.handshakes == 1
    await conn.close()
