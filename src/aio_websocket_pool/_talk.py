"""Talking on a connection: who may, and send, receive and ping in the package's terms.

Every talker goes through here: a standalone connection's user, the hook
running on a pooled connection, a lease, a multiplexer's channel. So what
websockets raises is translated in one place (``ConnectionClosed`` becomes
:class:`~aio_websocket_pool.ConnectionClosedError`, a pong that never came
:class:`~aio_websocket_pool.ConnectionUnavailableError`, each naming the
connection and never a secret), and each message that goes out or comes in
sets the connection's clock of last traffic, which the idle sweep and the
health checks read.

The connection offers :func:`send`, :func:`recv` and :func:`ping` as its
``_send``, ``_recv`` and ``_ping``; a lease calls them on the connection it
stands for, after checks of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from ._exceptions import ConnectionBusyError, ConnectionClosedError, ConnectionUnavailableError
from ._fsm import BUSY, CLOSED
from ._redact import describe_close, raise_from
from ._websocket import send_at_once

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

    from ._connection import WebsocketConnection


def usable_websocket(connection: WebsocketConnection) -> ClientConnection:
    """The connection's websocket, if the caller may talk on it now.

    A standalone connection: once acquired. A pooled one: only from the
    hook running on it; borrowers talk through their lease.

    Raises:
        ConnectionClosedError: It is closed.
        ConnectionBusyError: The caller may not talk on it now.
    """
    state = connection._lifecycle.state
    if state is CLOSED:
        raise ConnectionClosedError(f"{connection.id} is closed")
    if connection._pool is None:
        if state is not BUSY:
            raise ConnectionBusyError("Connection must be acquired before sending or receiving")
    elif not connection._hooks.permits_caller():
        raise ConnectionBusyError(
            f"{connection.id} belongs to a pool: talk through what pool.acquire() handed out"
        )
    websocket = connection.websocket
    if websocket is None:  # pragma: no cover  (usable implies opened)
        raise ConnectionUnavailableError(f"{connection.id} is not connected")
    return websocket


async def send(
    connection: WebsocketConnection,
    websocket: ClientConnection,
    message: str | bytes | bytearray | memoryview,
) -> None:
    """Send a text (``str``) or binary (bytes-like) message on ``websocket``.

    Raises:
        TypeError: ``message`` is neither ``str`` nor bytes-like.
        UnicodeEncodeError: ``message`` is a ``str`` that UTF-8 cannot encode.
        ConnectionClosedError: It closed before or while sending.
    """
    data: bytes | bytearray | memoryview
    if isinstance(message, str):
        # Encoded here: a str that is not UTF-8 fails as the caller's error, where inside
        # websockets' send it would close the connection.
        data, text = message.encode(), True
    elif isinstance(message, bytes | bytearray | memoryview):
        data, text = message, False
    else:
        raise TypeError(f"message must be str or bytes-like, not {type(message).__name__}")
    try:
        if not send_at_once(websocket, data, text=text):  # no coroutine when none is needed
            await websocket.send(data, text=text)
    except ConnectionClosed as exc:
        error = ConnectionClosedError(
            f"{connection.id} closed while sending: {describe_close(exc)}"
        )
        raise_from(error, exc)
    connection._last_activity = time.monotonic()


async def recv(connection: WebsocketConnection, websocket: ClientConnection) -> str | bytes:
    """The next message on ``websocket``.

    Raises:
        ConnectionClosedError: It closed before or while receiving.
    """
    try:
        message = await websocket.recv()
    except ConnectionClosed as exc:
        error = ConnectionClosedError(
            f"{connection.id} closed while receiving: {describe_close(exc)}"
        )
        raise_from(error, exc)
    connection._last_activity = time.monotonic()
    return message


async def messages(connection: WebsocketConnection) -> AsyncIterator[str | bytes]:
    """``connection.recv()`` until the peer closes normally (``async for``)."""
    while True:
        try:
            yield await connection.recv()
        except ConnectionClosedError as exc:
            if isinstance(exc.__cause__, ConnectionClosedOK):
                return
            raise


async def ping(connection: WebsocketConnection) -> float:
    """Ping the server and wait for the pong; return the round trip in seconds.

    Raises:
        ConnectionUnavailableError: It is not open, or no pong came within
            its pong timeout.
        ConnectionClosedError: It closed while waiting for the pong.
    """
    websocket = connection.websocket
    if websocket is None or not connection.is_connected:
        raise ConnectionUnavailableError("Websocket is not connected")
    timeout = connection._pong_timeout
    try:
        async with asyncio.timeout(timeout):
            latency = await (await websocket.ping())
    except ConnectionClosed as exc:
        error = ConnectionClosedError(f"{connection.id} closed during ping: {describe_close(exc)}")
        raise_from(error, exc)
    except TimeoutError as exc:
        raise ConnectionUnavailableError(f"{connection.id}: no pong within {timeout:g}s") from exc
    connection._last_activity = time.monotonic()
    return latency
