"""Talking on a connection (``_talk``): what may be sent, and websockets' errors in our terms.

Against the real loopback echo server: a message that is neither text nor
bytes-like is refused before anything goes out, and a close or a missing
pong becomes the package's typed error, naming the connection, with
websockets' exception as its cause.
"""

from __future__ import annotations

import pytest
from websockets.exceptions import ConnectionClosed

from aio_websocket_pool import (
    ConnectionClosedError,
    ConnectionUnavailableError,
    WebsocketConnection,
)
from helpers import assert_consistent, pool_maker, round_trip, wait_until
from loopback import LoopbackServer

make_pool = pool_maker(health_check_interval=None)


@pytest.mark.parametrize("message", [1, {"a": 1}, None, [b"a list"], 1.5], ids=type)
async def test_send_refuses_what_is_neither_str_nor_bytes(
    server: LoopbackServer, message: object
) -> None:
    async with make_pool(server) as pool:
        async with pool.get_connection() as conn:
            with pytest.raises(TypeError, match="str or bytes"):
                await conn.send(message)  # type: ignore[arg-type]
            assert conn.is_busy  # nothing was sent, the connection is still fine
            await round_trip(conn, "text")
            await conn.send(b"binary")
            assert await conn.recv() == b"binary"
        stats = assert_consistent(pool)
        assert (stats.idle, stats.total, stats.closed) == (1, 1, 0)


@pytest.mark.regression
async def test_a_str_utf8_cannot_encode_is_refused_and_the_connection_stays_open(
    server: LoopbackServer,
) -> None:
    """Inside websockets' send the encode error would close the connection (an internal error)."""
    async with make_pool(server) as pool:
        async with pool.get_connection() as conn:
            with pytest.raises(UnicodeEncodeError):
                await conn.send("a lone surrogate: \udcff")
            await round_trip(conn, "still open")
        stats = assert_consistent(pool)
        assert (stats.idle, stats.closed, stats.connections_lost) == (1, 0, 0)


async def test_send_accepts_a_bytearray_as_in_0_1_0(server: LoopbackServer) -> None:
    async with make_pool(server) as pool, pool.get_connection() as conn:
        # 0.1.0 passed it to websockets, which sends any bytes-like as a binary frame.
        await conn.send(bytearray(b"frame"))
        assert await conn.recv() == b"frame"


@pytest.mark.parametrize("operation", ["send", "recv"])
async def test_a_close_by_the_peer_is_a_connection_closed_error_naming_the_connection(
    server: LoopbackServer, operation: str
) -> None:
    async with WebsocketConnection(uri=server.uri) as conn:
        await server.close_connections(1011)
        await wait_until(lambda: not conn.is_connected, "the client saw the close")
        with pytest.raises(ConnectionClosedError, match=f"{conn.id} closed while") as caught:
            await (conn.send("too late") if operation == "send" else conn.recv())
        assert "1011" in str(caught.value)
        assert isinstance(caught.value.__cause__, ConnectionClosed)


async def test_a_ping_with_no_pong_in_time_is_unavailable(server: LoopbackServer) -> None:
    # A short close_timeout: the frozen server will not answer the closing handshake either.
    async with WebsocketConnection(uri=server.uri, close_timeout=0.2) as conn:
        conn._pong_timeout = 0.1  # no need to wait the default 10 s
        before = conn.idle_for
        server.freeze()  # the server stops reading: no pong comes
        with pytest.raises(ConnectionUnavailableError, match=f"{conn.id}: no pong within 0.1s"):
            await conn.ping()
        assert conn.idle_for >= before  # no traffic was recorded for it
