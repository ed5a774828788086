"""Opening a WebSocket (``_handshake.open_websocket``): what websockets is given, retries, the gate.

Against the real loopback server (``aio_websocket_pool.testing.LoopbackServer``),
which can refuse handshakes with any HTTP status.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from aio_websocket_pool import ConnectionUnavailableError, HandshakeRejectedError
from aio_websocket_pool._backoff import Backoff
from aio_websocket_pool._handshake import open_websocket
from aio_websocket_pool._redact import RedactingLogger
from aio_websocket_pool._websocket import PooledWebSocket
from aio_websocket_pool.testing import LoopbackServer

pytestmark = pytest.mark.timeout(30)

SECRET = "s3cr3t-token-value"  # noqa: S105  (a fake credential that must never be shown)


async def open_to(
    server: LoopbackServer,
    *,
    max_attempts: int = 1,
    gate: Backoff | None = None,
    **connect_kwargs: Any,
) -> ClientConnection:
    """Open a WebSocket to ``server`` with a secret header, as a pooled connection would."""
    return await open_websocket(
        server.uri, headers={"Authorization": f"Bearer {SECRET}"},
        connect_kwargs=dict(connect_kwargs), open_timeout=5.0, max_attempts=max_attempts,
        gate=gate, secrets=(SECRET,), who="test/conn-1",
    )  # fmt: skip


async def test_the_websocket_is_pooled_and_logs_through_a_redacting_logger(
    server: LoopbackServer,
) -> None:
    websocket = await open_to(server)
    try:
        assert isinstance(websocket, PooledWebSocket)
        # websockets wraps the logger it is given in an adapter of its own.
        assert isinstance(websocket.logger, logging.LoggerAdapter)
        assert isinstance(websocket.logger.logger, RedactingLogger)
        await websocket.send("hello")
        assert await websocket.recv() == "hello"
    finally:
        await websocket.close()


async def test_the_users_own_logger_is_wrapped_not_replaced(server: LoopbackServer) -> None:
    mine = logging.getLogger("test.handshake.mine")
    websocket = await open_to(server, logger=mine)
    try:
        assert isinstance(websocket.logger, logging.LoggerAdapter)
        given = websocket.logger.logger  # inside websockets' own adapter
        assert isinstance(given, RedactingLogger)
        assert given.logger is mine
    finally:
        await websocket.close()


async def test_a_transient_refusal_is_retried_and_a_4xx_is_not(server: LoopbackServer) -> None:
    server.refuse(1, 503)
    websocket = await open_to(server, max_attempts=2)
    await websocket.close()
    server.refuse(2, 401)
    with pytest.raises(HandshakeRejectedError):
        await open_to(server, max_attempts=3)
    # Not retried: the second refusal is still queued, for the next handshake.
    with pytest.raises(HandshakeRejectedError):
        await open_to(server, max_attempts=1)
    websocket = await open_to(server, max_attempts=1)
    await websocket.close()


async def test_a_503_trips_the_gate_and_a_success_resets_it(server: LoopbackServer) -> None:
    gate = Backoff()
    server.refuse(1, 503)
    with pytest.raises(ConnectionUnavailableError) as caught:
        await open_to(server, gate=gate)
    assert gate.remaining > 0
    assert SECRET not in repr(caught.value)
    assert SECRET not in repr(caught.value.__cause__)
    websocket = await open_to(server, gate=gate)  # waits for the gate, then succeeds
    await websocket.close()
    assert gate.remaining == 0
